"""/v2/groups: the tree of apps by path. Groups are derived from app ids."""

from __future__ import annotations


from flask import Blueprint, jsonify, request

from frameworks.marathon_like import ids, schemas
from frameworks.marathon_like.api.common import body, core, deployment_result, qbool
from frameworks.marathon_like.errors import Conflict, group_not_found

bp = Blueprint("groups", __name__)


def _find(tree: dict, group_id: str) -> dict | None:
    if tree["id"] == group_id:
        return tree
    for child in tree["groups"]:
        found = _find(child, group_id)
        if found:
            return found
    return None


@bp.get("/v2/groups", defaults={"group_id": ""})
@bp.get("/v2/groups/<path:group_id>")
def get_group(group_id: str):
    group_id = ids.canonical(group_id)
    c = core()
    with c.lock:
        tree = _find(c.group_json_of(c.apps), group_id)
        if tree is None:
            raise group_not_found(group_id)
    return jsonify(tree)


def _flatten(group: dict, parent: str) -> list[dict]:
    group_id = ids.canonical(group.get("id", ""), parent)
    apps = []
    for app in group.get("apps") or []:
        app = dict(app)
        app["id"] = ids.canonical(app.get("id", ""), group_id)
        apps.append(app)
    for child in group.get("groups") or []:
        apps += _flatten(child, group_id)
    return apps


@bp.route("/v2/groups", methods=["POST", "PUT"], defaults={"group_id": ""})
@bp.route("/v2/groups/<path:group_id>", methods=["POST", "PUT"])
def change_group(group_id: str):
    raw = schemas.load(schemas.GROUP, body())
    target_id = ids.canonical(raw.get("id") or group_id, ids.canonical(group_id))
    c = core()
    force = qbool("force")
    with c.lock:
        prefix = target_id.rstrip("/") + "/"
        existing = {a for a in c.apps if a.startswith(prefix)}
        if request.method == "POST" and existing:
            raise Conflict(f"Group {target_id} is already created. Use PUT to change this group.")
        if "scaleBy" in raw:
            deployment = None
            for app_id in sorted(existing):
                app = c.apps[app_id]
                delta = round(app["instances"] * raw["scaleBy"]) - app["instances"]
                deployment = c.scale_app(app_id, delta, force)
        else:
            deployment = None
            for app in _flatten({**raw, "id": target_id}, "/"):
                app = schemas.load(schemas.APP, app)
                deployment, _ = c.update_app(app["id"], app, partial=True, force=force, create=True)
        if deployment is None:
            from frameworks.marathon_like.deployments import build_plan
            deployment = build_plan({}, {}, version=c.clock.next())
    return deployment_result(deployment, 201 if request.method == "POST" else 200)


@bp.delete("/v2/groups", defaults={"group_id": ""})
@bp.delete("/v2/groups/<path:group_id>")
def delete_group(group_id: str):
    group_id = ids.canonical(group_id)
    c = core()
    with c.lock:
        prefix = group_id.rstrip("/") + "/"
        victims = [a for a in c.apps if a.startswith(prefix)]
        if not victims and group_id != "/":
            raise group_not_found(group_id)
        deployment = None
        for app_id in victims:
            deployment = c.delete_app(app_id, force=qbool("force"))
        if deployment is None:
            from frameworks.marathon_like.deployments import build_plan
            deployment = build_plan({}, {}, version=c.clock.next())
    return deployment_result(deployment)
