"""The slave daemon: one SlaveCore on an actor, an executor ROUTER and an HTTP server."""

from __future__ import annotations

import logging
import os
import threading

from offerd.common import curve, exposure
from offerd.common.actor import Actor
from offerd.common.flags import flags_as_dict
from offerd.common.http import HttpServer
from offerd.common.redact import redact_flags
from offerd.common.transport import Server
from offerd.proto import offerd_pb2 as pb
from offerd.slave import containerizer as containerizers
from offerd.slave import state as slave_state
from offerd.slave.containerizer.posix import cleanup_orphans, process_statistics, recorded_containers
from offerd.slave.core import MasterLink, SlaveCore, exposure_gaps
from offerd.slave.recovery import check_boot_id
from offerd.common.flags import FlagError
from offerd.slave.containerizer.isolator import IsolatorError
from offerd.slave.flags import SLAVE_FLAGS, unimplemented_isolators, validate
from offerd.slave import executor_http
from offerd.slave.http_api import create_app, http_security
from offerd.slave.owners import owners
from offerd.slave.operator_api import kill_container
from offerd.slave.operator_api_containers import ContainerWaits
from offerd.slave import container_sessions
from offerd.slave.machine import default_hostname, load_attributes, load_resources
from offerd.slave.registration import build_slave_info
from offerd.slave.sandbox import base_environment

log = logging.getLogger(__name__)

EXECUTOR_PORT_OFFSET = 1000
# Executors heartbeat like any transport client; this is how long a silent one
# keeps its place before it counts as disconnected (its process may still run).
EXECUTOR_PEER_TIMEOUT = 30.0


class Slave:
    """`start()` brings the slave up and registers it; `stop()` takes it down
    (leaving checkpointing frameworks' tasks running under --recover=reconnect),
    `shutdown()` also kills those and unregisters. `slave_id` is None until the
    master has (re)registered it."""

    def __init__(self, flags):
        self.flags = flags
        self.http_port: int | None = None
        self.executor_port: int | None = None
        self.slave_id: str | None = None
        self.shutdown_reason: str | None = None
        # Why the slave ended itself, e.g. "Master refused authentication: ..." (exit non-zero).
        self.failure: str | None = None
        self.executor_key: tuple[bytes, bytes] | None = None
        self.actor: Actor | None = None
        self.core: SlaveCore | None = None
        self._http: HttpServer | None = None
        self._containerizer = None
        self.container_waits = ContainerWaits()
        self.container_sessions = container_sessions.ContainerSessions()   # v1 LAUNCH_NESTED_CONTAINER_SESSION
        self.container_waits.listeners.append(self.container_sessions.parent_ended)
        self._executor_server: Server | None = None
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._running = False  # the actor thread is up
        self.stopped = threading.Event()

    def start(self) -> "Slave":
        flags = validate(self.flags)
        exposure.check("slave", flags.ip, exposure_gaps(flags), flags.insecure)
        link = MasterLink.from_flags(flags)
        os.makedirs(flags.work_dir, exist_ok=True)
        resources = load_resources(flags.resources, flags.work_dir)
        attributes = load_attributes(flags.attributes)
        for name in unimplemented_isolators(flags):
            log.warning("isolator %s is not available in this build: the slave runs without it", name)
        if flags.containerizer == "simulated" and flags.isolation != "posix/cpu,posix/mem":
            log.warning("--isolation=%s is ignored by the simulated containerizer", flags.isolation)

        self.actor = actor = Actor("slave")
        if flags.containerizer == "posix":
            check_boot_id(flags.work_dir)
        try:
            self._containerizer = containerizers.create(flags.containerizer, actor, flags.work_dir, flags)
        except IsolatorError as exc:
            raise FlagError(f"--isolation={flags.isolation}: {exc}") from None
        self._containerizer = self.container_waits.watch(self._containerizer)  # for v1 WAIT_CONTAINER
        try:
            endpoint = self._open_endpoints(actor)
        except Exception:
            self.stop()
            raise
        info = build_slave_info(flags.hostname or default_hostname(flags.ip), flags.ip, self.http_port,
                                resources, attributes)
        self.core = SlaveCore(
            actor, flags, info, flags.work_dir, self._containerizer,
            executor_server=self._executor_server, executor_endpoint=endpoint,
            on_shutdown=self._shut_down_by_master, on_registered=self._registered,
            base_environment=base_environment(os.environ, flags.executor_environment_variables), link=link,
            executor_public_key=self.executor_key[0] if self.executor_key is not None else None,
            on_auth_refused=self._auth_refused, resources=resources,
        )
        # Recovery runs before the actor thread exists, so it owns the books alone.
        kept = self.core.recover() if flags.containerizer == "posix" else set()
        if flags.containerizer == "posix":
            orphans = recorded_containers(flags.work_dir) - kept
            cleanup_orphans(flags.work_dir, keep=kept)
            self._containerizer.recovered(kept, orphans)
        self.core.start()
        actor.start()
        self._running = True
        self._http.start()
        log.info("slave listening on %s://%s:%d%s, resources %s", self._http.scheme, flags.ip, self.http_port,
                 f", executors on {endpoint}" if endpoint else "", resources)
        return self

    def _open_endpoints(self, actor: Actor) -> str | None:
        """Bind the HTTP server and, unless simulated, the executor ROUTER."""
        flags = self.flags
        # Each HTTP executor's event stream holds a worker thread (offerd.slave.executor_http).
        self._http = HttpServer(create_app(_View(self), *http_security(flags)), flags.ip, flags.port,
                                threads=8 + executor_http.MAX_STREAMS + container_sessions.MAX_STREAMS,
                                name="slave-http", ssl_cert_file=flags.ssl_cert_file,
                                ssl_key_file=flags.ssl_key_file)
        self.http_port = self._http.port
        if self._containerizer.simulated:
            return None
        port = flags.executor_port or (flags.port + EXECUTOR_PORT_OFFSET if flags.port else 0)
        # Always encrypted and authenticated (executor tokens): executors on this machine
        # must not read or impersonate each other. The key pair outlives restarts, so
        # executors of checkpointing frameworks can reconnect to the next run.
        key_file = flags.zmq_key_file or os.path.join(flags.work_dir, "meta", "executor.key_secret")
        try:
            self.executor_key = curve.ensure_key_pair(key_file)
        except (OSError, curve.KeyFileError) as exc:
            raise FlagError(f"--zmq_key_file={key_file}: {exc}") from None
        self._executor_server = Server(
            actor, f"tcp://{flags.ip}:{port}", [pb.ExecutorCall],
            on_message=lambda peer, call: self.core.executors.on_call(peer, call),
            on_peer_lost=lambda peer: self.core.executors.on_peer_lost(peer),
            peer_timeout=EXECUTOR_PEER_TIMEOUT,
            curve_key=self.executor_key, credentials=self._executor_token,
        )
        self.executor_port = self._executor_server.port
        return f"tcp://{flags.ip}:{self.executor_port}"

    def stop(self) -> None:
        """Stop the slave (SIGTERM). Tasks of non-checkpointing frameworks are
        killed; with --recover=reconnect those of checkpointing frameworks keep
        running, and the next start on the same work_dir reattaches them (Mesos'
        agent does the same). Safe from any thread, repeatable."""
        keep = getattr(self.flags, "recover", "reconnect") == "reconnect" and self.flags.containerizer == "posix"
        self._stop(lambda core: core.stop(keep_checkpointed=keep))

    def shutdown(self) -> None:
        """Shut the slave down (SIGUSR1): unregister from the master, kill every
        task and executor, forget the slave id (the next start registers anew)."""
        self._stop(lambda core: core.shutdown())

    def _stop(self, stop_core) -> None:
        if self._running and self.actor.in_actor_thread():
            # The actor cannot wait for itself to stop.
            threading.Thread(target=self._stop, args=(stop_core,), name="slave-stop", daemon=True).start()
            return
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            if self._running:
                try:
                    self.actor.call(stop_core, self.core, timeout=5.0)
                except TimeoutError:
                    log.warning("the slave's actor did not answer; stopping anyway")
                self.actor.stop()
                self.actor.join(5.0)
            elif self._executor_server is not None:
                self._executor_server.close()
            self.container_waits.close()  # a blocked WAIT_CONTAINER must not hold the HTTP server up
            self.container_sessions.close()
            if self._http is not None:
                self._http.close()
            if self._containerizer is not None:
                self._containerizer.close()
        finally:
            self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the slave has stopped (e.g. the master shut it down)."""
        return self.stopped.wait(timeout)

    # -- actor thread ---------------------------------------------------------

    def _executor_token(self, container_id: str) -> str | None:
        core = self.core
        if core is None or core.executors is None:
            return None
        return core.executors.token(container_id)

    def _auth_refused(self, message: str) -> None:
        self.failure = message
        self.stop()

    def _registered(self, slave_id: str) -> None:
        self.slave_id = slave_id

    def _shut_down_by_master(self, reason: str) -> None:
        self.shutdown_reason = reason
        self.slave_id = None
        self.stop()


class _View:
    """What the HTTP API reads, fetched from the actor thread."""

    def __init__(self, slave: Slave):
        self._slave = slave
        self.work_dir = slave.flags.work_dir

    def _call(self, fn, *args):
        return self._slave.actor.call(fn, self._slave.core, *args)

    def state(self, index: int | None) -> dict | None:
        if index not in (None, 1):
            return None
        return self._call(slave_state.slave_state, self._slave.http_port, self.flags())

    def flags(self) -> dict:
        # /flags and /state show these: no zk password, no secret.
        return redact_flags(flags_as_dict(self._slave.flags, SLAVE_FLAGS))

    def metrics(self) -> dict:
        return self._call(slave_state.metrics)

    def owners(self) -> dict[str, dict]:
        return self._call(owners)

    # -- for the v1 operator API (offerd.slave.operator_api) --

    def on_actor(self, fn, *args):
        """fn(core, *args) on the actor thread."""
        return self._call(fn, *args)

    @property
    def actor(self):
        return self._slave.actor

    @property
    def executor_server(self) -> Server | None:
        return self._slave._executor_server

    @property
    def waits(self) -> ContainerWaits:
        return self._slave.container_waits

    @property
    def sessions(self) -> container_sessions.ContainerSessions:
        return self._slave.container_sessions

    def usage(self, container_id: str, pid: int | None) -> dict:
        containerizer = self._slave._containerizer
        return containerizer.usage(container_id, pid) if not containerizer.simulated else process_statistics(pid)

    def kill_container(self, container_id: str, signal: int) -> tuple[int, str] | None:
        return self._call(kill_container, container_id, signal)

    def statistics(self) -> list[dict]:
        targets = self._call(slave_state.usage_targets)
        out = []
        for target in targets:
            pid = target.pop("pid")
            container_id = target.pop("container_id")
            # Reading cgroups and /proc runs here, on the HTTP thread, never stalling the actor.
            containerizer = self._slave._containerizer
            target["statistics"] = (containerizer.usage(container_id, pid) if not containerizer.simulated
                                    else process_statistics(pid))
            out.append(target)
        return out
