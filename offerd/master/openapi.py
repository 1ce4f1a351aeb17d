"""The master's HTTP API as an OpenAPI 3 document, served at ``/openapi.json``.

Written from the views (offerd/master/http_*.py) so that clients and the HTTP
fuzzer (tests/fuzz) know every path, query parameter and request body. A unit
test walks the Flask app's routes and fails when one is missing here, or when a
path here has no route.
"""

from __future__ import annotations

from flask import jsonify

from offerd import __version__

_TEXT_ERROR = {"description": "refused; the body (text/plain) says why and what to do"}


def _param(name: str, where: str = "query", kind: str = "string", required: bool = False, **schema) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "schema": {"type": kind, **schema}}


def _op(summary: str, params: tuple = (), body: dict | None = None, media: str = "application/json") -> dict:
    operation = {"summary": summary, "parameters": list(params),
                 "responses": {"200": {"description": "done"}, "400": _TEXT_ERROR, "401": _TEXT_ERROR,
                               "403": _TEXT_ERROR, "404": _TEXT_ERROR, "415": _TEXT_ERROR}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
    return operation


def _v1_operator() -> dict:
    """POST /api/v1: a mesos.v1.master.Call in JSON or protobuf (docs/v1-api.md)."""
    from offerd.master.operator_api import HANDLERS, Call

    call = {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string", "enum": [Call.Type.Name(t) for t in HANDLERS]}}}
    operation = _op("Mesos' v1 operator API: a mesos.v1.master.Call, answered with a mesos.v1.master.Response "
                    "(ACLs as the REST equivalents; 501 for calls not served, 307 to the leader on a standby)",
                    body=call)
    operation["requestBody"]["content"]["application/x-protobuf"] = {"schema": {"type": "string", "format": "binary"}}
    operation["responses"].update({"406": _TEXT_ERROR, "501": _TEXT_ERROR,
                                   "307": {"description": "a standby master: the same call on the leader"}})
    return operation


JSONP = _param("jsonp", pattern=r"^[A-Za-z_$][\w$.]*$")
FRAMEWORK_ID = _param("framework_id")
SLAVE_ID = _param("slave_id")
# A role as Mesos accepts it (offerd.common.resources.validate_role), in its simple form.
_ROLE = {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,15}$"}
_RESOURCE = {"type": "object", "required": ["name", "type", "scalar"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "enum": ["cpus", "mem", "disk", "gpus"]},
    "type": {"type": "string", "enum": ["SCALAR"]},
    "scalar": {"type": "object", "required": ["value"], "additionalProperties": False,
               "properties": {"value": {"type": "number", "minimum": 0}}}}}
_FILE_PARAMS = (SLAVE_ID, _param("path", required=True))
_NANOSECONDS = {"type": "object", "required": ["nanoseconds"], "properties": {"nanoseconds": {"type": "integer"}}}
_MACHINES = {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
    "hostname": {"type": "string"}, "ip": {"type": "string"}}}}
_SCHEDULE = {"type": "object", "properties": {"windows": {"type": "array", "items": {
    "type": "object", "required": ["machine_ids", "unavailability"], "properties": {
        "machine_ids": _MACHINES, "unavailability": {"type": "object", "required": ["start"], "properties": {
            "start": _NANOSECONDS, "duration": _NANOSECONDS}}}}}}}

# (paths that are aliases of one view, method, operation)
OPERATIONS: list[tuple[tuple[str, ...], str, dict]] = [
    (("/master/info",), "get", _op("MasterInfo of the leading master (public)", (JSONP,))),
    (("/master/state", "/master/state.json", "/state", "/state.json"), "get",
     _op("The whole state as the caller may see it", (JSONP,))),
    (("/master/state-summary", "/state-summary"), "get", _op("Frameworks and slaves in short", (JSONP,))),
    (("/master/frameworks", "/frameworks"), "get", _op("Frameworks", (FRAMEWORK_ID, JSONP))),
    (("/master/slaves", "/slaves"), "get", _op("Slaves", (SLAVE_ID, JSONP))),
    (("/master/tasks", "/tasks"), "get", _op("Tasks, paged", (
        FRAMEWORK_ID, _param("task_id"), _param("state"),
        _param("limit", kind="integer", description="at most this many (100); negative: all, as Mesos"),
        _param("offset", kind="integer", minimum=0), _param("order", enum=["asc", "desc"]), JSONP))),
    (("/master/roles", "/roles"), "get", _op("Roles", (JSONP,))),
    (("/health", "/master/health"), "get", _op("Liveness (public)")),
    (("/version",), "get", _op("Version (public)", (JSONP,))),
    (("/master/redirect",), "get", _op("307 to the leading master (public)")),
    (("/master/flags", "/flags"), "get", _op("Flags, secrets redacted (ACL view_flags)", (JSONP,))),
    (("/master/whoami",), "get", _op("The caller and what it may do", (JSONP,))),
    (("/metrics/snapshot",), "get", _op("Metrics as JSON", (JSONP,))),
    (("/metrics",), "get", _op("Metrics in Prometheus' text format")),
    (("/master/teardown", "/teardown"), "post", _op(
        "Tear a framework down (ACL teardown_frameworks)",
        body={"type": "object", "required": ["frameworkId"], "properties": {"frameworkId": {"type": "string"}}},
        media="application/x-www-form-urlencoded")),
    (("/master/allocator",), "get", _op("The allocator's view", (FRAMEWORK_ID, JSONP))),
    (("/quota", "/master/quota"), "get", _op("Quotas (ACL get_quotas)", (JSONP,))),
    (("/quota", "/master/quota"), "post", _op("Set a role's quota (ACL update_quotas)", body={
        "type": "object", "required": ["role", "guarantee"], "additionalProperties": False, "properties": {
            "role": _ROLE, "force": {"type": "boolean"},
            "guarantee": {"type": "array", "items": _RESOURCE, "minItems": 1},
            "limit": {"type": "array", "items": _RESOURCE}}})),
    (("/quota/{role}", "/master/quota/{role}"), "delete",
     _op("Remove a role's quota (ACL update_quotas)", (_param("role", "path"),))),
    (("/weights", "/master/weights"), "get", _op("Weights (ACL view_roles)", (JSONP,))),
    (("/weights", "/master/weights"), "put", _op("Set roles' weights (ACL update_weights)", body={
        "type": "array", "items": {"type": "object", "required": ["role", "weight"], "properties": {
            "role": _ROLE, "weight": {"type": "number", "exclusiveMinimum": True, "minimum": 0}}}})),
    (("/master/maintenance/schedule", "/maintenance/schedule"), "get",
     _op("The maintenance schedule (ACL get_maintenance_schedules)")),
    (("/master/maintenance/schedule", "/maintenance/schedule"), "post",
     _op("Replace the maintenance schedule (ACL update_maintenance_schedules)", body=_SCHEDULE)),
    (("/master/maintenance/status", "/maintenance/status"), "get",
     _op("Draining machines with inverse offer answers, down machines (ACL get_maintenance_statuses)")),
    (("/master/machine/down", "/machine/down"), "post",
     _op("Bring DRAINING machines DOWN (ACL start_maintenances)", body=_MACHINES)),
    (("/master/machine/up", "/machine/up"), "post",
     _op("Bring DOWN machines UP (ACL stop_maintenances)", body=_MACHINES)),
    (("/api/v1",), "post", _v1_operator()),
    (("/api/v1/scheduler",), "post", {
        **_op("Mesos' v1 scheduler API: SUBSCRIBE answers 200 with a RecordIO stream of events "
              "(header Mesos-Stream-Id), every other call 202 (header Mesos-Stream-Id required)",
              (_param("Mesos-Stream-Id", "header"),), body={
                  "type": "object", "required": ["type"], "properties": {
                      "type": {"type": "string", "enum": [
                          "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "REVIVE", "KILL", "SHUTDOWN",
                          "ACKNOWLEDGE", "RECONCILE", "MESSAGE", "REQUEST", "SUPPRESS",
                          "UPDATE_FRAMEWORK", "ACCEPT_INVERSE_OFFERS", "DECLINE_INVERSE_OFFERS"]},
                      "framework_id": {"type": "object", "properties": {"value": {"type": "string"}}}}}),
        "responses": {"200": {"description": "subscribed: the event stream; UPDATE_FRAMEWORK: done"},
                      "202": {"description": "accepted; the outcome comes on the event stream"},
                      **{code: _TEXT_ERROR for code in ("307", "400", "401", "403", "406", "413", "415",
                                                        "501", "503")}}}),
    (("/files/browse", "/files/browse.json"), "get", _op("List a sandbox directory (via its slave)", _FILE_PARAMS)),
    (("/files/read", "/files/read.json"), "get", _op("Read a sandbox file (via its slave)", (
        *_FILE_PARAMS, _param("offset", kind="integer"), _param("length", kind="integer")))),
    (("/files/download", "/files/download.json"), "get", _op("Download a sandbox file (via its slave)",
                                                             _FILE_PARAMS)),
    (("/master/sandbox",), "get", _op("Where a task's sandbox is", (_param("task_id", required=True), FRAMEWORK_ID))),
    (("/master/slaves/{slave_id}/state",), "get", _op("A slave's /state, filtered", (_param("slave_id", "path"),))),
    (("/master/slaves/{slave_id}/monitor/statistics",), "get",
     _op("A slave's resource usage", (_param("slave_id", "path"),))),
    (("/",), "get", _op("The web UI")),
    (("/static/{name}",), "get", _op("The web UI's files", (_param("name", "path"),))),
    (("/openapi.json",), "get", _op("This document (public)")),
]


def _link(path: str, method: str, **parameters: str) -> dict:
    return {"operationRef": "#/paths/" + path.replace("/", "~1") + "/" + method, "parameters": parameters}


# What a client may do next with what a call made (stateful fuzzers follow them).
LINKS = {
    ("/quota", "post"): {"RemoveQuota": _link("/quota/{role}", "delete", role="$request.body#/role"),
                         "ReadQuotas": _link("/quota", "get")},
    ("/weights", "put"): {"ReadWeights": _link("/weights", "get"), "ReadRoles": _link("/roles", "get")},
    ("/master/teardown", "post"): {"ReadFrameworks": _link("/master/frameworks", "get")},
}


def document() -> dict:
    paths: dict[str, dict] = {}
    for aliases, method, operation in OPERATIONS:
        for path in aliases:
            paths.setdefault(path, {})[method] = operation
    for (path, method), links in LINKS.items():
        paths[path][method] = {**paths[path][method], "responses": {
            **paths[path][method]["responses"], "200": {"description": "done", "links": links}}}
    return {"openapi": "3.0.3", "info": {"title": "offerd master", "version": __version__}, "paths": paths}


def serve():
    return jsonify(document())
