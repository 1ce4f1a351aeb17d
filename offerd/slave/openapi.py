"""The slave's HTTP API as an OpenAPI 3 document, served at ``/openapi.json``.

Written from the views (offerd/slave/http_api.py) so that clients and the HTTP
fuzzer (tests/fuzz) know every path and query parameter. A unit test walks the
Flask app's routes and fails when one is missing here, or when a path here has
no route. The slave is told what to do by its master over ZeroMQ; its only
state-changing HTTP calls are the v1 operator API's (SET_LOGGING_LEVEL,
KILL_CONTAINER at POST /api/v1) and its executors' (POST /api/v1/executor).
"""

from __future__ import annotations

from flask import jsonify

from offerd import __version__

_JSON_ERROR = {"description": "refused; the JSON body's 'message' says why"}


def _param(name: str, where: str = "query", kind: str = "string", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "schema": {"type": kind}}


def _op(summary: str, params: tuple = ()) -> dict:
    return {"summary": summary, "parameters": list(params),
            "responses": {"200": {"description": "done"}, "400": _JSON_ERROR, "401": _JSON_ERROR,
                          "403": _JSON_ERROR, "404": _JSON_ERROR}}


PATH = _param("path", required=True)
INDEX = _param("index", "path", kind="integer")

# (paths that are aliases of one view, method, operation)
OPERATIONS: list[tuple[tuple[str, ...], str, dict]] = [
    (("/health",), "get", _op("Liveness (public)")),
    (("/state", "/state.json"), "get", _op("The slave's state as the caller may see it")),
    (("/slave({index})/state", "/slave({index})/state.json"), "get",
     _op("The state of one simulated slave of this process", (INDEX,))),
    (("/flags",), "get", _op("Flags, secrets redacted (ACL view_flags)")),
    (("/metrics/snapshot",), "get", _op("Metrics as JSON")),
    (("/monitor/statistics", "/monitor/statistics.json"), "get", _op("Resource usage of each executor")),
    (("/files/browse", "/files/browse.json"), "get", _op("List a sandbox directory (ACL access_sandboxes)",
                                                         (PATH,))),
    (("/files/read", "/files/read.json"), "get", _op("Read a sandbox file (ACL access_sandboxes)", (
        PATH, _param("offset", kind="integer"), _param("length", kind="integer")))),
    (("/files/download", "/files/download.json"), "get", _op("Download a sandbox file (ACL access_sandboxes)",
                                                             (PATH,))),
    (("/openapi.json",), "get", _op("This document (public)")),
    (("/api/v1",), "post", None),   # filled in by _v1_operator()
]


def _v1_operator() -> dict:
    """POST /api/v1: a mesos.v1.agent.Call in JSON or protobuf (offerd/slave/operator_api.py)."""
    from offerd.proto import mesos_v1_agent_pb2 as v1_agent

    call = {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string", "enum": list(v1_agent.Call.Type.keys())[1:]}}}
    operation = _op("Mesos' v1 agent API: a mesos.v1.agent.Call, answered with a mesos.v1.agent.Response "
                    "(ACLs as the REST equivalents; 501 naming the calls not served)")
    operation["requestBody"] = {"required": True, "content": {
        "application/json": {"schema": call},
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}}
    operation["responses"].update({"406": _JSON_ERROR, "415": _JSON_ERROR, "501": _JSON_ERROR})
    return operation


def _v1_executor() -> dict:
    """POST /api/v1/executor: a mesos.v1.executor.Call (offerd/slave/executor_http.py)."""
    from offerd.proto import mesos_v1_executor_pb2 as v1_executor

    call = {"type": "object", "required": ["type", "executor_id", "framework_id"], "properties": {
        "type": {"type": "string", "enum": list(v1_executor.Call.Type.keys())[1:]}}}
    text = {"description": "refused; the plain-text body says why"}
    operation = {
        "summary": "Mesos' v1 executor API (Authorization: Bearer <MESOS_EXECUTOR_AUTHENTICATION_TOKEN>): "
                   "SUBSCRIBE answers a RecordIO stream of mesos.v1.executor.Event, UPDATE/MESSAGE/HEARTBEAT 202",
        "parameters": [],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": call},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "the event stream (SUBSCRIBE)"}, "202": {"description": "taken"},
                      **{code: text for code in ("400", "401", "403", "406", "413", "415", "501", "503")}},
    }
    return operation


def document() -> dict:
    paths: dict[str, dict] = {}
    for aliases, method, operation in OPERATIONS:
        for path in aliases:
            paths.setdefault(path, {})[method] = operation if operation is not None else _v1_operator()
    paths["/api/v1/executor"] = {"post": _v1_executor()}
    return {"openapi": "3.0.3", "info": {"title": "offerd slave", "version": __version__}, "paths": paths}


def serve():
    return jsonify(document())
