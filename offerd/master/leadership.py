"""Leading or standing by: election, registry recovery, failover bookkeeping.

Without ``--zk`` the master leads at once and keeps no HA registry. With
``--zk`` every master contends (offerd/common/election.py); until elected it is
a *standby*: it serves read-only HTTP (``/master/info`` and ``/master/state``
name the leader), redirects leader-only endpoints with 307 (503 while no leader
is known) and ignores protocol messages. Once elected it

1. recovers the registry (``--registry=zk``: the znode ``<zk path>/registry``;
   ``in_memory``: empty) and writes its MasterInfo into it first, which fences
   an old leader (its next versioned write fails and it abdicates);
2. tells the allocator the weights and quota, remembers unreachable and gone
   slaves, and expects every admitted slave to reregister within
   ``--slave_reregister_timeout``; those that do not are marked unreachable
   (at most ``--slave_removal_rate_limit``);
3. starts each framework's ``failover_timeout`` from the registry: a framework
   whose scheduler does not resubscribe in time is removed, its tasks killed.

Frameworks and tasks are not in the registry: the new leader rebuilds them from
slave reregistrations and scheduler resubscriptions.

A leader that loses its ZooKeeper session, or its connection to ZooKeeper (the
session may expire any moment after), **abdicates by exiting the process** with
status 1, as a Mesos master aborts; a supervisor (systemd, the tests) restarts
it and it contends again as a standby. Two leaders therefore never act together.

A master that cannot reach ZooKeeper when it starts does not exit: it stands
by, logs "waiting for ZooKeeper at ..." and tries again every
ZK_RETRY_INTERVAL seconds on a thread of its own until it can contend.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from offerd.common.election import ElectionError, create_contender, parse_zk_url, znode_acl
from offerd.master import events
from offerd.master.flags import removal_rate
from offerd.master.registry import Registrar, RegistryError, VersionMismatch
from offerd.master.registry_membership import (AddFramework, AdmitSlave, ClusterRegistryState, MarkSlaveGone,
                                               MarkSlaveReachable, MarkSlaveUnreachable, RemoveFramework,
                                               RemoveSlave, SetLeader)
from offerd.master.registry_zookeeper import HAInMemoryBackend, ZooKeeperBackend
from offerd.master.state import UnreachableSlave
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

# How long a master started while ZooKeeper is unreachable waits between attempts
# (each attempt itself waits up to the session timeout for a connection).
ZK_RETRY_INTERVAL = 1.0
class Leadership:
    def __init__(self, master: Master):
        self.master = master
        flags = master.flags
        self.enabled = bool(flags.zk)
        self.is_leader = False
        self.elected_time: float | None = None
        self.contender = None
        self.detector = None
        self.registrar: Registrar | None = None
        # Admitted slaves (from the registry) not reregistered since election.
        self.recovering: set[str] = set()
        self.abdicated = threading.Event()
        # A master process exits on abdication; tests running masters in
        # process set this False and watch `abdicated`.
        self.exit_on_abdicate = True
        # Set by stop(); the ZooKeeper wait loop ends on it. The lock orders a
        # contender made while stopping against stop() closing it.
        self._stopped = threading.Event()
        self._contend_lock = threading.Lock()
        self.rate = removal_rate(getattr(flags, "slave_removal_rate_limit", None))
        self._removals: collections.deque[float] = collections.deque()
        self._waiting_removals: collections.deque = collections.deque()
        self._drain_timer = None

    # -- election -------------------------------------------------------------------

    def start(self, info_json: dict) -> None:
        if not self.enabled:
            self.is_leader = True
            self.elected_time = time.time()
            return
        parse_zk_url(self.master.flags.zk)   # a malformed URL stops the master now: waiting would never fix it
        try:
            self._contend(info_json)
        except ElectionError as exc:
            # ZooKeeper is down or unreachable: serve as a standby (HTTP says no
            # leader is known) and keep trying, as Mesos masters do, rather than exit.
            threading.Thread(target=self._wait_for_zookeeper, args=(info_json, exc), name="zk-wait",
                             daemon=True).start()

    def _contend(self, info_json: dict) -> None:
        flags = self.master.flags
        contender = create_contender(flags.zk, flags.zk_session_timeout)
        with self._contend_lock:
            if self._stopped.is_set():
                contender.withdraw()  # stopped while connecting: this client must not linger
                return
            self.contender = contender
        self.detector = contender.detector
        contender.on_elected = lambda: self.master.actor.call_soon(self._elected)
        contender.on_lost = self.abdicate
        try:
            contender.contend(info_json)
        except Exception:
            # Connected but could not stand (ZooKeeper went away again): close this
            # client, the next attempt makes a new one.
            with self._contend_lock:
                self.contender = self.detector = None
            contender.withdraw()
            raise
        log.info("standing by until elected (ZooKeeper %s)", parse_zk_url(flags.zk))

    def _wait_for_zookeeper(self, info_json: dict, error: Exception) -> None:
        url = parse_zk_url(self.master.flags.zk)
        while not self._stopped.is_set():
            log.warning("waiting for ZooKeeper at %s: %s; retrying every %gs", url, error, ZK_RETRY_INTERVAL)
            if self._stopped.wait(ZK_RETRY_INTERVAL):
                return
            try:
                self._contend(info_json)
                return
            except ElectionError as exc:
                error = exc
            except Exception as exc:  # a ZooKeeper that is half up: try again, never die here
                error = exc

    def stop(self) -> None:
        with self._contend_lock:
            self._stopped.set()
            contender = self.contender
        if contender is not None:
            contender.withdraw()

    def leader_info(self) -> dict | None:
        """The leading master's MasterInfo JSON (this master's when it leads)."""
        if self.is_leader or not self.enabled:
            return self.master.info_json()
        return self.detector.leader() if self.detector is not None else None

    def _elected(self) -> None:
        master = self.master
        if self.abdicated.is_set():
            return
        flags = master.flags
        started = time.monotonic()
        if (flags.registry or "zk") == "zk":
            url = parse_zk_url(flags.zk)
            backend = ZooKeeperBackend(self.contender.client, url.path + "/registry", znode_acl(url))
        else:
            backend = HAInMemoryBackend()
        try:
            registrar = Registrar(backend)
            registrar.apply(SetLeader(master.info_json()))
        except (RegistryError, OSError) as exc:
            self.abdicate(f"cannot recover the registry: {exc}")
            return
        try:
            master.open_server()
        except Exception as exc:  # zmq.ZMQError: the port was taken meanwhile
            self.abdicate(f"cannot bind the ZeroMQ port {master.zmq_port}: {exc}")
            return
        self.registrar = registrar
        state: ClusterRegistryState = registrar.state
        master.roles.registrar = registrar  # weights and quota now live here
        master.roles.recover()
        master.metrics.set("registrar/state_fetch_ms", (time.monotonic() - started) * 1000)
        for slave_id in state.gone:
            master.slaves.removed.add(slave_id)
        for slave_id, entry in state.unreachable.items():
            info = pb.SlaveInfo(hostname=entry.get("hostname", ""), port=int(entry.get("port", 0)))
            info.id.value = slave_id
            master.state.unreachable_slaves[slave_id] = UnreachableSlave(slave_id, info, float(entry["time"]),
                                                                    entry.get("principal"))
        self.recovering = set(state.slaves) - set(master.state.slaves)
        if self.recovering:
            master.later(flags.slave_reregister_timeout, self._reregister_timeout)
            # With quota set, the allocator waits for most slaves before offering.
            master.allocator.recovering(len(state.slaves), time.monotonic())
        for framework_id, entry in state.frameworks.items():
            master.later(float(entry.get("failover_timeout", 0.0)), self._framework_timeout, framework_id)
        self.elected_time = time.time()
        self.is_leader = True
        master.touch()
        log.info("elected leading master: registry version %d recovered (%d slaves to reregister, "
                 "%d unreachable, %d frameworks)", state.version, len(self.recovering), len(state.unreachable),
                 len(state.frameworks))

    def abdicate(self, why: str) -> None:
        """Stop leading at once: exit the process (or, in tests, stop the master)."""
        if self.abdicated.is_set():
            return
        self.abdicated.set()
        self.is_leader = False
        log.critical("abdicating: %s; this master exits (a supervisor restarts it as a standby)", why)
        if self.exit_on_abdicate:
            logging.shutdown()
            os._exit(1)
        threading.Thread(target=self.master.stop, name="abdicate", daemon=True).start()

    # -- registry (actor thread) ---------------------------------------------------------

    def persist(self, operation) -> bool:
        """Apply a durable change; False if it cannot apply. Losing the version
        race means another master leads: abdicate."""
        if self.registrar is None:
            return True
        try:
            self.registrar.apply(operation)
        except VersionMismatch as exc:
            self.abdicate(f"the registry moved on without us ({exc})")
            return False
        except RegistryError as exc:
            log.warning("registry refused %s: %s", type(operation).__name__, exc)
            return False
        except Exception as exc:  # ZooKeeper unreachable: cannot promise durability
            self.abdicate(f"cannot store the registry: {exc}")
            return False
        return True

    def slave_admitted(self, slave_id: str, info: pb.SlaveInfo, principal: str | None = None) -> bool:
        return self.persist(AdmitSlave(slave_id, info.hostname, info.port, principal))

    def slave_reregistered(self, slave_id: str, info: pb.SlaveInfo, principal: str | None = None) -> None:
        self.recovering.discard(slave_id)
        if self.registrar is None:
            return
        state = self.registrar.state
        if slave_id in state.unreachable:
            self.persist(MarkSlaveReachable(slave_id))
        entry = self.registrar.state.slaves.get(slave_id)
        # Admitted again when unknown, or to record the principal a slave first
        # proves (registered before authentication was turned on).
        if entry is None or (principal is not None and entry.get("principal") != principal):
            self.persist(AdmitSlave(slave_id, info.hostname, info.port, principal))

    def slave_principal(self, slave_id: str) -> str | None:
        """The principal the registry holds for a slave (admitted or unreachable)."""
        if self.registrar is None:
            return None
        state = self.registrar.state
        entry = state.slaves.get(slave_id) or state.unreachable.get(slave_id)
        return entry.get("principal") if entry is not None else None

    def framework_principal(self, framework_id: str) -> str | None:
        """The principal the registry holds for a framework a previous leader knew."""
        if self.registrar is None:
            return None
        entry = self.registrar.state.frameworks.get(framework_id)
        return entry.get("principal") if entry is not None else None

    def slave_unreachable(self, slave_id: str, when: float) -> None:
        if self.registrar is not None and slave_id in self.registrar.state.slaves:
            self.persist(MarkSlaveUnreachable(slave_id, when))

    def slave_removed(self, slave_id: str) -> None:
        if self.registrar is not None:
            self.persist(RemoveSlave(slave_id))

    def framework_added(self, framework_id: str, info: pb.FrameworkInfo) -> None:
        if self.registrar is None:
            return
        entry = self.registrar.state.frameworks.get(framework_id)
        principal = info.principal or None
        if entry is None or entry.get("failover_timeout") != float(info.failover_timeout) \
                or entry.get("name") != info.name or entry.get("principal") != principal:
            self.persist(AddFramework(framework_id, info.failover_timeout, info.name, principal))

    def framework_removed(self, framework_id: str) -> None:
        if self.registrar is not None and framework_id in self.registrar.state.frameworks:
            self.persist(RemoveFramework(framework_id))

    # -- failover timeouts (actor thread) --------------------------------------------------

    def _reregister_timeout(self) -> None:
        late = sorted(self.recovering)
        self.recovering = set()
        if late:
            log.warning("%d slave(s) did not reregister within %.3gs of the failover: %s", len(late),
                        self.master.flags.slave_reregister_timeout, ", ".join(late[:10]))
        for slave_id in late:
            self.rate_limited(self._mark_recovered_unreachable, slave_id)

    def _mark_recovered_unreachable(self, slave_id: str) -> None:
        master = self.master
        if slave_id in master.state.slaves or self.registrar is None:
            return
        entry = self.registrar.state.slaves.get(slave_id)
        if entry is None:
            return
        now = time.time()
        self.slave_unreachable(slave_id, now)
        info = pb.SlaveInfo(hostname=entry.get("hostname", ""), port=int(entry.get("port", 0)))
        info.id.value = slave_id
        master.state.unreachable_slaves[slave_id] = UnreachableSlave(slave_id, info, now, entry.get("principal"))
        master.metrics.inc("master/slave_unreachable_completed")
        for framework in master.state.frameworks.values():
            if framework.connected:
                master.send_event(framework, events.failure(slave_id))

    def _framework_timeout(self, framework_id: str) -> None:
        master = self.master
        framework = master.state.frameworks.get(framework_id)
        if framework is None:
            if framework_id in master.state.completed_frameworks:
                return
            # Never heard of since the failover: gone for good; its tasks, if
            # a slave reports them later, are shut down.
            framework = master.frameworks.recovered(framework_id, None)
        if framework.connected or framework.failover_timer is not None or not framework.recovered:
            return  # resubscribed (and maybe disconnected since: its own timer runs)
        log.info("framework %s did not resubscribe within its failover timeout after the master failover",
                 framework_id)
        master.frameworks.remove(framework)

    # -- partitions (actor thread) ------------------------------------------------------------

    def rate_limited(self, fn, *args) -> None:
        """Run a slave removal now, or when --slave_removal_rate_limit allows."""
        if self.rate is None:
            fn(*args)
            return
        self._waiting_removals.append((fn, args))
        self._drain()

    def _drain(self) -> None:
        self._drain_timer = None
        count, period = self.rate
        now = time.monotonic()
        while self._removals and now - self._removals[0] >= period:
            self._removals.popleft()
        while self._waiting_removals and len(self._removals) < count:
            fn, args = self._waiting_removals.popleft()
            self._removals.append(now)
            fn(*args)
        if self._waiting_removals and self._drain_timer is None:
            self._drain_timer = self.master.later(period - (now - self._removals[0]) + 0.001, self._drain)

    def mark_gone(self, slave_id: str) -> str | None:
        """MARK_AGENT_GONE: an error text or None (actor thread)."""
        master = self.master
        slave = master.state.slaves.get(slave_id)
        unreachable = master.state.unreachable_slaves.get(slave_id)
        if slave is None and unreachable is None:
            return f"Unknown agent {slave_id}"
        if self.registrar is not None:
            if slave_id in self.registrar.state.gone:
                return f"Agent {slave_id} is already marked gone"
            if not self.persist(MarkSlaveGone(slave_id, time.time())):
                return f"Failed to mark agent {slave_id} gone"
        master.slaves.removed.add(slave_id)
        log.info("operator marked slave %s gone", slave_id)
        if slave is not None:
            if slave.connected:
                master.send_slave(slave, pb.SlaveEvent(type=pb.SlaveEvent.SHUTDOWN))
            master.slaves.remove_gone(slave)
            return None
        del master.state.unreachable_slaves[slave_id]
        now = time.time()
        for framework in master.state.frameworks.values():
            for task_id, task in list(framework.unreachable_tasks.items()):
                if task.slave_id != slave_id:
                    continue
                framework.unreachable_tasks.pop(task_id, None)
                master.slaves.task_gone_by_operator(framework, task, now)
        return None
