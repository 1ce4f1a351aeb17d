#!/usr/bin/env python3
"""A scheduler whose tasks run in its own executor (executor.py, next to this file).

    .venv/bin/python examples/custom_executor/scheduler.py --master 127.0.0.1:5050 --tasks 8

One executor process per slave runs all of this framework's tasks on that slave,
each in a thread. Once an executor reports its first running task, the
scheduler sends it a framework message with binary data and expects it echoed.
Exits 0 when every task finished.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shlex
import sys
import threading
import time

from offerd.framework_sdk import MesosSchedulerDriver, ResourceError, Resources, Scheduler
from offerd.proto import offerd_pb2 as mesos_pb2

EXECUTOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "executor.py")
EXECUTOR_RESOURCES = Resources.from_scalars({"cpus": 0.1, "mem": 32})
GREETING = b"hello\0executor"  # a NUL byte on purpose: messages are bytes
TERMINAL = {
    mesos_pb2.TASK_FINISHED, mesos_pb2.TASK_FAILED, mesos_pb2.TASK_KILLED, mesos_pb2.TASK_ERROR,
    mesos_pb2.TASK_LOST, mesos_pb2.TASK_DROPPED, mesos_pb2.TASK_GONE, mesos_pb2.TASK_GONE_BY_OPERATOR,
}


def executor_info():
    executor = mesos_pb2.ExecutorInfo()
    executor.executor_id.value = "threaded-executor"
    executor.name = "threaded executor (offerd example)"
    # The interpreter running this scheduler has the SDK installed; the slave
    # runs this command line in the executor's sandbox.
    executor.command.value = f"{shlex.quote(sys.executable)} {shlex.quote(EXECUTOR_SCRIPT)}"
    executor.resources.extend(EXECUTOR_RESOURCES.to_protos())
    return executor


class CustomExecutorScheduler(Scheduler):
    def __init__(self, args):
        self.args = args
        self.executor = executor_info()
        self.per_task = Resources.from_scalars({"cpus": args.cpus, "mem": args.mem})
        self.pending = collections.deque(range(args.tasks))
        self.active: dict[str, mesos_pb2.SlaveID] = {}
        self.results: dict[str, str] = {}
        self.greeted: set[str] = set()  # slave ids whose executor got a message
        self.echoes: list[bytes] = []
        self.lock = threading.Lock()  # echoes also arrive while main() waits for them

    def registered(self, driver, frameworkId, masterInfo):
        print(f"registered as framework {frameworkId.value}")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            left = Resources.from_protos(offer.resources).unreserved()
            # The executor's own resources are taken once per slave, when it starts.
            if self.executor.executor_id not in offer.executor_ids:
                left = left - EXECUTOR_RESOURCES if left.contains(EXECUTOR_RESOURCES) else Resources.EMPTY
            tasks = []
            while self.pending and left.contains(self.per_task):
                tasks.append(self.build_task(self.pending.popleft(), offer))
                left -= self.per_task
            if tasks:
                print(f"launching {len(tasks)} task(s) on {offer.hostname}")
                for task in tasks:
                    self.active[task.task_id.value] = offer.slave_id
                driver.launchTasks(offer.id, tasks)
            else:
                driver.declineOffer(offer.id, mesos_pb2.Filters(refuse_seconds=60))
        if not self.pending:
            driver.suppressOffers()

    def build_task(self, number, offer):
        task = mesos_pb2.TaskInfo()
        task.task_id.value = f"custom-{number}"
        task.name = f"custom task {number}"
        task.slave_id.CopyFrom(offer.slave_id)
        task.executor.CopyFrom(self.executor)
        task.data = self.args.command.format(n=number).encode()
        task.resources.extend(self.per_task.to_protos())
        return task

    def statusUpdate(self, driver, status):
        task_id, state = status.task_id.value, status.state
        print(f"task {task_id} is {mesos_pb2.TaskState.Name(state)}"
              + (f": {status.message}" if status.message else ""))
        if state == mesos_pb2.TASK_RUNNING and status.slave_id.value not in self.greeted:
            self.greeted.add(status.slave_id.value)
            driver.sendFrameworkMessage(self.executor.executor_id, status.slave_id, GREETING)
        if state in TERMINAL and task_id in self.active:
            del self.active[task_id]
            self.results[task_id] = mesos_pb2.TaskState.Name(state)
            if len(self.results) == self.args.tasks:
                self.wait_for_echoes_then_stop(driver)

    def frameworkMessage(self, driver, executorId, slaveId, message):
        print(f"executor {executorId.value} on {slaveId.value} answered {message!r}")
        with self.lock:
            self.echoes.append(message)

    def wait_for_echoes_then_stop(self, driver):
        # Messages are best effort; give the last echoes a moment, off this thread.
        def later():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with self.lock:
                    if len(self.echoes) >= len(self.greeted):
                        break
                time.sleep(0.05)
            driver.stop()

        threading.Thread(target=later, daemon=True).start()

    def error(self, driver, message):
        print(f"error: {message}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default="127.0.0.1:5050", help="the master's HTTP address, host:port")
    parser.add_argument("--tasks", type=int, default=8, help="how many tasks to run")
    parser.add_argument("--command", default="echo task {n}; sleep 1",
                        help="each task's shell command; {n} is the task's number")
    parser.add_argument("--cpus", type=float, default=0.1, help="cpus per task")
    parser.add_argument("--mem", type=float, default=32, help="memory per task, MB")
    parser.add_argument("--verbose", action="store_true", help="log the driver's doings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    framework = mesos_pb2.FrameworkInfo()
    framework.user = ""
    framework.name = "custom-executor-example"
    try:
        scheduler = CustomExecutorScheduler(args)
    except ResourceError as exc:
        parser.error(f"--cpus/--mem: {exc}")
    driver = MesosSchedulerDriver(scheduler, framework, args.master)
    started = time.monotonic()
    try:
        status = driver.run()
    except KeyboardInterrupt:
        status = driver.stop()

    finished = sum(1 for state in scheduler.results.values() if state == "TASK_FINISHED")
    print(f"{finished} of {args.tasks} task(s) finished in {time.monotonic() - started:.1f}s; "
          f"{len(scheduler.echoes)} of {len(scheduler.greeted)} executor(s) echoed the greeting")
    for task_id, state in sorted(scheduler.results.items()):
        if state != "TASK_FINISHED":
            print(f"  {task_id}: {state}")
    ok = status == mesos_pb2.DRIVER_STOPPED and finished == args.tasks
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
