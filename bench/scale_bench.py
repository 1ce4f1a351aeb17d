#!/usr/bin/env python3
"""One master holding many slaves: the registration storm, the master's CPU and
memory at rest, task launch throughput through the whole protocol, and state
latency, at `--slaves` simulated slaves.

One run, printed as one JSON document (progress on stderr):

1. A master alone: its resident memory (RSS) empty.
2. `--slaves` simulated slaves (`offerd slave --simulate`: the real protocol, no
   processes) in `--fleets` processes, all started at once: the seconds from
   their start until the master counts every one active (the registration storm).
3. `--idle_seconds` with nothing happening: the master's CPU (user + system, as
   a percentage of one core, from /proc) and its RSS; RSS per slave.
4. A framework launches `--tasks` `sleep 3600` tasks (`cpus:0.01;mem:1` each, as
   many per offer as fit) and holds them: tasks/s from the first offer to the
   last TASK_RUNNING (launch, run, status updates and acknowledgements through
   the master), then the master's RSS per task and its CPU at rest again.
5. `--requests` sequential GETs of /master/state and v1 GET_STATE calls (JSON
   and protobuf): p50/p99, the first call's included.

The simulated slaves live on the same 2-core machine as the master and take
CPU from it; the output says how many processes hosted them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from http_bench import GET_STATE, V1_ANSWERS, HoldingScheduler, latency  # noqa: E402

from offerd.cli.local import LocalCluster, free_base_port  # noqa: E402
from offerd.framework_sdk import MesosSchedulerDriver  # noqa: E402
from offerd.proto import offerd_pb2 as pb  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
# offerd's targets for one master (Mesos took ~3 s for /state on large clusters after its 1.7 work).
TARGETS = {
    "registration_storm_s_at_10k": 5.0,
    "idle_cpu_percent_at_10k": 25.0,
    "launch_tasks_per_second": 3000.0,
    "state_p99_ms": 300.0,
}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics/snapshot", timeout=30) as response:
        return float(json.loads(response.read()).get(name, 0))


def idle_cpu(pid: int, seconds: float) -> float:
    """The process's CPU over `seconds` of wall time, in percent of one core."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - before) / (time.monotonic() - started), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slaves", type=int, default=10000, help="simulated slaves (default 10000)")
    parser.add_argument("--fleets", type=int, default=0,
                        help="processes hosting them (default: one per 5,000 slaves)")
    parser.add_argument("--tasks", type=int, default=20000, help="tasks launched and held (default 20000)")
    parser.add_argument("--idle_seconds", type=float, default=20.0, help="seconds of rest measured (default 20)")
    parser.add_argument("--requests", type=int, default=20, help="sequential requests per endpoint (default 20)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a step after this many seconds")
    args = parser.parse_args()
    fleets = args.fleets or max(1, -(-args.slaves // 5000))
    per_fleet = [args.slaves // fleets + (1 if i < args.slaves % fleets else 0) for i in range(fleets)]

    result: dict = {
        "benchmark": "scale_bench",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "parameters": {"slaves": args.slaves, "fleets": per_fleet, "tasks": args.tasks,
                       "idle_seconds": args.idle_seconds, "requests": args.requests,
                       "slave_resources": "cpus:16;mem:65536;disk:102400", "task_resources": "cpus:0.01;mem:1"},
        "slaves_kind": "simulated (real protocol over ZeroMQ, no processes), on the master's machine",
    }
    cluster = LocalCluster(slaves=args.slaves, simulate=args.slaves, port=free_base_port(fleets),
                           resources="cpus:16;mem:65536;disk:102400", allocation_interval=1.0,
                           logging_level="WARNING")
    print(f"starting a master, then {args.slaves} simulated slaves in {fleets} process(es)...", file=sys.stderr)
    cluster.start_master()
    try:
        base = cluster.master_url
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                metric(base, "master/slaves_active")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the master did not start") from None
                time.sleep(0.2)
        pid = cluster.master_proc.pid
        time.sleep(1)
        empty_rss = rss_mb(pid)

        started = time.monotonic()
        for index, count in enumerate(per_fleet):
            cluster.start_simulated_fleet(count, index)
        active = 0
        while active < args.slaves and time.monotonic() < started + args.timeout:
            time.sleep(0.1)
            active = metric(base, "master/slaves_active")
        storm = time.monotonic() - started
        result["registration_storm"] = {"slaves_active": int(active), "seconds": round(storm, 2),
                                        "per_second": round(active / storm, 1),
                                        "completed": active >= args.slaves}
        print(f"{int(active)} slaves active after {storm:.1f}s; resting {args.idle_seconds:.0f}s...", file=sys.stderr)
        time.sleep(3)  # the storm's tail (first offers, their declines) is not rest
        idle = idle_cpu(pid, args.idle_seconds)
        slaves_rss = rss_mb(pid)
        result["at_rest_with_slaves"] = {
            "master_cpu_percent_of_one_core": idle, "master_rss_mb": round(slaves_rss, 1),
            "master_rss_empty_mb": round(empty_rss, 1),
            "rss_kb_per_slave": round((slaves_rss - empty_rss) * 1024 / max(1, args.slaves), 1)}

        print(f"launching {args.tasks} tasks...", file=sys.stderr)
        holder = HoldingScheduler(args.tasks, "cpus:0.01;mem:1", "sleep 3600")
        driver = MesosSchedulerDriver(holder, pb.FrameworkInfo(name="scale-bench", user=getpass.getuser()),
                                      cluster.master, True)
        launch_started = time.perf_counter()
        driver.start()
        holder.done.wait(args.timeout)
        launch_seconds = time.perf_counter() - launch_started
        result["launch"] = {"tasks": args.tasks, "running": holder.running, "failed": holder.failed,
                            "completed": holder.running >= args.tasks, "seconds": round(launch_seconds, 2),
                            "tasks_per_second": round(holder.running / launch_seconds, 1)}
        print(f"{holder.running} tasks RUNNING in {launch_seconds:.1f}s; resting again...", file=sys.stderr)
        time.sleep(3)
        idle_tasks = idle_cpu(pid, args.idle_seconds)
        tasks_rss = rss_mb(pid)
        result["at_rest_with_tasks"] = {
            "master_cpu_percent_of_one_core": idle_tasks, "master_rss_mb": round(tasks_rss, 1),
            "rss_kb_per_task": round((tasks_rss - slaves_rss) * 1024 / max(1, holder.running), 2)}
        per_slave_mb = (slaves_rss - empty_rss) / max(1, args.slaves)
        per_task_mb = (tasks_rss - slaves_rss) / max(1, holder.running)
        result["projected_rss_gb_at_50k_slaves_500k_tasks"] = round(
            (empty_rss + 50000 * per_slave_mb + 500000 * per_task_mb) / 1024, 2)

        print("measuring state endpoints...", file=sys.stderr)
        result["latency"] = {"/master/state": latency(base + "/master/state", args.requests)}
        for name, accept in V1_ANSWERS.items():
            result["latency"][f"POST /api/v1 GET_STATE ({name})"] = latency(
                base + "/api/v1", args.requests, GET_STATE, {"Content-Type": "application/json", "Accept": accept})
        driver.stop()
        driver.join()
    finally:
        cluster.stop()
    at_10k = args.slaves >= 10000
    state_p99 = max(v["p99_ms"] for v in result["latency"].values())
    result["targets"] = {
        "registration_storm_at_most_5s_at_10k": (storm <= TARGETS["registration_storm_s_at_10k"]) if at_10k else None,
        "idle_cpu_at_most_25_percent_at_10k": (idle <= TARGETS["idle_cpu_percent_at_10k"]) if at_10k else None,
        "launch_at_least_3000_tasks_per_second": result["launch"]["tasks_per_second"]
        >= TARGETS["launch_tasks_per_second"],
        "state_p99_at_most_300ms": state_p99 <= TARGETS["state_p99_ms"],
        "projected_rss_at_most_4gb": result["projected_rss_gb_at_50k_slaves_500k_tasks"] <= 4.0,
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
