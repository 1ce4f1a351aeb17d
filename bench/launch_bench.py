#!/usr/bin/env python3
"""Launch throughput and latency through the whole offerd protocol.

Four measurements in one run, printed as one JSON document:

1. raw_ceiling: fork+exec of `true` in a loop from Python on this machine, the
   most any launcher in Python could do here.
2. posix: `offerd local --slaves 2` with real processes; a framework on the SDK
   launches `--tasks` trivial tasks (`true`) and waits for every TASK_FINISHED.
3. isolated: the posix run again with the slaves' `--isolation` set to real
   containers (default cgroups/cpu,cgroups/mem,namespaces/pid; needs root). posix
   and isolated alternate for `--rounds` rounds on clusters started once (the
   machine's load drifts; both see the same drift); medians are reported, with
   each round's rate and posix/isolated ratio. Next to them,
   `container_ceiling`: the container primitives alone in a loop, through the
   slave's own isolators and launcher (offerd-init, the containers' first process,
   creates the cgroups, writes their limits and joins them, mounts the PID
   namespace's /proc and runs `true` as its child; the cgroups are removed after),
   the most the isolated path could do.
4. simulated: the same framework against `--simulated_slaves` simulated slaves
   hosted by one process (the one simulated-slave mode every benchmark reuses):
   offer, accept, run, RUNNING, FINISHED and acknowledgements, but no process.
5. secure (`--secure`): the posix cluster again with all security on (as
   `offerd local --secure`: authenticated schedulers and slaves, ACLs, CURVE on
   every ZeroMQ link, HTTPS), in the same alternating rounds as posix; its
   framework authenticates as the operator principal. Reported with each
   round's secure/open ratio.

Throughput is tasks per second from the first offer to the last TASK_FINISHED;
latency is from the offer a task was launched on reaching the scheduler to its
TASK_RUNNING reaching the scheduler. With 1,000 tasks launched at once that
latency is mostly queueing, so a last run per mode (`posix_unloaded`,
`isolated_unloaded`) launches tasks that each fill a slave and measures the path itself.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from offerd.cli import secure_setup  # noqa: E402
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


def container_ceiling(seconds: float, isolation: str, threads: int = 4) -> dict:
    """The container primitives alone, through the slave's own isolators and
    launcher but without the protocol: each primitive's cost, then whole
    containers (prepare cgroups + limits, spawn `true` in them and in the
    namespaces, wait, remove the cgroups) one at a time and on `threads`
    threads, as the slave's launcher pool runs them."""
    import concurrent.futures
    import itertools

    from offerd.slave.containerizer import launcher
    from offerd.slave.containerizer.isolator import Container, LaunchPlan
    from offerd.slave.containerizer.namespaces import create_isolators

    flags = argparse.Namespace(cgroups_root=f"offerd-bench-{os.getpid()}", cgroups_enable_cfs=False,
                               cgroups_limit_swap=False)
    isolators = create_isolators(isolation, flags)
    ids = itertools.count()

    def prepare() -> tuple[Container, LaunchPlan]:
        box, plan = Container(f"c{next(ids)}", "/tmp", cpus=0.1, mem_mb=32), LaunchPlan()
        for isolator in isolators:
            part = isolator.prepare(box)
            if part is not None:
                plan.merge(part)
        return box, plan

    def cleanup(box: Container) -> None:
        for isolator in reversed(isolators):
            isolator.cleanup(box)

    import tempfile

    sandbox = tempfile.mkdtemp(prefix="offerd-bench-")

    def spawn(plan: LaunchPlan, argv=("true",), status_file: str | None = None) -> None:
        """As the slave's launcher does it (posix.py): offerd-init when the plan
        has something to set up (or a status file is wanted), else the command itself."""
        launched = launcher.spawn(list(argv), None, plan, None, sandbox, dict(os.environ), status_file)
        if launched.proc.wait() != 0:
            raise RuntimeError(f"{argv} exited with {launched.proc.returncode}")

    def one(_=None) -> None:
        box, plan = prepare()
        try:
            spawn(plan)
        finally:
            cleanup(box)

    def cgroups_only() -> None:
        box, plan = prepare()
        plan.pid_namespace, plan.clone_flags = False, 0
        try:
            spawn(plan)
        finally:
            cleanup(box)

    def cgroups_alone() -> None:
        """mkdir, limits and rmdir from Python, without a process."""
        box, plan = prepare()
        for directory in plan.cgroup_dirs:
            os.mkdir(directory)
        for path, value in plan.cgroup_writes:
            with open(path, "w") as handle:
                handle.write(value)
        cleanup(box)

    def cost_ms(fn, budget: float) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < budget:
            fn()
            count += 1
        return round((time.perf_counter() - start) / count * 1000, 3)

    part = seconds / 8
    out = {
        "isolation": isolation,
        "cost_ms": {
            "spawn_true": cost_ms(lambda: spawn(LaunchPlan()), part),
            "create_cgroups_and_limits_then_remove": cost_ms(cgroups_alone, part),
            # offerd-init with nothing to set up: its own exec, fork and exit.
            "spawn_true_via_init": cost_ms(
                lambda: spawn(LaunchPlan(), status_file=os.path.join(sandbox, "status")), part),
            "spawn_true_in_cgroups_with_create_and_remove": cost_ms(cgroups_only, part),
            "spawn_true_in_pid_namespace": cost_ms(lambda: spawn(LaunchPlan(pid_namespace=True)), part),
            "spawn_true_with_hostname": cost_ms(
                lambda: spawn(LaunchPlan(clone_flags=launcher.CLONE_NEWUTS, hostname="bench")), part),
            "whole_container": cost_ms(one, part),
        },
    }
    start, count = time.perf_counter(), 0
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        while time.perf_counter() - start < seconds / 3:
            list(pool.map(one, range(threads * 8)))
            count += threads * 8
    elapsed = time.perf_counter() - start
    out.update({"threads": threads, "launches": count, "seconds": round(elapsed, 3),
                "per_second": round(count / elapsed, 1),
                "serial_per_second": round(1000 / out["cost_ms"]["whole_container"], 1)})
    for isolator in isolators:
        if hasattr(isolator, "remove_root"):
            isolator.remove_root()
    import shutil

    shutil.rmtree(sandbox, ignore_errors=True)
    return out


class BenchScheduler(Scheduler):
    """Launches `total` tasks, as many per offer as fit, spread evenly over the
    offers of each round."""

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
        self.suppressed = False

    def resourceOffers(self, driver, offers):
        now = time.perf_counter()
        if self.first_offer_at is None:
            self.first_offer_at = now
        for index, offer in enumerate(offers):
            remaining = Resources.from_protos(offer.resources)
            tasks = []
            # Spread what is left over the offers of this round (as Marathon spreads
            # instances): one slave must not carry the run while another idles.
            share = -(-(self.total - self.launched) // (len(offers) - index))
            while len(tasks) < share and remaining.contains(self.per_task):
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
        if self.launched >= self.total and not self.suppressed:
            # As a real framework does once it has nothing left to launch: without it every
            # task that ends sends its resources back as one more offer to decline.
            self.suppressed = True
            driver.suppressOffers()

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


def driver_security(cluster) -> dict:
    """The driver arguments that reach `cluster` (none unless it runs with security)."""
    return cluster.driver_kwargs()


def run_framework(master: str, tasks: int, task_resources: str, command: str, timeout: float,
                  security: dict | None = None, transport: str = "zmq") -> dict:
    """`transport`: the SDK over ZeroMQ ("zmq"), or over Mesos' v1 scheduler HTTP API ("http")."""
    scheduler = BenchScheduler(tasks, task_resources, command)
    framework = pb.FrameworkInfo(name="launch-bench", user=getpass.getuser())
    security = security or {}
    driver = MesosSchedulerDriver(scheduler, framework, master, True, security.get("credential"),
                                  master_public_key=security.get("master_public_key"),
                                  ca_file=security.get("ca_file"), transport=transport)
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
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating posix/isolated runs of --tasks; medians are reported (default 5)")
    parser.add_argument("--raw_seconds", type=float, default=3.0, help="how long to measure the raw ceiling")
    parser.add_argument("--isolation", default="cgroups/cpu,cgroups/mem,namespaces/pid",
                        help="the slaves' --isolation for the isolated run (needs root)")
    parser.add_argument("--skip", choices=["posix", "isolated", "simulated", "v1_http"], action="append", default=[],
                        help="skip a part of the run (v1_http: the posix rounds' framework over Mesos' v1 "
                             "scheduler HTTP API, alternating with the ZeroMQ one on the same cluster)")
    parser.add_argument("--secure", action="store_true",
                        help="add a posix cluster with all security on, alternating with the open one")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a run after this many seconds")
    args = parser.parse_args()

    result: dict = {
        "benchmark": "launch_bench",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print("measuring the raw fork+exec ceiling...", file=sys.stderr)
    result["raw_ceiling"] = raw_ceiling(args.raw_seconds)

    want_isolated = "isolated" not in args.skip
    if want_isolated and os.geteuid() != 0:
        result["isolated"] = {"skipped": "needs root for cgroups and namespaces"}
        want_isolated = False
    if want_isolated:
        print(f"container primitives alone ({args.isolation})...", file=sys.stderr)
        result["container_ceiling"] = container_ceiling(args.raw_seconds, args.isolation)

    # posix and isolated alternate, round after round, on clusters started once: the
    # machine's load drifts over a run, and the two must see the same drift.
    modes = {}
    if "posix" not in args.skip:
        modes["posix"] = []
    if want_isolated:
        modes["isolated"] = [f"--isolation={args.isolation}", f"--cgroups_root=offerd-bench-{os.getpid()}"]
    if args.secure:
        modes["secure"] = []
    with contextlib.ExitStack() as stack:
        secure_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="offerd-bench-secure-"))
        clusters = {mode: stack.enter_context(LocalCluster(
            slaves=2, port=free_base_port(2), resources="cpus:64;mem:65536;disk:10240", allocation_interval=0.1,
            logging_level="WARNING", slave_args=slave_args,
            security=secure_setup.prepare(secure_dir) if mode == "secure" else None))
            for mode, slave_args in modes.items()}
        rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
        v1_http = "posix" in clusters and "v1_http" not in args.skip
        if v1_http:
            rounds["v1_http"] = []
        for number in range(args.rounds):
            for mode, cluster in clusters.items():
                print(f"round {number + 1}/{args.rounds}: {args.tasks} tasks, {mode}...", file=sys.stderr)
                rounds[mode].append(run_framework(cluster.master, args.tasks, "cpus:0.1;mem:32", "true",
                                                  args.timeout, driver_security(cluster)))
                if mode == "posix" and v1_http:
                    print(f"round {number + 1}/{args.rounds}: {args.tasks} tasks, posix, v1 HTTP scheduler...",
                          file=sys.stderr)
                    rounds["v1_http"].append(run_framework(cluster.master, args.tasks, "cpus:0.1;mem:32", "true",
                                                           args.timeout, driver_security(cluster), "http"))
        for mode, cluster in clusters.items():
            # The same path without a queue: each task fills a slave, so at most
            # two run at once and offer->RUNNING is the protocol's own latency.
            print(f"{args.unloaded_tasks} tasks one slave-full at a time, {mode}...", file=sys.stderr)
            result[f"{mode}_unloaded"] = run_framework(cluster.master, args.unloaded_tasks, "cpus:64;mem:32", "true",
                                                       args.timeout, driver_security(cluster))
    for mode, runs in rounds.items():
        median = sorted(runs, key=lambda run: run["tasks_per_second"] or 0)[len(runs) // 2]
        result[mode] = {**median, "rounds_tasks_per_second": [run["tasks_per_second"] for run in runs]}
    if "posix" in result and "tasks_per_second" in result["posix"]:
        result["posix"]["fraction_of_raw_ceiling"] = round(
            (result["posix"]["tasks_per_second"] or 0) / result["raw_ceiling"]["per_second"], 3)
    if "isolated" in rounds:
        isolated = result["isolated"]
        isolated["isolation"] = args.isolation
        isolated["fraction_of_container_ceiling"] = round(
            (isolated["tasks_per_second"] or 0) / result["container_ceiling"]["per_second"], 3)
        if "posix" in rounds:
            # The ratio of the medians, and each round's (same round: the same machine state).
            isolated["posix_over_isolated_rate"] = round(
                result["posix"]["tasks_per_second"] / (isolated["tasks_per_second"] or float("nan")), 2)
            isolated["rounds_posix_over_isolated_rate"] = [
                round((p["tasks_per_second"] or 0) / (i["tasks_per_second"] or float("nan")), 2)
                for p, i in zip(rounds["posix"], rounds["isolated"])]

    if "v1_http" in rounds:
        http = result["v1_http"]
        http["http_over_zeromq_rate"] = round(
            (http["tasks_per_second"] or 0) / (result["posix"]["tasks_per_second"] or float("nan")), 2)
        http["rounds_http_over_zeromq_rate"] = [
            round((h["tasks_per_second"] or 0) / (z["tasks_per_second"] or float("nan")), 2)
            for z, h in zip(rounds["posix"], rounds["v1_http"])]

    if "secure" in rounds and "posix" in rounds:
        secure = result["secure"]
        secure["secure_over_open_rate"] = round(
            (secure["tasks_per_second"] or 0) / (result["posix"]["tasks_per_second"] or float("nan")), 2)
        secure["rounds_secure_over_open_rate"] = [
            round((locked["tasks_per_second"] or 0) / (open_["tasks_per_second"] or float("nan")), 2)
            for open_, locked in zip(rounds["posix"], rounds["secure"])]

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
