#!/usr/bin/env python3
"""HTTP endpoints at cluster scale: /master/state and /metrics/snapshot latency,
and whether task launch throughput drops while the web UI polls.

One run, printed as one JSON document (progress on stderr):

1. A master and `--slaves` simulated slaves (one process, `offerd slave
   --simulate N`: the real protocol, no processes; labelled as such in the output).
2. A framework launches `--tasks` `sleep 600` tasks and waits until all are RUNNING.
3. `--requests` sequential GETs of /master/state, /master/state-summary and
   /metrics/snapshot, and as many v1 operator GET_STATE calls (POST /api/v1, answered
   in JSON and in protobuf): p50/p99 latency, the first call's and the size of each document.
4. Launch throughput of a second framework (`--churn_tasks` short tasks), first
   alone, then while `--pollers` simulated browsers fetch /master/state and
   /metrics/snapshot every `--poll_interval` seconds, as the web UI does.
5. The GET_STATE calls of 3. again, after the churn of 4. changed thousands of tasks.

With `--secure` the cluster runs with all security on (as `offerd local
--secure`): every request goes over HTTPS with Basic authentication, a new TLS
connection each (as a browser polling without keep-alive would), and the
frameworks authenticate over encrypted ZeroMQ.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import statistics
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from launch_bench import BenchScheduler, driver_security, percentile, run_framework  # noqa: E402

from offerd.cli import secure_setup  # noqa: E402
from offerd.cli.local import LocalCluster, free_base_port  # noqa: E402
from offerd.framework_sdk import MesosSchedulerDriver  # noqa: E402
from offerd.proto import offerd_pb2 as pb  # noqa: E402


class HoldingScheduler(BenchScheduler):
    """Launches `total` long tasks and reports when all of them are RUNNING."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.running = 0

    def statusUpdate(self, driver, status):
        if status.state == pb.TASK_RUNNING:
            self.running += 1
            if self.running >= self.total:
                self.done.set()
        elif status.state != pb.TASK_STARTING:
            self.failed += 1


# How requests are opened: plain urllib, or the secure cluster's (https, CA, Basic).
def _urlopen(url: str, data: bytes | None = None, timeout: float = 60, headers: dict | None = None):
    return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=dict(headers or {})),
                                  timeout=timeout)


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    with _urlopen(url, data, 60, headers) as response:
        size = len(response.read())
    return (time.perf_counter() - start) * 1000, size


# Mesos' v1 operator call for the whole state, answered in each of its encodings.
GET_STATE = b'{"type": "GET_STATE"}'
V1_ANSWERS = {"json": "application/json", "protobuf": "application/x-protobuf"}


def latency(url: str, requests: int, data: bytes | None = None, headers: dict | None = None) -> dict:
    samples, size = [], 0
    for _ in range(requests):
        ms, size = fetch(url, data, headers)
        samples.append(ms)
    return {"p50_ms": round(percentile(samples, 0.5), 2), "p99_ms": round(percentile(samples, 0.99), 2),
            "max_ms": round(max(samples), 2), "first_ms": round(samples[0], 2), "requests": requests, "bytes": size}


class Pollers:
    """`count` browsers, each fetching state and metrics every `interval` seconds."""

    def __init__(self, base: str, count: int, interval: float):
        self.base, self.count, self.interval = base, count, interval
        self.stop = threading.Event()
        self.samples: list[float] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def _run(self, index: int) -> None:
        time.sleep(self.interval * index / max(1, self.count))  # spread, as real browsers are
        while not self.stop.is_set():
            started = time.perf_counter()
            for path in ("/master/state", "/metrics/snapshot"):
                try:
                    ms, _ = fetch(self.base + path)
                    if path == "/master/state":
                        self.samples.append(ms)
                except OSError as exc:
                    print(f"poll failed: {exc}", file=sys.stderr)
            self.stop.wait(max(0.0, self.interval - (time.perf_counter() - started)))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slaves", type=int, default=1000, help="simulated slaves (default 1000)")
    parser.add_argument("--tasks", type=int, default=10000, help="long-running tasks held (default 10000)")
    parser.add_argument("--requests", type=int, default=50, help="sequential requests per endpoint (default 50)")
    parser.add_argument("--churn_tasks", type=int, default=8000, help="short tasks per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating alone/polled rounds (default 3)")
    parser.add_argument("--pollers", type=int, default=4, help="simulated browsers polling (default 4)")
    parser.add_argument("--poll_interval", type=float, default=2.0, help="seconds between polls (default 2, the UI's)")
    parser.add_argument("--secure", action="store_true",
                        help="all security on: HTTPS with Basic auth, authenticated and encrypted ZeroMQ")
    args = parser.parse_args()
    global _urlopen

    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                    "slaves": {"count": args.slaves, "kind": "simulated (one process, real protocol, no processes)"},
                    "tasks": args.tasks, "secure": args.secure}
    print(f"starting a master and {args.slaves} simulated slaves{' with security on' if args.secure else ''}...",
          file=sys.stderr)
    secure_dir = tempfile.mkdtemp(prefix="offerd-bench-secure-") if args.secure else None
    cluster = LocalCluster(slaves=args.slaves, simulate=args.slaves, port=free_base_port(1),
                           resources="cpus:16;mem:65536;disk:102400", allocation_interval=1.0,
                           logging_level="WARNING",
                           security=secure_setup.prepare(secure_dir) if secure_dir else None)
    if args.secure:
        _urlopen = cluster.urlopen
    security = driver_security(cluster)
    cluster.start(timeout=600)
    try:
        base = cluster.master_url
        holder = HoldingScheduler(args.tasks, "cpus:0.1;mem:32", "sleep 600")
        driver = MesosSchedulerDriver(holder, pb.FrameworkInfo(name="state-bench-holder", user=getpass.getuser()),
                                      cluster.master, True, security.get("credential"),
                                      master_public_key=security.get("master_public_key"),
                                      ca_file=security.get("ca_file"))
        started = time.perf_counter()
        driver.start()
        if not holder.done.wait(600):
            print(f"only {holder.running} of {args.tasks} tasks RUNNING", file=sys.stderr)
        result["hold"] = {"running": holder.running, "failed": holder.failed,
                          "seconds_to_all_running": round(time.perf_counter() - started, 2)}
        print(f"{holder.running} tasks RUNNING; measuring endpoints...", file=sys.stderr)
        time.sleep(2)
        # The first read after 10,000 launches builds every task's JSON; later
        # builds reuse what did not change (offerd/master/snapshot.py).
        first_ms, _ = fetch(base + "/master/state")
        result["state_first_request_ms"] = round(first_ms, 2)
        result["latency_idle"] = {path: latency(base + path, args.requests)
                                  for path in ("/master/state", "/master/state-summary", "/metrics/snapshot")}
        for name, accept in V1_ANSWERS.items():
            result["latency_idle"][f"POST /api/v1 GET_STATE ({name})"] = latency(
                base + "/api/v1", args.requests, GET_STATE, {"Content-Type": "application/json", "Accept": accept})

        # Alternating runs, so that drift of this shared machine hits both sides.
        alone_runs, polled_runs, samples = [], [], []
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}: {args.churn_tasks} tasks without polling...", file=sys.stderr)
            alone_runs.append(run_framework(cluster.master, args.churn_tasks, "cpus:0.1;mem:32", "true", 300, security)
                              ["tasks_per_second"])
            print(f"round {round_ + 1}: ... and with {args.pollers} pollers every {args.poll_interval}s",
                  file=sys.stderr)
            with Pollers(base, args.pollers, args.poll_interval) as pollers:
                polled_runs.append(run_framework(cluster.master, args.churn_tasks, "cpus:0.1;mem:32", "true", 300,
                                                 security)["tasks_per_second"])
            samples.extend(pollers.samples)
        alone, polled = statistics.median(alone_runs), statistics.median(polled_runs)
        result["launch"] = {
            "alone_tasks_per_second": alone_runs, "polled_tasks_per_second": polled_runs,
            "alone_median": alone, "polled_median": polled,
            "change_percent": round((polled / alone - 1) * 100, 1),
            "pollers": args.pollers, "poll_interval_s": args.poll_interval,
            "state_latency_under_launch": {"p50_ms": round(percentile(samples, 0.5), 2),
                                           "p99_ms": round(percentile(samples, 0.99), 2),
                                           "samples": len(samples)},
        }
        # The churn changed thousands of tasks (finished, now completed): the first
        # GET_STATE after it rebuilds the changed tasks' JSON or encoding.
        time.sleep(2)
        result["latency_after_churn"] = {}
        for name, accept in V1_ANSWERS.items():
            result["latency_after_churn"][f"POST /api/v1 GET_STATE ({name})"] = latency(
                base + "/api/v1", args.requests, GET_STATE, {"Content-Type": "application/json", "Accept": accept})
        driver.stop()
        driver.join()
    finally:
        cluster.stop()
        if secure_dir:
            shutil.rmtree(secure_dir, ignore_errors=True)
    state = result["latency_idle"]["/master/state"]
    v1_state = [result[when][f"POST /api/v1 GET_STATE ({name})"]["p99_ms"] for name in V1_ANSWERS
                for when in ("latency_idle", "latency_after_churn")]
    result["targets"] = {"state_p99_under_200ms": state["p99_ms"] < 200,
                         "v1_get_state_p99_under_200ms": max(v1_state) < 200,
                         "launch_drop_at_most_10_percent": (result["launch"]["change_percent"] or 0) >= -10}
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
