"""Chaos (``make test-chaos``; skipped by ``make test``): for a bounded time, while
tasks run, every few seconds one of these happens at random:

- the leading or a standby master is killed and restarted;
- a slave is stopped (SIGTERM: a clean stop that leaves checkpointed tasks running,
  or SIGKILL: a crash) and restarted on the same work_dir with --recover=reconnect,
  so it recovers its tasks;
- a slave on a network-namespace host is cut off by taking its link down, for
  less than the master's agent timeout (it comes back) or longer (it is marked
  unreachable; its tasks become TASK_UNREACHABLE or TASK_LOST), then healed;
- a scheduler fails over (a new driver with the same framework id).

Two schedulers run short tasks and long ones (ended by kills only), one
partition-aware and one not, both with
checkpoint=True and explicit acknowledgements; a Marathon runs an app. Every
status update each scheduler received and acknowledged, and Marathon's event
stream, go into one history (tests/ha/chaos_history.py). After a quiet period
the history is checked against the slaves' and the master's records and the
processes still running, and a JSON summary is printed.

OFFERD_CHAOS=1 enables it; OFFERD_CHAOS_SECONDS (default 120) bounds the chaos;
OFFERD_CHAOS_SEED replays a run's choices.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from offerd.common.task_states import TERMINAL_STATES
from offerd.framework_sdk import MesosSchedulerDriver
from offerd.proto import offerd_pb2 as pb
from tests.builders import framework_info
from tests.ha.chaos_cluster import ChaosCluster, HistoryScheduler
from tests.ha.chaos_history import (History, check_acknowledged, check_delivered, check_instances,
                                    check_processes, check_terminal, summary)
from tests.netns import netns_available
from tests.support import wait_for
from tests.zookeeper import zookeeper_missing

reason = None if not os.environ.get("OFFERD_CHAOS") else (netns_available() or zookeeper_missing())
pytestmark = [
    pytest.mark.skipif(not os.environ.get("OFFERD_CHAOS"), reason="chaos runs with `make test-chaos`"),
    pytest.mark.skipif(reason is not None, reason=reason or ""),
]

SECONDS = float(os.environ.get("OFFERD_CHAOS_SECONDS", "120"))
IN_FLIGHT = 8             # short tasks per scheduler
# Long tasks per scheduler: only a kill ends them (a partition's TASK_LOST and the
# slave's kill when it is back, or the kill at the end), so a process left behind
# after TASK_LOST cannot hide behind a task that ended by itself.
LONG_IN_FLIGHT = 3
PING_TIMEOUT, MAX_PINGS = 1.0, 3
# The master drops a silent slave's connection after PING_TIMEOUT x MAX_PINGS and
# marks it unreachable PING_TIMEOUT later: partitions on either side of that.
SHORT_PARTITION, LONG_PARTITION = (0.5, 1.5), (8.0, 12.0)
APP = {"id": "/chaos-web", "cmd": "sleep 3600", "instances": 3, "cpus": 0.1, "mem": 32}
ACTIONS = ["leader", "standby", "slave_term", "slave_kill", "scheduler", "partition_short", "partition_long"]


class Framework:
    """One recording scheduler and its current driver (replaced on failover)."""

    def __init__(self, cluster: ChaosCluster, history: History, name: str, partition_aware: bool):
        self.cluster = cluster
        self.prefix = name[0]
        self.scheduler = HistoryScheduler(history, partition_aware)
        self.info = framework_info(name=name, partition_aware=partition_aware, failover_timeout=300,
                                   checkpoint=True)
        self.submitted: list[str] = []
        self.long: set[str] = set()
        self.driver = self._new_driver()
        self.scheduler.wait_for(lambda: self.scheduler.framework_ids, what=f"{name} to subscribe")
        self.info.id.value = self.scheduler.framework_ids[0]

    def _new_driver(self) -> MesosSchedulerDriver:
        driver = MesosSchedulerDriver(self.scheduler, self.info, self.cluster.zk_url, False)
        driver.heartbeat_interval = 0.3
        driver.start()
        return driver

    @property
    def framework_id(self) -> str:
        return self.info.id.value

    def pending(self) -> list[str]:
        return [t for t in self.submitted if not set(self.scheduler.states(t)) & TERMINAL_STATES]

    def top_up(self, rng: random.Random) -> None:
        pending = self.pending()
        long = sum(1 for t in pending if t in self.long)
        for command, count in ((None, IN_FLIGHT - (len(pending) - long)), ("sleep 3600", LONG_IN_FLIGHT - long)):
            for _ in range(count):
                task_id = f"{self.prefix}-{'long' if command else 'task'}-{len(self.submitted) + 1}"
                self.submitted.append(self.scheduler.submit(command or f"sleep {rng.uniform(1, 6):.1f}", task_id))
                if command:
                    self.long.add(task_id)

    def kill_long(self) -> None:
        for task_id in self.pending():
            if task_id in self.long:
                self.driver.killTask(pb.TaskID(value=task_id))

    def fail_over(self) -> None:
        self.driver.stop(failover=True)
        self.driver.join()
        self.driver = self._new_driver()

    def reconcile_pending(self) -> None:
        known = self.scheduler.task_slaves
        self.driver.reconcileTasks([pb.TaskStatus(task_id=pb.TaskID(value=t), state=pb.TASK_RUNNING,
                                                  slave_id=pb.SlaveID(value=known[t]))
                                    for t in self.pending() if t in known])

    def stop(self) -> None:
        self.driver.stop()
        self.driver.join()


def test_chaos_keeps_the_invariants(tmp_path):
    seed = int(os.environ.get("OFFERD_CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    history = History()
    cluster = ChaosCluster(str(tmp_path), loopback_slaves=2, netns_slaves=2,
                           master_args=["--zk_session_timeout=2secs", "--allocation_interval=0.2secs",
                                        f"--slave_ping_timeout={PING_TIMEOUT}secs",
                                        f"--max_slave_ping_timeouts={MAX_PINGS}",
                                        "--slave_reregister_timeout=20secs"],
                           slave_args=["--heartbeat_interval=0.3secs", "--recover=reconnect",
                                       "--registration_backoff_factor=0.2secs",
                                       "--status_update_retry_interval=2secs", "--status_update_retry_max=4secs"])
    counts = {"seed": seed, "kills": 0, "restarts": 0, "partitions": 0, "partitions_short": 0,
              "partitions_long": 0, "chaos": []}
    frameworks: list[Framework] = []
    heal_at: dict[str, float] = {}
    try:
        cluster.start()
        cluster.start_marathon(history)
        cluster.post_app(APP)
        frameworks = [Framework(cluster, history, "aware", True), Framework(cluster, history, "plain", False)]
        wait_for(lambda: len(cluster.marathon_running(APP["id"])) == APP["instances"], 60, interval=0.5,
                 message="Marathon's app to run")
        hosts = {h.name: h for h in cluster.slave_hosts}
        deadline = time.monotonic() + SECONDS
        next_chaos = time.monotonic() + 3
        while time.monotonic() < deadline:
            for framework in frameworks:
                framework.top_up(rng)
            now = time.monotonic()
            for name, when in list(heal_at.items()):
                if now >= when:
                    hosts[name].set_link(True)
                    del heal_at[name]
            if now >= next_chaos:
                what = rng.choice(ACTIONS)
                counts["chaos"].append(what)
                _act(what, cluster, frameworks, rng, heal_at, counts)
                next_chaos = time.monotonic() + rng.uniform(3, 5)
            time.sleep(0.2)

        # Quiet: every link up, every slave back, every task ended, every update delivered.
        for name in list(heal_at):
            hosts[name].set_link(True)
        heal_at.clear()
        for host in cluster.slave_hosts:
            if not host.running():
                host.start()
        wait_for(lambda: cluster.activated_slaves() == len(cluster.slave_hosts), 120, interval=0.5,
                 message="every slave to be back")

        def all_ended():
            pending = [t for f in frameworks for t in f.pending()]
            if pending:
                for framework in frameworks:
                    framework.kill_long()
                    framework.reconcile_pending()
            return not pending

        # Not assertions: what is still pending after these is reported as a violation.
        _settle(all_ended, 120, interval=2.0)
        _settle(lambda: cluster.pending_updates() == 0, 60)
        # A task reported ended may take its kill grace period to go.
        _settle(lambda: not check_processes(history, cluster.task_processes()), 30)
        _settle(lambda: len(cluster.marathon_running(APP["id"])) == APP["instances"], 60)

        ids = {f.framework_id for f in frameworks}
        violations = check_terminal(history, {f.framework_id: f.submitted for f in frameworks})
        violations += check_acknowledged(history)
        violations += check_delivered(history, [r for r in cluster.slave_records() if r.framework in ids],
                                      cluster.master_states(ids))
        violations += check_instances(history, {APP["id"]: APP["instances"]})
        violations += check_processes(history, cluster.task_processes())
    finally:
        for framework in frameworks:
            framework.stop()
        cluster.stop()

    counts["chaos"] = ", ".join(counts["chaos"])
    report = summary(history, violations, **counts)
    report["submitted"] = sum(len(f.submitted) for f in frameworks)
    print("chaos summary: " + json.dumps(report, indent=1))
    assert not violations, json.dumps(report["violation_details"], indent=1)


def _act(what: str, cluster: ChaosCluster, frameworks: list[Framework], rng: random.Random,
         heal_at: dict[str, float], counts: dict) -> None:
    leader = cluster.ha.leader()
    if what == "leader" and leader is not None:
        cluster.ha.kill_master(leader)
        time.sleep(1)
        cluster.ha.start_master(leader)
        counts["kills"] += 1
    elif what == "standby":
        index = rng.choice([i for i in range(cluster.ha.master_count) if i != leader])
        cluster.ha.kill_master(index)
        cluster.ha.start_master(index)
        counts["kills"] += 1
    elif what in ("slave_term", "slave_kill"):
        host = rng.choice([h for h in cluster.slave_hosts if h.name not in heal_at])
        host.stop(signal.SIGTERM if what == "slave_term" else signal.SIGKILL)
        time.sleep(1)
        host.start()
        counts["restarts"] += 1
        counts["kills"] += what == "slave_kill"
    elif what == "scheduler":
        rng.choice(frameworks).fail_over()
        counts["kills"] += 1
    elif what.startswith("partition"):
        free = [h for h in cluster.slave_hosts if h.link is not None and h.name not in heal_at]
        if free:
            host = rng.choice(free)
            low, high = SHORT_PARTITION if what == "partition_short" else LONG_PARTITION
            host.set_link(False)
            heal_at[host.name] = time.monotonic() + rng.uniform(low, high)
            counts["partitions"] += 1
            counts[f"partitions_{what.split('_')[1]}"] += 1


def _settle(predicate, timeout: float, interval: float = 0.5) -> bool:
    """Wait up to `timeout` for `predicate`; unlike wait_for, never fails (the checks judge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
