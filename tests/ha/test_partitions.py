"""Partitions, quorum loss and reconciliation across a master failover (real
processes, real ZooKeeper)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.ha.cluster import HACluster, get_json
from tests.support import wait_for
from tests.zookeeper import ZooKeeperServer, zookeeper_missing

PING = ["--slave_ping_timeout=0.5secs", "--max_slave_ping_timeouts=2"]


def slave_running_tasks(cluster: HACluster, index: int) -> set[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "tasks" and isinstance(value, list):
                    found.update(t["id"] for t in value if isinstance(t, dict) and t.get("state") == "TASK_RUNNING")
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(get_json(f"http://127.0.0.1:{cluster.slave_ports[index]}/state", timeout=5) or {})
    return found


def framework(cluster: HACluster, **info) -> RunningFramework:
    fw = RunningFramework(cluster.zk_url, info=framework_info(**info))
    fw.driver.heartbeat_interval = 0.3  # notice a dead leader within ~1.5s
    return fw


def reconcile(fw: RunningFramework, task_id: str, slave_id: str) -> pb.TaskStatus:
    seen = len(fw.scheduler.updates.get(task_id, []))
    fw.driver.reconcileTasks([pb.TaskStatus(task_id=pb.TaskID(value=task_id), slave_id=pb.SlaveID(value=slave_id),
                                            state=pb.TASK_RUNNING)])
    fw.scheduler.wait_for(lambda: len(fw.scheduler.updates.get(task_id, [])) > seen, 20,
                          what=f"an answer about {task_id}")
    return fw.scheduler.last(task_id)


def post_json(url: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def make_cluster(zk_url, tmp_path):
    started: list[HACluster] = []

    def make(**kwargs) -> HACluster:
        kwargs.setdefault("master_args", [])
        kwargs["master_args"] = ["--zk_session_timeout=2secs", "--allocation_interval=0.2secs", *PING,
                                 *kwargs["master_args"]]
        kwargs.setdefault("slave_args", ["--heartbeat_interval=0.3secs"])
        cluster = HACluster(kwargs.pop("zk", zk_url), work_dir=str(tmp_path / f"c{len(started)}"), **kwargs)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()


def test_stopped_slave_becomes_unreachable_and_its_tasks_come_back(make_cluster):
    cluster = make_cluster(masters=2, slaves=1)
    with framework(cluster, partition_aware=True, failover_timeout=60) as fw:
        task_id = fw.scheduler.submit("sleep 600")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        slave_id = fw.scheduler.task_slaves[task_id]
        cluster.signal_slave(0, signal.SIGSTOP)
        status = fw.scheduler.wait_state(task_id, pb.TASK_UNREACHABLE, timeout=20)
        assert status.reason == pb.TaskStatus.REASON_SLAVE_REMOVED and status.unreachable_time.nanoseconds
        assert cluster.state()["unreachable_slaves"] == 1
        assert reconcile(fw, task_id, slave_id).state == pb.TASK_UNREACHABLE

        # A failover meanwhile: the registry remembers the slave is unreachable.
        resubscribed = fw.scheduler.reregistrations
        cluster.kill_master(cluster.leader())
        cluster.wait_leader(15)
        wait_for(lambda: cluster.state().get("unreachable_slaves") == 1, 15,
                 message="the new leader to know the unreachable slave")
        cluster.signal_slave(0, signal.SIGCONT)
        wait_for(lambda: cluster.state().get("activated_slaves") == 1, 20, message="the slave to come back")
        wait_for(lambda: fw.scheduler.reregistrations > resubscribed, 20, message="the scheduler to resubscribe")
        assert reconcile(fw, task_id, slave_id).state == pb.TASK_RUNNING
        assert task_id in slave_running_tasks(cluster, 0)
        assert pb.TASK_KILLED not in fw.scheduler.states(task_id)


def test_reconciliation_after_failover_and_a_slave_marked_gone(make_cluster):
    cluster = make_cluster(masters=2, slaves=2)
    with framework(cluster, partition_aware=True, failover_timeout=60) as fw:
        ids = [fw.scheduler.submit("sleep 600") for _ in range(2)]
        for task_id in ids:
            fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        slaves = {fw.scheduler.task_slaves[t] for t in ids}
        old = cluster.leader()
        cluster.kill_master(old)
        new = cluster.wait_leader(15, not_index=old)
        wait_for(lambda: cluster.state(new).get("activated_slaves") == 2, 20, message="slaves to reregister")
        wait_for(lambda: fw.scheduler.reregistrations, 20, message="the scheduler to resubscribe")
        known_slave = next(iter(slaves))
        # Explicit: known, unknown on a known slave, unknown slave.
        assert reconcile(fw, ids[0], fw.scheduler.task_slaves[ids[0]]).state == pb.TASK_RUNNING
        assert reconcile(fw, "never-launched", known_slave).state == pb.TASK_GONE
        assert reconcile(fw, "nowhere", "S-unknown").state == pb.TASK_UNKNOWN
        # Implicit: every task the master knows, RUNNING.
        counts = {t: len(fw.scheduler.updates[t]) for t in ids}
        fw.driver.reconcileTasks([])
        wait_for(lambda: all(len(fw.scheduler.updates[t]) > counts[t] for t in ids), 20,
                 message="implicit reconciliation")
        assert all(fw.scheduler.last(t).state == pb.TASK_RUNNING for t in ids)

        # The operator marks the first task's slave gone (Mesos' v1 MARK_AGENT_GONE).
        gone_slave = fw.scheduler.task_slaves[ids[0]]
        body = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": gone_slave}}}
        assert post_json(cluster.url(new) + "/api/v1", body) == 200
        status = fw.scheduler.wait_state(ids[0], pb.TASK_GONE_BY_OPERATOR, timeout=10)
        assert status.reason == pb.TaskStatus.REASON_SLAVE_REMOVED_BY_OPERATOR
        assert post_json(cluster.url(new) + "/api/v1", body) == 400  # unknown now
        assert reconcile(fw, ids[0], gone_slave).state == pb.TASK_GONE_BY_OPERATOR


@pytest.mark.skipif(zookeeper_missing() is not None, reason=f"no real ZooKeeper: {zookeeper_missing()}")
def test_quorum_loss_stops_leading_and_leadership_returns(make_cluster):
    ensemble = ZooKeeperServer(3).start()
    try:
        cluster = make_cluster(masters=2, slaves=1, zk=ensemble.url("offerd"))
        with framework(cluster, failover_timeout=120) as fw:
            ids = [fw.scheduler.submit("sleep 600") for _ in range(3)]
            for task_id in ids:
                fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
            leader = cluster.leader()
            ensemble.stop_member(0)
            ensemble.stop_member(1)
            # The leader loses its connection: it abdicates (exits); nobody leads.
            wait_for(lambda: cluster.masters[leader].poll() is not None, 20, message="the leader to abdicate")
            assert cluster.masters[leader].returncode == 1
            time.sleep(3)
            assert cluster.leaders() == []
            assert slave_running_tasks(cluster, 0) == set(ids)
            ensemble.start_member(0)
            ensemble.start_member(1)
            cluster.start_master(leader)  # its supervisor restarts it
            new = cluster.wait_leader(40)
            wait_for(lambda: cluster.state(new).get("activated_slaves") == 1, 30, message="the slave to reregister")
            wait_for(lambda: sorted(t["id"] for f in cluster.state(new)["frameworks"] for t in f["tasks"]
                                    if t["state"] == "TASK_RUNNING") == sorted(ids), 30,
                     message="the tasks on the new leader")
            assert all(set(fw.scheduler.states(t)) <= {pb.TASK_STAGING, pb.TASK_STARTING, pb.TASK_RUNNING}
                       for t in ids)
    finally:
        ensemble.stop()
