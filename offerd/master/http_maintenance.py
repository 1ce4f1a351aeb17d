"""HTTP endpoints of maintenance, in Mesos' paths and JSON shapes
(mesos.apache.org/documentation/latest/maintenance/):

* ``GET /master/maintenance/schedule``: the schedule; ``POST``: replace it.
* ``POST /master/machine/down``: a JSON array of machines (DRAINING) to bring DOWN.
* ``POST /master/machine/up``: a JSON array of machines (DOWN) to bring UP.
* ``GET /master/maintenance/status``: draining machines with the frameworks'
  answers to inverse offers, down machines.

Each also answers without the ``/master`` prefix. A bad body or a transition the
machines' modes do not allow is a 400 saying why, and nothing changes. ACLs as
Mesos' (``update_maintenance_schedules``, ``start_maintenances``,
``stop_maintenances``, ``get_maintenance_schedules``, ``get_maintenance_statuses``),
the object being each machine's hostname (its ip when it has none): a change needs
every machine allowed, a read shows only the allowed ones. The v1 operator calls
(offerd.master.operator_api) share these functions.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from offerd.master import http_authz
from offerd.master import maintenance_schedule as schedule
from offerd.master.http_common import invalidate_snapshots, json_response, master, principal, text_response
from offerd.master.maintenance_schedule import Machine, ScheduleError


def machine_object(machine: Machine) -> str:
    return machine[0] or machine[1]


def refusal(action: str, machines) -> Response | None:
    """A 403 naming the ACL if any machine may not be acted on, else None."""
    for machine in machines:
        refused = http_authz.refused(action, machine_object(machine))
        if refused is not None:
            return refused
    return None


def _allowed(action: str):
    authz = http_authz.authorizer()
    if not authz.configured:
        return lambda entry: True
    who = principal()

    def can(entry: dict) -> bool:
        return authz.allowed(who, action, entry.get("hostname") or entry.get("ip"))
    return can


def schedule_document() -> dict:
    """The schedule, with only the machines the caller may see (windows left empty dropped)."""
    serving = master()
    document = serving.actor.call(serving.maintenance.schedule_json)
    can = _allowed("get_maintenance_schedules")
    windows = []
    for window in document["windows"]:
        ids = [m for m in window["machine_ids"] if can(m)]
        if ids:
            windows.append({**window, "machine_ids": ids})
    return {"windows": windows}


def status_document() -> dict:
    serving = master()
    document = serving.actor.call(serving.maintenance.status_json)
    can = _allowed("get_maintenance_statuses")
    out = {}
    draining = [m for m in document.get("draining_machines", ()) if can(m["id"])]
    down = [m for m in document.get("down_machines", ()) if can(m)]
    if draining:
        out["draining_machines"] = draining
    if down:
        out["down_machines"] = down
    return out


def update_schedule(windows: tuple) -> Response:
    machines = [m for w in windows for m in w.machines]
    refused = refusal("update_maintenance_schedules", machines)
    if refused is not None:
        return refused
    return _done(master().actor.call(master().maintenance.update_schedule, windows))


def machines_down(machines: list[Machine]) -> Response:
    refused = refusal("start_maintenances", machines)
    if refused is not None:
        return refused
    return _done(master().actor.call(master().maintenance.machines_down, machines))


def machines_up(machines: list[Machine]) -> Response:
    refused = refusal("stop_maintenances", machines)
    if refused is not None:
        return refused
    return _done(master().actor.call(master().maintenance.machines_up, machines))


def _done(error: str | None) -> Response:
    invalidate_snapshots()
    return text_response(error, 400) if error else Response(b"", status=200)


def _json_body():
    try:
        return json.loads(request.get_data() or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"Failed to parse the request body as JSON: {exc}") from None


maintenance_http = Blueprint("maintenance_http", __name__)


@maintenance_http.route("/master/maintenance/schedule", methods=["GET", "POST"])
@maintenance_http.route("/maintenance/schedule", methods=["GET", "POST"])
def schedule_view():
    if request.method == "GET":
        return json_response(schedule_document())
    try:
        windows = schedule.schedule_from_json(_json_body())
    except ScheduleError as exc:
        return text_response(str(exc), 400)
    return update_schedule(windows)


@maintenance_http.get("/master/maintenance/status")
@maintenance_http.get("/maintenance/status")
def status_view():
    return json_response(status_document())


@maintenance_http.post("/master/machine/down")
@maintenance_http.post("/machine/down")
def machine_down_view():
    try:
        machines = schedule.machines_from_json(_json_body())
    except ScheduleError as exc:
        return text_response(str(exc), 400)
    return machines_down(machines)


@maintenance_http.post("/master/machine/up")
@maintenance_http.post("/machine/up")
def machine_up_view():
    try:
        machines = schedule.machines_from_json(_json_body())
    except ScheduleError as exc:
        return text_response(str(exc), 400)
    return machines_up(machines)


def register(app) -> None:
    app.register_blueprint(maintenance_http)
