"""Protocol-level stand-ins for the SDK's peers: a master and a slave endpoint.

Fakes, on purpose: the SDK's own rules (acknowledgement, dedup, failover,
lifecycle) are easier to pin down against a peer that does exactly what a test
says, when the real master and slave follow their own rules and timing. The
real master and slave are exercised end to end with the SDK in
tests/integration/test_sdk_*.py. Both fakes speak the real wire format through
offerd.common.transport.Server, and the master fake serves the real
``/master/info`` lookup over HTTP, so the driver code under test is unchanged.
Recorder, RecordingScheduler and RecordingExecutor record the driver's callbacks.
"""

from __future__ import annotations

import json
import threading
import time

import zmq

from offerd.common.actor import Actor
from offerd.common.http import HttpServer
from offerd.common.transport import Server
from offerd.framework_sdk import Executor, Scheduler
from offerd.proto import offerd_pb2 as pb


class _Endpoint:
    """A ROUTER on its own actor that records what arrives and can answer."""

    accepted: type = pb.Call
    name = "fake"

    def __init__(self, port: int = 0):
        self.received: list = []
        self.lost_peers: list[bytes] = []
        self.peer: bytes | None = None
        self._cond = threading.Condition()
        self._open(port)

    def _open(self, port: int) -> None:
        self.actor = Actor(f"{self.name}-endpoint", zmq.Context.instance())
        self.server = Server(self.actor, f"tcp://127.0.0.1:{port}", [self.accepted],
                             self._on_message, on_peer_lost=self.lost_peers.append)
        self.port = self.server.port
        self.actor.start()

    def _on_message(self, peer: bytes, message) -> None:
        with self._cond:
            self.received.append(message)
            self._cond.notify_all()
        self.handle(peer, message)

    def handle(self, peer: bytes, message) -> None:
        """Answer a message (on the endpoint's thread); subclasses script this."""

    def send(self, message, peer: bytes | None = None) -> bool:
        return self.actor.call(lambda: self.server.send(peer or self.peer, message))

    def send_raw(self, frames: list[bytes]) -> bool:
        return self.actor.call(lambda: self.server.send_raw(self.peer, frames))

    def of_type(self, kind: int) -> list:
        with self._cond:
            return [m for m in self.received if m.type == kind]

    def wait(self, kind: int, count: int = 1, timeout: float = 5.0):
        """The `count`-th message of type `kind`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [m for m in self.received if m.type == kind]
                if len(matching) >= count:
                    return matching[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [type(m).Type.Name(m.type) for m in self.received]
                    raise AssertionError(f"no {count} message(s) of type {kind}; got {kinds}")
                self._cond.wait(left)

    def go_down(self) -> None:
        self.actor.stop()
        self.actor.join(5)

    def close(self) -> None:
        self.go_down()


class FakeMaster(_Endpoint):
    """The master's scheduler endpoint: answers SUBSCRIBE, records every Call."""

    accepted = pb.Call
    name = "fake-master"

    def __init__(self):
        self.subscribe_error: str | None = None
        self.auto_subscribe = True
        self._framework_ids = iter(f"fake-master-{n:04d}" for n in range(1000))
        super().__init__()
        self.http = HttpServer(self._wsgi, "127.0.0.1", 0, threads=2, name="fake-master-http").start()
        self.http_port = int(self.http.port)
        self.master = f"127.0.0.1:{self.http_port}"

    def _wsgi(self, environ, start_response):
        if environ.get("PATH_INFO") != "/master/info":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        # The MasterInfo JSON a real master serves, with the ZeroMQ port of the
        # endpoint as it is *now*: a restarted master may come back elsewhere.
        info = {
            "id": "fake-master", "hostname": "localhost", "port": self.http_port, "version": "test",
            "address": {"hostname": "localhost", "ip": "127.0.0.1", "port": self.http_port},
            "zmq_port": self.port,
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(info).encode()]

    def handle(self, peer: bytes, call: pb.Call) -> None:
        if call.type != pb.Call.SUBSCRIBE or not self.auto_subscribe:
            return
        self.peer = peer
        if self.subscribe_error is not None:
            self.server.send(peer, pb.Event(type=pb.Event.ERROR, error=pb.Event.Error(message=self.subscribe_error)))
            return
        event = pb.Event(type=pb.Event.SUBSCRIBED)
        event.subscribed.framework_id.value = call.framework_id.value or next(self._framework_ids)
        event.subscribed.heartbeat_interval_seconds = 15
        event.subscribed.resubscribed = bool(call.framework_id.value)
        event.subscribed.master_info.id = "fake-master"
        event.subscribed.master_info.hostname = "localhost"
        event.subscribed.master_info.port = self.http_port
        event.subscribed.master_info.zmq_port = self.port
        self.server.send(peer, event)

    def restart(self, down_for: float = 0.0) -> None:
        """Lose all connections; come back on a new port after `down_for` seconds."""
        self.go_down()
        time.sleep(down_for)
        self.peer = None
        self._open(0)

    def close(self) -> None:
        super().close()
        self.http.close()


class FakeSlave(_Endpoint):
    """The slave's executor endpoint: answers SUBSCRIBE, acknowledges UPDATEs."""

    accepted = pb.ExecutorCall
    name = "fake-slave"

    def __init__(self):
        self.auto_ack = True
        self.subscriptions = 0
        super().__init__()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def environment(self, executor_id="exec-1", framework_id="fw-1", **extra) -> dict:
        env = {
            "MESOS_SLAVE_ENDPOINT": self.endpoint,
            "MESOS_FRAMEWORK_ID": framework_id,
            "MESOS_EXECUTOR_ID": executor_id,
            "MESOS_SLAVE_ID": "fake-S0",
        }
        env.update(extra)
        return env

    def handle(self, peer: bytes, call: pb.ExecutorCall) -> None:
        if call.type == pb.ExecutorCall.SUBSCRIBE:
            self.peer = peer
            self.subscriptions += 1
            event = pb.ExecutorEvent(type=pb.ExecutorEvent.SUBSCRIBED)
            sub = event.subscribed
            sub.executor_info.executor_id.CopyFrom(call.executor_id)
            sub.executor_info.framework_id.CopyFrom(call.framework_id)
            sub.executor_info.name = "fake executor"
            sub.framework_info.id.CopyFrom(call.framework_id)
            sub.framework_info.name = "fake framework"
            sub.framework_info.user = "nobody"
            sub.slave_info.id.value = "fake-S0"
            sub.slave_info.hostname = "localhost"
            self.server.send(peer, event)
            # Updates handed over in SUBSCRIBE are the slave's from now on.
            for status in call.subscribe.unacknowledged_updates if self.auto_ack else ():
                self._ack(peer, status)
        elif call.type == pb.ExecutorCall.UPDATE and self.auto_ack:
            self._ack(peer, call.update.status)

    def _ack(self, peer: bytes, status: pb.TaskStatus) -> None:
        event = pb.ExecutorEvent(type=pb.ExecutorEvent.ACKNOWLEDGED)
        event.acknowledged.task_id.CopyFrom(status.task_id)
        event.acknowledged.uuid = status.uuid
        self.server.send(peer, event)

    def restart(self, down_for: float) -> None:
        """Go away for `down_for` seconds, then come back on the same port.

        Longer than the client's heartbeat timeout, or ZeroMQ would quietly
        reconnect the old socket and the driver would never notice.
        """
        self.go_down()
        time.sleep(down_for)
        self.peer = None
        self._open(self.port)


class Recorder:
    """Records callbacks as (name, args) and runs optional per-callback hooks."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []
        self.hooks: dict = {}
        self._cond = threading.Condition()

    def on(self, name: str, hook) -> "Recorder":
        self.hooks[name] = hook
        return self

    def _record(self, name: str, driver, *args) -> None:
        with self._cond:
            self.calls.append((name, args))
            self._cond.notify_all()
        hook = self.hooks.get(name)
        if hook is not None:
            hook(driver, *args)

    def names(self) -> list[str]:
        with self._cond:
            return [name for name, _ in self.calls]

    def args_of(self, name: str) -> list[tuple]:
        with self._cond:
            return [args for n, args in self.calls if n == name]

    def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> tuple:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [args for n, args in self.calls if n == name]
                if len(matching) >= count:
                    return matching[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count} {name}() callback(s); got {[n for n, _ in self.calls]}")
                self._cond.wait(left)


class RecordingScheduler(Recorder, Scheduler):
    def registered(self, driver, frameworkId, masterInfo):
        self._record("registered", driver, frameworkId, masterInfo)

    def reregistered(self, driver, masterInfo):
        self._record("reregistered", driver, masterInfo)

    def disconnected(self, driver):
        self._record("disconnected", driver)

    def resourceOffers(self, driver, offers):
        self._record("resourceOffers", driver, offers)

    def offerRescinded(self, driver, offerId):
        self._record("offerRescinded", driver, offerId)

    def statusUpdate(self, driver, status):
        self._record("statusUpdate", driver, status)

    def frameworkMessage(self, driver, executorId, slaveId, message):
        self._record("frameworkMessage", driver, executorId, slaveId, message)

    def slaveLost(self, driver, slaveId):
        self._record("slaveLost", driver, slaveId)

    def executorLost(self, driver, executorId, slaveId, status):
        self._record("executorLost", driver, executorId, slaveId, status)

    def error(self, driver, message):
        self._record("error", driver, message)


class RecordingExecutor(Recorder, Executor):
    def registered(self, driver, executorInfo, frameworkInfo, slaveInfo):
        self._record("registered", driver, executorInfo, frameworkInfo, slaveInfo)

    def reregistered(self, driver, slaveInfo):
        self._record("reregistered", driver, slaveInfo)

    def disconnected(self, driver):
        self._record("disconnected", driver)

    def launchTask(self, driver, task):
        self._record("launchTask", driver, task)

    def killTask(self, driver, taskId):
        self._record("killTask", driver, taskId)

    def frameworkMessage(self, driver, message):
        self._record("frameworkMessage", driver, message)

    def shutdown(self, driver):
        self._record("shutdown", driver)

    def error(self, driver, message):
        self._record("error", driver, message)
