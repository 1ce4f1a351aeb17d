#!/usr/bin/env python3
"""Master failover at scale: SIGKILL the leader, time the takeover.

Three `offerd master` processes on one real ZooKeeper (tests/zookeeper.py; the
system's zookeeper package), `--zk_session_timeout=2secs`; N slave connections
from one `offerd slave --simulate N` process (SIMULATED slaves: each a full
slave protocol endpoint with its own connection, id and heartbeats, but no
processes); one SDK scheduler (`master="zk://..."`). The leader is SIGKILLed
`--kills` times (restarted as a standby after each, as a supervisor would).
For each kill, seconds from the kill to:

* elected: another master reports master/elected = 1;
* reregistered: every slave active on the new leader;
* first_offer: the scheduler's first offer from the new leader.

Slaves and the scheduler notice a dead leader by missed heartbeats
(`--heartbeat_interval`, 5 missed), then resolve the leader from ZooKeeper.
Prints one JSON document; medians are what bench/README.md reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from offerd.framework_sdk import MesosSchedulerDriver, Scheduler  # noqa: E402
from offerd.proto import offerd_pb2 as pb  # noqa: E402
from tests.ha.cluster import HACluster, get_json  # noqa: E402
from tests.zookeeper import ZooKeeperServer, zookeeper_missing  # noqa: E402


class OfferClock(Scheduler):
    """Declines everything and notes when offers arrive."""

    def __init__(self):
        self.offer_times: list[float] = []
        self.lock = threading.Lock()

    def resourceOffers(self, driver, offers):
        with self.lock:
            self.offer_times.append(time.monotonic())
        for offer in offers:
            driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.5))

    def first_after(self, t0: float) -> float | None:
        with self.lock:
            later = [t for t in self.offer_times if t > t0]
        return later[0] if later else None


def active_slaves(cluster: HACluster, index: int) -> int:
    metrics = get_json(cluster.url(index) + "/metrics/snapshot", timeout=2) or {}
    return int(metrics.get("master/slaves_active", 0)) if metrics.get("master/elected") == 1 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slaves", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--session_timeout", default="2secs")
    parser.add_argument("--heartbeat_interval", type=float, default=0.2,
                        help="slaves' and scheduler's heartbeat to the master (5 missed = master lost)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    why = zookeeper_missing()
    if why:
        print(json.dumps({"benchmark": "failover", "skipped": why}))
        return 0

    zk = ZooKeeperServer(1).start()
    work_dir = tempfile.mkdtemp(prefix="offerd-failover-bench-")
    cluster = HACluster(zk.url("offerd-bench"), masters=3, simulate=args.slaves, work_dir=work_dir,
                        master_args=[f"--zk_session_timeout={args.session_timeout}", "--allocation_interval=0.5secs",
                                     "--slave_reregister_timeout=10mins"],
                        slave_args=[f"--heartbeat_interval={args.heartbeat_interval}secs"],
                        resources="cpus:4;mem:4096;disk:4096", logging_level="WARNING")
    runs = []
    driver = None
    try:
        started = time.monotonic()
        cluster.start(timeout=180)
        startup = time.monotonic() - started
        scheduler = OfferClock()
        info = pb.FrameworkInfo(user="bench", name="failover-bench", failover_timeout=3600)
        driver = MesosSchedulerDriver(scheduler, info, cluster.zk_url)
        driver.heartbeat_interval = args.heartbeat_interval
        driver.start()
        deadline = time.monotonic() + 30
        while scheduler.first_after(0) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for kill in range(args.kills):
            old = cluster.leader()
            t0 = time.monotonic()
            cluster.kill_master(old)
            run = {"kill": kill}
            new = None
            deadline = t0 + args.timeout
            while time.monotonic() < deadline:
                now = time.monotonic()
                if new is None:
                    for i in range(3):
                        if i != old and cluster.elected(i):
                            new, run["elected"] = i, round(now - t0, 3)
                if new is not None and "reregistered" not in run and active_slaves(cluster, new) >= args.slaves:
                    run["reregistered"] = round(now - t0, 3)
                first = scheduler.first_after(t0)
                if first is not None and "first_offer" not in run:
                    run["first_offer"] = round(first - t0, 3)
                if {"elected", "reregistered", "first_offer"} <= set(run):
                    break
                time.sleep(0.02)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
            cluster.start_master(old)
            time.sleep(1.0)  # the restarted master joins as a standby
    finally:
        if driver is not None:
            driver.stop()
        cluster.stop()
        zk.stop()

    def median(key):
        values = [r[key] for r in runs if key in r]
        return round(statistics.median(values), 3) if values else None

    print(json.dumps({
        "benchmark": "failover",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "masters": 3, "slaves": args.slaves, "slave_mode": "simulated (--simulate, one process)",
        "zk_session_timeout": args.session_timeout, "heartbeat_interval": args.heartbeat_interval,
        "startup_seconds": round(startup, 2),
        "median_seconds": {k: median(k) for k in ("elected", "reregistered", "first_offer")},
        "runs": runs,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
