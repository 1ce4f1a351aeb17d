"""/v2/deployments: running deployments, rollback and stop."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from frameworks.marathon_like.api.common import core, deployment_result, qbool

bp = Blueprint("deployments", __name__)


@bp.get("/v2/deployments")
def list_deployments():
    c = core()
    with c.lock:
        return jsonify([d.to_json() for d in sorted(c.deployments.values(), key=lambda d: d.version)])


@bp.delete("/v2/deployments/<deployment_id>")
def cancel(deployment_id: str):
    result = core().cancel_deployment(deployment_id, force=qbool("force"))
    if result is None:
        return Response(status=202)
    return deployment_result(result)
