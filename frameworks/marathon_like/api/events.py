"""/v2/events: server-sent events, flushed per event, with the event_type filter."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context

from frameworks.marathon_like.api.common import core

bp = Blueprint("events", __name__)


def _frame(event: dict) -> str:
    return f"event: {event['eventType']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


@bp.get("/v2/events")
def events():
    c = core()
    types = set(request.args.getlist("event_type"))
    sub = c.events.subscribe(types)
    remote = request.remote_addr or ""

    def stream():
        try:
            attached = c.events.publish("event_stream_attached", remoteAddress=remote)
            if not types or "event_stream_attached" in types:
                yield _frame(attached)
            while not sub.overflowed:
                event = sub.get(timeout=1.0)
                if event is None:
                    yield "\n"  # keeps proxies and dead-peer detection honest
                    continue
                if event is attached:
                    continue
                yield _frame(event)
        finally:
            sub.close()
            c.events.publish("event_stream_detached", remoteAddress=remote)

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    return response
