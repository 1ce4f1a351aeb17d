"""Maintenance on the actor thread: machine modes, unavailability and inverse offers.

Mesos' maintenance primitives (mesos.apache.org/documentation/latest/maintenance/;
the operator's side in docs/operators.md). The schedule and the DOWN machines live
in the registry (offerd.master.maintenance_schedule holds its operations); this
module applies them to the slaves:

* A slave is on the machine ``(hostname, ip)`` of its SlaveInfo. A machine in the
  schedule is DRAINING: offers of its slaves carry the window's ``unavailability``,
  and every active framework holding resources there (tasks, executors, offers)
  gets one inverse offer per slave. Until it answers (ACCEPT_INVERSE_OFFERS or
  DECLINE_INVERSE_OFFERS) or the inverse offer is rescinded, no other comes for
  that slave; after an answer, one comes again once the answer's filter
  (``refuse_seconds``) has expired. The answers are the per-framework statuses of
  ``/master/maintenance/status``; they reset when the machine's unavailability changes
  (and, as in Mesos, are not kept across a master failover).
* ``/master/machine/down`` (START_MAINTENANCE): the slaves of those machines are told
  to shut down and removed (their tasks end TASK_LOST, or TASK_GONE for
  partition-aware frameworks, REASON_SLAVE_REMOVED); a slave on a DOWN machine is
  refused registration until ``/master/machine/up`` (STOP_MAINTENANCE), which also
  takes the machine out of the schedule.

Inverse offers are generated after each allocation run, for the slaves that run
concerned; they expire with ``--offer_timeout`` like offers. The allocator is not
involved: an inverse offer holds no resources.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Iterable

from offerd.master import maintenance_schedule as schedule
from offerd.master.maintenance_schedule import DOWN, DRAINING, Machine, ScheduleError, Window
from offerd.master.registry import RegistryError
from offerd.master.state import Framework, Slave, is_terminal
from offerd.master.validation import refuse_seconds
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

MACHINE_DOWN_MESSAGE = "Operator initiated 'Machine DOWN'"


class InverseOffer:
    __slots__ = ("offer_id", "framework_id", "slave_id", "window", "timer")

    def __init__(self, offer_id: str, framework_id: str, slave_id: str, window: Window):
        self.offer_id = offer_id
        self.framework_id = framework_id
        self.slave_id = slave_id
        self.window = window
        self.timer = None


def slave_machine(slave: Slave) -> Machine:
    return schedule.machine_key(slave.info.hostname, slave.info.ip)


class Maintenance:
    def __init__(self, master: Master):
        self.master = master
        self.state = master.state
        self.inverse_offers: dict[str, InverseOffer] = {}
        # slave id -> framework id -> the inverse offer it has not answered yet
        self.outstanding: dict[str, dict[str, str]] = {}
        # slave id -> framework id -> (ACCEPT | DECLINE, time answered)
        self.statuses: dict[str, dict[str, tuple[str, float]]] = {}
        # (framework id, slave id) -> monotonic time until which no inverse offer is sent
        self.filters: dict[tuple[str, str], float] = {}
        self._seen_state = None
        self._windows: tuple = ()
        self._down: frozenset = frozenset()
        self._by_machine: dict[Machine, Window] = {}

    # -- the registry's schedule --------------------------------------------------------

    @property
    def _registry_state(self):
        return self.master.roles.registrar.state

    def _refresh(self) -> None:
        """Read the schedule again when the registry moved (cheap otherwise)."""
        state = self._registry_state
        if state is self._seen_state:
            return
        try:
            windows, down = schedule.stored(state)
        except (ScheduleError, ValueError) as exc:
            log.error("the registry's maintenance schedule is unreadable (%s); treating it as empty", exc)
            windows, down = (), frozenset()
        self._seen_state = state
        self._windows, self._down = windows, down
        self._by_machine = {machine: window for window in windows for machine in window.machines}

    @property
    def windows(self) -> tuple:
        self._refresh()
        return self._windows

    def mode(self, machine: Machine) -> str | None:
        self._refresh()
        if machine in self._down:
            return DOWN
        return DRAINING if machine in self._by_machine else None

    def window_of(self, slave: Slave) -> Window | None:
        self._refresh()
        if not self._by_machine:
            return None
        return self._by_machine.get(slave_machine(slave))

    def fill_unavailability(self, target, slave: Slave) -> None:
        """Set Offer.unavailability (or any message's) when the slave's machine is scheduled."""
        window = self.window_of(slave)
        if window is not None:
            _unavailability(target.unavailability, window)

    def registration_refusal(self, info: pb.SlaveInfo) -> str | None:
        machine = schedule.machine_key(info.hostname, info.ip)
        if self.mode(machine) != DOWN:
            return None
        return (f"machine '{schedule.machine_text(machine)}' is DOWN for maintenance; slaves on it may "
                "register once an operator brings it up (POST /master/machine/up)")

    def _persist(self, operation) -> str | None:
        leadership = self.master.leadership
        if leadership.registrar is not None:
            if not leadership.persist(operation):
                return "Failed to update the maintenance schedule in the registry (see the master's log)"
            return None
        try:
            self.master.roles.registrar.apply(operation)
        except RegistryError as exc:
            return str(exc)
        return None

    # -- operator calls (actor thread; an error text or None) -----------------------------

    def update_schedule(self, windows: tuple) -> str | None:
        self._refresh()
        try:
            schedule.validate_against(windows, self._down)
        except ScheduleError as exc:
            return str(exc)
        before = dict(self._by_machine)
        error = self._persist(schedule.UpdateSchedule(windows))
        if error is not None:
            return error
        self.master.touch()
        self._refresh()
        changed = {m for m in set(before) | set(self._by_machine) if before.get(m) != self._by_machine.get(m)}
        log.info("maintenance schedule updated: %d window(s), %d machine(s) changed", len(windows), len(changed))
        slaves = [s for s in self.state.slaves.values() if slave_machine(s) in changed]
        for slave in slaves:
            self._unavailability_changed(slave)
        if slaves:
            self.master.request_allocation([s.slave_id for s in slaves])
        return None

    def _unavailability_changed(self, slave: Slave) -> None:
        """As Mesos: offers are rescinded so frameworks learn the new unavailability at
        once, inverse offers rescinded (new ones follow), filters and answers forgotten."""
        self.master.offers.rescind_slave_offers(slave)
        self.statuses.pop(slave.slave_id, None)
        for key in [k for k in self.filters if k[1] == slave.slave_id]:
            del self.filters[key]

    def machines_down(self, machines: list[Machine]) -> str | None:
        for machine in machines:
            mode = self.mode(machine)
            if mode is None:
                return f"Machine '{schedule.machine_text(machine)}' is not part of a maintenance schedule"
            if mode != DRAINING:
                return (f"Machine '{schedule.machine_text(machine)}' is not in DRAINING mode and cannot be "
                        "brought down")
        error = self._persist(schedule.StartMaintenance(tuple(machines)))
        if error is not None:
            return error
        self.master.touch()
        wanted = set(machines)
        for slave in [s for s in self.state.slaves.values() if slave_machine(s) in wanted]:
            log.info("machine %s is DOWN: shutting down and removing slave %s",
                     schedule.machine_text(slave_machine(slave)), slave.slave_id)
            shutdown = pb.SlaveEvent(type=pb.SlaveEvent.SHUTDOWN)
            shutdown.error.message = MACHINE_DOWN_MESSAGE
            self.master.send_slave(slave, shutdown)
            self.master.slaves.remove_for_maintenance(slave, MACHINE_DOWN_MESSAGE)
            self.statuses.pop(slave.slave_id, None)
        return None

    def machines_up(self, machines: list[Machine]) -> str | None:
        for machine in machines:
            mode = self.mode(machine)
            if mode is None:
                return f"Machine '{schedule.machine_text(machine)}' is not part of a maintenance schedule"
            if mode != DOWN:
                return f"Machine '{schedule.machine_text(machine)}' is not in DOWN mode and cannot be brought up"
        error = self._persist(schedule.StopMaintenance(tuple(machines)))
        if error is None:
            self.master.touch()
            log.info("machine(s) %s are UP", ", ".join(schedule.machine_text(m) for m in machines))
        return error

    # -- views (actor thread) ---------------------------------------------------------------

    def schedule_json(self) -> dict:
        return schedule.schedule_json(self.windows)

    def status_json(self) -> dict:
        """Mesos' ClusterStatus JSON: draining machines with the frameworks' answers, down machines."""
        self._refresh()
        slaves_of: dict[Machine, list[str]] = {}
        for slave in self.state.slaves.values():
            slaves_of.setdefault(slave_machine(slave), []).append(slave.slave_id)
        draining, down = [], []
        for machine in sorted(set(self._by_machine) | self._down):
            if machine in self._down:
                down.append(schedule.machine_json(machine))
                continue
            entry = {"id": schedule.machine_json(machine)}
            statuses = [_status_json(framework_id, answer, when)
                        for slave_id in sorted(slaves_of.get(machine, ()))
                        for framework_id, (answer, when) in sorted(self.statuses.get(slave_id, {}).items())]
            if statuses:
                entry["statuses"] = statuses
            draining.append(entry)
        out = {}
        if draining:
            out["draining_machines"] = draining
        if down:
            out["down_machines"] = down
        return out

    # -- inverse offers ---------------------------------------------------------------------

    def generate(self, slave_ids: Iterable[str] | None) -> None:
        """After an allocation run: inverse offers for the frameworks holding resources on
        the run's slaves of DRAINING machines (one per framework and slave, none outstanding)."""
        self._refresh()
        if not self._by_machine:
            return
        master = self.master
        if slave_ids is None:
            slaves = list(self.state.slaves.values())
        else:
            slaves = [s for s in (self.state.slaves.get(i) for i in slave_ids) if s is not None]
        now = time.monotonic()
        per_framework: dict[str, pb.Event] = {}
        for slave in slaves:
            window = self._by_machine.get(slave_machine(slave))
            if window is None or not slave.connected or not slave.active:
                continue
            outstanding = self.outstanding.setdefault(slave.slave_id, {})
            for framework_id in sorted(_holders(slave)):
                framework = self.state.frameworks.get(framework_id)
                if framework is None or not framework.connected or not framework.active:
                    continue
                if framework_id in outstanding:
                    continue
                until = self.filters.get((framework_id, slave.slave_id))
                if until is not None:
                    if until > now:
                        continue
                    del self.filters[(framework_id, slave.slave_id)]
                record = InverseOffer(master.ids.offer(), framework_id, slave.slave_id, window)
                self.inverse_offers[record.offer_id] = record
                outstanding[framework_id] = record.offer_id
                if master.flags.offer_timeout is not None:
                    record.timer = master.later(master.flags.offer_timeout, self._expired, record.offer_id)
                event = per_framework.get(framework_id)
                if event is None:
                    event = per_framework[framework_id] = pb.Event(type=pb.Event.INVERSE_OFFERS)
                self._fill(event.inverse_offers.inverse_offers.add(), record, slave)
        for framework_id, event in per_framework.items():
            ids = [o.id.value for o in event.inverse_offers.inverse_offers]
            log.info("sending inverse offers %s to framework %s", ", ".join(ids), framework_id)
            master.metrics.inc("master/inverse_offers_sent", len(ids))
            master.send_event(self.state.frameworks[framework_id], event)

    @staticmethod
    def _fill(proto: pb.InverseOffer, record: InverseOffer, slave: Slave) -> None:
        proto.id.value = record.offer_id
        proto.framework_id.value = record.framework_id
        proto.slave_id.value = record.slave_id
        _unavailability(proto.unavailability, record.window)
        url = proto.url
        url.scheme = "http"
        url.address.hostname = slave.hostname
        if slave.info.ip:
            url.address.ip = slave.info.ip
        url.address.port = slave.info.port
        url.path = "/slave(1)"

    def _forget(self, record: InverseOffer) -> None:
        self.inverse_offers.pop(record.offer_id, None)
        outstanding = self.outstanding.get(record.slave_id)
        if outstanding is not None and outstanding.get(record.framework_id) == record.offer_id:
            del outstanding[record.framework_id]
            if not outstanding:
                del self.outstanding[record.slave_id]
        if record.timer is not None:
            record.timer.cancel()

    def rescind(self, record: InverseOffer, notify: bool = True) -> None:
        self._forget(record)
        framework = self.state.frameworks.get(record.framework_id)
        if notify and framework is not None and framework.connected:
            event = pb.Event(type=pb.Event.RESCIND_INVERSE_OFFER)
            event.rescind_inverse_offer.inverse_offer_id.value = record.offer_id
            self.master.send_event(framework, event)
            self.master.metrics.inc("master/inverse_offers_rescinded")

    def _expired(self, offer_id: str) -> None:
        record = self.inverse_offers.get(offer_id)
        if record is not None:
            log.debug("inverse offer %s timed out", offer_id)
            self.rescind(record)

    def slave_offers_gone(self, slave: Slave) -> None:
        """The slave disconnected, reregistered or is removed: its inverse offers go."""
        for offer_id in list(self.outstanding.get(slave.slave_id, {}).values()):
            record = self.inverse_offers.get(offer_id)
            if record is not None:
                self.rescind(record)

    def framework_offers_gone(self, framework: Framework) -> None:
        """The framework disconnected, resubscribed or is removed: its inverse offers go
        (unanswered, so that a resubscribed scheduler gets them again)."""
        if not self.inverse_offers:
            return
        for record in [r for r in self.inverse_offers.values() if r.framework_id == framework.framework_id]:
            self._forget(record)

    # -- scheduler calls ----------------------------------------------------------------------

    def on_accept(self, framework: Framework, call: pb.Call) -> None:
        body = call.accept_inverse_offers
        self._answer(framework, body.inverse_offer_ids, "ACCEPT",
                     body.filters if body.HasField("filters") else None)

    def on_decline(self, framework: Framework, call: pb.Call) -> None:
        body = call.decline_inverse_offers
        self._answer(framework, body.inverse_offer_ids, "DECLINE",
                     body.filters if body.HasField("filters") else None)

    def _answer(self, framework: Framework, offer_ids, answer: str, filters: pb.Filters | None) -> None:
        master = self.master
        if not len(offer_ids):
            master.metrics.inc("master/invalid_inverse_offer_answers")
            log.info("framework %s: %s_INVERSE_OFFERS names no inverse offer", framework.framework_id, answer)
            return
        now_wall, now = time.time(), time.monotonic()
        for offer_id in offer_ids:
            record = self.inverse_offers.get(offer_id.value)
            if record is None or record.framework_id != framework.framework_id:
                # As Mesos: an answer to an inverse offer no longer valid is ignored.
                master.metrics.inc("master/invalid_inverse_offer_answers")
                log.info("framework %s: ignoring %s of inverse offer %s: it is no longer valid",
                         framework.framework_id, answer.lower(), offer_id.value)
                continue
            self._forget(record)
            self.statuses.setdefault(record.slave_id, {})[framework.framework_id] = (answer, now_wall)
            log.info("framework %s answered inverse offer %s (slave %s): %s", framework.framework_id,
                     record.offer_id, record.slave_id, answer)
            # Mesos installs a filter only when the call carries one (its drivers always do).
            seconds = refuse_seconds(filters) if filters is not None else 0.0
            if seconds > 0:
                self.filters[(framework.framework_id, record.slave_id)] = now + seconds
        master.touch()


def _holders(slave: Slave) -> set[str]:
    """Frameworks with something on the slave: running tasks, executors or offers."""
    holders = {framework_id for (framework_id, _), task in slave.tasks.items() if not is_terminal(task.state)}
    holders.update(slave.executors)
    holders.update(offer.framework_id for offer in slave.offers.values())
    return holders


def _unavailability(target, window: Window) -> None:
    target.start.nanoseconds = window.start_ns
    if window.duration_ns is not None:
        target.duration.nanoseconds = window.duration_ns


def _status_json(framework_id: str, answer: str, when: float) -> dict:
    return {"status": answer, "framework_id": {"value": framework_id},
            "timestamp": {"nanoseconds": int(when * 1e9)}}
