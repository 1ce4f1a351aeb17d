"""The master over real ZeroMQ: raw DEALER sockets play schedulers and slaves.

A real `Master` runs in-process on free ports. Fake peers speak the wire
protocol (docs/protocol.md) with `encode` and raw zmq, so these tests pin the
protocol itself, not a client library.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request

import pytest
import zmq

from offerd.common.ids import new_uuid
from offerd.common.resources import Resources
from offerd.common.transport import HEARTBEAT, MAGIC, MESSAGE_TYPES, encode
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb

CTX = zmq.Context.instance()
Call, Event, SlaveCall, SlaveEvent = pb.Call, pb.Event, pb.SlaveCall, pb.SlaveEvent
PARTITION_AWARE = pb.FrameworkInfo.Capability.PARTITION_AWARE
LAUNCH = pb.Offer.Operation.LAUNCH


# -- fake peers ------------------------------------------------------------------------


def is_event(kind):
    return lambda m: isinstance(m, pb.Event) and m.type == kind


def is_slave_event(kind):
    return lambda m: isinstance(m, pb.SlaveEvent) and m.type == kind


def is_update(task_id, state=None):
    return lambda m: (isinstance(m, pb.Event) and m.type == Event.UPDATE
                      and m.update.status.task_id.value == task_id
                      and (state is None or m.update.status.state == state))


def is_protocol_error(m):
    return isinstance(m, pb.ProtocolError)


class Peer:
    """A DEALER that keeps what it receives until a test claims it."""

    def __init__(self, master: Master, heartbeat: bool = True):
        self.sock = CTX.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{master.zmq_port}")
        self.inbox: list = []
        self.heartbeat = heartbeat
        self._last_beat = 0.0

    def send(self, message) -> None:
        self.sock.send_multipart(encode(message))

    def _pump(self, timeout: float) -> None:
        if self.heartbeat and time.monotonic() - self._last_beat > 0.1:
            self.sock.send_multipart([MAGIC, HEARTBEAT])
            self._last_beat = time.monotonic()
        if self.sock.poll(int(timeout * 1000)):
            frames = self.sock.recv_multipart()
            if frames[:2] != [MAGIC, HEARTBEAT]:
                self.inbox.append(MESSAGE_TYPES[frames[1]].FromString(frames[2]))

    def expect(self, match, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.inbox):
                if match(message):
                    return self.inbox.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing expected arrived in {timeout}s; inbox: {self.inbox}")
            self._pump(min(0.05, remaining))

    def expect_none(self, match, duration: float) -> None:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            self._pump(0.05)
        assert not [m for m in self.inbox if match(m)], self.inbox

    def idle(self, duration: float) -> None:
        """Let time pass while staying alive (heartbeats)."""
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            self._pump(0.05)

    def close(self) -> None:
        self.sock.close(0)


class Scheduler(Peer):
    framework_id = ""

    def subscribe(self, name="fw", partition_aware=False, framework_id=None, failover_timeout=0.0,
                  roles=None) -> Event:
        info = pb.FrameworkInfo(name=name, user="tester", failover_timeout=failover_timeout)
        if partition_aware:
            info.capabilities.add(type=PARTITION_AWARE)
        if framework_id:
            info.id.value = framework_id
        if roles:
            info.roles.extend(roles)
        self.send(Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info)))
        event = self.expect(lambda m: isinstance(m, pb.Event) and m.type in (Event.SUBSCRIBED, Event.ERROR))
        if event.type == Event.SUBSCRIBED:
            self.framework_id = event.subscribed.framework_id.value
        return event

    def call(self, kind, **fields) -> None:
        self.send(Call(type=kind, framework_id=pb.FrameworkID(value=self.framework_id), **fields))

    def offers(self, timeout=5.0) -> list[pb.Offer]:
        return list(self.expect(is_event(Event.OFFERS), timeout).offers.offers)

    def accept(self, offer_ids, tasks, refuse_seconds=None) -> None:
        accept = Call.Accept(offer_ids=[pb.OfferID(value=o) for o in offer_ids])
        accept.operations.add(type=LAUNCH).launch.task_infos.extend(tasks)
        if refuse_seconds is not None:
            accept.filters.refuse_seconds = refuse_seconds
        self.call(Call.ACCEPT, accept=accept)

    def decline(self, offer_ids, refuse_seconds=None) -> None:
        decline = Call.Decline(offer_ids=[pb.OfferID(value=o) for o in offer_ids])
        if refuse_seconds is not None:
            decline.filters.refuse_seconds = refuse_seconds
        self.call(Call.DECLINE, decline=decline)

    def status(self, task_id, state=None, timeout=5.0) -> pb.TaskStatus:
        return self.expect(is_update(task_id, state), timeout).update.status

    def acknowledge(self, status: pb.TaskStatus) -> None:
        self.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
            slave_id=status.slave_id, task_id=status.task_id, uuid=status.uuid))

    def launch_one(self, slave, task_id="t1", resources="cpus:1;mem:128", refuse_seconds=None) -> pb.TaskInfo:
        offer = self.offers()[0]
        self.accept([offer.id.value], [task(task_id, resources)], refuse_seconds)
        (run,) = slave.run_tasks()
        return run.task


class FakeSlave(Peer):
    slave_id = ""

    def info(self, resources="cpus:4;mem:4096", hostname="h1") -> pb.SlaveInfo:
        return pb.SlaveInfo(hostname=hostname, port=5051, ip="127.0.0.1",
                            resources=Resources.parse(resources).to_protos())

    def register(self, resources="cpus:4;mem:4096", hostname="h1") -> str:
        self.send(SlaveCall(type=SlaveCall.REGISTER,
                            register=SlaveCall.Register(slave_info=self.info(resources, hostname), version="t")))
        self.slave_id = self.expect(is_slave_event(SlaveEvent.REGISTERED)).registered.slave_id.value
        return self.slave_id

    def reregister(self, tasks=(), frameworks=(), resources="cpus:4;mem:4096") -> SlaveEvent:
        info = self.info(resources)
        info.id.value = self.slave_id
        self.send(SlaveCall(type=SlaveCall.REREGISTER, slave_id=pb.SlaveID(value=self.slave_id),
                            reregister=SlaveCall.Reregister(slave_info=info, tasks=list(tasks),
                                                            frameworks=list(frameworks))))
        return self.expect(is_slave_event(SlaveEvent.REREGISTERED))

    def run_tasks(self, timeout=5.0) -> list:
        return list(self.expect(is_slave_event(SlaveEvent.RUN_TASK), timeout).run_tasks)

    def update(self, framework_id, task_id, state, uuid=None, latest=None) -> bytes:
        uuid = new_uuid() if uuid is None else uuid
        status = pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=state, uuid=uuid,
                               source=pb.TaskStatus.SOURCE_EXECUTOR, timestamp=time.time())
        update = SlaveCall.Update(framework_id=pb.FrameworkID(value=framework_id), status=status)
        if latest is not None:
            update.latest_state = latest
        self.send(SlaveCall(type=SlaveCall.UPDATE, slave_id=pb.SlaveID(value=self.slave_id), update=update))
        return uuid


def task(task_id, resources="cpus:1;mem:128", command="sleep 1") -> pb.TaskInfo:
    return pb.TaskInfo(name=task_id, task_id=pb.TaskID(value=task_id),
                       command=pb.CommandInfo(value=command),
                       resources=Resources.parse(resources).to_protos())


def scalar(name, value) -> pb.Resource:
    return pb.Resource(name=name, type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=value))


def http_json(master, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{master.http_port}{path}", timeout=5) as response:
        return json.loads(response.read())


# -- fixtures ----------------------------------------------------------------------------

DEFAULTS = dict(port=0, allocation_interval="100ms", framework_timeout="3secs",
                slave_ping_timeout="1secs", max_slave_ping_timeouts=3)


@pytest.fixture
def make_master():
    started = []

    def start(**flags):
        master = Master(master_flags(**{**DEFAULTS, **flags})).start()
        started.append(master)
        return master

    yield start
    for master in started:
        master.stop()


@pytest.fixture
def master(make_master):
    return make_master()


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


@pytest.fixture
def scheduler(master, peers):
    sched = peers(Scheduler, master)
    assert sched.subscribe().type == Event.SUBSCRIBED
    return sched


@pytest.fixture
def slave(master, peers):
    fake = peers(FakeSlave, master)
    fake.register()
    return fake


def assert_still_serving(master, peers) -> None:
    """Another framework can subscribe and gets an answer."""
    other = peers(Scheduler, master)
    assert other.subscribe(name="bystander").type == Event.SUBSCRIBED


# -- the happy path ------------------------------------------------------------------------


def test_subscribed_carries_master_info_and_heartbeat(master, peers):
    sched = peers(Scheduler, master)
    event = sched.subscribe()
    assert event.subscribed.framework_id.value == f"{master.master_id}-0000"
    assert event.subscribed.heartbeat_interval_seconds > 0
    assert event.subscribed.master_info.zmq_port == master.zmq_port
    assert event.subscribed.master_info.address.port == master.http_port
    assert not event.subscribed.resubscribed


def test_heartbeat_events(peers):
    master = Master(master_flags(**DEFAULTS), heartbeat_interval=0.2).start()
    try:
        sched = peers(Scheduler, master)
        assert sched.subscribe().subscribed.heartbeat_interval_seconds == pytest.approx(0.2)
        sched.expect(is_event(Event.HEARTBEAT), timeout=2)
    finally:
        master.stop()


def test_launch_update_acknowledge_end_to_end(master, scheduler, slave):
    offers = scheduler.offers()
    assert len(offers) == 1 and offers[0].slave_id.value == slave.slave_id == f"{master.master_id}-S0"
    offer = offers[0]
    assert offer.id.value.startswith(f"{master.master_id}-O")
    assert offer.hostname == "h1" and offer.allocation_info.role == "*"
    assert Resources.from_protos(offer.resources) == Resources.parse("cpus:4;mem:4096")
    assert all(r.allocation_info.role == "*" for r in offer.resources)

    scheduler.accept([offer.id.value], [task("t1"), task("t2")])
    runs = slave.run_tasks()
    assert [r.task.task_id.value for r in runs] == ["t1", "t2"]  # one batch
    assert runs[0].framework_info.id.value == scheduler.framework_id
    assert runs[0].task.slave_id.value == slave.slave_id

    fid = scheduler.framework_id
    uuid = slave.update(fid, "t1", pb.TASK_RUNNING)
    status = scheduler.status("t1", pb.TASK_RUNNING)
    assert status.uuid == uuid and status.slave_id.value == slave.slave_id
    scheduler.acknowledge(status)
    ack = slave.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE)).acknowledge
    assert (ack.framework_id.value, ack.task_id.value, ack.uuid) == (fid, "t1", uuid)

    slave.update(fid, "t1", pb.TASK_FINISHED)
    finished = scheduler.status("t1", pb.TASK_FINISHED)
    # The unused part of the offer came back with the default 5 s filter, but a
    # finished task frees more than was refused, so the slave is offered again.
    again = scheduler.offers()
    assert Resources.from_protos(again[0].resources) == Resources.parse("cpus:3;mem:3968")  # t2 still holds its share
    scheduler.acknowledge(finished)
    slave.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE))

    state = http_json(master, "/master/state")
    (framework,) = state["frameworks"]
    assert [t["id"] for t in framework["tasks"]] == ["t2"]
    assert framework["tasks"][0]["state"] == "TASK_STAGING"
    (done,) = framework["completed_tasks"]
    assert done["id"] == "t1" and done["state"] == "TASK_FINISHED"
    assert [s["state"] for s in done["statuses"]] == ["TASK_RUNNING", "TASK_FINISHED"]
    metrics = http_json(master, "/metrics/snapshot")
    assert metrics["master/tasks_finished"] == 1
    assert metrics["master/tasks_staging"] == 1
    assert metrics["master/valid_status_updates"] == 2
    assert metrics["master/valid_status_update_acknowledgements"] == 2


def test_terminal_latest_state_frees_resources_before_the_ack(master, scheduler, slave):
    scheduler.launch_one(slave, "t1", "cpus:4;mem:4096")
    # RUNNING is still unacknowledged, but the task already finished on the slave.
    slave.update(scheduler.framework_id, "t1", pb.TASK_RUNNING, latest=pb.TASK_FINISHED)
    scheduler.status("t1", pb.TASK_RUNNING)
    offer = scheduler.offers()[0]
    assert Resources.from_protos(offer.resources) == Resources.parse("cpus:4;mem:4096")


def test_all_new_offers_of_a_framework_come_in_one_event(master, peers):
    for name in ("a", "b"):
        peers(FakeSlave, master).register(hostname=name)
    sched = peers(Scheduler, master)
    sched.subscribe()
    assert sorted(o.hostname for o in sched.offers()) == ["a", "b"]


def test_decline_filter_then_offer_again(master, scheduler, slave):
    offer = scheduler.offers()[0]
    scheduler.decline([offer.id.value], refuse_seconds=0.6)
    scheduler.expect_none(is_event(Event.OFFERS), 0.4)
    assert scheduler.offers(timeout=3)[0].slave_id.value == slave.slave_id


def test_revive_clears_a_long_decline_filter(master, scheduler, slave):
    offer = scheduler.offers()[0]
    scheduler.decline([offer.id.value], refuse_seconds=3600)
    scheduler.expect_none(is_event(Event.OFFERS), 0.3)
    scheduler.call(Call.REVIVE)
    assert scheduler.offers(timeout=2)


def test_suppress_stops_offers_until_revive(master, scheduler, slave):
    offer = scheduler.offers()[0]
    scheduler.call(Call.SUPPRESS)
    scheduler.decline([offer.id.value], refuse_seconds=0)
    scheduler.expect_none(is_event(Event.OFFERS), 0.4)
    scheduler.call(Call.REVIVE, revive=Call.Revive(roles=["*"]))
    assert scheduler.offers(timeout=2)


def test_reconcile_explicit_and_implicit(master, scheduler, slave):
    scheduler.launch_one(slave, "t1")
    slave.update(scheduler.framework_id, "t1", pb.TASK_RUNNING)
    scheduler.status("t1", pb.TASK_RUNNING)

    scheduler.call(Call.RECONCILE, reconcile=Call.Reconcile())
    status = scheduler.status("t1")
    assert status.state == pb.TASK_RUNNING
    assert status.reason == pb.TaskStatus.REASON_RECONCILIATION
    assert status.source == pb.TaskStatus.SOURCE_MASTER and not status.uuid

    tasks = [Call.Reconcile.Task(task_id=pb.TaskID(value=t)) for t in ("t1", "ghost")]
    scheduler.call(Call.RECONCILE, reconcile=Call.Reconcile(tasks=tasks))
    assert scheduler.status("t1").state == pb.TASK_RUNNING
    ghost = scheduler.status("ghost")
    assert ghost.state == pb.TASK_LOST and ghost.reason == pb.TaskStatus.REASON_RECONCILIATION


def test_reconcile_unknown_task_for_partition_aware_framework(master, peers, slave):
    sched = peers(Scheduler, master)
    sched.subscribe(partition_aware=True)
    tasks = [Call.Reconcile.Task(task_id=pb.TaskID(value="ghost"), slave_id=pb.SlaveID(value=slave.slave_id)),
             Call.Reconcile.Task(task_id=pb.TaskID(value="nowhere"))]
    sched.call(Call.RECONCILE, reconcile=Call.Reconcile(tasks=tasks))
    assert sched.status("ghost").state == pb.TASK_GONE
    assert sched.status("nowhere").state == pb.TASK_UNKNOWN


def test_kill_known_and_unknown_tasks(master, scheduler, slave):
    scheduler.launch_one(slave, "t1")
    policy = pb.KillPolicy(grace_period=pb.DurationInfo(nanoseconds=2_000_000_000))
    scheduler.call(Call.KILL, kill=Call.Kill(task_id=pb.TaskID(value="t1"), kill_policy=policy))
    kill = slave.expect(is_slave_event(SlaveEvent.KILL_TASK)).kill_task
    assert kill.task_id.value == "t1" and kill.kill_policy.grace_period.nanoseconds == 2_000_000_000
    scheduler.call(Call.KILL, kill=Call.Kill(task_id=pb.TaskID(value="nope")))
    status = scheduler.status("nope")
    assert status.state == pb.TASK_LOST and "Cannot kill task nope" in status.message


def test_messages_shutdown_and_executor_failure(master, scheduler, slave):
    fid = scheduler.framework_id
    sid = pb.SlaveID(value=slave.slave_id)
    eid = pb.ExecutorID(value="e1")
    # A slave speaks only for executors it runs: start e1 there first.
    with_executor = task("t1")
    with_executor.ClearField("command")
    with_executor.executor.executor_id.CopyFrom(eid)
    with_executor.executor.command.value = "my-executor"
    scheduler.accept([scheduler.offers()[0].id.value], [with_executor])
    slave.run_tasks()
    scheduler.call(Call.MESSAGE, message=Call.Message(slave_id=sid, executor_id=eid, data=b"ping"))
    message = slave.expect(is_slave_event(SlaveEvent.FRAMEWORK_MESSAGE)).framework_message
    assert (message.framework_id.value, message.executor_id.value, message.data) == (fid, "e1", b"ping")
    slave.send(SlaveCall(type=SlaveCall.EXECUTOR_MESSAGE, slave_id=sid, executor_message=SlaveCall.ExecutorMessage(
        framework_id=pb.FrameworkID(value=fid), executor_id=eid, data=b"pong")))
    assert scheduler.expect(is_event(Event.MESSAGE)).message.data == b"pong"
    scheduler.call(Call.SHUTDOWN, shutdown=Call.Shutdown(slave_id=sid, executor_id=eid))
    assert slave.expect(is_slave_event(SlaveEvent.SHUTDOWN_EXECUTOR)).shutdown_executor.executor_id.value == "e1"
    slave.send(SlaveCall(type=SlaveCall.EXITED_EXECUTOR, slave_id=sid, exited_executor=SlaveCall.ExitedExecutor(
        framework_id=pb.FrameworkID(value=fid), executor_id=eid, status=9)))
    failure = scheduler.expect(is_event(Event.FAILURE)).failure
    assert (failure.slave_id.value, failure.executor_id.value, failure.status) == (slave.slave_id, "e1", 9)


def test_custom_executor_is_offered_back_by_id(master, scheduler, slave):
    offer = scheduler.offers()[0]
    executor = pb.ExecutorInfo(executor_id=pb.ExecutorID(value="ex"), command=pb.CommandInfo(value="run-ex"),
                               resources=Resources.parse("cpus:0.5;mem:64").to_protos())
    first = pb.TaskInfo(name="a", task_id=pb.TaskID(value="a"), executor=executor,
                        resources=Resources.parse("cpus:1;mem:128").to_protos())
    scheduler.accept([offer.id.value], [first], refuse_seconds=0)
    (run,) = slave.run_tasks()
    assert run.task.executor.framework_id.value == scheduler.framework_id
    again = scheduler.offers()[0]
    assert [e.value for e in again.executor_ids] == ["ex"]
    # 4 - 1 - 0.5 cpus left: the executor's resources count once.
    assert Resources.from_protos(again.resources) == Resources.parse("cpus:2.5;mem:3904")


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("frames, expected", [
    ([b"junk"], "malformed frame"),
    ([MAGIC, b"offerd.v1.Call", b"\xff\xff\xff\xff"], "malformed offerd.v1.Call"),
    ([MAGIC, b"offerd.v1.ExecutorCall", b""], "unknown message type"),
    ([MAGIC, b"offerd.v1.Call", b"\x12" + b"\x00" * 70_000], "exceeds the limit of 65536 bytes"),
])
def test_refused_frames_get_a_protocol_error(make_master, peers, frames, expected):
    master = make_master(max_message_bytes="64KB")
    peer = peers(Peer, master)
    peer.sock.send_multipart(frames)
    error = peer.expect(is_protocol_error)
    assert expected in error.message
    assert_still_serving(master, peers)


def test_unknown_call_type_is_an_error(master, peers):
    sched = peers(Scheduler, master)
    sched.send(Call(type=Call.UNKNOWN))
    assert "Unknown call type" in sched.expect(is_event(Event.ERROR)).error.message
    sched.send(SlaveCall(type=SlaveCall.UNKNOWN))
    assert "Unknown slave call type" in sched.expect(is_slave_event(SlaveEvent.ERROR)).error.message
    assert http_json(master, "/metrics/snapshot")["master/invalid_calls"] == 2
    assert_still_serving(master, peers)


def test_call_from_a_peer_that_did_not_subscribe(master, scheduler, slave, peers):
    intruder = peers(Scheduler, master)
    intruder.framework_id = scheduler.framework_id
    offer = scheduler.offers()[0]
    intruder.accept([offer.id.value], [task("t1")])
    error = intruder.expect(is_event(Event.ERROR)).error.message
    assert f"Framework {scheduler.framework_id} is not subscribed on this connection" in error
    # Nothing changed: the offer is still good for its owner.
    scheduler.accept([offer.id.value], [task("t1")])
    assert slave.run_tasks()[0].task.task_id.value == "t1"


def test_invalid_framework_info(master, peers):
    sched = peers(Scheduler, master)
    assert "name is required" in sched.subscribe(name="").error.message
    assert "invalid role" in sched.subscribe(roles=["a b"]).error.message
    assert_still_serving(master, peers)


def test_accept_unknown_offer_drops_the_tasks(master, scheduler, slave, peers):
    scheduler.offers()
    scheduler.accept(["no-such-offer"], [task("t1")])
    status = scheduler.status("t1")
    assert status.state == pb.TASK_LOST  # not partition-aware
    assert status.reason == pb.TaskStatus.REASON_INVALID_OFFERS
    assert "no-such-offer" in status.message and not status.uuid
    assert status.source == pb.TaskStatus.SOURCE_MASTER
    aware = peers(Scheduler, master)
    aware.subscribe(name="aware", partition_aware=True)
    aware.accept(["no-such-offer"], [task("t1")])
    assert aware.status("t1").state == pb.TASK_DROPPED
    assert_still_serving(master, peers)


def test_one_bad_offer_spoils_the_accept_but_good_ones_return(master, scheduler, slave):
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value, "bogus"], [task("t1")])
    assert scheduler.status("t1").reason == pb.TaskStatus.REASON_INVALID_OFFERS
    slave.expect_none(is_slave_event(SlaveEvent.RUN_TASK), 0.2)
    assert scheduler.offers()[0].slave_id.value == slave.slave_id  # came back unfiltered


def test_accept_of_a_rescinded_offer(make_master, peers):
    master = make_master(offer_timeout="300ms")
    peers(FakeSlave, master).register()
    sched = peers(Scheduler, master)
    sched.subscribe()
    offer = sched.offers()[0]
    rescind = sched.expect(is_event(Event.RESCIND), timeout=3)
    assert rescind.rescind.offer_id.value == offer.id.value
    sched.accept([offer.id.value], [task("t1")])
    status = sched.status("t1")
    assert status.reason == pb.TaskStatus.REASON_INVALID_OFFERS and "no longer valid" in status.message
    assert_still_serving(master, peers)


@pytest.mark.parametrize("bad_task, expected", [
    (task("big", "cpus:5;mem:128"), "more resources"),
    (task("ports", "cpus:1;ports:[1-2]"), "more resources"),
    (pb.TaskInfo(task_id=pb.TaskID(value="neg"), command=pb.CommandInfo(value="x"),
                 resources=[scalar("cpus", -1.0)]), "negative"),
    (pb.TaskInfo(task_id=pb.TaskID(value="nan"), command=pb.CommandInfo(value="x"),
                 resources=[scalar("cpus", math.nan)]), "non-finite"),
    (pb.TaskInfo(task_id=pb.TaskID(value="text"), command=pb.CommandInfo(value="x"),
                 resources=[pb.Resource(name="cpus", type=pb.Value.TEXT)]), "invalid resources"),
    (pb.TaskInfo(task_id=pb.TaskID(value="none"), command=pb.CommandInfo(value="x")), "use no resources"),
    (pb.TaskInfo(task_id=pb.TaskID(value="both"), resources=[scalar("cpus", 1)]), "CommandInfo or ExecutorInfo"),
    (task("a/b"), "invalid character"),
])
def test_invalid_task_gets_task_error(master, scheduler, slave, peers, bad_task, expected):
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value], [bad_task, task("good")])
    status = scheduler.status(bad_task.task_id.value)
    assert status.state == pb.TASK_ERROR and status.reason == pb.TaskStatus.REASON_TASK_INVALID
    assert expected in status.message and not status.uuid
    # The rest of the call is applied.
    assert [r.task.task_id.value for r in slave.run_tasks()] == ["good"]
    assert_still_serving(master, peers)


def test_duplicate_task_ids(master, scheduler, slave):
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value], [task("t1"), task("t1")], refuse_seconds=0)
    assert "duplicate ID: t1" in scheduler.status("t1", pb.TASK_ERROR).message
    assert len(slave.run_tasks()) == 1
    offer = scheduler.offers()[0]
    scheduler.accept([offer.id.value], [task("t1")])  # still running: taken
    assert "duplicate ID: t1" in scheduler.status("t1", pb.TASK_ERROR).message


def test_bad_acknowledgement_is_dropped_and_counted(master, scheduler, slave):
    scheduler.launch_one(slave)
    scheduler.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
        slave_id=pb.SlaveID(value=slave.slave_id), task_id=pb.TaskID(value="t1"), uuid=b"short"))
    slave.expect_none(is_slave_event(SlaveEvent.ACKNOWLEDGE), 0.2)
    assert http_json(master, "/metrics/snapshot")["master/invalid_status_update_acknowledgements"] == 1


def test_update_for_unknown_framework_is_acked_and_shut_down(master, slave):
    uuid = slave.update("no-such-framework", "t9", pb.TASK_RUNNING)
    ack = slave.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE)).acknowledge
    assert ack.uuid == uuid and ack.task_id.value == "t9"
    shutdown = slave.expect(is_slave_event(SlaveEvent.SHUTDOWN_FRAMEWORK))
    assert shutdown.shutdown_framework.framework_id.value == "no-such-framework"


def test_slave_call_from_unregistered_peer(master, peers):
    stranger = peers(FakeSlave, master)
    stranger.slave_id = "S-unknown"
    stranger.update("f", "t", pb.TASK_RUNNING)
    assert "not registered on this connection" in stranger.expect(is_slave_event(SlaveEvent.ERROR)).error.message
    stranger.send(SlaveCall(type=SlaveCall.REGISTER, register=SlaveCall.Register(slave_info=pb.SlaveInfo())))
    assert "hostname is required" in stranger.expect(is_slave_event(SlaveEvent.ERROR)).error.message


# -- failures and failover -----------------------------------------------------------------


@pytest.mark.parametrize("partition_aware, expected", [
    (False, pb.TASK_LOST), (True, pb.TASK_UNREACHABLE),
])
def test_silent_slave_becomes_unreachable(make_master, peers, partition_aware, expected):
    master = make_master(slave_ping_timeout="200ms", max_slave_ping_timeouts=2)
    fake = peers(FakeSlave, master)
    fake.register()
    sched = peers(Scheduler, master)
    sched.subscribe(partition_aware=partition_aware)
    sched.launch_one(fake, "t1")
    fake.update(sched.framework_id, "t1", pb.TASK_RUNNING)
    sched.status("t1", pb.TASK_RUNNING)
    fake.heartbeat = False  # the slave goes silent
    status = sched.status("t1", expected, timeout=5)
    assert status.reason == pb.TaskStatus.REASON_SLAVE_REMOVED
    assert status.source == pb.TaskStatus.SOURCE_MASTER and not status.uuid
    assert status.slave_id.value == fake.slave_id
    assert sched.expect(is_event(Event.FAILURE)).failure.slave_id.value == fake.slave_id
    assert http_json(master, "/metrics/snapshot")["master/slaves_unreachable"] == 1
    # A kill now is answered from what the master knows.
    sched.call(Call.KILL, kill=Call.Kill(task_id=pb.TaskID(value="t1")))
    assert sched.status("t1").state == expected

    # It comes back: partition-aware tasks carry on, the others were reported
    # LOST and are killed.
    fake.heartbeat = True
    running = pb.Task(task_id=pb.TaskID(value="t1"), framework_id=pb.FrameworkID(value=sched.framework_id),
                      slave_id=pb.SlaveID(value=fake.slave_id), state=pb.TASK_RUNNING,
                      resources=Resources.parse("cpus:1;mem:128").to_protos())
    fake.reregister(tasks=[running])
    if partition_aware:
        fake.expect_none(is_slave_event(SlaveEvent.KILL_TASK), 0.3)
        sched.call(Call.RECONCILE, reconcile=Call.Reconcile())
        assert sched.status("t1").state == pb.TASK_RUNNING
    else:
        assert fake.expect(is_slave_event(SlaveEvent.KILL_TASK)).kill_task.task_id.value == "t1"
        # Its end is acknowledged for the framework, which already heard TASK_LOST
        # and hears no second terminal state.
        uuid = fake.update(sched.framework_id, "t1", pb.TASK_KILLED)
        assert fake.expect(is_slave_event(SlaveEvent.ACKNOWLEDGE)).acknowledge.uuid == uuid
        sched.expect_none(is_update("t1", pb.TASK_KILLED), 0.3)


def test_unreachable_task_its_slave_does_not_report_on_coming_back_is_gone(make_master, peers):
    # Found by the chaos test: a launch that never reached the slave stayed
    # TASK_UNREACHABLE after the slave was back, and reconciliation said so for ever.
    master = make_master(slave_ping_timeout="200ms", max_slave_ping_timeouts=2)
    fake = peers(FakeSlave, master)
    fake.register()
    sched = peers(Scheduler, master)
    sched.subscribe(partition_aware=True)
    sched.launch_one(fake, "t1")
    fake.heartbeat = False
    assert sched.status("t1", pb.TASK_UNREACHABLE, timeout=5).reason == pb.TaskStatus.REASON_SLAVE_REMOVED
    fake.heartbeat = True
    fake.reregister(tasks=[])
    gone = sched.status("t1", pb.TASK_GONE)
    assert gone.reason == pb.TaskStatus.REASON_SLAVE_REREGISTERED and gone.slave_id.value == fake.slave_id
    sched.call(Call.RECONCILE, reconcile=Call.Reconcile(tasks=[Call.Reconcile.Task(
        task_id=pb.TaskID(value="t1"), slave_id=pb.SlaveID(value=fake.slave_id))]))
    assert sched.status("t1").state == pb.TASK_GONE
    assert http_json(master, "/metrics/snapshot")["master/tasks_unreachable"] == 0


def test_slave_that_says_goodbye_has_a_grace_period(make_master, peers):
    master = make_master(slave_ping_timeout="1secs")
    fake = peers(FakeSlave, master)
    fake.register()
    sched = peers(Scheduler, master)
    sched.subscribe()
    sched.launch_one(fake, "t1", "cpus:1;mem:128", refuse_seconds=0)
    offer = sched.offers()[0]  # the rest of the slave, offered again
    fake.sock.send_multipart([MAGIC, b"~bye"])  # e.g. the slave restarts
    assert sched.expect(is_event(Event.RESCIND)).rescind.offer_id.value == offer.id.value
    assert http_json(master, "/master/slaves")["slaves"][0]["active"] is False
    back = peers(FakeSlave, master)  # a new process, a new connection
    back.slave_id = fake.slave_id
    staging = pb.Task(task_id=pb.TaskID(value="t1"), framework_id=pb.FrameworkID(value=sched.framework_id),
                      slave_id=pb.SlaveID(value=fake.slave_id), state=pb.TASK_RUNNING,
                      resources=Resources.parse("cpus:1;mem:128").to_protos())
    back.reregister(tasks=[staging])
    sched.expect_none(is_update("t1"), 1.2)  # past the grace period: nothing lost
    assert http_json(master, "/metrics/snapshot")["master/slaves_unreachable"] == 0
    sched.call(Call.RECONCILE, reconcile=Call.Reconcile())
    assert sched.status("t1").state == pb.TASK_RUNNING


def test_framework_failover_within_timeout_keeps_tasks(make_master, peers):
    master = make_master(framework_timeout="300ms")
    fake = peers(FakeSlave, master)
    fake.register()
    sched = peers(Scheduler, master)
    sched.subscribe(failover_timeout=30)
    sched.launch_one(fake, "t1")
    sched.heartbeat = False
    fake.idle(0.8)  # past --framework_timeout: disconnected
    state = http_json(master, "/master/state")
    assert state["frameworks"][0]["connected"] is False
    assert state["frameworks"][0]["active"] is False

    again = peers(Scheduler, master)
    event = again.subscribe(framework_id=sched.framework_id, failover_timeout=30)
    assert event.type == Event.SUBSCRIBED and event.subscribed.resubscribed
    again.call(Call.RECONCILE, reconcile=Call.Reconcile())
    assert again.status("t1").state == pb.TASK_STAGING
    fake.expect_none(is_slave_event(SlaveEvent.SHUTDOWN_FRAMEWORK), 0.2)


def test_failover_timeout_expiry_kills_the_tasks(make_master, peers):
    master = make_master(framework_timeout="300ms")
    fake = peers(FakeSlave, master)
    fake.register()
    sched = peers(Scheduler, master)
    sched.subscribe(failover_timeout=0.3)
    sched.launch_one(fake, "t1")
    sched.close()  # gone without a word
    shutdown = fake.expect(is_slave_event(SlaveEvent.SHUTDOWN_FRAMEWORK), timeout=5)
    assert shutdown.shutdown_framework.framework_id.value == sched.framework_id
    state = http_json(master, "/master/state")
    assert state["frameworks"] == []
    (completed,) = state["completed_frameworks"]
    assert completed["completed_tasks"][0]["state"] == "TASK_KILLED"
    # Its id is spent.
    late = peers(Scheduler, master)
    assert "has been removed" in late.subscribe(framework_id=sched.framework_id).error.message


def test_second_connection_takes_over_the_framework(master, peers, slave):
    first = peers(Scheduler, master)
    first.subscribe(failover_timeout=60)
    second = peers(Scheduler, master)
    second.subscribe(framework_id=first.framework_id, failover_timeout=60)
    assert first.expect(is_event(Event.ERROR)).error.message == "Framework failed over"
    first.call(Call.REVIVE)
    assert "not subscribed on this connection" in first.expect(is_event(Event.ERROR)).error.message
    assert second.offers()


def test_teardown_shuts_the_framework_down(master, scheduler, slave):
    scheduler.launch_one(slave)
    scheduler.call(Call.TEARDOWN)
    shutdown = slave.expect(is_slave_event(SlaveEvent.SHUTDOWN_FRAMEWORK)).shutdown_framework
    assert shutdown.framework_id.value == scheduler.framework_id
    assert http_json(master, "/metrics/snapshot")["master/tasks_killed"] == 1


def test_unknown_framework_id_is_adopted_after_master_restart(master, peers, slave):
    # A scheduler that knew a previous master keeps its framework id.
    sched = peers(Scheduler, master)
    event = sched.subscribe(framework_id="old-master-0007")
    assert event.type == Event.SUBSCRIBED and sched.framework_id == "old-master-0007"


def test_reregistering_slave_brings_back_tasks_of_unknown_frameworks(master, peers):
    fake = peers(FakeSlave, master)
    fake.slave_id = "old-master-S3"
    info = pb.FrameworkInfo(name="web", user="u", id=pb.FrameworkID(value="old-master-0001"))
    running = pb.Task(task_id=pb.TaskID(value="w1"), framework_id=info.id, state=pb.TASK_RUNNING,
                      slave_id=pb.SlaveID(value=fake.slave_id), resources=Resources.parse("cpus:3;mem:1024").to_protos())
    fake.reregister(tasks=[running], frameworks=[info])
    (framework,) = http_json(master, "/master/state")["frameworks"]
    assert framework["id"] == "old-master-0001" and framework["active"] is False
    assert framework["tasks"][0]["state"] == "TASK_RUNNING"
    # Its resources are in use: a new framework is offered only the rest.
    sched = peers(Scheduler, master)
    sched.subscribe()
    assert Resources.from_protos(sched.offers()[0].resources) == Resources.parse("cpus:1;mem:3072")
    # The old scheduler comes back and finds its task.
    old = peers(Scheduler, master)
    assert old.subscribe(name="web", framework_id="old-master-0001").subscribed.resubscribed
    old.call(Call.RECONCILE, reconcile=Call.Reconcile())
    assert old.status("w1").state == pb.TASK_RUNNING
