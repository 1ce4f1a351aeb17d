#!/usr/bin/env python3
"""Launch throughput and latency through the whole offerd protocol.

Three measurements in one run, printed as one JSON document:

1. raw_ceiling: fork+exec of `true` in a loop from Python on this machine, the
   most any launcher in Python could do here.
2. posix: `offerd local --slaves 2` with real processes; a framework on the SDK
   launches `--tasks` trivial tasks (`true`) and waits for every TASK_FINISHED.
3. simulated: the same framework against `--simulated_slaves` simulated slaves
   hosted by one process (the one simulated-slave mode every benchmark reuses):
   offer, accept, run, RUNNING, FINISHED and acknowledgements, but no process.

Throughput is tasks per second from the first offer to the last TASK_FINISHED;
latency is from the offer a task was launched on reaching the scheduler to its
TASK_RUNNING reaching the scheduler. With 1,000 tasks launched at once that
latency is mostly queueing, so a second posix run (`posix_unloaded`) launches
tasks that each fill a slave and measures the path itself.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from offerd.cli.local import LocalCluster, free_base_port  # noqa: E402
from offerd.common.resources import Resources  # noqa: E402
from offerd.framework_sdk import MesosSchedulerDriver, Scheduler  # noqa: E402
from offerd.common.task_states import TERMINAL_STATES as TERMINAL  # noqa: E402
from offerd.proto import offerd_pb2 as pb  # noqa: E402



def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def raw_ceiling(seconds: float) -> dict:
    """fork+exec of `true`, one at a time, for `seconds`."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        subprocess.run(["true"], check=True)
        count += 1
    elapsed = time.perf_counter() - start
    return {"launches": count, "seconds": round(elapsed, 3), "per_second": round(count / elapsed, 1)}


class BenchScheduler(Scheduler):
    """Packs as many tasks into each offer as fit until `total` are launched."""

    def __init__(self, total: int, task_resources: str, command: str):
        self.total = total
        self.per_task = Resources.parse(task_resources)
        self.task_protos = self.per_task.to_protos()
        self.command = command
        self.launched = 0
        self.finished = 0
        self.failed = 0
        self.first_offer_at: float | None = None
        self.last_finished_at: float | None = None
        self.offer_seen_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.updates = 0

    def resourceOffers(self, driver, offers):
        now = time.perf_counter()
        if self.first_offer_at is None:
            self.first_offer_at = now
        for offer in offers:
            remaining = Resources.from_protos(offer.resources)
            tasks = []
            while self.launched < self.total and remaining.contains(self.per_task):
                remaining = remaining - self.per_task
                task = pb.TaskInfo(name="bench")
                task.task_id.value = f"bench-{self.launched}"
                task.slave_id.CopyFrom(offer.slave_id)
                task.command.value = self.command
                task.resources.extend(self.task_protos)
                tasks.append(task)
                self.offer_seen_at[task.task_id.value] = now
                self.launched += 1
            if tasks:
                driver.launchTasks(offer.id, tasks, pb.Filters(refuse_seconds=0.01))
            else:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=60))

    def statusUpdate(self, driver, status):
        self.updates += 1
        task_id = status.task_id.value
        if status.state == pb.TASK_RUNNING and task_id in self.offer_seen_at:
            self.latencies.append(time.perf_counter() - self.offer_seen_at.pop(task_id))
        elif status.state in TERMINAL:
            self.offer_seen_at.pop(task_id, None)
            if status.state == pb.TASK_FINISHED:
                self.finished += 1
            else:
                self.failed += 1
                if self.failed <= 3:
                    print(f"task {task_id}: {pb.TaskState.Name(status.state)} {status.message}", file=sys.stderr)
            if self.finished + self.failed >= self.total:
                self.last_finished_at = time.perf_counter()
                self.done.set()

    def error(self, driver, message):
        print(f"framework error: {message}", file=sys.stderr)
        self.done.set()


def run_framework(master: str, tasks: int, task_resources: str, command: str, timeout: float) -> dict:
    scheduler = BenchScheduler(tasks, task_resources, command)
    framework = pb.FrameworkInfo(name="launch-bench", user=getpass.getuser())
    driver = MesosSchedulerDriver(scheduler, framework, master)
    driver.start()
    completed = scheduler.done.wait(timeout)
    driver.stop()
    driver.join()
    elapsed = (scheduler.last_finished_at or time.perf_counter()) - (scheduler.first_offer_at or time.perf_counter())
    lat_ms = [x * 1000 for x in scheduler.latencies]
    return {
        "tasks": tasks,
        "finished": scheduler.finished,
        "failed": scheduler.failed,
        "completed": completed,
        "seconds": round(elapsed, 3),
        "tasks_per_second": round(scheduler.finished / elapsed, 1) if elapsed > 0 else None,
        "offer_to_running_ms": {
            "p50": round(percentile(lat_ms, 0.50), 2),
            "p99": round(percentile(lat_ms, 0.99), 2),
            "mean": round(statistics.fmean(lat_ms), 2) if lat_ms else None,
            "samples": len(lat_ms),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks for the posix run (default 1000)")
    parser.add_argument("--unloaded_tasks", type=int, default=100,
                        help="tasks for the one-at-a-time latency run (default 100)")
    parser.add_argument("--simulated_tasks", type=int, default=20000, help="tasks for the simulated run")
    parser.add_argument("--simulated_slaves", type=int, default=100, help="simulated slaves (default 100)")
    parser.add_argument("--raw_seconds", type=float, default=3.0, help="how long to measure the raw ceiling")
    parser.add_argument("--skip", choices=["posix", "simulated"], action="append", default=[],
                        help="skip a part of the run")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a run after this many seconds")
    args = parser.parse_args()

    result: dict = {
        "benchmark": "launch_bench",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print("measuring the raw fork+exec ceiling...", file=sys.stderr)
    result["raw_ceiling"] = raw_ceiling(args.raw_seconds)

    if "posix" not in args.skip:
        print(f"posix: {args.tasks} tasks on offerd local --slaves 2...", file=sys.stderr)
        with LocalCluster(slaves=2, port=free_base_port(2), resources="cpus:64;mem:65536;disk:10240",
                          allocation_interval=0.1, logging_level="WARNING") as cluster:
            posix = run_framework(cluster.master, args.tasks, "cpus:0.1;mem:32", "true", args.timeout)
            # The same path without a queue: each task fills a slave, so at most
            # two run at once and offer->RUNNING is the protocol's own latency.
            unloaded = run_framework(cluster.master, args.unloaded_tasks, "cpus:64;mem:32", "true", args.timeout)
        posix["fraction_of_raw_ceiling"] = round(
            (posix["tasks_per_second"] or 0) / result["raw_ceiling"]["per_second"], 3)
        result["posix"] = posix
        result["posix_unloaded"] = unloaded

    if "simulated" not in args.skip:
        print(f"simulated: {args.simulated_tasks} tasks on {args.simulated_slaves} simulated slaves...",
              file=sys.stderr)
        with LocalCluster(slaves=args.simulated_slaves, simulate=args.simulated_slaves, port=free_base_port(1),
                          resources="cpus:64;mem:65536;disk:10240", allocation_interval=0.1,
                          logging_level="WARNING") as cluster:
            result["simulated"] = run_framework(cluster.master, args.simulated_tasks, "cpus:0.1;mem:32", "true",
                                                args.timeout)
        result["simulated"]["slaves"] = args.simulated_slaves

    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
