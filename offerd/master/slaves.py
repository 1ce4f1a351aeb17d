"""Slave lifecycle: register, reregister, disconnect, unreachable, unregister.

A slave whose connection is lost is first only *disconnected*: no offers are
made on it and its tasks are left alone. If it does not come back within
`--slave_ping_timeout`, it is marked *unreachable*: frameworks hear FAILURE
and, per task, TASK_UNREACHABLE (partition-aware) or TASK_LOST, and the slave
leaves the allocator. When an unreachable slave reregisters, the tasks of
partition-aware frameworks carry on; those of the others, already reported
LOST, are killed, and the framework hears nothing more of them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from offerd.common.resources import ResourceError, Resources
from offerd.master import events
from offerd.master.state import ExecutorRecord, Slave, Task, UnreachableSlave, copy_message, is_terminal
from offerd.master.validation import validate_id, validate_slave_info
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

Reason = pb.TaskStatus
MAX_UNREACHABLE_SLAVES = 100_000


class Slaves:
    def __init__(self, master: Master):
        self.master = master
        self.state = master.state
        # Slaves that unregistered: they must not come back with the same id.
        self.removed: set[str] = set()

    @property
    def timeout(self) -> float:
        return self.master.flags.slave_ping_timeout * self.master.flags.max_slave_ping_timeouts

    # -- calls ----------------------------------------------------------------

    def on_register(self, peer: bytes, call: pb.SlaveCall) -> None:
        master = self.master
        principal = master.server.principal(peer)
        if self._refused(peer, principal, None, "Registration"):
            return
        existing = self.state.slave_for_peer(peer)
        if existing is not None:
            # A retry of a registration whose answer was lost.
            self._send_registered(existing, pb.SlaveEvent.REGISTERED)
            return
        info = call.register.slave_info
        error = validate_slave_info(info)
        if error is not None:
            master.metrics.inc("master/invalid_slave_registrations")
            master.send_to_peer(peer, events.slave_error(f"Registration refused: {error}"))
            return
        if self._machine_down(peer, info, "Registration"):
            return
        slave_id = master.ids.slave()
        if not master.leadership.slave_admitted(slave_id, info, principal):
            master.send_to_peer(peer, events.slave_error("Registration refused: the registry did not admit the slave"))
            return
        slave = self._admit(peer, slave_id, info, call.register.version, principal)
        master.allocator.add_slave(slave_id, slave.total, hostname=slave.hostname, attributes=info.attributes)
        master.metrics.inc("master/slave_registrations")
        log.info("registered slave %s at %s with %s", slave_id, slave.pid, slave.total)
        self._send_registered(slave, pb.SlaveEvent.REGISTERED)
        master.request_allocation([slave_id])

    def on_reregister(self, peer: bytes, call: pb.SlaveCall) -> None:
        master = self.master
        message = call.reregister
        info = message.slave_info
        slave_id = info.id.value or call.slave_id.value
        error = validate_slave_info(info)
        if error is None and not slave_id:
            error = "REREGISTER needs SlaveInfo.id; a new slave sends REGISTER"
        if error is None:
            error = validate_id(slave_id, "SlaveID")
        if error is not None:
            master.metrics.inc("master/invalid_slave_registrations")
            master.send_to_peer(peer, events.slave_error(f"Reregistration refused: {error}"))
            return
        principal = master.server.principal(peer)
        if self._refused(peer, principal, slave_id, "Reregistration"):
            return
        if slave_id in self.removed:
            master.send_to_peer(peer, pb.SlaveEvent(type=pb.SlaveEvent.SHUTDOWN))
            return
        if self._machine_down(peer, info, "Reregistration"):
            return
        # Past _refused, a proven principal is the bound one, or the first this
        # slave id proves (registered before authentication was on): bound from now.
        master.leadership.slave_reregistered(slave_id, info, principal)
        was_unreachable = self.state.unreachable_slaves.pop(slave_id, None) is not None
        slave = self.state.slaves.get(slave_id)
        if slave is not None:
            self._forget_peer(slave)
            if slave.lost_timer is not None:
                slave.lost_timer.cancel()
            # Offers on it are rebuilt with the allocator's view of the slave.
            master.offers.rescind_slave_offers(slave, recover=False)
            master.allocator.remove_slave(slave_id)
            slave.info.CopyFrom(info)
            slave.total = Resources.from_protos(info.resources)
            slave.peer = peer
            slave.connected = slave.active = True
            slave.version = message.version
            slave.principal = principal
            self.state.peer_slaves[peer] = slave_id
            master.server.set_peer_timeout(peer, self.timeout)
        else:
            slave = self._admit(peer, slave_id, info, message.version, principal)
        slave.reregistered_time = time.time()
        to_kill, to_shutdown = self._merge(slave, message, was_unreachable)
        master.allocator.add_slave(slave_id, slave.total, used=self.used(slave), hostname=slave.hostname,
                              attributes=info.attributes)
        master.metrics.inc("master/slave_reregistrations")
        log.info("reregistered slave %s at %s (%d tasks)%s", slave_id, slave.pid, len(slave.tasks),
                 " after being unreachable" if was_unreachable else "")
        self._send_registered(slave, pb.SlaveEvent.REREGISTERED)
        for framework_id in sorted(to_shutdown):
            master.send_slave(slave, events.shutdown_framework(framework_id))
        for message in to_kill:
            master.send_slave(slave, message)
        master.request_allocation([slave_id])

    def on_unregister(self, slave: Slave, call: pb.SlaveCall) -> None:
        log.info("slave %s unregistered", slave.slave_id)
        self.removed.add(slave.slave_id)
        self.master.leadership.slave_removed(slave.slave_id)
        self._remove(slave, unreachable=False, why=f"Slave {slave.slave_id} unregistered")

    def remove_gone(self, slave: Slave) -> None:
        """An operator marked the slave gone (MARK_AGENT_GONE): TASK_GONE_BY_OPERATOR."""
        self._remove(slave, unreachable=False, why=f"Slave {slave.slave_id} marked gone by the operator",
                     gone=True)

    def remove_for_maintenance(self, slave: Slave, why: str) -> None:
        """Its machine went DOWN (/master/machine/down): removed as when it unregisters."""
        self.removed.add(slave.slave_id)
        self.master.leadership.slave_removed(slave.slave_id)
        self._remove(slave, unreachable=False, why=f"Slave {slave.slave_id}: {why}")

    def _machine_down(self, peer: bytes, info: pb.SlaveInfo, what: str) -> bool:
        """Refuse a slave on a machine DOWN for maintenance (True if refused); it keeps
        trying and is admitted once the machine is UP. Mesos answers a shutdown instead."""
        refusal = self.master.maintenance.registration_refusal(info)
        if refusal is None:
            return False
        self.master.metrics.inc("master/slave_registrations_refused_machine_down")
        log.warning("refused %s of a slave at %s:%d: %s", what.lower(), info.hostname, info.port, refusal)
        self.master.send_to_peer(peer, events.slave_error(f"{what} refused: {refusal}"))
        return True

    # -- identity -----------------------------------------------------------------

    def _refused(self, peer: bytes, principal: str | None, slave_id: str | None, what: str) -> bool:
        """Refuse a (re)registration the peer may not make: True if refused.

        Authentication (--authenticate_agents), then `register_agents`, then, for
        a known slave id, that the peer proved the principal the id is bound to.
        Nothing changes on a refusal: the real slave keeps its record and tasks.
        """
        master = self.master
        counter = error = None
        if principal is None and master.flags.authenticate_agents:
            counter = "master/unauthenticated_slave_registrations"
            error = (f"{what} refused: this master requires slaves to authenticate (--authenticate_agents); "
                     "start the slave with --credential, a file with a principal and secret listed in the "
                     "master's --credentials")
        if error is None:
            refusal = master.authorizer.check(principal, "register_agents")
            if refusal is not None:
                counter, error = "master/unauthorized_slave_registrations", f"{what} refused: {refusal}"
        if error is None and slave_id is not None:
            bound = self.recorded_principal(slave_id)
            if bound is not None and principal != bound:
                counter = "master/slave_principal_mismatches"
                error = (f"{what} refused: slave {slave_id} is bound to a principal this connection has not "
                         "proven; restart the slave with the --credential it registered with, or clear its "
                         "work_dir to register as a new slave")
        if error is None:
            return False
        master.metrics.inc(counter)
        log.warning("refused %s of slave %s from peer %s, principal %s: %s", what.lower(), slave_id or "(new)",
                    peer.hex(), repr(principal) if principal is not None else "(none)", error)
        master.send_to_peer(peer, events.slave_error(error))
        return True

    def recorded_principal(self, slave_id: str) -> str | None:
        """The principal a slave id is bound to: from its record, or (after a
        failover, before it reregisters) from the registry."""
        slave = self.state.slaves.get(slave_id)
        if slave is not None:
            return slave.principal
        unreachable = self.state.unreachable_slaves.get(slave_id)
        if unreachable is not None and unreachable.principal is not None:
            return unreachable.principal
        return self.master.leadership.slave_principal(slave_id)

    # -- records ----------------------------------------------------------------

    def _admit(self, peer: bytes, slave_id: str, info: pb.SlaveInfo, version: str,
               principal: str | None = None) -> Slave:
        stored = pb.SlaveInfo()
        stored.CopyFrom(info)
        stored.id.value = slave_id
        slave = Slave(slave_id, stored, Resources.from_protos(info.resources), peer, version, time.time(),
                      principal)
        self.state.slaves[slave_id] = slave
        self.state.peer_slaves[peer] = slave_id
        self.master.server.set_peer_timeout(peer, self.timeout)
        self.master.operator_events.agent_added(slave)
        return slave

    def _send_registered(self, slave: Slave, kind: int) -> None:
        event = pb.SlaveEvent(type=kind)
        event.registered.slave_id.value = slave.slave_id
        event.registered.master_info.CopyFrom(self.master.master_info)
        self.master.send_slave(slave, event)

    def _forget_peer(self, slave: Slave) -> None:
        if slave.peer is not None and self.state.peer_slaves.get(slave.peer) == slave.slave_id:
            del self.state.peer_slaves[slave.peer]
        slave.peer = None

    def _merge(self, slave: Slave, message: pb.SlaveCall.Reregister, was_unreachable: bool):
        """Make the slave's tasks and executors what it reports.

        Returns the KILL_TASK messages to send and the frameworks to shut down.
        """
        master = self.master
        infos = {f.id.value: f for f in message.frameworks}
        reported: dict[tuple[str, str], pb.Task] = {
            (t.framework_id.value, t.task_id.value): t for t in message.tasks
        }
        to_kill: list[pb.SlaveEvent] = []
        to_shutdown: set[str] = set()
        for key, task in list(slave.tasks.items()):
            if key in reported:
                continue
            if is_terminal(task.state):
                master.updates.complete(task)
                continue
            framework = self.state.frameworks.get(task.framework_id)
            aware = framework is not None and framework.partition_aware
            state = pb.TASK_LOST if not aware else (
                pb.TASK_DROPPED if task.state == pb.TASK_STAGING else pb.TASK_GONE)
            master.updates.end_task(task, state, Reason.REASON_SLAVE_REREGISTERED,
                               f"Task was not reported by slave {slave.slave_id} when it reregistered")
        executors: dict[str, dict[str, ExecutorRecord]] = {}
        for state in message.executors:
            framework_id = state.framework_id.value or state.executor_info.framework_id.value
            if master.frameworks.recovered(framework_id, infos.get(framework_id)) is None:
                to_shutdown.add(framework_id)
                continue
            try:
                resources = Resources.from_protos(state.executor_info.resources)
            except ResourceError as exc:
                log.warning("slave %s reported executor %s with bad resources: %s", slave.slave_id,
                            state.executor_info.executor_id.value, exc)
                resources = Resources.EMPTY
            info = copy_message(state.executor_info)
            executors.setdefault(framework_id, {})[info.executor_id.value] = ExecutorRecord(info, resources)
        slave.executors = executors
        for (framework_id, task_id), reported_task in reported.items():
            framework = master.frameworks.recovered(framework_id, infos.get(framework_id))
            if framework is None:
                to_shutdown.add(framework_id)
                continue
            task = slave.tasks.get((framework_id, task_id))
            if task is None and was_unreachable and self._lost_already(slave, framework, reported_task):
                # Its framework (not partition-aware) was told TASK_LOST: the task is
                # killed and stays completed, so the slave's later updates for it are
                # acknowledged without reaching the framework (see Updates._not_held);
                # a second end after TASK_LOST would contradict what it was told.
                if not is_terminal(reported_task.state):
                    to_kill.append(events.kill_task(framework_id, task_id))
                continue
            if task is None:
                task = self._adopt(slave, framework, reported_task)
                if task is None:
                    continue
            elif task.state != reported_task.state:
                self.state.set_task_state(task, reported_task.state)
                master.operator_events.task_updated(task)
            if is_terminal(task.state):
                task.recovered = True  # not counted in what add_slave marks used
            if task.pending_kill is not None:
                to_kill.append(task.pending_kill)
                task.pending_kill = None
            elif was_unreachable and not framework.partition_aware and not is_terminal(task.state):
                # Reported LOST when the slave became unreachable: it must not run on.
                to_kill.append(events.kill_task(framework_id, task_id))
        if was_unreachable:
            self._end_unreported(slave, reported)
        return to_kill, to_shutdown

    def _end_unreported(self, slave: Slave, reported) -> None:
        """Tasks reported TASK_UNREACHABLE with this slave that it does not report on
        coming back (say, their launch never reached it) are over: TASK_GONE, the
        answer reconciliation gives, rather than unreachable for ever."""
        master = self.master
        for framework in self.state.frameworks.values():
            for task_id, task in list(framework.unreachable_tasks.items()):
                if task.slave_id != slave.slave_id or (framework.framework_id, task_id) in reported:
                    continue
                del framework.unreachable_tasks[task_id]
                # Unreachable tasks are counted with the terminal ones (see _task_lost).
                self.state.terminal_task_counts[pb.TASK_UNREACHABLE] -= 1
                self.state.terminal_task_counts[pb.TASK_GONE] += 1
                task.state = pb.TASK_GONE
                task.statuses.append((pb.TASK_GONE, time.time()))
                framework.add_completed(task)
                status = events.master_status(task_id, pb.TASK_GONE, Reason.REASON_SLAVE_REREGISTERED,
                                              f"Task was not reported by slave {slave.slave_id} when it "
                                              "reregistered", slave.slave_id, task.executor_id or None)
                master.metrics.count_terminal(status)
                master.operator_events.task_updated(task, status)
                if framework.connected:
                    master.send_event(framework, events.update(status))

    def _lost_already(self, slave: Slave, framework, reported: pb.Task) -> bool:
        """Whether a task the unreachable slave reports, of a framework that is not
        partition-aware, was TASK_LOST: this master said so when the slave became
        unreachable, or a former leader did (this one knows the slave was unreachable
        from the registry, not the task): then it is recorded, and said again, now."""
        if framework.partition_aware:
            return False
        task_id = reported.task_id.value
        done = framework.completed_tasks.get(task_id)
        if done is not None:
            return done.slave_id == slave.slave_id and done.state == pb.TASK_LOST
        if task_id in framework.tasks:
            return False  # the master has it on another slave: _adopt refuses it
        try:
            resources = Resources.from_protos(reported.resources)
        except ResourceError:
            resources = Resources.EMPTY
        task = Task(task_id, framework.framework_id, slave.slave_id, reported.executor_id.value, reported.name,
                    resources, state=pb.TASK_LOST)
        task.recovered = True  # never in the allocator's books
        task.statuses.append((pb.TASK_LOST, time.time()))
        self.state.count_new_task(task)
        framework.add_completed(task)
        status = events.master_status(task_id, pb.TASK_LOST, Reason.REASON_SLAVE_REMOVED,
                                      f"Slave {slave.slave_id} was unreachable", slave.slave_id,
                                      reported.executor_id.value or None)
        self.master.metrics.count_terminal(status)
        if framework.connected:
            self.master.send_event(framework, events.update(status))
        return True

    def _adopt(self, slave: Slave, framework, reported: pb.Task) -> Task | None:
        task_id = reported.task_id.value
        try:
            resources = Resources.from_protos(reported.resources)
        except ResourceError as exc:
            log.warning("slave %s reported task %s with bad resources: %s", slave.slave_id, task_id, exc)
            resources = Resources.EMPTY
        previous = framework.tasks.get(task_id)
        if previous is not None and previous.slave_id != slave.slave_id:
            log.warning("slave %s reports task %s of framework %s, known on slave %s; ignored",
                        slave.slave_id, task_id, framework.framework_id, previous.slave_id)
            return None
        task = Task(task_id, framework.framework_id, slave.slave_id, reported.executor_id.value,
                    reported.name, resources, state=reported.state,
                    labels=copy_message(reported.labels) if reported.HasField("labels") else None)
        task.statuses = [(s.state, s.timestamp, s.healthy) if s.HasField("healthy") else (s.state, s.timestamp)
                         for s in reported.statuses]
        if reported.HasField("status_update_state"):
            task.status_update_state = reported.status_update_state
        if reported.status_update_uuid:
            task.status_update_uuid = reported.status_update_uuid
        framework.unreachable_tasks.pop(task_id, None)
        framework.completed_tasks.pop(task_id, None)
        framework.tasks[task_id] = task
        slave.tasks[(framework.framework_id, task_id)] = task
        self.state.count_new_task(task)
        self.master.operator_events.task_added(task)
        return task

    def used(self, slave: Slave) -> dict[str, Resources]:
        """Framework id -> what its tasks (not yet recovered) and executors hold on `slave`."""
        used: dict[str, Resources] = {}
        for (framework_id, _), task in slave.tasks.items():
            if not task.recovered:
                used[framework_id] = used.get(framework_id, Resources.EMPTY) + task.resources
        for framework_id, executors in slave.executors.items():
            for executor in executors.values():
                used[framework_id] = used.get(framework_id, Resources.EMPTY) + executor.resources
        return used

    # -- losing slaves ----------------------------------------------------------

    def disconnected(self, slave: Slave) -> None:
        """The slave's connection is gone; it has a grace period to come back."""
        master = self.master
        self._forget_peer(slave)
        slave.connected = False
        slave.active = False
        master.offers.rescind_slave_offers(slave)
        master.allocator.deactivate_slave(slave.slave_id)
        grace = master.flags.slave_ping_timeout
        log.info("slave %s disconnected; marking it unreachable in %.3gs unless it reregisters",
                 slave.slave_id, grace)
        slave.lost_timer = master.later(grace, self._grace_expired, slave.slave_id)

    def _grace_expired(self, slave_id: str) -> None:
        self.master.leadership.rate_limited(self._unreachable_now, slave_id)

    def _unreachable_now(self, slave_id: str) -> None:
        slave = self.state.slaves.get(slave_id)
        if slave is not None and not slave.connected:
            self._remove(slave, unreachable=True, why=f"Slave {slave_id} is unreachable")

    def _remove(self, slave: Slave, unreachable: bool, why: str, gone: bool = False) -> None:
        master = self.master
        slave_id = slave.slave_id
        if slave.lost_timer is not None:
            slave.lost_timer.cancel()
        master.offers.rescind_slave_offers(slave, recover=False)
        master.allocator.remove_slave(slave_id)
        self._forget_peer(slave)
        del self.state.slaves[slave_id]
        now = time.time()
        if unreachable:
            master.leadership.slave_unreachable(slave_id, now)
            self.state.unreachable_slaves[slave_id] = UnreachableSlave(slave_id, slave.info, now, slave.principal)
            while len(self.state.unreachable_slaves) > MAX_UNREACHABLE_SLAVES:
                self.state.unreachable_slaves.popitem(last=False)
            master.metrics.inc("master/slave_unreachable_completed")
        master.metrics.inc("master/slave_removals")
        for task in slave.tasks.values():
            self._task_lost(task, unreachable, why, now, gone)
        slave.tasks.clear()
        master.operator_events.agent_removed(slave_id)
        for framework in self.state.frameworks.values():
            if framework.connected:
                master.send_event(framework, events.failure(slave_id))
        log.info("%s: %s", why, "tasks reported unreachable or lost" if unreachable else "tasks lost or gone")

    def _task_lost(self, task: Task, unreachable: bool, why: str, now: float, gone: bool = False) -> None:
        master = self.master
        framework = self.state.frameworks.get(task.framework_id)
        if framework is None:
            return
        framework.tasks.pop(task.task_id, None)
        if is_terminal(task.state):
            # Its terminal update waits on the slave; nothing new to say.
            framework.add_completed(task)
            return
        if gone:
            self.task_gone_by_operator(framework, task, now)
            return
        aware = framework.partition_aware
        if unreachable and aware:
            state = pb.TASK_UNREACHABLE
            self.state.forget_task_count(task)
            task.state = state
            self.state.terminal_task_counts[state] += 1
            framework.add_unreachable(task)
        else:
            state = pb.TASK_GONE if aware else pb.TASK_LOST
            self.state.set_task_state(task, state)
            framework.add_completed(task)
        task.statuses.append((state, now))
        status = events.master_status(task.task_id, state, Reason.REASON_SLAVE_REMOVED, why, task.slave_id,
                                      task.executor_id or None, unreachable_time=now if unreachable else None)
        master.metrics.count_terminal(status)
        master.operator_events.task_updated(task, status)
        if framework.connected:
            master.send_event(framework, events.update(status))

    def task_gone_by_operator(self, framework, task: Task, now: float) -> None:
        """TASK_GONE_BY_OPERATOR for a task of a slave the operator marked gone."""
        master = self.master
        if task.state == pb.TASK_UNREACHABLE:
            self.state.terminal_task_counts[pb.TASK_UNREACHABLE] -= 1
            task.state = pb.TASK_GONE_BY_OPERATOR
            self.state.terminal_task_counts[pb.TASK_GONE_BY_OPERATOR] += 1
        else:
            self.state.set_task_state(task, pb.TASK_GONE_BY_OPERATOR)
        framework.add_completed(task)
        task.statuses.append((pb.TASK_GONE_BY_OPERATOR, now))
        status = events.master_status(task.task_id, pb.TASK_GONE_BY_OPERATOR, Reason.REASON_SLAVE_REMOVED_BY_OPERATOR,
                                      f"Slave {task.slave_id} was marked gone by the operator", task.slave_id,
                                      task.executor_id or None)
        master.metrics.count_terminal(status)
        master.operator_events.task_updated(task, status)
        if framework.connected:
            master.send_event(framework, events.update(status))
