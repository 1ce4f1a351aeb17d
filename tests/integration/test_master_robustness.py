"""The master under faults: its accounting invariant, handlers that fail half-way,
launches the slave never gets, and floods of large messages.

A real `Master` runs in-process on free ports; schedulers and slaves are raw
ZeroMQ peers speaking the wire protocol (tests/integration/test_master_protocol.py).
"""

from __future__ import annotations

import threading

import pytest
import zmq

from offerd.common.resources import Resources
from offerd.common.transport import HEARTBEAT, MAGIC
from offerd.master import invariants
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from tests.integration.test_master_protocol import (
    CTX,
    DEFAULTS,
    FakeSlave,
    Scheduler,
    http_json,
    task,
)
from tests.support import wait_for


@pytest.fixture
def make_master():
    started = []

    def start(**flags):
        master = Master(master_flags(**{**DEFAULTS, **flags})).start()
        started.append(master)
        return master

    yield start
    for master in started:
        # Every test here ends with consistent books, whatever it did to the master.
        problems = invariants.check(master)
        master.stop()
        assert problems == []


@pytest.fixture
def peers():
    made = []

    def make(cls, master, **options):
        peer = cls(master, **options)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def metric(master, key):
    return http_json(master, "/metrics/snapshot")[key]


# -- the invariant ------------------------------------------------------------------------


def test_invariant_holds_through_a_task_lifecycle_and_catches_corruption(make_master, peers):
    master = make_master()
    scheduler = peers(Scheduler, master)
    scheduler.subscribe()
    slave = peers(FakeSlave, master)
    slave.register()
    assert invariants.check(master) == []
    offer = scheduler.offers()[0]
    assert invariants.check(master) == []  # offered + idle = total
    scheduler.accept([offer.id.value], [task("t1")])
    slave.run_tasks()
    assert invariants.check(master) == []  # allocated + idle = total, the rest recovered
    slave.update(scheduler.framework_id, "t1", pb.TASK_FINISHED)
    scheduler.acknowledge(scheduler.status("t1", pb.TASK_FINISHED))
    wait_for(lambda: not invariants.check(master) and not master.actor.call(
        lambda: master.state.frameworks[scheduler.framework_id].tasks), message="the task to complete")

    scheduler.offers()  # the freed resources are offered again

    # The allocator frees a cpu the master still has offered: caught, then repaired.
    def corrupt():
        master.allocator.recover_resources(scheduler.framework_id, slave.slave_id, Resources.parse("cpus:1"),
                                           None, 0.0)
    master.actor.call(corrupt)
    problems = invariants.check(master)
    assert any("allocated + offered + idle" in p for p in problems), problems
    assert any(f"framework {scheduler.framework_id}" in p for p in problems), problems
    assert master.actor.call(invariants.repair, master) == problems
    assert invariants.check(master) == []


def test_check_invariants_flag_logs_nothing_on_a_healthy_master(make_master, peers, caplog):
    master = make_master(check_invariants=True)
    scheduler = peers(Scheduler, master)
    scheduler.subscribe()
    slave = peers(FakeSlave, master)
    slave.register()
    scheduler.launch_one(slave)
    assert metric(master, "master/invariant_violations") == 0
    assert "accounting invariant violated" not in caplog.text


# -- a handler that fails half-way --------------------------------------------------------


def test_handler_failing_after_a_first_change_leaves_consistent_books(make_master, peers, monkeypatch):
    master = make_master()
    scheduler = peers(Scheduler, master)
    scheduler.subscribe()
    slave = peers(FakeSlave, master)
    slave.register()
    offer = scheduler.offers()[0]

    # A bug: recording the second task of the ACCEPT raises, after the offer is
    # consumed and the first task is recorded.
    real = master.state.count_new_task
    calls = []

    def flaky(task_record):
        calls.append(task_record.task_id)
        if len(calls) == 2:
            raise RuntimeError("injected fault")
        return real(task_record)

    monkeypatch.setattr(master.state, "count_new_task", flaky)
    scheduler.accept([offer.id.value], [task("t1", "cpus:1;mem:128"), task("t2", "cpus:1;mem:128")])
    wait_for(lambda: metric(master, "master/handler_failures") == 1, message="the handler failure")
    monkeypatch.setattr(master.state, "count_new_task", real)
    assert invariants.check(master) == []
    # Gauges match the records, the offer is gone and the rest of it went back.
    snapshot = http_json(master, "/metrics/snapshot")
    held = master.actor.call(lambda: sorted(master.state.frameworks[scheduler.framework_id].tasks))
    assert snapshot["master/tasks_staging"] == len(held)
    assert not master.actor.call(lambda: offer.id.value in master.state.offers)

    # The next legitimate message works: a new offer of what is left, a launch that reaches the slave.
    offers = scheduler.offers()
    assert offers and offers[0].id.value != offer.id.value
    scheduler.accept([offers[0].id.value], [task("t3", "cpus:1;mem:128")])
    (run,) = slave.run_tasks()
    assert run.task.task_id.value == "t3"
    assert invariants.check(master) == []


def test_invalid_task_in_an_accept_changes_nothing_for_it(make_master, peers):
    master = make_master()
    scheduler = peers(Scheduler, master)
    scheduler.subscribe()
    slave = peers(FakeSlave, master)
    slave.register()
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value], [task("ok", "cpus:1;mem:128"), task("huge", "cpus:64;mem:128")])
    assert scheduler.status("huge").state == pb.TASK_ERROR
    (run,) = slave.run_tasks()
    assert run.task.task_id.value == "ok"
    assert invariants.check(master) == []
    assert master.actor.call(lambda: sorted(master.state.frameworks[scheduler.framework_id].tasks)) == ["ok"]


# -- RUN_TASK the slave's socket refuses -------------------------------------------------


@pytest.mark.parametrize("partition_aware,expected", [(False, pb.TASK_LOST), (True, pb.TASK_DROPPED)])
def test_launch_to_a_vanished_slave_ends_the_task(make_master, peers, partition_aware, expected):
    master = make_master()
    scheduler = peers(Scheduler, master)
    scheduler.subscribe(partition_aware=partition_aware)
    slave = peers(FakeSlave, master)
    slave_id = slave.register()
    offer = scheduler.offers()[0]
    peer = master.actor.call(lambda: master.state.slaves[slave_id].peer)
    # The slave's process dies without a goodbye; the master has not noticed yet
    # (its ping timeout is seconds away) but its socket no longer has the peer.
    slave.sock.close(0)
    wait_for(lambda: not master.actor.call(master.server.send_raw, peer, [MAGIC, HEARTBEAT, b"probe..."]),
             message="the master's socket to drop the peer")
    scheduler.accept([offer.id.value], [task("t1")])
    status = scheduler.status("t1")
    assert status.state == expected
    assert status.reason == pb.TaskStatus.REASON_SLAVE_DISCONNECTED
    assert status.source == pb.TaskStatus.SOURCE_MASTER
    assert "could not be sent the launch" in status.message
    # Not left STAGING: completed, resources back, counted.
    framework = master.actor.call(lambda: master.state.frameworks[scheduler.framework_id])
    assert master.actor.call(lambda: ("t1" not in framework.tasks, "t1" in framework.completed_tasks)) == (True, True)
    snapshot = http_json(master, "/metrics/snapshot")
    assert snapshot["master/tasks_staging"] == 0
    assert snapshot["master/dropped_launches"] == 1
    assert invariants.check(master) == []


def test_launch_lost_on_the_way_is_ended_when_the_slave_reregisters(make_master, peers):
    master = make_master()
    scheduler = peers(Scheduler, master)
    scheduler.subscribe(partition_aware=True)
    slave = peers(FakeSlave, master)
    slave.register()
    scheduler.launch_one(slave, "t1")  # the slave "loses" it: it reports no task
    slave.reregister(tasks=[])
    status = scheduler.status("t1", pb.TASK_DROPPED)
    assert status.reason == pb.TaskStatus.REASON_SLAVE_REREGISTERED
    assert invariants.check(master) == []


# -- a flood of large messages -------------------------------------------------------------


def test_flood_of_large_messages_stays_within_the_receive_bound(make_master, peers):
    bound = 2 * 1024 * 1024
    largest = 1024 * 1024
    master = make_master(max_receive_queue_bytes=bound, max_message_bytes=largest)
    flooder = CTX.socket(zmq.DEALER)
    flooder.setsockopt(zmq.LINGER, 0)
    flooder.setsockopt(zmq.SNDTIMEO, 100)
    flooder.setsockopt(zmq.SNDHWM, 4)  # the flooder's own memory stays small too
    flooder.connect(f"tcp://127.0.0.1:{master.zmq_port}")
    stop = threading.Event()
    sent = [0]
    # A valid frame layout with a body the master must read whole, then refuse.
    junk = [MAGIC, pb.Call.DESCRIPTOR.full_name.encode(), b"\xff" * (largest - 64)]

    def flood():
        while not stop.is_set():
            try:
                flooder.send_multipart(junk)
                sent[0] += 1
            except zmq.Again:
                continue

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sent[0] >= 20, timeout=30, message="the flood to start")
        # A legitimate framework and slave keep working meanwhile.
        scheduler = peers(Scheduler, master)
        assert scheduler.subscribe().type == pb.Event.SUBSCRIBED
        slave = peers(FakeSlave, master)
        slave.register()
        scheduler.launch_one(slave, "t1")
        wait_for(lambda: sent[0] >= 200, timeout=60, message="200 MiB of flood")
        snapshot = http_json(master, "/metrics/snapshot")
        # At most the bound plus the one message read when it was reached.
        assert 0 < snapshot["master/receive_queue_bytes_peak"] <= bound + largest + 64, snapshot
        assert snapshot["master/receive_queue_pauses"] > 0  # the bound was reached, reading paused
        assert snapshot["master/receive_queue_bytes"] <= bound + largest + 64
        assert snapshot["master/transport/invalid_frames"] + snapshot.get(
            "master/transport/oversized_messages", 0) > 0
        # Liveness held: neither the scheduler nor the slave was declared lost.
        assert snapshot["master/frameworks_connected"] == 1
        assert snapshot["master/slaves_connected"] == 1
    finally:
        stop.set()
        thread.join(10)
        flooder.close(0)
    assert invariants.check(master) == []
