#!/usr/bin/env python3
"""The Marathon-like framework under load; prints one JSON document.

1. launch: POST one app of `--instances` instances of `sleep 3600` (tiny
   resources) and time until every one is TASK_RUNNING in /v2/apps/{id}/tasks,
   against `--simulated_slaves` lightweight (simulated) slaves in one process.
2. api: with `--apps` apps of 0 instances, the latency of GET /v2/apps and
   GET /v2/tasks (p50/p99 over `--requests` requests).

The cluster is `LocalCluster` with the real `offerd marathon` process, all on
this machine; the client talks HTTP like any Marathon client.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from offerd.cli.local import LocalCluster, free_base_port  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latency(session, url, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = session.get(url, timeout=30)
        response.raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 99), 2),
            "max_ms": round(max(times), 2), "requests": n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--simulated_slaves", type=int, default=50)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)

    port = free_port()
    cluster = LocalCluster(slaves=0, port=free_base_port(1), simulate=args.simulated_slaves,
                           resources="cpus:64;mem:65536;disk:65536;ports:[31000-32000]", allocation_interval=0.2,
                           logging_level="WARNING", marathon_port=port,
                           marathon_args=["--min_revive_offers_interval=0.2secs", "--max_instances_per_offer=1000"])
    cluster.start(120)
    api, session = cluster.marathon_url, requests.Session()
    out = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
           "slaves": f"{args.simulated_slaves} simulated (lightweight) slaves in one process"}
    try:
        start = time.perf_counter()
        response = session.post(f"{api}/v2/apps", json={"id": "/bench", "cmd": "sleep 3600", "cpus": 0.01,
                                                        "mem": 1, "instances": args.instances,
                                                        "portDefinitions": []}, timeout=30)
        response.raise_for_status()
        running, deadline = 0, time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            tasks = session.get(f"{api}/v2/apps/bench/tasks", timeout=30).json()["tasks"]
            running = sum(1 for t in tasks if t["state"] == "TASK_RUNNING")
            if running >= args.instances:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        out["launch"] = {"instances": args.instances, "running": running, "seconds": round(elapsed, 2),
                         "target_seconds": 5, "anchor": "Marathon: ~14 s for 500 instances"}
        print(f"launch: {running} running in {elapsed:.2f}s", file=sys.stderr)
        session.delete(f"{api}/v2/apps/bench?force=true", timeout=30)
        for i in range(args.apps):
            session.post(f"{api}/v2/apps?force=true", json={"id": f"/load/app-{i:04d}", "cmd": "sleep 3600",
                                                            "instances": 0, "labels": {"n": str(i)}}, timeout=30)
        out["get_apps"] = {**latency(session, f"{api}/v2/apps", args.requests), "apps": args.apps,
                           "target_p99_ms": 50}
        out["get_tasks"] = latency(session, f"{api}/v2/tasks", args.requests)
    finally:
        cluster.stop()
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
