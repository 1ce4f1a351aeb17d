"""Offers: allocations become offers; ACCEPT, DECLINE, REVIVE, SUPPRESS; rescinds.

An ACCEPT is proposed by the scheduler, verified by the pure functions of
`validation` against the live records, and only then committed: tasks
recorded in STAGING, their resources taken out of the merged offers, the
rest returned to the allocator with the call's filter, and the tasks sent to
the slave as one RUN_TASK batch. Every operation is validated before any is
recorded, so an ACCEPT takes effect whole or (for its invalid tasks) not at
all; a RUN_TASK the slave's socket refuses ends its tasks at once (TASK_DROPPED
or TASK_LOST) instead of leaving them staging.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Collection

from offerd.common.resources import Resources
from offerd.master import events
from offerd.master.state import ExecutorRecord, Framework, Offer, Slave, Task, copy_message
from offerd.master.validation import (
    check_task_resources,
    refuse_seconds,
    task_user,
    validate_fit,
    validate_offers,
    validate_task,
    validate_task_user,
)
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

Operation = pb.Offer.Operation


class _Launch:
    """What one ACCEPT will launch (task ids, executors, resources left): built
    while validating, committed to the records only once every operation is checked."""

    __slots__ = ("available", "task_ids", "new_executors", "run", "tasks", "executors")

    def __init__(self, available: Resources):
        self.available = available
        self.task_ids: set[str] = set()
        self.new_executors: dict[str, pb.ExecutorInfo] = {}
        self.run = pb.SlaveEvent(type=pb.SlaveEvent.RUN_TASK)
        self.tasks: list[Task] = []
        self.executors: list[ExecutorRecord] = []


class Offers:
    def __init__(self, master: Master):
        self.master = master
        self.state = master.state

    # -- allocations into offers --------------------------------------------------

    def allocate(self, slaves: Collection[str] | None = None) -> None:
        self._allocate(slaves)
        # Mesos sends inverse offers (maintenance) after each allocation run, for its slaves.
        self.master.maintenance.generate(slaves)

    def _allocate(self, slaves: Collection[str] | None) -> None:
        master = self.master
        started = time.perf_counter()
        now = time.monotonic()
        allocations = master.allocator.allocate(now, slaves)
        elapsed_ms = (time.perf_counter() - started) * 1000
        master.metrics.set("allocator/allocation_run_ms", elapsed_ms)
        master.allocation_timer.record(elapsed_ms)
        if not allocations:
            return
        master.touch()
        for framework_id, per_slave in allocations.items():
            framework = self.state.frameworks.get(framework_id)
            event = pb.Event(type=pb.Event.OFFERS)
            for slave_id, (role, resources) in per_slave.items():
                slave = self.state.slaves.get(slave_id)
                if framework is None or not framework.connected or slave is None or not slave.connected:
                    # Allocator and master disagree for a moment; give it back.
                    master.allocator.recover_resources(framework_id, slave_id, resources, None, now, role)
                    continue
                offer = Offer(master.ids.offer(), framework_id, slave_id, role, resources, now)
                self.state.offers[offer.offer_id] = offer
                framework.offers[offer.offer_id] = offer
                slave.offers[offer.offer_id] = offer
                self._fill(event.offers.offers.add(), offer, slave)
                if master.flags.offer_timeout is not None:
                    offer.timer = master.later(master.flags.offer_timeout, self._expired, offer.offer_id)
            if len(event.offers.offers):
                master.metrics.inc("master/offers_sent", len(event.offers.offers))
                master.send_event(framework, event)

    def _fill(self, proto: pb.Offer, offer: Offer, slave: Slave) -> None:
        proto.id.value = offer.offer_id
        proto.framework_id.value = offer.framework_id
        proto.slave_id.value = offer.slave_id
        proto.hostname = slave.hostname
        proto.allocation_info.role = offer.role
        for resource in offer.resources.to_protos():
            resource.allocation_info.role = offer.role
            proto.resources.append(resource)
        proto.attributes.extend(slave.info.attributes)
        for executor_id in slave.executors.get(offer.framework_id, ()):
            proto.executor_ids.add(value=executor_id)
        url = proto.url
        url.scheme = "http"
        url.address.hostname = slave.hostname
        if slave.info.ip:
            url.address.ip = slave.info.ip
        url.address.port = slave.info.port
        url.path = "/slave(1)"
        self.master.maintenance.fill_unavailability(proto, slave)

    # -- taking offers away -------------------------------------------------------

    def _forget(self, offer: Offer) -> None:
        self.state.offers.pop(offer.offer_id, None)
        framework = self.state.frameworks.get(offer.framework_id)
        if framework is not None:
            framework.offers.pop(offer.offer_id, None)
        slave = self.state.slaves.get(offer.slave_id)
        if slave is not None:
            slave.offers.pop(offer.offer_id, None)
        if offer.timer is not None:
            offer.timer.cancel()

    def rescind(self, offer: Offer, notify: bool = True, recover: bool = True) -> None:
        self._forget(offer)
        master = self.master
        if recover:
            master.allocator.recover_resources(offer.framework_id, offer.slave_id, offer.resources, None,
                                          time.monotonic(), offer.role)
        if notify:
            framework = self.state.frameworks.get(offer.framework_id)
            if framework is not None and framework.connected:
                master.send_event(framework, events.rescind(offer.offer_id))
                master.metrics.inc("master/offers_rescinded")

    def remove_framework_offers(self, framework: Framework, notify: bool, recover: bool = True) -> None:
        for offer in list(framework.offers.values()):
            self.rescind(offer, notify=notify, recover=recover)
        self.master.maintenance.framework_offers_gone(framework)

    def rescind_slave_offers(self, slave: Slave, recover: bool = True) -> None:
        for offer in list(slave.offers.values()):
            self.rescind(offer, notify=True, recover=recover)
        self.master.maintenance.slave_offers_gone(slave)

    def _expired(self, offer_id: str) -> None:
        offer = self.state.offers.get(offer_id)
        if offer is not None:
            log.debug("offer %s timed out", offer_id)
            self.rescind(offer)
            self.master.request_allocation([offer.slave_id])

    # -- scheduler calls ----------------------------------------------------------

    def on_accept(self, framework: Framework, call: pb.Call) -> None:
        master = self.master
        accept = call.accept
        framework_id = framework.framework_id
        offer_ids = [o.value for o in accept.offer_ids]
        error = validate_offers(offer_ids, framework_id, self.state.offers, self.state.slaves)
        offers = []
        for offer_id in dict.fromkeys(offer_ids):
            offer = self.state.offers.get(offer_id)
            if offer is not None and offer.framework_id == framework_id:
                offers.append(offer)
                self._forget(offer)
        now = time.monotonic()
        if error is not None:
            # Mesos: one bad offer spoils the call; the good ones return unfiltered.
            for offer in offers:
                master.allocator.recover_resources(framework_id, offer.slave_id, offer.resources, None, now, offer.role)
            master.metrics.inc("master/invalid_accepts")
            log.info("framework %s: invalid ACCEPT: %s", framework_id, error)
            self._drop_launches(framework, accept.operations, error)
            if offers:
                master.request_allocation({offer.slave_id for offer in offers})
            return
        slave = self.state.slaves[offers[0].slave_id]
        role = offers[0].role
        launch = _Launch(sum((offer.resources for offer in offers), Resources.EMPTY))
        # Validate every operation first (invalid tasks are answered TASK_ERROR and
        # dropped, as Mesos does); nothing of the records changes until all are checked.
        for operation in accept.operations:
            if operation.type == Operation.LAUNCH:
                for task_info in operation.launch.task_infos:
                    self._launch(framework, slave, task_info, launch)
            else:
                master.metrics.inc("master/unsupported_operations")
                log.warning("framework %s: offer operation %s is not supported; ignored", framework_id,
                            Operation.Type.Name(operation.type) if operation.type in Operation.Type.values()
                            else operation.type)
        self._commit(framework, slave, launch)
        if not launch.available.is_empty():
            filters = accept.filters if accept.HasField("filters") else None
            master.allocator.recover_resources(framework_id, slave.slave_id, launch.available,
                                          refuse_seconds(filters), now, role)
        if len(launch.run.run_tasks) and not master.send_slave(slave, launch.run):
            self._launch_dropped(framework, slave, launch)
        master.request_allocation([slave.slave_id])

    def _commit(self, framework: Framework, slave: Slave, launch: _Launch) -> None:
        """Record the validated launch: plain dict insertions, nothing that can fail half-way."""
        for executor in launch.executors:
            slave.executors.setdefault(framework.framework_id, {})[executor.info.executor_id.value] = executor
        for task in launch.tasks:
            framework.tasks[task.task_id] = task
            slave.tasks[(framework.framework_id, task.task_id)] = task
            self.state.count_new_task(task)
            self.master.operator_events.task_added(task)

    def _launch_dropped(self, framework: Framework, slave: Slave, launch: _Launch) -> None:
        """The slave's socket refused the RUN_TASK (gone, or its queue is full): the
        tasks never reach it. As Mesos does for a launch on a disconnected agent,
        they end now, TASK_DROPPED (partition-aware) or TASK_LOST, reason
        REASON_SLAVE_DISCONNECTED, and their resources go back to the allocator."""
        master = self.master
        state = pb.TASK_DROPPED if framework.partition_aware else pb.TASK_LOST
        why = (f"Slave {slave.slave_id} could not be sent the launch (disconnected, or its queue is full); "
               "launch again on another offer")
        log.warning("framework %s: RUN_TASK for %d task(s) not delivered to slave %s: %s",
                    framework.framework_id, len(launch.tasks), slave.slave_id, pb.TaskState.Name(state))
        master.metrics.inc("master/dropped_launches", len(launch.tasks))
        for task in launch.tasks:
            master.updates.end_task(task, state, pb.TaskStatus.REASON_SLAVE_DISCONNECTED, why)
        now = time.monotonic()
        executors = slave.executors.get(framework.framework_id, {})
        for executor in launch.executors:
            if executors.pop(executor.info.executor_id.value, None) is not None \
                    and not executor.resources.is_empty():
                master.allocator.recover_resources(framework.framework_id, slave.slave_id, executor.resources,
                                              None, now)
        if not executors:
            slave.executors.pop(framework.framework_id, None)

    def _launch(self, framework: Framework, slave: Slave, task_info: pb.TaskInfo, launch: _Launch) -> None:
        master = self.master
        framework_id = framework.framework_id
        executors = slave.executors.get(framework_id, {})
        error = validate_task(task_info, slave_id=slave.slave_id, framework=framework,
                              launched_ids=launch.task_ids, executors=executors,
                              new_executors=launch.new_executors)
        executor_id = task_info.executor.executor_id.value if task_info.HasField("executor") else ""
        new_executor = bool(executor_id) and executor_id not in executors and executor_id not in launch.new_executors
        if error is None:
            error, resources, executor_resources = check_task_resources(task_info, new_executor)
        if error is None:
            needed = resources + executor_resources
            error = validate_fit(needed, launch.available)
        task_id = task_info.task_id.value
        if error is not None:
            master.metrics.inc("master/invalid_tasks")
            self.state.terminal_task_counts[pb.TASK_ERROR] += 1
            master.send_event(framework, events.update(events.master_status(
                task_id, pb.TASK_ERROR, pb.TaskStatus.REASON_TASK_INVALID, error, slave.slave_id)))
            return
        # Authorized as the principal the scheduler proved; a claimed one counts as none.
        principal = framework.principal if framework.authenticated else None
        error = validate_task_user(task_user(task_info, framework.info.user), principal, master.authorizer,
                                   master.flags.root_submissions)
        if error is not None:
            # Nothing launched; its resources stay in `launch.available` and go back with the rest.
            master.metrics.inc("master/unauthorized_tasks")
            log.warning("framework %s (principal %s): task %s refused: %s", framework_id,
                        repr(principal) if principal is not None else "(none proven)", task_id, error)
            self.state.terminal_task_counts[pb.TASK_ERROR] += 1
            master.send_event(framework, events.update(events.master_status(
                task_id, pb.TASK_ERROR, pb.TaskStatus.REASON_TASK_UNAUTHORIZED, error, slave.slave_id)))
            return
        launch.available = launch.available - needed
        launch.task_ids.add(task_id)
        task = Task(task_id, framework_id, slave.slave_id, executor_id, task_info.name, resources,
                    labels=copy_message(task_info.labels) if task_info.HasField("labels") else None,
                    user=task_user(task_info, "") or None)
        launch.tasks.append(task)
        run = launch.run.run_tasks.add()
        run.framework_info.CopyFrom(framework.info)
        run.task.CopyFrom(task_info)
        run.task.slave_id.value = slave.slave_id
        if executor_id:
            run.task.executor.framework_id.value = framework_id
            if new_executor:
                info = copy_message(run.task.executor)
                launch.new_executors[executor_id] = info
                launch.executors.append(ExecutorRecord(info, executor_resources))

    def _drop_launches(self, framework: Framework, operations, reason: str) -> None:
        state = pb.TASK_DROPPED if framework.partition_aware else pb.TASK_LOST
        for operation in operations:
            if operation.type != Operation.LAUNCH:
                continue
            for task_info in operation.launch.task_infos:
                self.state.terminal_task_counts[state] += 1
                self.master.send_event(framework, events.update(events.master_status(
                    task_info.task_id.value, state, pb.TaskStatus.REASON_INVALID_OFFERS, reason)))

    def on_decline(self, framework: Framework, call: pb.Call) -> None:
        master = self.master
        seconds = refuse_seconds(call.decline.filters if call.decline.HasField("filters") else None)
        now = time.monotonic()
        slaves = set()
        for offer_id in call.decline.offer_ids:
            offer = self.state.offers.get(offer_id.value)
            if offer is None or offer.framework_id != framework.framework_id:
                master.metrics.inc("master/invalid_declines")
                log.debug("framework %s declined unknown offer %s", framework.framework_id, offer_id.value)
                continue
            self._forget(offer)
            master.allocator.recover_resources(offer.framework_id, offer.slave_id, offer.resources, seconds,
                                          now, offer.role)
            slaves.add(offer.slave_id)
        if slaves:
            master.request_allocation(slaves)

    def on_revive(self, framework: Framework, call: pb.Call) -> None:
        roles = self._known_roles(framework, call.revive.roles)
        if roles == []:
            return
        self.master.allocator.revive(framework.framework_id, roles)
        framework.suppressed_roles -= set(roles or framework.roles)
        self.master.request_allocation()

    def on_suppress(self, framework: Framework, call: pb.Call) -> None:
        roles = self._known_roles(framework, call.suppress.roles)
        if roles == []:
            return
        self.master.allocator.suppress(framework.framework_id, roles)
        framework.suppressed_roles |= set(roles or framework.roles)

    def _known_roles(self, framework: Framework, roles) -> list[str] | None:
        # None means all of the framework's roles; [] that none of those named are its own.
        if not len(roles):
            return None
        known = [r for r in roles if r in framework.roles]
        if len(known) != len(roles):
            log.info("framework %s named roles it is not subscribed to: %s", framework.framework_id,
                     sorted(set(roles) - set(known)))
        return known
