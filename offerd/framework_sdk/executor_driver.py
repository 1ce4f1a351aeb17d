"""The executor driver: an executor's connection to the slave that started it.

The slave starts the executor with its address and the ids in the environment
(``MESOS_SLAVE_ENDPOINT``, ``MESOS_FRAMEWORK_ID``, ``MESOS_EXECUTOR_ID``, as
Mesos executors find theirs). The driver subscribes, delivers LAUNCH / KILL /
MESSAGE / SHUTDOWN to the :class:`~offerd.framework_sdk.interface.Executor`
callbacks on its own thread, and carries status updates to the slave.

Status updates are the part that must not be lost: each keeps its uuid until the
slave answers ACKNOWLEDGED. After a reconnection the driver resubscribes with the
updates and the tasks the slave has not acknowledged, so a slave that restarted
(with ``--recover=reconnect``) learns what happened while it was away. If the
slave stays away longer than ``MESOS_RECOVERY_TIMEOUT`` (15 minutes by default),
the executor is shut down: ``shutdown()`` is called and the driver stops.

The slave hands each executor a secret (``MESOS_EXECUTOR_AUTHENTICATION_TOKEN``,
as Mesos names it), the container id it proves it with (``MESOS_CONTAINER_ID``)
and the public key of its encrypted endpoint (``OFFERD_SLAVE_PUBLIC_KEY``). The
driver authenticates with them before subscribing, and takes the token out of
the process environment, so the tasks the executor starts do not inherit it.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass

from offerd.common import curve
from offerd.common.actor import Actor
from offerd.common.credentials import Credential, CredentialError
from offerd.common.flags import duration
from offerd.common.transport import Client
from offerd.framework_sdk import interface
from offerd.framework_sdk._driver import ABORTED, RUNNING, DriverBase
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

__all__ = ["ExecutorDriver", "MesosExecutorDriver"]

ExecutorCall = pb.ExecutorCall
ExecutorEvent = pb.ExecutorEvent

DEFAULT_RECOVERY_TIMEOUT = 15 * 60.0
TOKEN_VARIABLE = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
PUBLIC_KEY_VARIABLE = "OFFERD_SLAVE_PUBLIC_KEY"


@dataclass(frozen=True)
class _Config:
    """What the slave tells its executor through the environment."""

    endpoint: str
    framework_id: str
    executor_id: str
    slave_id: str
    recovery_timeout: float
    credential: Credential | None = None
    slave_public_key: bytes | None = None

    @classmethod
    def from_environment(cls, env) -> "_Config":
        endpoint = env.get("MESOS_SLAVE_ENDPOINT") or env.get("MESOS_AGENT_ENDPOINT")
        missing = [name for name, value in (
            ("MESOS_SLAVE_ENDPOINT", endpoint),
            ("MESOS_FRAMEWORK_ID", env.get("MESOS_FRAMEWORK_ID")),
            ("MESOS_EXECUTOR_ID", env.get("MESOS_EXECUTOR_ID")),
        ) if not value]
        if missing:
            raise ValueError(
                f"expecting {', '.join(missing)} in the environment: an executor is started "
                "by an offerd slave, which sets them")
        if "://" not in endpoint:
            endpoint = f"tcp://{endpoint}"
        timeout = DEFAULT_RECOVERY_TIMEOUT
        if env.get("MESOS_RECOVERY_TIMEOUT"):
            timeout = duration(env["MESOS_RECOVERY_TIMEOUT"])
        credential = None
        if env.get(TOKEN_VARIABLE):
            container_id = env.get("MESOS_CONTAINER_ID") or env.get("OFFERD_CONTAINER_ID")
            if not container_id:
                raise ValueError(f"{TOKEN_VARIABLE} is set but MESOS_CONTAINER_ID, the principal it "
                                 "authenticates, is not: an executor is started by an offerd slave, which sets both")
            try:
                credential = Credential(container_id, env[TOKEN_VARIABLE])
            except CredentialError as exc:
                raise ValueError(f"MESOS_CONTAINER_ID: {exc}") from None
        public_key = None
        if env.get(PUBLIC_KEY_VARIABLE):
            try:
                public_key = curve.public_key(env[PUBLIC_KEY_VARIABLE])
            except curve.KeyFileError as exc:
                raise ValueError(f"{PUBLIC_KEY_VARIABLE}: {exc}") from None
        return cls(endpoint, env["MESOS_FRAMEWORK_ID"], env["MESOS_EXECUTOR_ID"],
                   env.get("MESOS_SLAVE_ID", ""), timeout, credential, public_key)


class ExecutorDriver(DriverBase, interface.ExecutorDriver):
    """Connects an :class:`~offerd.framework_sdk.interface.Executor` to its slave.

    ``ExecutorDriver(executor)``, as ``mesos.native.MesosExecutorDriver``. The
    optional `environment` (a mapping, default ``os.environ`` read at ``start``)
    stands in for the process environment, as in Mesos' C++ driver.
    """

    heartbeat_interval = 1.0
    max_missed_heartbeats = 5
    # stop() waits this long for the slave to take pending status updates, so
    # "send TASK_FINISHED, then stop" does not lose the update.
    drain_timeout = 3.0
    # An update the slave has not acknowledged in this time is sent again.
    update_retry_interval = 10.0

    def __init__(self, executor, environment=None):
        super().__init__("executor driver")
        self._executor = executor
        self._environment = environment
        self._config: _Config | None = None
        # Driver-thread state.
        self._client: Client | None = None
        self._subscribed = False
        self._ever_subscribed = False
        self._slave_id = pb.SlaveID()
        # uuid -> [TaskStatus, monotonic time last sent]; unacknowledged, in order.
        self._updates: collections.OrderedDict[bytes, list] = collections.OrderedDict()
        # task id -> TaskInfo for tasks with no acknowledged update yet.
        self._tasks: collections.OrderedDict[str, pb.TaskInfo] = collections.OrderedDict()
        self._recovery_timer = None

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        with self._cond:
            if self._status != pb.DRIVER_NOT_STARTED:
                return self._status
            env = os.environ if self._environment is None else self._environment
            _line_buffer_output()
            try:
                self._config = _Config.from_environment(env)
            except ValueError as exc:
                self._set_status(ABORTED)
                error = str(exc)
            else:
                if self._environment is None:
                    # The executor's own processes (its tasks) must not inherit its secret.
                    os.environ.pop(TOKEN_VARIABLE, None)
                error = None
                self._start_thread()
                self._set_status(RUNNING)
        if error is not None:
            log.error("executor driver aborted: %s", error)
            self._call_guarded(self._executor, "error", error)
            return ABORTED
        return RUNNING

    def _start_thread(self) -> None:
        config = self._config
        if config.slave_id:
            self._slave_id.value = config.slave_id
        self._actor = Actor(f"executor-driver[{config.executor_id}]")
        self._client = Client(
            self._actor,
            lambda: config.endpoint,
            [pb.ExecutorEvent, pb.ProtocolError],
            self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            heartbeat_interval=self.heartbeat_interval,
            max_missed=self.max_missed_heartbeats,
            name=f"executor-driver[{config.executor_id}]",
            server_key=config.slave_public_key,
            credential=config.credential,
            on_auth_failed=self._on_auth_failed,
        )
        self._actor.call_soon(self._client.start)
        # Never reaching the slave counts as losing it.
        self._actor.call_soon(self._arm_recovery_timer)
        self._actor.call_soon(self._actor.call_every, self.update_retry_interval, self._retry_updates)
        self._start_callbacks(self._actor)
        self._actor.start()

    def stop(self):
        return self._begin_stop(self._shutdown, time.monotonic() + self.drain_timeout)

    def _wait_closed(self) -> None:
        actor = self._actor
        if actor is not None and not actor.in_actor_thread():
            actor.stopped.wait(self.drain_timeout + self.close_timeout)

    # -- calls ----------------------------------------------------------------

    def sendStatusUpdate(self, status):
        copy = pb.TaskStatus()
        copy.CopyFrom(status)
        return self._post(self._send_update, copy)

    def sendFrameworkMessage(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self._post(self._send_message, bytes(data))

    # -- on the driver thread: outgoing ---------------------------------------

    def _call(self, kind: int) -> ExecutorCall:
        call = ExecutorCall(type=kind)
        call.executor_id.value = self._config.executor_id
        call.framework_id.value = self._config.framework_id
        return call

    def _send_update(self, status: pb.TaskStatus) -> None:
        if status.state == pb.TASK_STAGING:
            self._fail(self._executor, "Attempted to send TASK_STAGING status update")
            return
        status.executor_id.value = self._config.executor_id
        if self._slave_id.value:
            status.slave_id.CopyFrom(self._slave_id)
        status.source = pb.TaskStatus.SOURCE_EXECUTOR
        status.timestamp = time.time()
        # A fresh uuid per send, as Mesos: a TaskStatus object reused for two
        # updates must not look like one update delivered twice.
        status.uuid = uuid.uuid4().bytes
        self._updates[status.uuid] = [status, 0.0]
        if self._subscribed:
            self._transmit(status.uuid)

    def _transmit(self, update_uuid: bytes) -> None:
        entry = self._updates[update_uuid]
        call = self._call(ExecutorCall.UPDATE)
        call.update.status.CopyFrom(entry[0])
        if self._client.send(call):
            entry[1] = time.monotonic()

    def _retry_updates(self) -> None:
        if not self._subscribed:
            return
        now = time.monotonic()
        for update_uuid, (status, sent) in list(self._updates.items()):
            if now - sent >= self.update_retry_interval:
                log.info("resending unacknowledged update %s of task %s",
                         pb.TaskState.Name(status.state), status.task_id.value)
                self._transmit(update_uuid)

    def _send_message(self, data: bytes) -> None:
        if not self._subscribed:
            log.warning("sendFrameworkMessage dropped: not connected to the slave")
            return
        call = self._call(ExecutorCall.MESSAGE)
        call.message.data = data
        self._client.send(call)

    def _shutdown(self, deadline: float) -> None:
        if self._updates and self._subscribed and time.monotonic() < deadline:
            self._actor.call_later(0.05, self._shutdown, deadline)
            return
        if self._updates:
            log.warning("stopping with %d status update(s) the slave has not acknowledged",
                        len(self._updates))
        self._subscribed = False
        self._cancel_recovery_timer()
        self._client.close()
        # A moment for ZeroMQ's I/O thread to put the goodbye on the wire.
        self._actor.call_later(0.1, self._actor.stop)

    # -- on the driver thread: connection -------------------------------------

    def _on_auth_failed(self, reason: str) -> None:
        # The slave no longer knows this executor's token (it ended the executor, or
        # restarted without recovering it): retrying cannot succeed.
        self._client.close()
        self._cancel_recovery_timer()
        self._fail(self._executor, f"Slave refused authentication: {reason}")

    def _on_connected(self) -> None:
        call = self._call(ExecutorCall.SUBSCRIBE)
        call.subscribe.unacknowledged_tasks.extend(self._tasks.values())
        call.subscribe.unacknowledged_updates.extend(entry[0] for entry in self._updates.values())
        now = time.monotonic()
        for entry in self._updates.values():
            entry[1] = now  # the SUBSCRIBE carries them
        self._client.send(call)

    def _on_disconnected(self) -> None:
        was_subscribed, self._subscribed = self._subscribed, False
        self._arm_recovery_timer()
        if was_subscribed:
            log.info("disconnected from the slave; waiting up to %.0fs for it to come back",
                     self._config.recovery_timeout)
            self._invoke(self._executor, "disconnected")

    def _arm_recovery_timer(self) -> None:
        if self._recovery_timer is None:
            self._recovery_timer = self._actor.call_later(self._config.recovery_timeout, self._recovery_timed_out)

    def _cancel_recovery_timer(self) -> None:
        if self._recovery_timer is not None:
            self._recovery_timer.cancel()
            self._recovery_timer = None

    def _recovery_timed_out(self) -> None:
        self._recovery_timer = None
        if self._subscribed or self._status != RUNNING:
            return
        log.warning("no slave for %.0fs (MESOS_RECOVERY_TIMEOUT): shutting down", self._config.recovery_timeout)
        self._invoke(self._executor, "shutdown", then=self.stop)

    # -- on the driver thread: events -----------------------------------------

    def _on_message(self, message) -> None:
        if isinstance(message, pb.ProtocolError):
            self._fail(self._executor, f"the slave refused a message ({message.kind}): {message.message}")
            return
        if message.type == ExecutorEvent.ACKNOWLEDGED:
            self._on_acknowledged(message)  # bookkeeping, wanted even while stopping
            return
        if self._status != RUNNING:
            return
        handler = self._handlers.get(message.type)
        if handler is None:
            log.warning("ignoring event of unknown type %d", message.type)
            return
        if message.type not in (ExecutorEvent.SUBSCRIBED, ExecutorEvent.ERROR) and not self._subscribed:
            log.debug("ignoring %s: not subscribed", ExecutorEvent.Type.Name(message.type))
            return
        handler(self, message)

    def _on_subscribed(self, event: ExecutorEvent) -> None:
        subscribed = event.subscribed
        self._cancel_recovery_timer()
        if subscribed.slave_info.id.value:
            self._slave_id.CopyFrom(subscribed.slave_info.id)
        already, self._subscribed = self._subscribed, True
        if already:
            return
        # Updates sent while we were waiting for SUBSCRIBED were not in the SUBSCRIBE.
        for update_uuid, entry in list(self._updates.items()):
            if entry[1] == 0.0:
                self._transmit(update_uuid)
        first, self._ever_subscribed = not self._ever_subscribed, True
        log.info("executor %s %s", self._config.executor_id, "registered" if first else "reregistered")
        if first:
            self._invoke(self._executor, "registered", subscribed.executor_info,
                         subscribed.framework_info, subscribed.slave_info)
        else:
            self._invoke(self._executor, "reregistered", subscribed.slave_info)

    def _on_launch(self, event: ExecutorEvent) -> None:
        task = event.launch.task
        if task.task_id.value in self._tasks:
            log.warning("ignoring a second LAUNCH of task %s", task.task_id.value)
            return
        self._tasks[task.task_id.value] = task
        self._invoke(self._executor, "launchTask", task)

    def _on_kill(self, event: ExecutorEvent) -> None:
        self._invoke(self._executor, "killTask", event.kill.task_id)

    def _on_acknowledged(self, event: ExecutorEvent) -> None:
        entry = self._updates.pop(event.acknowledged.uuid, None)
        if entry is None:
            log.debug("acknowledgement of an unknown update of task %s", event.acknowledged.task_id.value)
            return
        self._tasks.pop(event.acknowledged.task_id.value, None)

    def _on_message_event(self, event: ExecutorEvent) -> None:
        self._invoke(self._executor, "frameworkMessage", event.message.data)

    def _on_shutdown(self, event: ExecutorEvent) -> None:
        log.info("the slave asked executor %s to shut down", self._config.executor_id)
        self._invoke(self._executor, "shutdown", then=self.stop)

    def _on_error(self, event: ExecutorEvent) -> None:
        self._fail(self._executor, event.error.message)

    _handlers = {
        ExecutorEvent.SUBSCRIBED: _on_subscribed,
        ExecutorEvent.LAUNCH: _on_launch,
        ExecutorEvent.KILL: _on_kill,
        ExecutorEvent.MESSAGE: _on_message_event,
        ExecutorEvent.SHUTDOWN: _on_shutdown,
        ExecutorEvent.ERROR: _on_error,
    }


MesosExecutorDriver = ExecutorDriver


def _line_buffer_output() -> None:
    # As Mesos' driver does: an executor's stdout and stderr are files in its
    # sandbox, and block buffering would hide what it printed until it exits.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError, OSError):
            pass  # replaced or closed streams are left alone
