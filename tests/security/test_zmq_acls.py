"""Mesos' ACLs and --root_submissions on the master's ZeroMQ calls.

A real master in process with `--acls`, real transport clients proving
principals (see zmq_peers). Each test is a refused attempt next to the allowed
one: register_frameworks per role, run_tasks per user (a task's command user,
its executor's, or the framework's), register_agents, and root.
"""

from __future__ import annotations

import pytest

from offerd.common.resources import Resources
from offerd.proto import offerd_pb2 as pb
from tests.security.zmq_peers import (Event, FakeSlave, Scheduler, SlaveEvent, cluster_of_peers, is_update, metric,
                                      task_info)

UNAUTHORIZED = pb.TaskStatus.REASON_TASK_UNAUTHORIZED


@pytest.fixture
def cluster(tmp_path):
    """Masters that authenticate schedulers and slaves, and their peers (zmq_peers.cluster_of_peers)."""
    yield from cluster_of_peers(tmp_path, authenticate_frameworks=True, authenticate_agents=True)


def launch(scheduler: Scheduler, slave: FakeSlave, *tasks: pb.TaskInfo, allowed: str):
    """Accept one offer with `tasks`; only the task `allowed` may reach the slave.

    Returns the TASK_ERROR statuses of the others and the offer accepted.
    """
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value], list(tasks), refuse_seconds=0)
    (run,) = slave.run_tasks()
    assert run.task.task_id.value == allowed
    refused = [scheduler.expect(is_update(t.task_id.value, pb.TASK_ERROR)).update.status
               for t in tasks if t.task_id.value != allowed]
    return refused, offer


def test_register_frameworks_acl_refuses_a_role(cluster):
    start, peer = cluster
    master = start(acls={
        "permissive": False,
        "register_frameworks": [{"principals": {"values": ["alice"]}, "roles": {"values": ["web", "eng/*"]}}],
    })
    alice = peer(Scheduler, "alice")
    error = alice.subscribe(roles=["web", "db"]).error.message
    assert error.startswith("Framework refused: Not authorized by ACL 'register_frameworks': principal 'alice'")
    assert "'db'" in error
    mallory = peer(Scheduler, "mallory")
    assert "Not authorized by ACL 'register_frameworks': principal 'mallory'" in \
        mallory.subscribe(roles=["web"]).error.message
    assert master.read_snapshot().state["frameworks"] == []
    assert metric(master, "master/unauthorized_framework_subscriptions") == 2
    assert alice.subscribe(roles=["web", "eng/backend"]).type == Event.SUBSCRIBED


def test_a_claimed_principal_never_authorizes(cluster):
    """Authentication optional: an unproven 'alice' is any principal to the ACLs."""
    start, peer = cluster
    master = start(acls={
        "permissive": False,
        "register_frameworks": [{"principals": {"values": ["alice"]}, "roles": {"type": "ANY"}}],
    }, authenticate_frameworks=False)
    anonymous = peer(Scheduler)
    assert "Not authorized by ACL 'register_frameworks': an unauthenticated request" in \
        anonymous.subscribe(principal="alice").error.message
    assert peer(Scheduler, "alice").subscribe(principal="alice").type == Event.SUBSCRIBED
    assert len(master.read_snapshot().state["frameworks"]) == 1


def test_roles_flag_is_still_a_whitelist(cluster):
    start, peer = cluster
    start(roles="web")
    alice = peer(Scheduler, "alice")
    assert "not allowed: --roles is web" in alice.subscribe(roles=["db"]).error.message
    assert alice.subscribe(roles=["web"]).type == Event.SUBSCRIBED


def test_user_root_task_is_refused_by_the_run_tasks_acl(cluster):
    start, peer = cluster
    master = start(acls={"run_tasks": [{"principals": {"type": "NONE"}, "users": {"values": ["root"]}}]})
    slave = peer(FakeSlave, "slave1")
    slave.register()
    alice = peer(Scheduler, "alice")
    alice.subscribe(user="tester")

    as_root = task_info("as-root", user="root")
    executor_root = pb.TaskInfo(name="exec-root", task_id=pb.TaskID(value="exec-root"),
                                resources=Resources.parse("cpus:1;mem:128").to_protos())
    executor_root.executor.executor_id.value = "e-root"
    executor_root.executor.command.value = "my-executor"
    executor_root.executor.command.user = "root"
    refused, offer = launch(alice, slave, as_root, executor_root, task_info("as-tester"), allowed="as-tester")
    for status in refused:
        assert status.reason == UNAUTHORIZED and status.source == pb.TaskStatus.SOURCE_MASTER
        assert status.message.startswith("Not authorized to launch task as user 'root': Not authorized by ACL "
                                         "'run_tasks': principal 'alice'")
    assert metric(master, "master/unauthorized_tasks") == 2
    # What the refused tasks would have used is offered again.
    again = alice.offers()[0]
    assert Resources.from_protos(again.resources) == Resources.from_protos(offer.resources) - \
        Resources.parse("cpus:1;mem:128")


def test_a_frameworks_own_user_counts_when_the_task_names_none(cluster):
    start, peer = cluster
    start(acls={"run_tasks": [{"principals": {"values": ["alice"]}, "users": {"values": ["tester"]}},
                              {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]})
    slave = peer(FakeSlave, "slave1")
    slave.register()
    root_framework = peer(Scheduler, "alice")
    root_framework.subscribe(user="root")
    # The framework's user applies, unless the task names its own.
    refused, _ = launch(root_framework, slave, task_info("inherits-root"), task_info("own-user", user="tester"),
                        allowed="own-user")
    assert refused[0].reason == UNAUTHORIZED and "as user 'root'" in refused[0].message


def test_root_submissions_false_refuses_root_frameworks_and_root_tasks(cluster):
    start, peer = cluster
    master = start(root_submissions=False)
    slave = peer(FakeSlave, "slave1")
    slave.register()
    root = peer(Scheduler, "alice")
    error = root.subscribe(user="root").error.message
    assert "User 'root' is not allowed to run frameworks without --root_submissions set" in error
    assert "required with --root_submissions=false" in root.subscribe(user="").error.message
    assert master.read_snapshot().state["frameworks"] == []

    alice = peer(Scheduler, "alice")
    alice.subscribe(user="tester")
    refused, _ = launch(alice, slave, task_info("as-root", user="root"), task_info("ok"), allowed="ok")
    assert refused[0].reason == UNAUTHORIZED
    assert "--root_submissions=false" in refused[0].message and "as user 'root'" in refused[0].message
    assert metric(master, "master/unauthorized_tasks") == 1


def test_register_agents_acl(cluster):
    start, peer = cluster
    master = start(acls={"register_agents": [{"principals": {"values": ["slave1"]}, "agents": {"type": "ANY"}},
                                             {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]})
    intruder = peer(FakeSlave, "slave2")
    error = intruder.register().error.message
    assert error.startswith("Registration refused: Not authorized by ACL 'register_agents': principal 'slave2'")
    assert "Not authorized by ACL 'register_agents'" in intruder.reregister("S-any").error.message
    assert master.read_snapshot().state["slaves"] == []
    assert metric(master, "master/unauthorized_slave_registrations") == 2
    assert peer(FakeSlave, "slave1").register().type == SlaveEvent.REGISTERED
