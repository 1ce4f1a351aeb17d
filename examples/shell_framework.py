#!/usr/bin/env python3
"""Run N shell commands as offerd tasks, as many per offer as fit, and report.

    .venv/bin/python examples/shell_framework.py --master 127.0.0.1:5050 \\
        --tasks 20 --command 'echo hello from $HOSTNAME; sleep 1' --cpus 0.1 --mem 32

Each task is a plain command task: the slave runs it itself (no executor of
ours). Exits 0 when every task finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import threading
import time

from offerd.framework_sdk import MesosSchedulerDriver, ResourceError, Resources, Scheduler
from offerd.proto import offerd_pb2 as mesos_pb2

TERMINAL = {
    mesos_pb2.TASK_FINISHED, mesos_pb2.TASK_FAILED, mesos_pb2.TASK_KILLED, mesos_pb2.TASK_ERROR,
    mesos_pb2.TASK_LOST, mesos_pb2.TASK_DROPPED, mesos_pb2.TASK_GONE, mesos_pb2.TASK_GONE_BY_OPERATOR,
}


class ShellScheduler(Scheduler):
    def __init__(self, args):
        self.args = args
        self.per_task = Resources.from_scalars({"cpus": args.cpus, "mem": args.mem})
        self.pending = collections.deque(range(args.tasks))
        self.active: set[str] = set()
        self.finished = 0
        self.failed: dict[str, str] = {}
        self.suppressed = False
        self.started = time.monotonic()

    @property
    def done(self):
        return self.finished + len(self.failed) == self.args.tasks

    def registered(self, driver, frameworkId, masterInfo):
        print(f"registered as framework {frameworkId.value} with master {masterInfo.hostname}:{masterInfo.port}")

    def reregistered(self, driver, masterInfo):
        # Updates may have been missed while disconnected: ask for the latest states.
        print("reregistered; reconciling running tasks")
        driver.reconcileTasks([])

    def resourceOffers(self, driver, offers):
        for offer in offers:
            left = Resources.from_protos(offer.resources).unreserved()
            tasks = []
            while (self.pending and len(self.active) + len(tasks) < self.args.concurrency
                   and left.contains(self.per_task)):
                tasks.append(self.build_task(self.pending.popleft(), offer))
                left -= self.per_task
            if tasks:
                print(f"launching {len(tasks)} task(s) on {offer.hostname} ({offer.id.value})")
                self.active.update(t.task_id.value for t in tasks)
                driver.launchTasks(offer.id, tasks)
            else:
                # Nothing to run here now; a short filter, since finished tasks revive offers.
                driver.declineOffer(offer.id, mesos_pb2.Filters(refuse_seconds=30 if not self.pending else 1))
        if not self.pending and not self.suppressed:
            driver.suppressOffers()
            self.suppressed = True

    def build_task(self, number, offer):
        task = mesos_pb2.TaskInfo()
        task.task_id.value = f"shell-{number}"
        task.name = f"{self.args.name} #{number}"
        task.slave_id.CopyFrom(offer.slave_id)
        task.command.value = self.args.command
        task.resources.extend(self.per_task.to_protos())
        return task

    def statusUpdate(self, driver, status):
        task_id, state = status.task_id.value, status.state
        name = mesos_pb2.TaskState.Name(state)
        print(f"task {task_id} is {name}" + (f": {status.message}" if status.message else ""))
        if state not in TERMINAL or task_id not in self.active:
            return
        self.active.discard(task_id)
        if state == mesos_pb2.TASK_FINISHED:
            self.finished += 1
        else:
            self.failed[task_id] = name
        if self.done:
            driver.stop()
        elif self.pending:
            driver.reviveOffers()  # room for the next task

    def error(self, driver, message):
        print(f"error: {message}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default="127.0.0.1:5050", help="the master's HTTP address, host:port")
    parser.add_argument("--tasks", type=int, default=10, help="how many tasks to run")
    parser.add_argument("--command", default="echo hello; sleep 1", help="the shell command of each task")
    parser.add_argument("--cpus", type=float, default=0.1, help="cpus per task")
    parser.add_argument("--mem", type=float, default=32, help="memory per task, MB")
    parser.add_argument("--concurrency", type=int, default=1_000_000, help="most tasks running at once")
    parser.add_argument("--name", default="shell-framework", help="framework name")
    parser.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    parser.add_argument("--verbose", action="store_true", help="log the driver's doings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    framework = mesos_pb2.FrameworkInfo()
    framework.user = ""  # the driver fills in the current user
    framework.name = args.name

    try:
        scheduler = ShellScheduler(args)
    except ResourceError as exc:
        parser.error(f"--cpus/--mem: {exc}")
    driver = MesosSchedulerDriver(scheduler, framework, args.master)
    if args.timeout > 0:
        timer = threading.Timer(args.timeout, driver.stop)
        timer.daemon = True
        timer.start()
    try:
        status = driver.run()
    except KeyboardInterrupt:
        status = driver.stop()

    elapsed = time.monotonic() - scheduler.started
    print(f"{scheduler.finished} finished, {len(scheduler.failed)} failed, "
          f"{args.tasks - scheduler.finished - len(scheduler.failed)} not run, of {args.tasks} "
          f"task(s) in {elapsed:.1f}s")
    for task_id, state in sorted(scheduler.failed.items()):
        print(f"  {task_id}: {state}")
    ok = status == mesos_pb2.DRIVER_STOPPED and scheduler.finished == args.tasks
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
