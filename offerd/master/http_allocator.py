"""HTTP endpoints of the allocator: quota, weights, and why frameworks get no offers.

Read-only: ``GET /master/allocator`` (``?framework_id=``), ``GET /quota``,
``GET /weights``. Mutating (operator): ``POST /quota``, ``DELETE /quota/<role>``,
``PUT /weights``. Every call runs on the master's actor thread; errors are
plain text like Mesos'. ACLs as Mesos: reads show only the roles the caller
may ``get_quotas`` / ``view_roles``; changes need ``update_quotas`` /
``update_weights`` for the role, checked before anything changes.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from offerd.master import http_authz
from offerd.master.http_common import json_response, master, snapshot, text_response


def _call(fn, *args):
    return master().actor.call(fn, *args)


def _policy():
    return master().roles


def _body():
    data = request.get_json(silent=True)  # the HTTP guard let only JSON bodies through
    if data is None:
        raise ValueError("the request body is not JSON")
    return data


allocator_reads = Blueprint("allocator_reads", __name__)


@allocator_reads.get("/master/allocator")
def allocator_view():
    document = _call(_policy().allocator_json, request.args.get("framework_id"))
    if http_authz.configured():
        document = http_authz.filter_allocator(document, snapshot().state)
    return json_response(document)


@allocator_reads.get("/quota")
@allocator_reads.get("/master/quota")
def quota_view():
    return json_response(http_authz.filter_quota(_call(_policy().quota_json)))


@allocator_reads.get("/weights")
@allocator_reads.get("/master/weights")
def weights_view():
    return json_response(http_authz.filter_weights(_call(_policy().weights_json)))


allocator_operator = Blueprint("allocator_operator", __name__)


def _done(error: str | None) -> Response:
    return text_response(error, 400) if error else Response(b"", status=200)


@allocator_operator.post("/quota")
@allocator_operator.post("/master/quota")
def set_quota():
    try:
        body = _body()
    except ValueError as exc:
        return text_response(f"Failed to parse set quota request: {exc}", 400)
    role = body.get("role") if isinstance(body, dict) else None
    if isinstance(role, str):  # without one the request is refused as malformed, changing nothing
        refusal = http_authz.refused("update_quotas", role)
        if refusal is not None:
            return refusal
    return _done(_call(_policy().set_quota, body))


@allocator_operator.delete("/quota/<path:role>")
@allocator_operator.delete("/master/quota/<path:role>")
def remove_quota(role):
    refusal = http_authz.refused("update_quotas", role)
    if refusal is not None:
        return refusal
    return _done(_call(_policy().remove_quota, role))


@allocator_operator.put("/weights")
@allocator_operator.put("/master/weights")
def update_weights():
    try:
        body = _body()
    except ValueError as exc:
        return text_response(f"Failed to parse update weights request: {exc}", 400)
    refusal = http_authz.weights_refused(body)
    if refusal is not None:
        return refusal
    return _done(_call(_policy().update_weights, body))


def register(app) -> None:
    app.register_blueprint(allocator_reads)
    app.register_blueprint(allocator_operator)
