"""/v2/tasks: every task, and the bulk kill."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from frameworks.marathon_like import ids, schemas
from frameworks.marathon_like.api.common import body, core, deployment_result, qbool
from frameworks.marathon_like.errors import BadRequest

bp = Blueprint("tasks", __name__)

STATUS = {"running": {"TASK_RUNNING"}, "staging": {"TASK_STAGING", "TASK_STARTING"}}


@bp.get("/v2/tasks")
def list_tasks():
    wanted = set()
    for value in request.args.getlist("status") + request.args.getlist("status[]"):
        wanted |= STATUS.get(value.lower(), set())
    c = core()
    accept = request.accept_mimetypes
    if accept["text/plain"] > accept["application/json"]:
        with c.lock:
            text = endpoints_text(c)
        return Response(text, mimetype="text/plain")
    with c.lock:
        tasks = [i.to_json() for i in c.instances.values()
                 if i.state not in ("TASK_KILLED",) and (not wanted or i.state in wanted)]
    return jsonify({"tasks": tasks})


def endpoints_text(c) -> str:
    """The pre-1.5 text form load balancers read (`Accept: text/plain`): per app and service
    port one line `<id with / → _>\t<servicePort>\t<host:port>\t…`; apps without ports get
    one line with a blank port and the hosts of their running tasks."""
    lines = []
    for app_id in sorted(c.apps):
        app = c.apps[app_id]
        clean = app_id.strip("/").replace("/", "_")
        running = [i for i in c.by_app.get(app_id, {}).values() if i.running]
        service_ports = [p["port"] for p in app["portDefinitions"]]
        if not service_ports:
            lines.append(f"{clean}\t \t" + "".join(f"{i.host}\t" for i in running))
        for index, port in enumerate(service_ports):
            lines.append(f"{clean}\t{port}\t" + "".join(
                f"{i.host}:{i.ports[index]}\t" for i in running if index < len(i.ports)))
    return "".join(line + "\n" for line in lines)


@bp.post("/v2/tasks/delete")
def delete_tasks():
    data = schemas.load(schemas.TASK_IDS, body())
    scale, wipe = qbool("scale"), qbool("wipe")
    if scale and wipe:
        raise BadRequest("You cannot use scale and wipe at the same time.")
    c = core()
    with c.lock:
        victims = []
        for task_id in data["ids"]:
            if ids.app_id_of_task(task_id) is None:
                raise BadRequest(f"Invalid task id '{task_id}'")
            inst = c.instances.get(task_id)
            if inst is not None:
                victims.append(inst)
        result = c.kill_tasks(victims, scale=scale, wipe=wipe, force=qbool("force"))
    if scale:
        return deployment_result(result)
    return jsonify({"tasks": result})
