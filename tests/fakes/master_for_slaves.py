"""A fake master for testing the slave, and the slaves under test against it (no tests here).

FakeMaster is a protocol-level stand-in for the master: a real ZeroMQ ROUTER
(offerd.common.transport.Server) plus a real HTTP `/master/info`, so the slave
under test runs its real transport, detector and protocol code. A fake and not
the real master because a test must see every SlaveCall and choose every
SlaveEvent (withhold acknowledgements, send kills, restart the connection),
which the real master does by its own rules. The real master is tested end to
end elsewhere (tests/integration/test_e2e.py and the cluster suites).

Fixtures (registered for every suite by tests/conftest.py's `pytest_plugins`;
a module's own `master` fixture takes precedence): `master` (a FakeMaster),
`start_slave` (real slaves against it) and `container_slave` (real slaves with
the chosen isolation, whose teardown checks that no cgroup is left behind).
"""

from __future__ import annotations

import glob
import itertools
import os
import threading
import time
import uuid

import pytest
import zmq
from flask import Flask, jsonify

from offerd.common.actor import Actor
from offerd.common.http import HttpServer
from offerd.common.transport import Server
from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.containerizer import cgroups
from offerd.slave.flags import make_flags
from offerd.slave.status_updates import is_terminal
from tests.support import wait_for

Event = pb.SlaveEvent
Call = pb.SlaveCall
FRAMEWORK_ID = "F1"
HIERARCHIES = cgroups.detect()  # None without cgroups
IS_ROOT = os.geteuid() == 0


class FakeMaster:
    """The master's slave endpoint and `/master/info`; registers slaves and acknowledges
    updates unless told not to (`auto_register`, `auto_ack`)."""

    def __init__(self, auto_register: bool = True, auto_ack: bool = True):
        self.auto_register = auto_register
        self.auto_ack = auto_ack
        self.calls: list[tuple[float, bytes, pb.SlaveCall]] = []
        self.peers: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.actor = Actor("fake-master", zmq.Context.instance())
        self.server = self._new_server()
        app = Flask("fake-master")
        app.get("/master/info")(lambda: jsonify(self.info()))
        self.http = HttpServer(app, "127.0.0.1", 0, threads=2, name="fake-master-http")
        self.address = f"127.0.0.1:{self.http.port}"
        self.actor.start()
        self.http.start()

    def info(self) -> dict:
        return {"id": "fake", "hostname": "localhost", "port": int(self.http.port),
                "address": {"hostname": "localhost", "ip": "127.0.0.1", "port": int(self.http.port)},
                "zmq_port": self.server.port}

    def _new_server(self) -> Server:
        return Server(self.actor, "tcp://127.0.0.1:0", [pb.SlaveCall], self._on_message, peer_timeout=30)

    def close(self) -> None:
        self.actor.stop()
        self.actor.join(5)
        self.http.close()

    def restart_connection(self) -> None:
        """Drop every slave's connection, as a master failover does: a new port."""
        def swap():
            self.server.close()
            self.server = self._new_server()
        self.actor.call(swap)

    # -- the actor side -----------------------------------------------------------

    def _on_message(self, peer: bytes, call: pb.SlaveCall) -> None:
        with self._lock:
            self.calls.append((time.monotonic(), peer, call))
        if call.type == Call.REGISTER and self.auto_register:
            self.register(peer)
        elif call.type == Call.REREGISTER and self.auto_register:
            slave_id = call.reregister.slave_info.id.value
            self.peers[slave_id] = peer
            self.server.send(peer, Event(type=Event.REREGISTERED, registered=Event.Registered(
                slave_id=pb.SlaveID(value=slave_id))))
        elif call.type == Call.UPDATE and self.auto_ack:
            self.server.send(peer, ack_event(call))

    def register(self, peer: bytes) -> str:
        slave_id = f"fake-S{next(self._ids)}"
        self.peers[slave_id] = peer
        self.server.send(peer, Event(type=Event.REGISTERED, registered=Event.Registered(
            slave_id=pb.SlaveID(value=slave_id), master_info=pb.MasterInfo(id="fake", hostname="localhost"))))
        return slave_id

    # -- used by tests -----------------------------------------------------------------

    def send(self, slave_id: str, event: pb.SlaveEvent) -> None:
        self.actor.call(self.server.send, self.peers[slave_id], event)

    def received(self, call_type=None) -> list[pb.SlaveCall]:
        with self._lock:
            return [call for _, _, call in self.calls if call_type is None or call.type == call_type]

    def wait_call(self, call_type, predicate=lambda call: True, timeout=10.0) -> pb.SlaveCall:
        def found():
            return next((c for c in self.received(call_type) if predicate(c)), None)
        found.__name__ = f"a {Call.Type.Name(call_type)} call"
        return wait_for(found, timeout, interval=0.02)

    def updates(self, task_id: str) -> list[pb.SlaveCall]:
        return [c for c in self.received(Call.UPDATE) if c.update.status.task_id.value == task_id]

    def states(self, task_id: str) -> list[str]:
        """The task's updates in arrival order, resends removed."""
        seen, out = set(), []
        for call in self.updates(task_id):
            if call.update.status.uuid not in seen:
                seen.add(call.update.status.uuid)
                out.append(pb.TaskState.Name(call.update.status.state))
        return out

    def wait_terminal(self, task_id: str, timeout=10.0) -> pb.TaskStatus:
        def terminal():
            return next((c.update.status for c in self.updates(task_id) if is_terminal(c.update.status.state)), None)
        terminal.__name__ = f"a terminal update of task {task_id}"
        return wait_for(terminal, timeout, interval=0.02)

    def wait_state(self, task_id: str, state: int, timeout=10.0) -> pb.TaskStatus:
        def arrived():
            return next((c.update.status for c in self.updates(task_id) if c.update.status.state == state), None)
        arrived.__name__ = f"{pb.TaskState.Name(state)} of task {task_id}"
        return wait_for(arrived, timeout, interval=0.02)

    def acknowledge(self, slave_id: str, call: pb.SlaveCall) -> None:
        self.send(slave_id, ack_event(call))


def ack_event(call: pb.SlaveCall) -> pb.SlaveEvent:
    update = call.update
    return Event(type=Event.ACKNOWLEDGE, acknowledge=Event.Acknowledge(
        framework_id=update.framework_id, task_id=update.status.task_id, uuid=update.status.uuid))


def slave_flags(master: FakeMaster, work_dir, **overrides):
    values = dict(
        master=master.address, port=0, work_dir=str(work_dir), hostname="test-host",
        resources="cpus:2;mem:1024;disk:2048;ports:[31000-31010]", attributes="rack:r1;ssd:true",
        status_update_retry_interval=0.3, status_update_retry_max=2.0, heartbeat_interval=0.2,
        registration_backoff_factor=0.2, executor_shutdown_grace_period=1.0,
    )
    values.update(overrides)
    return make_flags(**values)


def framework_info(*capabilities, framework_id=FRAMEWORK_ID) -> pb.FrameworkInfo:
    info = pb.FrameworkInfo(id=pb.FrameworkID(value=framework_id), name="test-framework", user="root")
    for capability in capabilities:
        info.capabilities.add(type=capability)
    return info


def command_task(task_id: str, command: str, grace: float | None = None, **kwargs) -> pb.TaskInfo:
    task = pb.TaskInfo(name=task_id, task_id=pb.TaskID(value=task_id), command=pb.CommandInfo(value=command), **kwargs)
    task.resources.add(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=0.1))
    if grace is not None:
        task.kill_policy.grace_period.nanoseconds = int(grace * 1e9)
    return task


def run_task(task: pb.TaskInfo, framework: pb.FrameworkInfo | None = None) -> pb.SlaveEvent:
    return Event(type=Event.RUN_TASK, run_task=Event.RunTask(
        framework_info=framework or framework_info(), task=task))


def kill_task(task_id: str, framework_id: str = FRAMEWORK_ID) -> pb.SlaveEvent:
    return Event(type=Event.KILL_TASK, kill_task=Event.KillTask(
        framework_id=pb.FrameworkID(value=framework_id), task_id=pb.TaskID(value=task_id)))


@pytest.fixture
def master():
    fake = FakeMaster()
    yield fake
    fake.close()


@pytest.fixture
def start_slave(master, tmp_path):
    """start_slave(**flag_overrides) -> a started Slave against `master`, stopped at teardown."""
    started = []

    def start(**overrides) -> Slave:
        slave = Slave(slave_flags(master, tmp_path / "work", **overrides)).start()
        started.append(slave)
        return slave

    yield start
    for slave in started:
        slave.stop()


# -- slaves with containers ------------------------------------------------------------


def offerd_cgroups(root_name: str) -> list[str]:
    """The cgroups under `root_name` in every mounted hierarchy."""
    if HIERARCHIES is None:
        return []
    return [path for mount in set(HIERARCHIES.mounts.values())
            for path in glob.glob(os.path.join(mount, root_name, "*")) if os.path.isdir(path)]


@pytest.fixture
def container_slave(master, tmp_path):
    """container_slave(isolation, **flags) -> a started Slave; at teardown every
    slave stops and no cgroup under the test's --cgroups_root may remain."""
    started: list[Slave] = []
    root_name = f"offerd-test-{uuid.uuid4().hex[:8]}"

    def start(isolation: str = "posix/cpu,posix/mem", **overrides) -> Slave:
        overrides.setdefault("cgroups_root", root_name)
        overrides.setdefault("fetcher_cache_dir", str(tmp_path / "fetch-cache"))
        slave = Slave(slave_flags(master, tmp_path / f"work{len(started)}", isolation=isolation,
                                  **overrides)).start()
        started.append(slave)
        wait_for(lambda: slave.slave_id, 10)
        return slave

    yield start
    for slave in started:
        slave.stop()
    left = offerd_cgroups(root_name)
    for path in left:
        cgroups.remove(path)
    for mount in set(HIERARCHIES.mounts.values()) if HIERARCHIES else ():
        try:
            os.rmdir(os.path.join(mount, root_name))
        except OSError:
            pass
    assert left == [], f"cgroups left behind: {left}"


def task(task_id: str, command: str, cpus: float = 0.1, mem: float = 64, **kwargs) -> pb.TaskInfo:
    """A command task with cpus and mem (what an isolator limits)."""
    info = command_task(task_id, command, **kwargs)
    del info.resources[:]
    info.resources.add(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=cpus))
    info.resources.add(name="mem", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=mem))
    return info


def sandbox(slave: Slave, task_id: str) -> str:
    """The sandbox of the task's (command) executor, once the slave made it."""
    pattern = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", "F1",
                           "executors", task_id, "runs", "*")
    return wait_for(lambda: glob.glob(pattern), 5)[0]


def read_when(path: str, timeout: float = 10.0) -> str:
    """The file's text once it exists and ends with a full line."""
    wait_for(lambda: os.path.exists(path) and open(path).read().endswith("\n"), timeout)
    return open(path).read()
