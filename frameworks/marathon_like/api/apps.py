"""/v2/apps: list, create, update, delete, restart, tasks and versions of apps."""

from __future__ import annotations

import re2
from flask import Blueprint, Response, jsonify, request

from frameworks.marathon_like import ids, schemas
from frameworks.marathon_like.api.common import body, core, deployment_result, embeds, qbool
from frameworks.marathon_like.core import encode
from frameworks.marathon_like.errors import BadRequest, NotFound, NotValid, app_not_found, task_not_found
from frameworks.marathon_like.model import app_json

bp = Blueprint("apps", __name__)


# -- label selectors: `k`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`; comma = AND --

def _split(text: str, sep: str = ",") -> list[str]:
    parts, cur, depth, escaped = [], "", 0, False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            cur += ch
        elif ch == ")":
            depth -= 1
            cur += ch
        elif ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


# RE2: linear in the selector's length whatever the caller sends (Python's re
# backtracks quadratically on a long run of spaces here).
_SET_TERM = re2.compile(r"^(.+?)\s+(in|notin)\s+\((.*)\)$")
MAX_SELECTOR = 4096


def label_selector(text: str):
    if len(text) > MAX_SELECTOR:
        raise BadRequest(f"Invalid label selector: {len(text)} characters, at most {MAX_SELECTOR} are allowed")
    terms = []
    for term in _split(text):
        m = _SET_TERM.match(term)
        if m:
            values = set(_split(m.group(3)))
            terms.append((m.group(1).strip(), m.group(2), values))
        elif "==" in term:
            key, value = term.split("==", 1)
            terms.append((key.strip(), "in", {value.strip()}))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), "notin", {value.strip()}))
        else:
            terms.append((term, "exists", None))

    def matches(labels: dict) -> bool:
        for key, op, values in terms:
            if op == "exists" and key not in labels:
                return False
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and key in labels and labels[key] in values:
                return False
        return True
    return matches


@bp.get("/v2/apps")
def list_apps():
    c = core()
    cmd, app_id, label = request.args.get("cmd"), request.args.get("id"), request.args.get("label")
    selector = label_selector(label) if label else None
    embed = embeds(("counts", "deployments"))
    plain = embed <= {"counts", "deployments"}
    with c.lock:
        out = []
        for app in c.apps.values():
            if cmd and cmd.lower() not in (app.get("cmd") or "").lower():
                continue
            if app_id and app_id.lower() not in app["id"].lower():
                continue
            if selector and not selector(app.get("labels") or {}):
                continue
            out.append(c.app_info_encoded(app) if plain else encode(c.app_info(app, embed)))
    return Response(b'{"apps":[' + b",".join(out) + b"]}", mimetype="application/json")


@bp.post("/v2/apps")
def create_app():
    raw = schemas.load(schemas.APP, body())
    c = core()
    app, deployment = c.create_app(raw, force=qbool("force"))
    with c.lock:
        info = c.app_info(app, {"counts", "deployments"})
    c.events.publish("api_post_event", clientIp=request.remote_addr, uri=request.path, appDefinition=app_json(app))
    response = jsonify(info)
    response.status_code = 201
    response.headers["Location"] = f"{request.host_url.rstrip('/')}/v2/apps{app['id']}"
    response.headers["Marathon-Deployment-Id"] = deployment.id
    return response


@bp.route("/v2/apps", methods=["PUT", "PATCH"])
def update_many():
    items = schemas.load(schemas.APP, body(default=[]), many=True)
    partial = request.method == "PATCH" or qbool("partialUpdate", True)
    c = core()
    deployment = None
    for index, raw in enumerate(items):
        if "id" not in raw:
            raise NotValid([{"path": f"/({index})/id", "errors": ["error.path.missing"]}])
        deployment, _ = c.update_app(raw["id"], raw, partial=partial, force=qbool("force"),
                                     create=request.method == "PUT")
    if deployment is None:
        raise BadRequest("No apps given")
    return deployment_result(deployment)


def _app_path(rest: str) -> str:
    return ids.canonical(rest)


@bp.route("/v2/apps/<path:rest>", methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
def app_routes(rest: str):
    rest = rest.rstrip("/")
    method = request.method
    if rest.endswith("/restart") and method == "POST":
        return restart(_app_path(rest[: -len("/restart")]))
    if "/tasks/" in rest and method == "DELETE":
        head, _, task_id = rest.rpartition("/tasks/")
        return kill_one(_app_path(head), task_id)
    if rest.endswith("/tasks") and method in ("GET", "DELETE"):
        head = rest[: -len("/tasks")]
        return app_tasks(head) if method == "GET" else kill_many(_app_path(head))
    if "/versions/" in rest and method == "GET":
        head, _, version = rest.rpartition("/versions/")
        return version_of(_app_path(head), version)
    if rest.endswith("/versions") and method == "GET":
        return versions(_app_path(rest[: -len("/versions")]))
    if rest.endswith("/*") and method == "GET":
        return group_apps(_app_path(rest[:-2]))
    app_id = _app_path(rest)
    if method == "GET":
        return get_app(app_id)
    if method in ("PUT", "PATCH"):
        return put_app(app_id)
    if method == "DELETE":
        deployment = core().delete_app(app_id, force=qbool("force", True))
        return deployment_result(deployment)
    raise NotFound("URI not found")


def get_app(app_id: str):
    c = core()
    with c.lock:
        app = c.app(app_id)
        return jsonify({"app": c.app_info(app, embeds(("counts", "deployments", "tasks", "lastTaskFailure")))})


def group_apps(group_id: str):
    c = core()
    with c.lock:
        prefix = group_id.rstrip("/") + "/"
        apps = [a for a in c.apps.values() if a["id"].startswith(prefix)]
        if not apps:
            raise NotFound(f"Group '{group_id}' does not exist")
        return jsonify({"*": [c.app_info(a, embeds(("counts", "deployments"))) for a in apps]})


def put_app(app_id: str):
    raw = schemas.load(schemas.APP, body())
    partial = request.method == "PATCH" or qbool("partialUpdate", True)
    c = core()
    deployment, created = c.update_app(app_id, raw, partial=partial, force=qbool("force"),
                                       create=request.method == "PUT")
    if created:
        return deployment_result(deployment, 201, f"{request.host_url.rstrip('/')}/v2/apps{app_id}")
    return deployment_result(deployment)


def restart(app_id: str):
    return deployment_result(core().restart_app(app_id, force=qbool("force")))


def app_tasks(head: str):
    c = core()
    with c.lock:
        if head.endswith("/*"):
            prefix = _app_path(head[:-2]).rstrip("/") + "/"
            tasks = [i.to_json() for a in c.apps for i in c.tasks_of(a) if a.startswith(prefix)]
        else:
            app = c.app(_app_path(head))
            tasks = [i.to_json(app) for i in c.tasks_of(app["id"])]
    return jsonify({"tasks": tasks})


def kill_many(app_id: str):
    c = core()
    scale, wipe = qbool("scale"), qbool("wipe")
    if scale and wipe:
        raise BadRequest("You cannot use scale and wipe at the same time.")
    host = request.args.get("host")
    with c.lock:
        app = c.app(app_id)
        victims = [i for i in c.tasks_of(app["id"]) if i.active and host in (None, "*", i.host)]
        result = c.kill_tasks(victims, scale=scale, wipe=wipe, force=qbool("force"))
    if scale:
        return deployment_result(result)
    return jsonify({"tasks": result})


def kill_one(app_id: str, task_id: str):
    c = core()
    scale, wipe = qbool("scale"), qbool("wipe")
    if scale and wipe:
        raise BadRequest("You cannot use scale and wipe at the same time.")
    with c.lock:
        c.app(app_id)
        inst = c.instances.get(task_id)
        if inst is None or inst.app_id != app_id:
            raise task_not_found(task_id)
        result = c.kill_tasks([inst], scale=scale, wipe=wipe, force=qbool("force"))
    if scale:
        return deployment_result(result)
    return jsonify({"task": result[0]})


def versions(app_id: str):
    c = core()
    with c.lock:
        c.app(app_id)
        return jsonify({"versions": c.storage.app_versions(app_id)})


def version_of(app_id: str, version: str):
    c = core()
    with c.lock:
        c.app(app_id)
        app = c.storage.app_version(app_id, version)
        if app is None:
            raise NotFound(f"App '{app_id}' does not exist in version {version}")
        return jsonify(app_json(app))
