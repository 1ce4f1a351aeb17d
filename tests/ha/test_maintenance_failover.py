"""The maintenance schedule and DOWN machines live in the registry (ZooKeeper): a newly
elected master keeps them, refuses a slave of a DOWN machine, and lets it in once up."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

from tests.ha.cluster import HACluster, get_json
from tests.support import wait_for

HOUR_NS = 3600 * 10**9
SLAVE_MACHINE = {"hostname": "127.0.0.1", "ip": "127.0.0.1"}
ELSEWHERE = {"hostname": "elsewhere.example", "ip": "10.0.0.7"}


def _post(cluster: HACluster, index: int, path: str, body) -> int:
    request = urllib.request.Request(cluster.url(index) + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_schedule_and_down_machines_survive_a_failover(zk_url, tmp_path):
    cluster = HACluster(zk_url, masters=2, slaves=1, work_dir=str(tmp_path),
                        master_args=["--zk_session_timeout=2secs", "--allocation_interval=0.2secs"])
    cluster.start()
    try:
        leader = cluster.leader()
        start = time.time_ns() + HOUR_NS
        schedule = {"windows": [
            {"machine_ids": [SLAVE_MACHINE], "unavailability": {"start": {"nanoseconds": start}}},
            {"machine_ids": [ELSEWHERE], "unavailability": {"start": {"nanoseconds": start},
                                                            "duration": {"nanoseconds": HOUR_NS}}}]}
        assert _post(cluster, leader, "/master/maintenance/schedule", schedule) == 200
        assert _post(cluster, leader, "/master/machine/down", [SLAVE_MACHINE]) == 200
        wait_for(lambda: cluster.state().get("activated_slaves") == 0, 30, message="the slave removed")
        wait_for(lambda: cluster.slaves[0].poll() is not None, 30, message="the slave shut down")

        cluster.kill_master(leader, signal.SIGKILL)
        new = cluster.wait_leader(60, not_index=leader)
        assert get_json(cluster.url(new) + "/master/maintenance/schedule", timeout=5) == schedule
        assert get_json(cluster.url(new) + "/master/maintenance/status", timeout=5) == {
            "draining_machines": [{"id": ELSEWHERE}], "down_machines": [SLAVE_MACHINE]}

        # The new leader refuses the slave of the DOWN machine, until it is brought up.
        cluster.start_slave(0)

        def refused() -> bool:
            metrics = get_json(cluster.url(new) + "/metrics/snapshot", timeout=5) or {}
            return metrics.get("master/slave_registrations_refused_machine_down", 0) > 0
        wait_for(refused, 30, message="the registration refused by the new leader")
        assert cluster.state(new).get("activated_slaves") == 0
        assert _post(cluster, new, "/master/machine/up", [SLAVE_MACHINE]) == 200
        cluster.wait_slaves(1, 60)
        assert get_json(cluster.url(new) + "/master/maintenance/status", timeout=5) == {
            "draining_machines": [{"id": ELSEWHERE}]}
    finally:
        cluster.stop()
