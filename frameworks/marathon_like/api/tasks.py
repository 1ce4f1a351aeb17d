"""/v2/tasks: every task, and the bulk kill."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

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
    with c.lock:
        tasks = [i.to_json() for i in c.instances.values()
                 if i.state not in ("TASK_KILLED",) and (not wanted or i.state in wanted)]
    return jsonify({"tasks": tasks})


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
