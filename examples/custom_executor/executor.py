#!/usr/bin/env python3
"""An executor that runs many tasks at once, each task's shell command in a thread.

Started by a slave (ExecutorInfo.command, see scheduler.py), never by hand: the
slave tells it where to connect through the environment. A task's command is in
TaskInfo.data. Framework messages are echoed back, prefixed with b"echo: ".
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from offerd.framework_sdk import Executor, MesosExecutorDriver
from offerd.proto import offerd_pb2 as mesos_pb2


class ThreadedExecutor(Executor):
    def __init__(self):
        self.lock = threading.Lock()
        self.processes: dict[str, subprocess.Popen] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.killed: set[str] = set()

    def registered(self, driver, executorInfo, frameworkInfo, slaveInfo):
        print(f"executor {executorInfo.executor_id.value} of {frameworkInfo.name!r} "
              f"registered on {slaveInfo.hostname}", flush=True)

    def launchTask(self, driver, task):
        # Callbacks must return quickly: the work runs on its own thread.
        thread = threading.Thread(target=self.run_task, args=(driver, task), daemon=True)
        with self.lock:
            self.threads[task.task_id.value] = thread
        thread.start()

    def run_task(self, driver, task):
        task_id = task.task_id.value
        try:
            code = self.run_command(driver, task_id, task.data.decode("utf-8") or "true")
        except OSError as exc:
            code = f"not started: {exc}"
        finally:
            with self.lock:
                self.processes.pop(task_id, None)
                self.threads.pop(task_id, None)
                killed = task_id in self.killed
        if killed:
            self.update(driver, task_id, mesos_pb2.TASK_KILLED, "killed")
        elif code == 0:
            self.update(driver, task_id, mesos_pb2.TASK_FINISHED, "exit status 0")
        else:
            self.update(driver, task_id, mesos_pb2.TASK_FAILED, f"exit status {code}")

    def run_command(self, driver, task_id, command):
        with self.lock:
            if task_id in self.killed:
                return None
            # A session of its own, so a kill reaches whatever the command started.
            process = subprocess.Popen(command, shell=True, start_new_session=True)
            self.processes[task_id] = process
        self.update(driver, task_id, mesos_pb2.TASK_RUNNING, f"pid {process.pid}")
        return process.wait()

    def update(self, driver, task_id, state, message=""):
        status = mesos_pb2.TaskStatus()
        status.task_id.value = task_id
        status.state = state
        status.message = message
        driver.sendStatusUpdate(status)

    def killTask(self, driver, taskId):
        with self.lock:
            self.killed.add(taskId.value)
            process = self.processes.get(taskId.value)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def frameworkMessage(self, driver, message):
        driver.sendFrameworkMessage(b"echo: " + message)

    def shutdown(self, driver):
        with self.lock:
            threads = dict(self.threads)
        for task_id in threads:
            self.killTask(driver, mesos_pb2.TaskID(value=task_id))
        # The driver stops when this returns: let the tasks report TASK_KILLED
        # first, within the slave's shutdown grace period.
        for thread in threads.values():
            thread.join(timeout=2)

    def error(self, driver, message):
        print(f"executor error: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    driver = MesosExecutorDriver(ThreadedExecutor())
    sys.exit(0 if driver.run() == mesos_pb2.DRIVER_STOPPED else 1)
