"""/v2/info, /v2/leader, /ping, /metrics, /openapi.json and `/`."""

from __future__ import annotations

import threading

from flask import Blueprint, Response, jsonify, redirect, request

from offerd.common.redact import redact_url

from frameworks.marathon_like import schemas
from frameworks.marathon_like.api.common import core
from frameworks.marathon_like.errors import NotFound

bp = Blueprint("system", __name__)
VERSION = "1.4.13"


def _leader_ui_url(cfg) -> str | None:
    """The master's web UI, or None when only ZooKeeper knows where it is."""
    master = cfg.master or ""
    if not master or master.startswith("zk://"):
        return None
    if master.startswith(("http://", "https://")):
        return redact_url(master.rstrip("/") + "/")
    return f"{'https' if cfg.ssl_ca_file else 'http'}://{redact_url(master)}/"


@bp.get("/v2/info")
def info():
    c = core()
    cfg = c.config
    leader = c.leader_address()
    # Flags may carry passwords (zk://user:pass@...): shown redacted, and secrets not at all.
    return jsonify({
        "name": "marathon", "version": VERSION, "buildref": "offerd", "elected": c.leading, "leader": leader,
        "frameworkId": c.framework_id,
        "marathon_config": {
            "access_control_allow_origin": None, "checkpoint": True,
            "decline_offer_duration": int(cfg.decline_offer_duration * 1000), "default_network_name": None,
            "env_vars_prefix": None, "executor": "//cmd", "failover_timeout": int(cfg.failover_timeout),
            "features": [], "framework_name": cfg.framework_name, "ha": bool(cfg.zk), "hostname": cfg.hostname,
            "launch_token": 100, "launch_token_refresh_interval": 30000, "leader_proxy_connection_timeout_ms": 5000,
            "leader_proxy_read_timeout_ms": 10000, "local_port_min": cfg.local_port_min,
            "local_port_max": cfg.local_port_max, "master": redact_url(cfg.master),
            "max_instances_per_offer": cfg.max_instances_per_offer, "mesos_bridge_name": "mesos-bridge",
            "mesos_heartbeat_failure_threshold": 5, "mesos_heartbeat_interval": 15000,
            "mesos_leader_ui_url": _leader_ui_url(cfg), "mesos_role": cfg.mesos_role,
            "mesos_authentication_principal": cfg.mesos_authentication_principal or None,
            "mesos_user": cfg.mesos_user or None, "new_group_enforce_role": "off",
            "min_revive_offers_interval": int(cfg.min_revive_offers_interval * 1000),
            "offer_matching_timeout": 3000, "on_elected_prepare_timeout": 180000,
            "reconciliation_initial_delay": 15000, "reconciliation_interval": int(cfg.reconciliation_interval * 1000),
            "scale_apps_initial_delay": 15000, "scale_apps_interval": 300000, "store_cache": True,
            "task_launch_confirm_timeout": 300000, "task_launch_timeout": 300000,
            "task_lost_expunge_initial_delay": 300000, "task_lost_expunge_interval": 30000,
            "task_reservation_timeout": 20000, "webui_url": None, "maintenance_mode": False,
        },
        "zookeeper_config": {
            "zk": redact_url(cfg.zk) or None, "zk_compression": True, "zk_compression_threshold": 65536,
            "zk_connection_timeout": 10000, "zk_max_node_size": 1024000, "zk_max_versions": 50,
            "zk_session_timeout": 10000, "zk_timeout": 10000,
        },
        "http_config": {"http_port": cfg.http_port, "https_port": cfg.http_port if cfg.ssl_cert_file else 8443},
    })


@bp.get("/v2/leader")
def leader():
    c = core()
    leader = c.leader_address()
    if leader is None:
        raise NotFound("There is no leader")
    return jsonify({"leader": leader})


@bp.delete("/v2/leader")
def abdicate():
    c = core()
    callback = c.extras.get("abdicate")
    if callback is None:
        raise NotFound("There is no leader")
    threading.Timer(0.5, callback).start()
    return jsonify({"message": "Leadership abdicated"})


@bp.get("/ping")
def ping():
    accept = request.accept_mimetypes
    best = accept.best_match(["text/plain", "application/json"]) if accept else "text/plain"
    if best == "application/json" and accept["application/json"] > accept["text/plain"]:
        return Response('"pong"', mimetype="application/json")
    if best is None and accept and "*/*" not in str(accept):
        return Response(status=204)
    return Response("pong", mimetype="text/plain")


@bp.get("/metrics")
def metrics():
    c = core()
    with c.lock:
        counters = {f"offerd.marathon.{k}": {"count": v} for k, v in sorted(c.counters.items())}
        gauges = {
            "offerd.marathon.apps": {"value": len(c.apps)},
            "offerd.marathon.tasks": {"value": len(c.instances)},
            "offerd.marathon.tasks.running": {"value": sum(1 for i in c.instances.values() if i.running)},
            "offerd.marathon.deployments": {"value": len(c.deployments)},
            "offerd.marathon.queue": {"value": sum(max(0, e.count) for e in c.queue.values())},
            "offerd.marathon.events.subscribers": {"value": c.events.subscribers},
            "offerd.marathon.events.streams": {"value": c.events.streams},
        }
    return jsonify({"version": "4.0.0", "counters": counters, "gauges": gauges, "histograms": {},
                    "meters": {}, "timers": {}})


@bp.get("/")
def root():
    return redirect("/ui/", 302)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


def _op(summary, body=None, response="DeploymentResult", codes=(200,)):
    op = {"summary": summary, "responses": {}}
    for code in codes:
        ref = {"$ref": f"#/components/schemas/{response}"} if code < 300 else {"$ref": "#/components/schemas/ErrorBody"}
        op["responses"][str(code)] = {"description": "", "content": {"application/json": {"schema": ref}}}
    for code in (400, 404, 409, 422):
        op["responses"].setdefault(str(code), {"description": "error", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return op


def _param(name, where="query", kind="string", required=False):
    return {"name": name, "in": where, "required": required, "schema": {"type": kind}}


def openapi_document() -> dict:
    app_id = _param("appId", "path", required=True)
    force = _param("force", kind="boolean")
    group_id = _param("groupId", "path", required=True)
    paths = {
        "/v2/apps": {
            "get": {**_op("List apps", response="AppInfoResponse"),
                    "parameters": [_param("cmd"), _param("id"), _param("label"), _param("embed")]},
            "post": {**_op("Create an app", "AppSchema", "AppInfoResponse", (201,)), "parameters": [force]},
        },
        "/v2/apps/{appId}": {
            "get": {**_op("One app", response="AppInfoResponse"), "parameters": [app_id]},
            "put": {**_op("Update or create an app", "AppSchema"),
                    "parameters": [app_id, force, _param("partialUpdate", kind="boolean")]},
            "patch": {**_op("Patch an app", "AppSchema"), "parameters": [app_id, force]},
            "delete": {**_op("Delete an app"), "parameters": [app_id, force]},
        },
        "/v2/apps/{appId}/restart": {"post": {**_op("Rolling restart"), "parameters": [app_id, force]}},
        "/v2/apps/{appId}/tasks": {
            "get": {**_op("Tasks of an app", response="TaskResponse"), "parameters": [app_id]},
            "delete": {**_op("Kill tasks of an app", response="TaskResponse"),
                       "parameters": [app_id, _param("host"), _param("scale", kind="boolean"),
                                      _param("wipe", kind="boolean"), force]},
        },
        "/v2/apps/{appId}/tasks/{taskId}": {
            "delete": {**_op("Kill one task of an app", response="TaskResponse"),
                       "parameters": [app_id, _param("taskId", "path", required=True),
                                      _param("scale", kind="boolean"), _param("wipe", kind="boolean"), force]}},
        "/v2/apps/{appId}/versions": {"get": {**_op("Versions of an app"), "parameters": [app_id]}},
        "/v2/apps/{appId}/versions/{version}": {
            "get": {**_op("An app at a version"), "parameters": [app_id, _param("version", "path", required=True)]}},
        "/v2/tasks": {"get": {**_op("All tasks", response="TaskResponse"), "parameters": [_param("status")]}},
        "/v2/tasks/delete": {"post": {**_op("Kill tasks", "TaskIdsSchema"),
                                      "parameters": [_param("scale", kind="boolean"), force]}},
        "/v2/deployments": {"get": _op("Running deployments")},
        "/v2/deployments/{deploymentId}": {"delete": {**_op("Roll back or stop a deployment", codes=(200, 202)),
                                                      "parameters": [_param("deploymentId", "path", required=True),
                                                                     force]}},
        "/v2/groups": {"get": _op("The root group"), "post": _op("Create a group", "GroupSchema", codes=(201,)),
                       "put": {**_op("Change the root group", "GroupSchema"),
                               "parameters": [force, _param("dryRun", kind="boolean")]}},
        "/v2/groups/{groupId}": {
            "get": {**_op("A group"), "parameters": [group_id]},
            "post": {**_op("Create a group", "GroupSchema", codes=(201,)), "parameters": [group_id, force]},
            "put": {**_op("Change a group", "GroupSchema"),
                    "parameters": [group_id, force, _param("dryRun", kind="boolean")]},
            "patch": {**_op("Change a group's own settings", "GroupSchema"), "parameters": [group_id]},
            "delete": {**_op("Delete a group"), "parameters": [group_id, force]},
        },
        "/v2/groups/{groupId}/versions": {"get": {**_op("Versions of a group"), "parameters": [group_id]}},
        "/v2/groups/{groupId}/versions/{version}": {
            "get": {**_op("A group at a version"), "parameters": [group_id, _param("version", "path", required=True)]}},
        "/v2/queue": {"get": _op("The launch queue")},
        "/v2/queue/{appId}/delay": {"delete": {**_op("Reset an app's backoff", codes=(204,)), "parameters": [app_id]}},
        "/v2/info": {"get": _op("Framework info")},
        "/v2/leader": {"get": _op("The leader")},
        "/ping": {"get": {"summary": "pong", "responses": {"200": {"description": "pong"}}}},
        "/metrics": {"get": _op("Metrics")},
    }
    components = {cls.__name__: schemas.schema_component(cls) for cls in schemas.COMPONENTS}
    return {"openapi": "3.0.3", "info": {"title": "offerd Marathon-like API", "version": VERSION},
            "paths": paths, "components": {"schemas": components}}
