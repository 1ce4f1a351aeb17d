"""Maintenance schedules and machine modes: parsing, validation and the registry
operations that change them (pure; no master state).

Mesos' maintenance primitives (mesos.apache.org/documentation/latest/maintenance/):
a schedule is a list of windows, each a list of machines (``{"hostname", "ip"}``)
and an unavailability (``{"start": {"nanoseconds"}, "duration": {"nanoseconds"}}``).
A machine in the schedule is DRAINING; an operator brings it DOWN
(``/master/machine/down``) and UP again (``/master/machine/up``, which also takes
it out of the schedule). A machine is identified by both fields, the hostname
compared without case, as Mesos does; an omitted field is the empty string.

The registry keeps ``{"windows": [...], "down_machines": [...]}`` in Mesos' JSON
(`offerd.master.registry.RegistryState.maintenance`), so a new leader (``--zk``) or
a restarted master (``--work_dir``) has the same schedule and modes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from types import MappingProxyType
from typing import Iterable

from google.protobuf import json_format

from offerd.master.registry import Operation, RegistryError
from offerd.proto import mesos_v1_maintenance_pb2 as v1_maintenance
from offerd.proto import mesos_v1_pb2 as v1

Machine = tuple  # (hostname in lower case, ip): how a machine is recognised

DRAINING = "DRAINING"
DOWN = "DOWN"
UP = "UP"


class ScheduleError(ValueError):
    """A schedule or machine list that cannot apply; the text says why (a 400)."""


@dataclasses.dataclass(frozen=True)
class Window:
    machines: tuple  # of Machine
    start_ns: int
    duration_ns: int | None = None


# -- machine ids --------------------------------------------------------------------------


def machine_key(hostname: str, ip: str) -> Machine:
    return (hostname.lower(), ip)


def machine_json(machine: Machine) -> dict:
    """Mesos' JSON of a MachineID: empty fields are left out."""
    out = {}
    if machine[0]:
        out["hostname"] = machine[0]
    if machine[1]:
        out["ip"] = machine[1]
    return out


def machine_text(machine: Machine) -> str:
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in machine_json(machine).items()) + "}"


def _check_machine(machine_id) -> Machine:
    hostname, ip = machine_id.hostname, machine_id.ip
    if not hostname and not ip:
        raise ScheduleError("Both 'hostname' and 'ip' for a machine are empty")
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ScheduleError(f"Failed to parse IP '{ip}' of a machine: not an IPv4 address") from None
    return machine_key(hostname, ip)


def machines_from_protos(ids: Iterable) -> list[Machine]:
    """A list of MachineIDs (machine/down, machine/up): non-empty, each valid, no repeats."""
    ids = list(ids)
    if not ids:
        raise ScheduleError("List of machines is empty")
    seen: list[Machine] = []
    for machine_id in ids:
        machine = _check_machine(machine_id)
        if machine in seen:
            raise ScheduleError(f"Machine '{machine_text(machine)}' appears more than once in the schedule")
        seen.append(machine)
    return seen


def machines_from_json(body) -> list[Machine]:
    if not isinstance(body, list):
        raise ScheduleError("Expecting a JSON array of machines: [{\"hostname\": ..., \"ip\": ...}, ...]")
    protos = []
    for entry in body:
        try:
            protos.append(json_format.ParseDict(entry, v1.MachineID()))
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            raise ScheduleError(f"Failed to parse a machine: {exc}") from None
    return machines_from_protos(protos)


# -- schedules ----------------------------------------------------------------------------


def schedule_from_proto(schedule: v1_maintenance.Schedule) -> tuple:
    """The windows of a v1 Schedule, checked as Mesos checks one (on its own; see
    `validate_against` for the machines' modes)."""
    windows, seen = [], set()
    for index, window in enumerate(schedule.windows):
        if not len(window.machine_ids):
            raise ScheduleError("List of machines in the maintenance window is empty")
        if not window.HasField("unavailability") or not window.unavailability.HasField("start"):
            raise ScheduleError(f"Window {index} needs an unavailability with a 'start' (nanoseconds since the epoch)")
        unavailability = window.unavailability
        duration = unavailability.duration.nanoseconds if unavailability.HasField("duration") else None
        if duration is not None and duration < 0:
            raise ScheduleError("Unavailability 'duration' is negative")
        machines = []
        for machine_id in window.machine_ids:
            machine = _check_machine(machine_id)
            if machine in seen:
                raise ScheduleError(f"Machine '{machine_text(machine)}' appears more than once in the schedule")
            seen.add(machine)
            machines.append(machine)
        windows.append(Window(tuple(machines), unavailability.start.nanoseconds, duration))
    return tuple(windows)


def schedule_from_json(body) -> tuple:
    if not isinstance(body, dict):
        raise ScheduleError("Expecting a JSON object: {\"windows\": [...]}")
    try:
        proto = json_format.ParseDict(body, v1_maintenance.Schedule())
    except (json_format.ParseError, TypeError, AttributeError) as exc:
        raise ScheduleError(f"Failed to parse the maintenance schedule: {exc}") from None
    return schedule_from_proto(proto)


def unavailability_json(window: Window) -> dict:
    out = {"start": {"nanoseconds": window.start_ns}}
    if window.duration_ns is not None:
        out["duration"] = {"nanoseconds": window.duration_ns}
    return out


def schedule_json(windows: Iterable[Window]) -> dict:
    """Mesos' JSON of a Schedule (what GET /master/maintenance/schedule answers)."""
    return {"windows": [{"machine_ids": [machine_json(m) for m in w.machines],
                         "unavailability": unavailability_json(w)} for w in windows]}


def schedule_proto(windows: Iterable[Window]) -> v1_maintenance.Schedule:
    return json_format.ParseDict(schedule_json(windows), v1_maintenance.Schedule())


def validate_against(windows: tuple, down: frozenset) -> None:
    """A new schedule may not drop a DOWN machine: machine/up brings it back."""
    scheduled = {m for w in windows for m in w.machines}
    for machine in sorted(down):
        if machine not in scheduled:
            raise ScheduleError(f"Machine '{machine_text(machine)}' is deactivated and cannot be removed from "
                                "the schedule")


# -- the registry's copy ------------------------------------------------------------------


def _windows_of(maintenance) -> tuple:
    if not maintenance:
        return ()
    proto = json_format.ParseDict({"windows": list(maintenance.get("windows", ()))}, v1_maintenance.Schedule())
    return schedule_from_proto(proto)


def stored(state) -> tuple[tuple, frozenset]:
    """(windows, DOWN machines) of a registry state."""
    maintenance = state.maintenance
    if not maintenance:
        return (), frozenset()
    down = frozenset(machine_key(m.get("hostname", ""), m.get("ip", ""))
                     for m in maintenance.get("down_machines", ()))
    return _windows_of(maintenance), down


def _store(state, windows: tuple, down: frozenset):
    if not windows and not down:
        return dataclasses.replace(state, maintenance=None)
    data = {"windows": schedule_json(windows)["windows"],
            "down_machines": [machine_json(m) for m in sorted(down)]}
    return dataclasses.replace(state, maintenance=MappingProxyType(data))


@dataclasses.dataclass(frozen=True)
class UpdateSchedule(Operation):
    """Replace the schedule; new machines start DRAINING, DOWN ones stay DOWN."""

    windows: tuple

    def apply(self, state):
        _, down = stored(state)
        try:
            validate_against(self.windows, down)
        except ScheduleError as exc:
            raise RegistryError(str(exc)) from None
        return _store(state, self.windows, down)


@dataclasses.dataclass(frozen=True)
class StartMaintenance(Operation):
    """DRAINING machines go DOWN."""

    machines: tuple

    def apply(self, state):
        windows, down = stored(state)
        scheduled = {m for w in windows for m in w.machines}
        for machine in self.machines:
            if machine not in scheduled:
                raise RegistryError(f"Machine '{machine_text(machine)}' is not part of a maintenance schedule")
        return _store(state, windows, down | frozenset(self.machines))


@dataclasses.dataclass(frozen=True)
class StopMaintenance(Operation):
    """DOWN machines come UP: out of the schedule (windows left empty go too)."""

    machines: tuple

    def apply(self, state):
        windows, down = stored(state)
        gone = frozenset(self.machines)
        kept = tuple(dataclasses.replace(w, machines=tuple(m for m in w.machines if m not in gone))
                     for w in windows)
        return _store(state, tuple(w for w in kept if w.machines), down - gone)
