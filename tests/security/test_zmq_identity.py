"""Identity bound to what it owns, on the master's ZeroMQ endpoint.

A real master in process, real transport clients proving principals (see
zmq_peers). Each test is an attack that must fail while the honest peer it
targets carries on: framework hijack, unauthenticated or mismatched
subscriptions, slaves that do not authenticate, a slave id taken by another
principal, status updates, executor messages and executor exits for what the
sending slave does not hold.
"""

from __future__ import annotations

import getpass

import pytest

from offerd.common.resources import Resources
from offerd.master.registry import Registrar
from offerd.master.registry_membership import (AddFramework, AdmitSlave, ClusterRegistryState,
                                               MarkSlaveReachable, MarkSlaveUnreachable)
from offerd.master.registry_zookeeper import HAInMemoryBackend
from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.flags import make_flags
from tests.security.zmq_peers import (Call, Event, FakeSlave, Scheduler, SlaveCall, SlaveEvent, cluster_of_peers,
                                      is_event, is_slave_event, is_update, metric, task_info)
from tests.support import wait_for


@pytest.fixture
def cluster(tmp_path):
    """start(**flags) -> master; peer(cls, principal) -> a connected peer (zmq_peers.cluster_of_peers)."""
    yield from cluster_of_peers(tmp_path)


SECURE = dict(authenticate_frameworks=True, authenticate_agents=True)


def running_task(scheduler: Scheduler, slave: FakeSlave, task_id="t1") -> pb.TaskInfo:
    """Launch `task_id` on `slave` and have the slave report it RUNNING."""
    offer = scheduler.offers()[0]
    assert offer.slave_id.value == slave.slave_id
    scheduler.accept([offer.id.value], [task_info(task_id)])
    (run,) = slave.run_tasks()
    slave.update(scheduler.framework_id, task_id, pb.TASK_RUNNING)
    scheduler.expect(is_update(task_id, pb.TASK_RUNNING))
    return run.task


def frameworks_json(master) -> list[dict]:
    return master.read_snapshot().state["frameworks"]


def slaves_json(master) -> list[dict]:
    return master.read_snapshot().state["slaves"]


# -- frameworks ------------------------------------------------------------------------------------------


def test_hijack_by_another_principal_is_refused_and_the_scheduler_keeps_its_framework(cluster):
    start, peer = cluster
    master = start(**SECURE)
    slave = peer(FakeSlave, "slave1")
    assert slave.register().type == SlaveEvent.REGISTERED
    alice = peer(Scheduler, "alice")
    assert alice.subscribe(failover_timeout=3600).type == Event.SUBSCRIBED
    alice_offer = alice.offers()[0]

    # Mallory, authenticated as herself, names Alice's framework id: with her own
    # principal, with Alice's claimed, and with none.
    mallory = peer(Scheduler, "mallory")
    for claimed in ("mallory", "alice", None):
        error = mallory.subscribe(framework_id=alice.framework_id, principal=claimed).error.message
        if claimed == "alice":
            assert "does not match authenticated principal 'mallory'" in error
        else:
            assert "changing framework's principal is not allowed" in error
            assert "alice" not in error  # the impostor does not learn whose it is
    assert metric(master, "master/framework_principal_mismatches") == 3
    # A call on the framework from Mallory's connection is refused too.
    mallory.call(Call.TEARDOWN)
    assert "not subscribed on this connection" in mallory.expect(is_event(Event.ERROR)).error.message

    # Alice was never told she failed over, still holds her offer and can launch.
    alice.accept([alice_offer.id.value], [task_info("t1")])
    (run,) = slave.run_tasks()
    assert run.task.task_id.value == "t1" and run.framework_info.principal == "alice"
    status, before = alice.reconcile("t1")
    assert status.state == pb.TASK_STAGING
    assert not [m for m in before if is_event(Event.ERROR)(m)], before
    (framework,) = frameworks_json(master)
    assert framework["id"] == alice.framework_id and framework["connected"] and framework["principal"] == "alice"


def test_unauthenticated_subscribe_is_refused(cluster):
    start, peer = cluster
    master = start(**SECURE)
    alice = peer(Scheduler, "alice")
    alice.subscribe()
    anonymous = peer(Scheduler)
    error = anonymous.subscribe(principal="alice").error.message
    assert "not authenticated" in error and "--authenticate_frameworks" in error and "credential" in error
    # Nor can it take a framework by its id.
    assert "not authenticated" in anonymous.subscribe(framework_id=alice.framework_id).error.message
    assert metric(master, "master/unauthenticated_framework_subscriptions") == 2
    assert [f["id"] for f in frameworks_json(master)] == [alice.framework_id]


def test_framework_principal_must_be_the_proven_one(cluster):
    start, peer = cluster
    master = start(**SECURE)
    alice = peer(Scheduler, "alice")
    error = alice.subscribe(principal="bob").error.message
    assert error == ("Framework principal 'bob' does not match authenticated principal 'alice': "
                     "set FrameworkInfo.principal to 'alice' or authenticate as 'bob'")
    assert frameworks_json(master) == []
    # Omitted (as Mesos allows): the proven principal is the one recorded.
    assert alice.subscribe().type == Event.SUBSCRIBED
    assert frameworks_json(master)[0]["principal"] == "alice"
    # Her own failover, from a new connection proving the same principal, works.
    again = peer(Scheduler, "alice")
    event = again.subscribe(framework_id=alice.framework_id, principal="alice")
    assert event.type == Event.SUBSCRIBED and event.subscribed.resubscribed
    assert alice.expect(is_event(Event.ERROR)).error.message == "Framework failed over"


def test_a_proven_framework_cannot_be_taken_by_a_mere_claim(cluster):
    """Authentication optional: a principal proven once binds the framework to proofs."""
    start, peer = cluster
    master = start()  # credentials known, authentication not required
    alice = peer(Scheduler, "alice")
    alice.subscribe()
    anonymous = peer(Scheduler)
    error = anonymous.subscribe(framework_id=alice.framework_id, principal="alice").error.message
    assert "changing framework's principal is not allowed" in error
    assert frameworks_json(master)[0]["connected"] is True
    assert metric(master, "master/framework_principal_mismatches") == 1


def test_with_authentication_off_the_claimed_principal_binds_the_framework(cluster):
    start, peer = cluster
    master = start()
    first = peer(Scheduler)
    first.subscribe(principal="web")
    other = peer(Scheduler)
    assert "changing framework's principal is not allowed" in \
        other.subscribe(framework_id=first.framework_id, principal="batch").error.message
    assert "changing framework's principal is not allowed" in \
        other.subscribe(framework_id=first.framework_id).error.message
    # The same claim is Mesos' scheduler failover.
    assert other.subscribe(framework_id=first.framework_id, principal="web").subscribed.resubscribed
    assert first.expect(is_event(Event.ERROR)).error.message == "Framework failed over"
    assert metric(master, "master/framework_principal_mismatches") == 2


def test_a_framework_id_known_to_the_registry_keeps_its_principal(cluster):
    """After a failover the registry names a framework's principal before its scheduler is back."""
    start, peer = cluster
    master = start()
    registrar = Registrar(HAInMemoryBackend())
    registrar.apply(AddFramework("old-0001", 3600.0, "web", "alice"))
    master.actor.call(setattr, master.leadership, "registrar", registrar)
    mallory = peer(Scheduler, "mallory")
    assert "changing framework's principal" in mallory.subscribe(framework_id="old-0001").error.message
    alice = peer(Scheduler, "alice")
    assert alice.subscribe(name="web", framework_id="old-0001").type == Event.SUBSCRIBED
    assert dict(registrar.state.frameworks["old-0001"])["principal"] == "alice"


# -- slaves ----------------------------------------------------------------------------------------------


def test_slave_register_without_credentials_is_refused(cluster):
    start, peer = cluster
    master = start(**SECURE)
    anonymous = peer(FakeSlave)
    error = anonymous.register().error.message
    assert "--authenticate_agents" in error and "--credential" in error
    assert "--credential" in anonymous.reregister("S-made-up").error.message
    assert slaves_json(master) == []
    assert metric(master, "master/unauthenticated_slave_registrations") == 2
    honest = peer(FakeSlave, "slave1")
    assert honest.register().type == SlaveEvent.REGISTERED
    (recorded,) = slaves_json(master)
    assert recorded["id"] == honest.slave_id and recorded["principal"] == "slave1"


def alice_running_on_slave1(cluster):
    """A master, Alice's framework and t1 RUNNING on slave1 (the victim)."""
    start, peer = cluster
    master = start(**SECURE)
    victim = peer(FakeSlave, "slave1")
    victim.register()
    alice = peer(Scheduler, "alice")
    alice.subscribe()
    running_task(alice, victim, "t1")
    return master, alice, victim


def test_reregister_of_another_slaves_id_is_refused_and_its_tasks_keep_running(cluster):
    master, alice, victim = alice_running_on_slave1(cluster)
    peer = cluster[1]
    attacker = peer(FakeSlave, "slave2")
    error = attacker.reregister(victim.slave_id, tasks=[]).error.message
    assert f"slave {victim.slave_id} is bound to a principal this connection has not proven" in error
    assert metric(master, "master/slave_principal_mismatches") == 1

    status, before = alice.reconcile("t1")
    assert status.state == pb.TASK_RUNNING
    assert not [m for m in before if is_event(Event.FAILURE)(m) or is_update("t1")(m)], before
    (recorded,) = slaves_json(master)
    assert recorded["connected"] and recorded["principal"] == "slave1"
    # The real slave is still the one the master talks to.
    alice.call(Call.KILL, kill=Call.Kill(task_id=pb.TaskID(value="t1")))
    assert victim.expect(is_slave_event(SlaveEvent.KILL_TASK)).kill_task.task_id.value == "t1"
    # And it may reregister itself, from a new connection proving its principal.
    back = peer(FakeSlave, "slave1")
    running = pb.Task(task_id=pb.TaskID(value="t1"), framework_id=pb.FrameworkID(value=alice.framework_id),
                      slave_id=pb.SlaveID(value=victim.slave_id), state=pb.TASK_RUNNING,
                      resources=Resources.parse("cpus:1;mem:128").to_protos())
    assert back.reregister(victim.slave_id, tasks=[running]).type == SlaveEvent.REREGISTERED


def test_a_slave_id_the_registry_binds_refuses_another_principal_after_failover(cluster):
    """A new leader knows a slave's principal from the registry before the slave is back."""
    start, peer = cluster
    master = start(authenticate_agents=True)
    registrar = Registrar(HAInMemoryBackend())
    registrar.apply(AdmitSlave("S-old", "h1", 5051, "slave1"))
    registrar.apply(AdmitSlave("S-gone-away", "h2", 5051, "slave1"))
    registrar.apply(MarkSlaveUnreachable("S-gone-away", 1.0))
    master.actor.call(setattr, master.leadership, "registrar", registrar)
    attacker = peer(FakeSlave, "slave2")
    for slave_id in ("S-old", "S-gone-away"):
        assert "is bound to a principal" in attacker.reregister(slave_id).error.message
    assert slaves_json(master) == []
    owner = peer(FakeSlave, "slave1")
    assert owner.reregister("S-old").type == SlaveEvent.REREGISTERED
    assert slaves_json(master)[0]["principal"] == "slave1"


def test_a_slave_registered_before_authentication_is_bound_by_its_first_proof(cluster):
    start, peer = cluster
    master = start()
    registrar = Registrar(HAInMemoryBackend())
    master.actor.call(setattr, master.leadership, "registrar", registrar)
    old = peer(FakeSlave)
    old.register()
    assert registrar.state.slaves[old.slave_id].get("principal") is None
    proving = peer(FakeSlave, "slave1")
    assert proving.reregister(old.slave_id).type == SlaveEvent.REREGISTERED
    assert registrar.state.slaves[old.slave_id]["principal"] == "slave1"
    other = peer(FakeSlave, "slave2")
    assert "is bound to a principal" in other.reregister(old.slave_id).error.message
    anonymous = peer(FakeSlave)
    assert "is bound to a principal" in anonymous.reregister(old.slave_id).error.message


def test_registry_keeps_slave_and_framework_principals_and_reads_old_entries():
    state = ClusterRegistryState()
    for op in (AdmitSlave("S1", "h1", 1, "slave1"), AdmitSlave("S2", "h2", 2),
               MarkSlaveUnreachable("S1", 5.0), AddFramework("F1", 60.0, "web", "alice")):
        state = op.apply(state)
    again = ClusterRegistryState.from_json(state.to_json())
    assert again.unreachable["S1"]["principal"] == "slave1"
    assert MarkSlaveReachable("S1").apply(again).slaves["S1"]["principal"] == "slave1"
    assert "principal" not in again.slaves["S2"]
    assert again.frameworks["F1"]["principal"] == "alice"
    # A registry written before principals were recorded loads as it was.
    old = ClusterRegistryState.from_json({"version": 3, "slaves": {"S9": {"hostname": "h", "port": 1}},
                                     "frameworks": {"F9": {"failover_timeout": 1.0, "name": "x"}}})
    assert dict(old.slaves["S9"]) == {"hostname": "h", "port": 1} and old.version == 3


# -- what a slave may say about tasks and executors ------------------------------------------------------


@pytest.fixture
def two_slaves(cluster):
    """A master, Alice's framework with t1 RUNNING on slave1 (the victim), and slave2 (the attacker)."""
    master, alice, victim = alice_running_on_slave1(cluster)
    attacker = cluster[1](FakeSlave, "slave2")
    attacker.register()
    return master, alice, victim, attacker


def test_status_update_for_a_task_the_slave_does_not_hold_is_refused(two_slaves):
    master, alice, victim, attacker = two_slaves
    invalid_before = metric(master, "master/invalid_status_updates")
    for task_id in ("t1", "ghost"):
        attacker.update(alice.framework_id, task_id, pb.TASK_FAILED)
        *before, error = attacker.until(is_slave_event(SlaveEvent.ERROR))
        assert f"Status update for task {task_id}" in error.error.message
        assert "does not hold that task" in error.error.message
        assert not [m for m in before if is_slave_event(SlaveEvent.ACKNOWLEDGE)(m)], before
    assert metric(master, "master/invalid_status_updates") == invalid_before + 2

    status, before = alice.reconcile("t1")
    assert status.state == pb.TASK_RUNNING and status.slave_id.value == victim.slave_id
    assert not [m for m in before if is_event(Event.UPDATE)(m)], before
    _, before = alice.reconcile("ghost")
    assert not [m for m in before if is_event(Event.UPDATE)(m)], before


def test_a_slave_cannot_forward_a_status_naming_another_slave(two_slaves):
    master, alice, victim, attacker = two_slaves
    status = pb.TaskStatus(task_id=pb.TaskID(value="t1"), state=pb.TASK_RUNNING, uuid=b"u" * 16,
                           slave_id=pb.SlaveID(value=attacker.slave_id))
    victim.send(SlaveCall(type=SlaveCall.UPDATE, slave_id=pb.SlaveID(value=victim.slave_id),
                          update=SlaveCall.Update(framework_id=pb.FrameworkID(value=alice.framework_id),
                                                  status=status)))
    forwarded = alice.expect(is_update("t1", pb.TASK_RUNNING)).update.status
    assert forwarded.slave_id.value == victim.slave_id


def test_a_terminal_resend_for_a_completed_task_is_acknowledged_not_forwarded(two_slaves):
    master, alice, victim, attacker = two_slaves
    uuid = victim.update(alice.framework_id, "t1", pb.TASK_FINISHED)
    finished = alice.expect(is_update("t1", pb.TASK_FINISHED)).update.status
    alice.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(slave_id=finished.slave_id, task_id=finished.task_id,
                                                              uuid=finished.uuid))
    victim.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE))
    wait_for(lambda: frameworks_json(master)[0]["completed_tasks"], message="t1 to be completed")

    victim.update(alice.framework_id, "t1", pb.TASK_FINISHED, uuid=uuid)  # the resend crossing the ack
    ack = victim.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE)).acknowledge
    assert ack.uuid == uuid and ack.task_id.value == "t1"
    assert not [m for m in victim.inbox if is_slave_event(SlaveEvent.ERROR)(m)]
    status, before = alice.reconcile("t1")
    assert status.state == pb.TASK_FINISHED
    assert not [m for m in before if is_event(Event.UPDATE)(m)], before
    # Another slave resending it is still refused.
    attacker.update(alice.framework_id, "t1", pb.TASK_FINISHED, uuid=uuid)
    assert "does not hold that task" in attacker.expect(is_slave_event(SlaveEvent.ERROR)).error.message


def test_executor_messages_and_exits_only_for_executors_on_the_sending_slave(cluster):
    start, peer = cluster
    master = start(**SECURE)
    victim = peer(FakeSlave, "slave1")
    victim.register()
    alice = peer(Scheduler, "alice")
    alice.subscribe()
    offer = alice.offers()[0]
    with_executor = pb.TaskInfo(name="e1", task_id=pb.TaskID(value="e1"),
                                resources=Resources.parse("cpus:1;mem:128").to_protos())
    with_executor.executor.executor_id.value = "exec-1"
    with_executor.executor.command.value = "run-my-executor"
    alice.accept([offer.id.value], [with_executor])
    victim.run_tasks()
    attacker = peer(FakeSlave, "slave2")
    attacker.register()

    def executor_message(slave, data):
        call = SlaveCall(type=SlaveCall.EXECUTOR_MESSAGE, slave_id=pb.SlaveID(value=slave.slave_id))
        call.executor_message.framework_id.value = alice.framework_id
        call.executor_message.executor_id.value = "exec-1"
        call.executor_message.data = data
        slave.send(call)

    def exited(slave):
        call = SlaveCall(type=SlaveCall.EXITED_EXECUTOR, slave_id=pb.SlaveID(value=slave.slave_id))
        call.exited_executor.framework_id.value = alice.framework_id
        call.exited_executor.executor_id.value = "exec-1"
        call.exited_executor.status = 9
        slave.send(call)

    invalid = metric(master, "master/invalid_executor_to_framework_messages")
    executor_message(attacker, b"forged")
    exited(attacker)
    wait_for(lambda: metric(master, "master/invalid_executor_to_framework_messages") == invalid + 1
             and metric(master, "master/invalid_exited_executors") == 1, message="both refusals counted")
    executor_message(victim, b"genuine")
    message = alice.until(is_event(Event.MESSAGE))
    assert [m.message.data for m in message if is_event(Event.MESSAGE)(m)] == [b"genuine"]
    assert not [m for m in message if is_event(Event.FAILURE)(m)], message
    assert message[-1].message.slave_id.value == victim.slave_id
    # The executor is still known on the victim: its exit from there is reported.
    exited(victim)
    failure = alice.expect(is_event(Event.FAILURE)).failure
    assert failure.slave_id.value == victim.slave_id and failure.executor_id.value == "exec-1"


def test_a_real_slave_keeps_its_id_and_running_task_against_another_principal(cluster, tmp_path):
    """The real slave daemon, authenticated by --credential, running a real process."""
    start, peer = cluster
    master = start(**SECURE)
    credential_file = tmp_path / "slave1.credential"
    credential_file.write_text("slave1 slave1-secret\n")
    real = Slave(make_flags(master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
                            hostname="real-host", resources="cpus:2;mem:1024;disk:1024",
                            credential=str(credential_file), heartbeat_interval=0.2,
                            registration_backoff_factor=0.1, executor_shutdown_grace_period=1.0)).start()
    try:
        slave_id = wait_for(lambda: real.slave_id, message="the real slave to register")
        assert slaves_json(master)[0]["principal"] == "slave1"
        alice = peer(Scheduler, "alice")
        alice.subscribe(user=getpass.getuser())  # a user that exists here
        offer = alice.offers()[0]
        alice.accept([offer.id.value], [task_info("real", "cpus:0.5;mem:64")])
        while True:  # the slave sends the next update once the last is acknowledged
            status = alice.expect(is_update("real")).update.status
            alice.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(slave_id=status.slave_id,
                                                                      task_id=status.task_id, uuid=status.uuid))
            if status.state == pb.TASK_RUNNING:
                break
            assert status.state == pb.TASK_STARTING, status

        attacker = peer(FakeSlave, "slave2")
        assert "is bound to a principal" in attacker.reregister(slave_id).error.message
        status, before = alice.reconcile("real")
        assert status.state == pb.TASK_RUNNING
        assert not [m for m in before if is_event(Event.FAILURE)(m)], before
        assert slaves_json(master)[0]["connected"] is True
        # The master still reaches the real slave: a kill ends the real process.
        alice.call(Call.KILL, kill=Call.Kill(task_id=pb.TaskID(value="real")))
        assert alice.expect(is_update("real", pb.TASK_KILLED)).update.status.slave_id.value == slave_id
    finally:
        real.stop()
