"""HTTP endpoints of the allocator: quota, weights, and why frameworks get no offers.

Read-only: ``GET /master/allocator`` (``?framework_id=``), ``GET /quota``,
``GET /weights``. Mutating (operator): ``POST /quota``, ``DELETE /quota/<role>``,
``PUT /weights``. Every call runs on the master's actor thread; errors are
plain text like Mesos'.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from offerd.master.http_api import _json, _text


def _master():
    return current_app.config["OFFERD_MASTER"]


def _call(fn, *args):
    return _master().actor.call(fn, *args)


def _policy():
    return _master().roles


def _body():
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise ValueError("the request body is not JSON")
    return data


allocator_reads = Blueprint("allocator_reads", __name__)


@allocator_reads.get("/master/allocator")
def allocator_view():
    return _json(_call(_policy().allocator_json, request.args.get("framework_id")))


@allocator_reads.get("/quota")
@allocator_reads.get("/master/quota")
def quota_view():
    return _json(_call(_policy().quota_json))


@allocator_reads.get("/weights")
@allocator_reads.get("/master/weights")
def weights_view():
    return _json(_call(_policy().weights_json))


allocator_operator = Blueprint("allocator_operator", __name__)


def _done(error: str | None) -> Response:
    return _text(error, 400) if error else Response(b"", status=200)


@allocator_operator.post("/quota")
@allocator_operator.post("/master/quota")
def set_quota():
    try:
        body = _body()
    except ValueError as exc:
        return _text(f"Failed to parse set quota request: {exc}", 400)
    return _done(_call(_policy().set_quota, body))


@allocator_operator.delete("/quota/<path:role>")
@allocator_operator.delete("/master/quota/<path:role>")
def remove_quota(role):
    return _done(_call(_policy().remove_quota, role))


@allocator_operator.put("/weights")
@allocator_operator.put("/master/weights")
def update_weights():
    try:
        body = _body()
    except ValueError as exc:
        return _text(f"Failed to parse update weights request: {exc}", 400)
    return _done(_call(_policy().update_weights, body))


def register(app) -> None:
    app.register_blueprint(allocator_reads)
    app.register_blueprint(allocator_operator)
