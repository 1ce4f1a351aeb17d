"""/v2/events: server-sent events, flushed per event, with the event_type filter.

At most ``--max_event_streams`` streams at once (each holds a worker thread of
the HTTP server); one more gets 503 with Marathon's ``{"message"}`` body. A
client that falls more than ``--event_stream_max_outstanding_messages`` events
behind is disconnected."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context

from frameworks.marathon_like.api.common import core
from frameworks.marathon_like.errors import MarathonError
from frameworks.marathon_like.events import TooManyStreams

bp = Blueprint("events", __name__)


def _frame(event: dict) -> str:
    return f"event: {event['eventType']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


@bp.get("/v2/events")
def events():
    c = core()
    types = set(request.args.getlist("event_type"))
    try:
        sub = c.events.open_stream(types, c.config.max_event_streams, c.config.event_stream_max_outstanding_messages)
    except TooManyStreams as exc:
        raise MarathonError(str(exc), 503) from None
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
    # The slot is freed even when the client leaves before the stream's first
    # event (the generator's finally never runs then); close() is idempotent.
    response.call_on_close(sub.close)
    return response
