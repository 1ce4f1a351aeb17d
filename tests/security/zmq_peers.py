"""Real ZeroMQ peers for an in-process master with authentication on.

Each peer is the real `offerd.common.transport.Client` (DEALER, heartbeats, the
challenge-response handshake) on its own actor thread, proving a principal from
`SECRETS` or none at all, and playing a scheduler or a slave at the wire level,
so the tests pin what the master does with a proven (or missing) identity.

Ordering without clocks: a master handles one connection's messages in order and
sends to one connection in order. So a refusal answered to an attacker proves the
attack was handled, and a scheduler's RECONCILE answered afterwards proves that
anything the attack made the master send that scheduler has arrived before it.
"""

from __future__ import annotations

import json
import threading
import time

import zmq

from offerd.common.actor import Actor
from offerd.common.credentials import Credential
from offerd.common.ids import new_uuid
from offerd.common.resources import Resources
from offerd.common.transport import Backoff, Client
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb

Call, Event, SlaveCall, SlaveEvent = pb.Call, pb.Event, pb.SlaveCall, pb.SlaveEvent
LAUNCH = pb.Offer.Operation.LAUNCH

SECRETS = {
    "alice": "alice-secret",
    "mallory": "mallory-secret",
    "slave1": "slave1-secret",
    "slave2": "slave2-secret",
}


def credential(principal: str) -> Credential:
    return Credential(principal, SECRETS[principal])


def start_master(tmp_path, **flags) -> Master:
    """A real master on free loopback ports that knows the principals of SECRETS."""
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in SECRETS.items()]}))
    values = dict(port=0, allocation_interval="100ms", framework_timeout="5secs", slave_ping_timeout="2secs",
                  max_slave_ping_timeouts=3, credentials=str(path))
    values.update(flags)
    return Master(master_flags(**values)).start()


def cluster_of_peers(tmp_path, **defaults):
    """For a fixture to `yield from`: (start, peer). start(acls=None, **flags) -> a
    master with `defaults` under `flags`; peer(cls, principal) -> a connected peer
    of the first master. Everything made is stopped afterwards."""
    made = []

    def start(acls=None, **flags):
        if acls is not None:
            flags["acls"] = json.dumps(acls)
        made.append(start_master(tmp_path, **{**defaults, **flags}))
        return made[-1]

    def peer(cls, principal=None):
        made.append(cls(made[0], principal))
        return made[-1]

    try:
        yield start, peer
    finally:
        for thing in reversed(made):
            (thing.close if hasattr(thing, "close") else thing.stop)()


def metric(master: Master, key: str) -> float:
    return master.read_metrics().get(key, 0)


def is_event(kind):
    return lambda m: isinstance(m, Event) and m.type == kind


def is_slave_event(kind):
    return lambda m: isinstance(m, SlaveEvent) and m.type == kind


def is_update(task_id, state=None):
    return lambda m: (isinstance(m, Event) and m.type == Event.UPDATE
                      and m.update.status.task_id.value == task_id
                      and (state is None or m.update.status.state == state))


def task_info(task_id, resources="cpus:1;mem:128", user=None) -> pb.TaskInfo:
    task = pb.TaskInfo(name=task_id, task_id=pb.TaskID(value=task_id), command=pb.CommandInfo(value="sleep 100"),
                       resources=Resources.parse(resources).to_protos())
    if user is not None:
        task.command.user = user
    return task


class Peer:
    """A transport Client that keeps what it receives until a test claims it."""

    accepted: tuple = ()

    def __init__(self, master: Master, principal: str | None = None):
        self.principal = principal
        self.actor = Actor(f"test-{type(self).__name__.lower()}-{principal or 'anonymous'}", zmq.Context.instance())
        self.inbox: list = []
        self.auth_failures: list[str] = []
        self._changed = threading.Condition()
        self._connected = threading.Event()
        self.client = Client(self.actor, lambda: f"tcp://127.0.0.1:{master.zmq_port}", self.accepted,
                             self._received, on_connected=self._connected.set, heartbeat_interval=0.2,
                             max_missed=25, backoff=Backoff(0.05, 0.2),
                             credential=credential(principal) if principal else None,
                             on_auth_failed=self.auth_failures.append)
        self.actor.call_soon(self.client.start)
        self.actor.start()
        if not self._connected.wait(10):
            raise AssertionError(f"{self.actor.name} did not connect: {self.auth_failures}")

    def _received(self, message) -> None:
        with self._changed:
            self.inbox.append(message)
            self._changed.notify_all()

    def send(self, message) -> None:
        assert self.actor.call(self.client.send, message), "not connected"

    def expect(self, match, timeout: float = 10.0):
        """The first message that matches (removed from the inbox)."""
        return self.until(match, timeout)[-1]

    def until(self, match, timeout: float = 10.0) -> list:
        """Every message up to and including the first match (all removed)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i, message in enumerate(self.inbox):
                    if match(message):
                        taken = self.inbox[:i + 1]
                        del self.inbox[:i + 1]
                        return taken
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.actor.name}: nothing expected arrived in {timeout}s; "
                                         f"inbox: {self.inbox}")
                self._changed.wait(remaining)

    def close(self) -> None:
        self.actor.stop()
        self.actor.join(5)


class Scheduler(Peer):
    accepted = (pb.Event, pb.ProtocolError)
    framework_id = ""

    def subscribe(self, name="fw", framework_id=None, principal=None, user="tester", roles=None,
                  failover_timeout=60.0) -> pb.Event:
        info = pb.FrameworkInfo(name=name, user=user, failover_timeout=failover_timeout)
        if principal is not None:
            info.principal = principal
        if framework_id:
            info.id.value = framework_id
        if roles:
            info.roles.extend(roles)
        self.send(Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info)))
        event = self.expect(lambda m: isinstance(m, Event) and m.type in (Event.SUBSCRIBED, Event.ERROR))
        if event.type == Event.SUBSCRIBED:
            self.framework_id = event.subscribed.framework_id.value
        return event

    def call(self, kind, **fields) -> None:
        self.send(Call(type=kind, framework_id=pb.FrameworkID(value=self.framework_id), **fields))

    def offers(self) -> list[pb.Offer]:
        return list(self.expect(is_event(Event.OFFERS)).offers.offers)

    def accept(self, offer_ids, tasks, refuse_seconds=None) -> None:
        accept = Call.Accept(offer_ids=[pb.OfferID(value=o) for o in offer_ids])
        accept.operations.add(type=LAUNCH).launch.task_infos.extend(tasks)
        if refuse_seconds is not None:
            accept.filters.refuse_seconds = refuse_seconds
        self.call(Call.ACCEPT, accept=accept)

    def reconcile(self, task_id: str) -> tuple[pb.TaskStatus, list]:
        """The master's answer for one task, and what arrived before it."""
        self.call(Call.RECONCILE, reconcile=Call.Reconcile(tasks=[Call.Reconcile.Task(
            task_id=pb.TaskID(value=task_id))]))
        before = self.until(lambda m: is_update(task_id)(m)
                            and m.update.status.reason == pb.TaskStatus.REASON_RECONCILIATION)
        return before[-1].update.status, before[:-1]


class FakeSlave(Peer):
    accepted = (pb.SlaveEvent, pb.ProtocolError)
    slave_id = ""

    @staticmethod
    def info(resources="cpus:4;mem:4096", hostname="h1") -> pb.SlaveInfo:
        return pb.SlaveInfo(hostname=hostname, port=5051, ip="127.0.0.1",
                            resources=Resources.parse(resources).to_protos())

    def register(self) -> pb.SlaveEvent:
        self.send(SlaveCall(type=SlaveCall.REGISTER,
                            register=SlaveCall.Register(slave_info=self.info(), version="t")))
        event = self.expect(lambda m: isinstance(m, SlaveEvent) and m.type in (SlaveEvent.REGISTERED,
                                                                                SlaveEvent.ERROR))
        if event.type == SlaveEvent.REGISTERED:
            self.slave_id = event.registered.slave_id.value
        return event

    def reregister(self, slave_id: str, tasks=(), frameworks=()) -> pb.SlaveEvent:
        info = self.info()
        info.id.value = slave_id
        self.send(SlaveCall(type=SlaveCall.REREGISTER, slave_id=pb.SlaveID(value=slave_id),
                            reregister=SlaveCall.Reregister(slave_info=info, tasks=list(tasks),
                                                            frameworks=list(frameworks), version="t")))
        event = self.expect(lambda m: isinstance(m, SlaveEvent) and m.type in (SlaveEvent.REREGISTERED,
                                                                                SlaveEvent.ERROR))
        if event.type == SlaveEvent.REREGISTERED:
            self.slave_id = slave_id
        return event

    def run_tasks(self) -> list:
        return list(self.expect(is_slave_event(SlaveEvent.RUN_TASK)).run_tasks)

    def update(self, framework_id, task_id, state, uuid=None) -> bytes:
        uuid = new_uuid() if uuid is None else uuid
        status = pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=state, uuid=uuid,
                               source=pb.TaskStatus.SOURCE_EXECUTOR, timestamp=time.time())
        self.send(SlaveCall(type=SlaveCall.UPDATE, slave_id=pb.SlaveID(value=self.slave_id),
                            update=SlaveCall.Update(framework_id=pb.FrameworkID(value=framework_id),
                                                    status=status)))
        return uuid
