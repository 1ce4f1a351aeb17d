"""The master daemon: wiring of the actor, the ZeroMQ server, HTTP and handlers.

One actor thread owns every record (`MasterState`), the allocator and the
ROUTER socket. Messages are dispatched on their type to one ``on_<type>``
handler in the module of their family (frameworks, slaves, offers, updates).
HTTP threads get immutable snapshots and post commands through the actor's
mailbox; they never read the records themselves.
"""

from __future__ import annotations

import argparse
import logging
import socket
import struct
import threading
import time
from typing import Callable, Iterable

import zmq

from offerd import __version__
from offerd.allocator import Allocator, create_allocator
from offerd.common import curve, exposure
from offerd.common.acls import Authorizer
from offerd.common.actor import Actor, Timer
from offerd.common.credentials import load_credentials
from offerd.common.flags import duration
from offerd.common.http import HttpServer
from offerd.common.http_auth import HttpAuth
from offerd.common.http_auth import install as install_http_auth
from offerd.common.ids import IdGenerator, new_master_id
from offerd.common.redact import redact_flags
from offerd.common.resources import parse_min_allocatable
from offerd.common.transport import Server, encode
from offerd.master import events, invariants
from offerd.master.allocation import RolePolicy, RunTimer, parse_roles, tune_gc
from offerd.master.flags import MASTER_FLAGS, normalize_flags, optional_duration
from offerd.master.frameworks import Frameworks
from offerd.master.http_api import create_app
from offerd.master.http_common import text_response
from offerd.master.http_leader import install_http
from offerd.master.leadership import Leadership
from offerd.master.maintenance import Maintenance
from offerd.master.metrics import CALL_COUNTERS, SLAVE_CALL_COUNTERS, Metrics
from offerd.master.metrics import snapshot as metrics_snapshot
from offerd.master.offers import Offers
from offerd.master.operator_events import MAX_SUBSCRIBERS, OperatorEvents
from offerd.master.scheduler_http import MAX_STREAMS
from offerd.master.slaves import Slaves
from offerd.master.snapshot import Snapshot, build, message_json
from offerd.master.state import Framework, MasterState, Slave
from offerd.master.updates import Updates
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

# Mesos' period of HEARTBEAT events, announced in SUBSCRIBED. Liveness itself is
# the transport's business (client heartbeats, echoed); these events are for
# schedulers written against Mesos that watch for them.
HEARTBEAT_INTERVAL = 15.0


class Master:
    """A master process: ``Master(flags).start()`` serves until ``stop()``."""

    def __init__(self, flags: argparse.Namespace, allocator: Allocator | None = None, rng=None,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL):
        self.flags = normalize_flags(flags)
        self._load_security()
        self.master_id = new_master_id()
        self.ids = IdGenerator(self.master_id)
        self.allocator = allocator or create_allocator(
            self.flags.allocator,
            min_allocatable_resources=parse_min_allocatable(self.flags.min_allocatable_resources),
            rng=rng,
            role_sorter=self.flags.role_sorter,
            framework_sorter=self.flags.framework_sorter,
            allocation_interval=self.flags.allocation_interval,
            agent_recovery_factor=self.flags.allocator_agent_recovery_factor,
            recovery_timeout=self.flags.allocator_recovery_timeout,
        )
        self.allowed_roles = parse_roles(self.flags.roles)
        self.allocation_timer = RunTimer()
        # Weights and quota: flags, then the registry (under --work_dir); told to the allocator now.
        self.roles = RolePolicy(self)
        self.roles.recover()
        self.state = MasterState(self.flags.max_completed_frameworks)
        self.metrics = Metrics()
        self.heartbeat_interval = heartbeat_interval
        self.frameworks = Frameworks(self)
        self.slaves = Slaves(self)
        self.offers = Offers(self)
        self.updates = Updates(self)
        self.maintenance = Maintenance(self)
        self.leadership = Leadership(self)
        self.operator_events = OperatorEvents(self)
        self.actor: Actor | None = None
        self.server: Server | None = None
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.zmq_port: int | None = None
        self.master_info: pb.MasterInfo | None = None
        self.start_time = time.time()
        # Bumped by every message and timer; a snapshot is rebuilt only when it moved.
        self.version = 0
        self._snapshot: Snapshot | None = None
        self._snapshot_version = -1
        self._allocation_pending = False
        self._allocation_requested_at = 0.0
        self._allocate_all = False
        self._allocation_slaves: set[str] = set()
        self._context: zmq.Context | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._info_json: dict | None = None
        self._flags_json = self._render_flags()
        # --check_invariants: the version last checked and the violations already logged.
        self._checked_version = -1
        self._known_violations: set[str] = set()
        C, S = pb.Call, pb.SlaveCall
        self._call_handlers: dict[int, Callable[[Framework, pb.Call], None]] = {
            C.TEARDOWN: self.frameworks.on_teardown,
            C.ACCEPT: self.offers.on_accept,
            C.DECLINE: self.offers.on_decline,
            C.REVIVE: self.offers.on_revive,
            C.SUPPRESS: self.offers.on_suppress,
            C.KILL: self.updates.on_kill,
            C.SHUTDOWN: self.updates.on_shutdown,
            C.ACKNOWLEDGE: self.updates.on_acknowledge,
            C.RECONCILE: self._on_reconcile,
            C.MESSAGE: self.updates.on_message,
            C.REQUEST: self._on_request,
            C.UPDATE_FRAMEWORK: self.frameworks.on_update_framework,
            C.ACCEPT_INVERSE_OFFERS: self.maintenance.on_accept,
            C.DECLINE_INVERSE_OFFERS: self.maintenance.on_decline,
        }
        self._slave_handlers: dict[int, Callable[[Slave, pb.SlaveCall], None]] = {
            S.UPDATE: self.updates.on_update,
            S.EXECUTOR_MESSAGE: self.updates.on_executor_message,
            S.EXITED_EXECUTOR: self.updates.on_exited_executor,
            S.UNREGISTER: self.slaves.on_unregister,
        }

    def _load_security(self) -> None:
        """Credentials, ACLs and keys from the flags; raises ValueError saying what to fix."""
        flags = self.flags
        self.credentials: dict[str, str] | None = load_credentials(flags.credentials) if flags.credentials else None
        for name in ("authenticate_frameworks", "authenticate_agents",
                     "authenticate_http_readonly", "authenticate_http_readwrite"):
            if getattr(flags, name) and self.credentials is None:
                raise ValueError(f"--{name} needs --credentials: a file of principals and secrets")
        self.authorizer = Authorizer.from_flag(flags.acls)
        self.curve_key = curve.load_key_pair(flags.zmq_key_file) if flags.zmq_key_file else None
        if bool(flags.ssl_cert_file) != bool(flags.ssl_key_file):
            raise ValueError("--ssl_cert_file and --ssl_key_file go together")
        missing = []
        if not (flags.authenticate_frameworks and flags.authenticate_agents):
            missing.append("authentication of schedulers and slaves "
                           "(--credentials, --authenticate_frameworks, --authenticate_agents)")
        if not (flags.authenticate_http_readonly and flags.authenticate_http_readwrite):
            missing.append("HTTP authentication (--authenticate_http_readonly, --authenticate_http_readwrite)")
        if self.curve_key is None:
            missing.append("ZeroMQ encryption (--zmq_key_file, from 'offerd keygen')")
        if not flags.ssl_cert_file:
            missing.append("HTTPS (--ssl_cert_file, --ssl_key_file)")
        self.exposure_missing = missing

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "Master":
        """Bind HTTP and ZeroMQ, start the actor; returns once both serve."""
        flags = self.flags
        exposure.check("master", flags.ip, self.exposure_missing, flags.insecure)
        self._context = zmq.Context()
        self.actor = Actor("master", self._context)
        self.start_time = time.time()
        app = create_app(self, getattr(flags, "webui_dir", None))
        # The guard runs before the standby redirects: a standby asks for credentials too.
        # /master/info and /master/redirect stay open: slaves and schedulers find the
        # leader through them before they can prove anything (ZooKeeper holds the same).
        public = frozenset({"/health", "/master/health", "/version", "/master/info", "/master/redirect",
                            "/openapi.json"})
        install_http_auth(app, HttpAuth(self.credentials, flags.authenticate_http_readonly,
                                        flags.authenticate_http_readwrite, "mesos-master",
                                        public_paths=public), text_response)
        install_http(app, self)
        # Each HTTP scheduler's event stream, and each operator event subscriber,
        # holds a worker thread of its own.
        self.http = HttpServer(app, flags.ip, flags.port, threads=8 + MAX_STREAMS + MAX_SUBSCRIBERS,
                               name="master-http",
                               ssl_cert_file=flags.ssl_cert_file, ssl_key_file=flags.ssl_key_file)
        self.http_port = self.http.port
        zmq_port = flags.zmq_port or (0 if flags.port == 0 else self.http_port + 1000)
        try:
            self.server = self._open_server(zmq_port)
        except zmq.ZMQError:
            self.http.close()
            raise
        self.zmq_port = self.server.port
        if self.leadership.enabled:
            # A standby has no ZeroMQ endpoint (bound only to learn the port):
            # a client that reaches it by a stale address hears nothing, drops
            # the connection and asks ZooKeeper again. Opened again when elected.
            self.server.close()
        self.master_info = self._make_master_info()
        self._info_json = message_json(self.master_info)
        self.actor.call_every(flags.allocation_interval, self._periodic_allocation)
        self.actor.call_every(self.heartbeat_interval, self._send_heartbeats)
        if flags.check_invariants:
            self.actor.after_each_turn(self._check_invariants)
        self.actor.start()
        self.http.start()
        self.actor.call(lambda: None)
        log.info("master %s serving HTTP on %s:%d and ZeroMQ on port %d", self.master_id, flags.ip,
                 self.http_port, self.zmq_port)
        try:
            self.leadership.start(self._info_json)
        except Exception:
            self.stop()
            raise
        # Startup and recovery done: the allocation cycles that follow should not
        # pay for collector scans of what lives for good (see allocation.tune_gc).
        tune_gc()
        return self

    def _open_server(self, zmq_port: int) -> Server:
        flags = self.flags
        return Server(
            self.actor, f"tcp://{flags.ip}:{zmq_port}", [pb.Call, pb.SlaveCall],
            self._on_message, on_peer_lost=self._on_peer_lost,
            # Unbound peers are harmless when dropped; a short default only
            # makes the liveness sweep fine-grained enough for the real timeouts.
            peer_timeout=min(flags.framework_timeout, self.slaves.timeout),
            max_message_bytes=flags.max_message_bytes,
            max_queue_bytes=flags.max_receive_queue_bytes,
            curve_key=self.curve_key,
            credentials=self.credentials.get if self.credentials is not None else None,
        )

    def open_server(self) -> None:
        """Bind the ZeroMQ endpoint again once elected (actor thread)."""
        self.server = self._open_server(self.zmq_port)

    def stop(self) -> None:
        """Stop serving. Safe from any thread and more than once: an abdicating
        leader stops itself from a thread while its owner may be stopping it too,
        and two concurrent context teardowns make libzmq abort the process."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self.leadership.stop()
        if self.http is not None:
            self.http.close()
        if self.actor is not None:
            self.actor.stop()
            self.actor.join(10)
            if not self.actor.stopped.is_set():
                # Closing sockets under a live actor thread would crash libzmq.
                log.warning("the master's actor thread did not stop within 10s; leaving its sockets open")
                return
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    def _make_master_info(self) -> pb.MasterInfo:
        ip = self.flags.ip
        if ip in ("0.0.0.0", ""):
            try:
                ip = socket.gethostbyname(socket.gethostname())
            except OSError:
                ip = "127.0.0.1"
        hostname = self.flags.hostname or socket.gethostname()
        info = pb.MasterInfo(
            id=self.master_id,
            # Mesos writes the in-memory (network order) bytes as a host uint32.
            ip=struct.unpack("<I", socket.inet_aton(ip))[0],
            port=self.http_port,
            pid=f"master@{ip}:{self.http_port}",
            hostname=hostname,
            version=__version__,
            zmq_port=self.zmq_port,
        )
        info.address.hostname = hostname
        info.address.ip = ip
        info.address.port = self.http_port
        return info

    # -- used by the handlers (actor thread) -------------------------------------------

    def touch(self) -> None:
        self.version += 1

    def later(self, delay: float, fn: Callable, *args) -> Timer:
        def run():
            self.version += 1
            fn(*args)
        return self.actor.call_later(delay, run)

    def send_event(self, framework: Framework, event: pb.Event) -> bool:
        if framework.peer is None or not self.server.send(framework.peer, event):
            self.metrics.inc("master/dropped_messages")
            return False
        return True

    def send_slave(self, slave: Slave, event: pb.SlaveEvent) -> bool:
        if slave.peer is None or not slave.connected or not self.server.send(slave.peer, event):
            self.metrics.inc("master/dropped_messages")
            return False
        return True

    def send_to_peer(self, peer: bytes, message) -> bool:
        return self.server.send(peer, message)

    def request_allocation(self, slaves: Iterable[str] | None = None) -> None:
        """Run the allocator soon, once for all requests made meanwhile."""
        if slaves is None:
            self._allocate_all = True
        else:
            self._allocation_slaves.update(slaves)
        if not self._allocation_pending:
            self._allocation_pending = True
            self._allocation_requested_at = time.perf_counter()
            self.actor.call_soon(self._requested_allocation)

    def _requested_allocation(self) -> None:
        self._allocation_pending = False
        self.allocation_timer.latency.record((time.perf_counter() - self._allocation_requested_at) * 1000)
        slaves = None if self._allocate_all else self._allocation_slaves
        self._allocate_all = False
        self._allocation_slaves = set()
        if slaves is None or slaves:
            self.offers.allocate(slaves)

    def _periodic_allocation(self) -> None:
        self.offers.allocate(None)

    def _send_heartbeats(self) -> None:
        frames = encode(pb.Event(type=pb.Event.HEARTBEAT))
        for framework in self.state.frameworks.values():
            if framework.peer is not None:
                self.server.send_raw(framework.peer, frames)
        self.operator_events.heartbeat(stall_timeout=max(30.0, 2 * self.heartbeat_interval))

    # -- dispatch ------------------------------------------------------------------------

    def _on_message(self, peer: bytes, message) -> None:
        if not self.leadership.is_leader:
            # A standby (or an abdicated leader) never acts; clients find the
            # leader through ZooKeeper or a standby's /master/info.
            self.metrics.inc("master/messages_while_not_leading")
            return
        self.version += 1
        try:
            if type(message) is pb.Call:
                self._on_call(peer, message)
            else:
                self._on_slave_call(peer, message)
        except Exception:
            # A bug: the handler stopped half-way. Say which message did it, then
            # rebuild consistent books (see invariants.repair) so the next
            # message finds a sane master rather than the half-done change.
            self.metrics.inc("master/handler_failures")
            log.exception("handling %s from peer %s (principal %s) failed; restoring consistent records",
                          _message_name(message), peer.hex(), self._principal_text(peer))
            self._repair()

    def _repair(self) -> None:
        try:
            found = invariants.repair(self)
        except Exception:
            log.exception("could not restore consistent records")
            return
        for problem in found:
            log.warning("repaired after the failure: %s", problem)
        left = invariants.violations(self)
        for problem in left:
            log.error("accounting invariant violated: %s (not repaired)", problem)

    def _on_call(self, peer: bytes, call: pb.Call) -> None:
        kind = call.type
        counter = CALL_COUNTERS.get(kind)
        if counter is not None:
            self.metrics.counters[counter] += 1
        if kind == pb.Call.SUBSCRIBE:
            if self.allowed_roles is not None and not self._roles_allowed(peer, call):
                return
            self.frameworks.on_subscribe(peer, call)
            return
        handler = self._call_handlers.get(kind)
        if handler is None:
            self.metrics.inc("master/invalid_calls")
            log.warning("call of unknown type %d from peer %s", kind, peer.hex())
            self.send_to_peer(peer, events.error(f"Unknown call type {kind}: this master accepts "
                                                 + ", ".join(pb.Call.Type.keys()[1:])))
            return
        framework_id = call.framework_id.value
        framework = self.state.framework_for_peer(peer, framework_id)
        if framework is None:
            # Calls are bound to the connection that subscribed the framework: a
            # framework id alone (known, guessed or stolen) gives nothing.
            self.metrics.inc("master/invalid_calls")
            log.info("refused %s for framework %s from peer %s (principal %s): not subscribed on that connection",
                     pb.Call.Type.Name(kind), framework_id or "(none)", peer.hex(), self._principal_text(peer))
            self.send_to_peer(peer, events.error(
                f"Framework {framework_id or '(no framework_id)'} is not subscribed on this connection; "
                f"{pb.Call.Type.Name(kind)} refused"))
            return
        handler(framework, call)

    def _on_slave_call(self, peer: bytes, call: pb.SlaveCall) -> None:
        kind = call.type
        counter = SLAVE_CALL_COUNTERS.get(kind)
        if counter is not None:
            self.metrics.counters[counter] += 1
        if kind == pb.SlaveCall.REGISTER:
            self.slaves.on_register(peer, call)
            return
        if kind == pb.SlaveCall.REREGISTER:
            self.slaves.on_reregister(peer, call)
            return
        handler = self._slave_handlers.get(kind)
        if handler is None:
            self.metrics.inc("master/invalid_calls")
            log.warning("slave call of unknown type %d from peer %s", kind, peer.hex())
            self.send_to_peer(peer, events.slave_error(
                f"Unknown slave call type {kind}: this master accepts "
                + ", ".join(pb.SlaveCall.Type.keys()[1:])))
            return
        slave = self.state.slave_for_peer(peer)
        if slave is None or (call.slave_id.value and call.slave_id.value != slave.slave_id):
            if kind == pb.SlaveCall.UPDATE:
                self.metrics.inc("master/invalid_status_updates")
            else:
                self.metrics.inc("master/invalid_calls")
            log.info("refused %s for slave %s from peer %s (principal %s): not registered on that connection",
                     pb.SlaveCall.Type.Name(kind), call.slave_id.value or "(none)", peer.hex(),
                     self._principal_text(peer))
            self.send_to_peer(peer, events.slave_error(
                f"Slave {call.slave_id.value or '(no slave_id)'} is not registered on this connection; "
                "reregister"))
            return
        handler(slave, call)

    def _check_invariants(self) -> None:
        """--check_invariants: after a turn that changed something, check the books;
        each violation is logged once (while it lasts) and counted."""
        if self.version == self._checked_version:
            return
        self._checked_version = self.version
        problems = invariants.violations(self)
        for problem in problems:
            if problem not in self._known_violations:
                self.metrics.inc("master/invariant_violations")
                log.error("accounting invariant violated: %s", problem)
        self._known_violations = set(problems)

    def _principal_text(self, peer: bytes) -> str:
        principal = self.server.principal(peer)
        return repr(principal) if principal is not None else "(none)"

    def _roles_allowed(self, peer: bytes, call: pb.Call) -> bool:
        info = call.subscribe.framework_info
        roles = tuple(info.roles) if len(info.roles) else (info.role or "*",)
        refused = sorted(set(roles) - self.allowed_roles)
        if refused:
            self.metrics.inc("master/invalid_calls")
            log.info("refused SUBSCRIBE from peer %s (principal %s): role(s) %s not in --roles", peer.hex(),
                     self._principal_text(peer), ", ".join(refused))
            self.send_to_peer(peer, events.error(
                f"Role(s) {', '.join(refused)} not allowed: --roles is {self.flags.roles}"))
            return False
        return True

    def _on_reconcile(self, framework: Framework, call: pb.Call) -> None:
        # Tasks on slaves expected back after a failover are not answered yet
        # (as Mesos does): the slave's reregistration will tell their state.
        recovering = self.leadership.recovering
        if recovering and len(call.reconcile.tasks):
            wanted = [t for t in call.reconcile.tasks if t.slave_id.value not in recovering]
            if len(wanted) != len(call.reconcile.tasks):
                if not wanted:
                    return
                filtered = pb.Call()
                filtered.CopyFrom(call)
                del filtered.reconcile.tasks[:]
                filtered.reconcile.tasks.extend(wanted)
                call = filtered
        self.updates.on_reconcile(framework, call)

    def _on_request(self, framework: Framework, call: pb.Call) -> None:
        # Mesos never acted on resource requests either; the allocator decides.
        log.debug("framework %s sent a resource request; ignored", framework.framework_id)

    def _on_peer_lost(self, peer: bytes) -> None:
        self.version += 1
        try:
            self._peer_lost(peer)
        except Exception:
            self.metrics.inc("master/handler_failures")
            log.exception("handling the loss of peer %s failed; restoring consistent records", peer.hex())
            self._repair()

    def _peer_lost(self, peer: bytes) -> None:
        for framework_id in list(self.state.peer_frameworks.get(peer, ())):
            framework = self.state.frameworks.get(framework_id)
            if framework is not None and framework.peer == peer:
                self.frameworks.disconnected(framework)
        self.state.peer_frameworks.pop(peer, None)
        slave = self.state.slave_for_peer(peer)
        if slave is not None and slave.peer == peer:
            self.slaves.disconnected(slave)

    # -- for HTTP threads ------------------------------------------------------------------

    def read_snapshot(self) -> Snapshot:
        return self.actor.call(self._current_snapshot)

    def _current_snapshot(self) -> Snapshot:
        if self._snapshot is None or self._snapshot_version != self.version:
            self._snapshot = build(self)
            self._snapshot_version = self.version
        return self._snapshot

    def read_metrics(self) -> dict:
        return self.actor.call(metrics_snapshot, self)

    def info_json(self) -> dict:
        return self._info_json

    def flags_json(self) -> dict:
        return self._flags_json

    def redirect_url(self) -> str | None:
        """The leading master's base URL (None while no leader is known)."""
        info = self.leadership.leader_info()
        if not info:
            return None
        address = info.get("address") or {}
        # Masters of one cluster share their TLS set-up, so the leader speaks ours.
        scheme = "https" if self.flags.ssl_cert_file else "http"
        host = address.get("hostname") or info.get("hostname")
        return f"{scheme}://{host}:{address.get('port') or info.get('port')}/"

    def teardown(self, framework_id: str) -> str | None:
        """Operator teardown; returns an error text or None."""
        return self.actor.call(self._teardown, framework_id)

    def _teardown(self, framework_id: str) -> str | None:
        self.version += 1
        framework = self.state.frameworks.get(framework_id)
        if framework is None:
            return f"No framework found with specified ID {framework_id}"
        log.info("operator tears down framework %s", framework_id)
        self.frameworks.remove(framework)
        return None

    def _render_flags(self) -> dict[str, str]:
        out = {}
        for flag in MASTER_FLAGS:
            value = getattr(self.flags, flag.name, None)
            if value is None:
                continue
            if flag.type in (duration, optional_duration):
                out[flag.name] = f"{value:g}secs"
            elif isinstance(value, bool):
                out[flag.name] = str(value).lower()
            else:
                out[flag.name] = str(value)
        # /master/flags and /master/state show these: no zk password, no secret.
        return redact_flags(out)


def _message_name(message) -> str:
    """``Call.ACCEPT``, ``SlaveCall.UPDATE``: the type of a message, for the logs."""
    enum = type(message).Type
    name = enum.Name(message.type) if message.type in enum.values() else str(message.type)
    return f"{type(message).__name__}.{name}"
