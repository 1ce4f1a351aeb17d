"""/v2/groups: the tree of apps by path, versions, dry runs, settings (groups.py)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from frameworks.marathon_like import groups as ops
from frameworks.marathon_like import ids, schemas, validation
from frameworks.marathon_like.api.common import body, core, deployment_result, qbool
from frameworks.marathon_like.errors import Conflict, NotValid, group_not_found

bp = Blueprint("groups", __name__)


def _find(tree: dict, group_id: str) -> dict | None:
    if tree["id"] == group_id:
        return tree
    for child in tree["groups"]:
        found = _find(child, group_id)
        if found:
            return found
    return None


def _load_group() -> dict:
    raw = schemas.load(schemas.GROUP, body())
    details = validation.group_errors(raw)
    if details:
        raise NotValid(details)
    return raw


@bp.get("/v2/groups", defaults={"group_id": ""})
@bp.get("/v2/groups/<path:group_id>")
def get_group(group_id: str):
    c = core()
    head, sep, version = ("/" + group_id.strip("/")).rpartition("/versions")
    if sep and (version == "" or version.startswith("/")):
        # /v2/groups[/{id}]/versions[/{ts}] ("versions" is a reserved last segment, never an id)
        gid = ids.canonical(head)
        with c.lock:
            if version.strip("/"):
                return jsonify(ops.group_at(c, gid, version.strip("/")))
            return jsonify(ops.versions(c, gid))
    group_id = ids.canonical(group_id)
    with c.lock:
        tree = _find(c.group_json_of(c.apps), group_id)
        if tree is None:
            raise group_not_found(group_id)
    return jsonify(tree)


@bp.route("/v2/groups", methods=["POST", "PUT"], defaults={"group_id": ""})
@bp.route("/v2/groups/<path:group_id>", methods=["POST", "PUT"])
def change_group(group_id: str):
    raw = _load_group()
    target_id = ids.canonical(raw["id"], ids.canonical(group_id)) if raw.get("id") else ids.canonical(group_id)
    c = core()
    force = qbool("force")
    dry = qbool("dryRun")
    with c.lock:
        if request.method == "POST" and target_id != "/" and ops.exists(c, target_id):
            raise Conflict(f"Group {target_id} is already created. Use PUT to change this group.")
        if "version" in raw and request.method == "PUT":
            deployment = ops.rollback(c, target_id, raw["version"], force) or ops.empty_plan(c)
            return deployment_result(deployment)
        if "scaleBy" in raw:
            deployment = ops.scale_by(c, target_id, raw["scaleBy"], force)
            return deployment_result(deployment or ops.empty_plan(c))
        apps, groups = ops.flatten({**raw, "id": target_id}, "/")
        ops.check_ids(groups)
        apps = [{**schemas.load(schemas.APP, app), "id": app["id"]} for app in apps]
        if dry:
            return jsonify({"steps": ops.dry_run(c, apps).to_json()["steps"]})
        deployment = None
        for app in apps:
            deployment, _ = c.update_app(app["id"], app, partial=True, force=force, create=True)
        ops.save_settings(c, [g for g in groups if g[0] != "/" or raw.get("dependencies")],
                          deployment.version if deployment else c.clock.next(), replace="dependencies" in raw)
        deployment = deployment or ops.empty_plan(c)
    return deployment_result(deployment, 201 if request.method == "POST" else 200)


@bp.patch("/v2/groups", defaults={"group_id": ""})
@bp.patch("/v2/groups/<path:group_id>")
def patch_group(group_id: str):
    """Top-level settings only (dependencies): no app changes, no restart."""
    raw = _load_group()
    group_id = ids.canonical(group_id)
    c = core()
    with c.lock:
        if not ops.exists(c, group_id):
            raise group_not_found(group_id)
        deployment = ops.empty_plan(c)
        if "dependencies" in raw:
            dependencies = [ids.canonical(d, group_id) for d in raw["dependencies"]]
            ops.save_settings(c, [(group_id, dependencies)], deployment.version)
    return deployment_result(deployment)


@bp.delete("/v2/groups", defaults={"group_id": ""})
@bp.delete("/v2/groups/<path:group_id>")
def delete_group(group_id: str):
    group_id = ids.canonical(group_id)
    c = core()
    with c.lock:
        if not ops.exists(c, group_id):
            raise group_not_found(group_id)
        victims = [a for a in c.apps if ops.under(group_id, a) and a != group_id]
        deployment = None
        for app_id in victims:
            deployment = c.delete_app(app_id, force=qbool("force"))
        ops.delete_settings(c, group_id)
        deployment = deployment or ops.empty_plan(c)
    return deployment_result(deployment)
