"""/v2/queue: what waits to be launched and why; resetting an app's backoff."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from frameworks.marathon_like import ids
from frameworks.marathon_like.api.common import core
from frameworks.marathon_like.model import app_json

bp = Blueprint("queue", __name__)


@bp.get("/v2/queue")
def queue():
    c = core()
    embed_offers = "lastUnusedOffers" in request.args.getlist("embed")
    now = ids.now()
    with c.lock:
        items = [entry.to_json(app_json(c.apps[app_id]), now, embed_offers,
                               c.apps[app_id].get("role") or c.config.mesos_role)
                 for app_id, entry in sorted(c.queue.items(), key=lambda kv: kv[1].since)
                 if app_id in c.apps and (entry.count > 0 or entry.backoff.time_left(now) > 0)]
    return jsonify({"queue": items})


@bp.delete("/v2/queue/<path:app_id>/delay")
def reset_delay(app_id: str):
    core().reset_delay(app_id)
    return Response(status=204)
