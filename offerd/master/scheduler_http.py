"""``POST /api/v1/scheduler``: Mesos' v1 scheduler HTTP API on the master.

An HTTP scheduler sits beside the ZeroMQ ones: a SUBSCRIBE opens an event
stream (offerd.master.scheduler_stream) that the transport Server takes as one
more peer, and each later call is converted to offerd's Call and handed to the
actor as if it came over that peer, so validation, ACLs, principals, failover
and the books are the ones every scheduler goes through. What Mesos documents
at https://mesos.apache.org/documentation/latest/scheduler-http-api/ holds:

* SUBSCRIBE: ``200 OK``, ``Mesos-Stream-Id``, a chunked body of RecordIO
  records of ``mesos.v1.scheduler.Event`` in the type the Accept header asks
  for (``application/json`` or ``application/x-protobuf``), first SUBSCRIBED,
  then HEARTBEAT every ``heartbeat_interval_seconds`` and every other event.
  A SUBSCRIBE of a framework id (failover) ends the framework's previous stream.
* every other call: ``202 Accepted`` with no body once the master took it;
  what it did comes on the stream (as for Mesos' schedulers). Calls of one
  connection are taken in the order they arrive, pipelined or not.

Once a call of a stream has passed the master's checks of the caller against
the framework (on the actor thread), the stream is *verified*: later calls with
that ``Mesos-Stream-Id``, framework id and principal are answered 202 on the
HTTP thread, while the stream is open and this master leads, and handed to the
actor without waiting for it (the actor checks them again; one that no longer
passes, because the stream ended in between, is logged, as Mesos' master logs a
call it drops after its 202). Anything else waits for the actor's checks and
gets their answer. Without the wait the HTTP thread serves the next call of a
pipelining scheduler while the actor works. Where nothing in front of the view
would act on such a call (no HTTP authentication configured, no cross-site
signs, this master leading), a WSGI step before Flask answers it, with the same
parsing and checks; everything else goes through Flask to the view.

Refusals are plain text saying why: 400 for a malformed or invalid call, a
missing or mismatched ``Mesos-Stream-Id``, an unknown framework, or a caller
whose principal is not the framework's; 403 when the framework is not
subscribed over HTTP, or an ACL refuses the SUBSCRIBE; 401 (the HTTP guard)
without credentials that ``--authenticate_http_readwrite`` asks for; 406 for
an Accept this API cannot answer in; 413 for a body above
``--max_message_bytes``; 415 for a body that is neither JSON nor protobuf; 501
for what Mesos has and offerd does not (inverse offers, operation feedback,
RESERVE and the other operations), naming the unsupported part; 503 while this
master does not lead or holds as many HTTP schedulers as it can serve. A
standby answers 307 to the
leader's ``/api/v1/scheduler`` (offerd.master.http_leader).
"""

from __future__ import annotations

import collections
import io
import logging
import uuid
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, request
from google.protobuf.message import DecodeError

from offerd.common import mesos_json, mesos_v1
from offerd.common.http_auth import cross_site_reason
from offerd.common.http import http_date
from offerd.common.http_hygiene import accepts
from offerd.master.http_common import master, principal, text_response
from offerd.master.scheduler_stream import JSON, PROTOBUF, EventStream, is_stream_peer, peer_id
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

PATH = "/api/v1/scheduler"
STREAM_ID_HEADER = "Mesos-Stream-Id"
# Each open stream holds one HTTP worker thread; the master's HTTP server gets
# this many threads on top of its own (see Master.start).
MAX_STREAMS = 32

V1Call = v1_scheduler.Call
# The call types whose message must be present (as Mesos' call validation asks).
_NEEDS_MESSAGE = {
    V1Call.SUBSCRIBE: "subscribe", V1Call.ACCEPT: "accept", V1Call.DECLINE: "decline",
    V1Call.KILL: "kill", V1Call.SHUTDOWN: "shutdown", V1Call.ACKNOWLEDGE: "acknowledge",
    V1Call.RECONCILE: "reconcile", V1Call.MESSAGE: "message", V1Call.REQUEST: "request",
    V1Call.UPDATE_FRAMEWORK: "update_framework",
    V1Call.ACCEPT_INVERSE_OFFERS: "accept_inverse_offers", V1Call.DECLINE_INVERSE_OFFERS: "decline_inverse_offers",
}
# Counters by which the master tells a refused SUBSCRIBE's reason: who the caller is.
_FORBIDDEN_COUNTERS = ("master/unauthenticated_framework_subscriptions",
                       "master/framework_principal_mismatches",
                       "master/unauthorized_framework_subscriptions")


class Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_STREAMS = "OFFERD_SCHEDULER_STREAMS"
_STREAM_ID_ENVIRON = "HTTP_" + STREAM_ID_HEADER.upper().replace("-", "_")


class _Streams:
    """This master's open event streams (stream id -> EventStream) and, for those
    whose caller passed :func:`_dispatch`'s checks (verified), who passed them
    (framework id, principal). Written on the actor thread only; HTTP threads read it."""

    def __init__(self):
        self._open: dict[str, EventStream] = {}
        self._callers: dict[str, tuple[str, str | None]] = {}
        # Streams given events in this actor turn: woken once at its end, so the
        # events of one turn go out in one write (and one read for the scheduler).
        self.to_wake: set[_TurnStream] = set()
        self.waking = False
        # Calls answered 202 on HTTP threads, in the order they were, for the actor;
        # `_posted` while a drain of them waits in the actor's mailbox.
        self._taken: collections.deque[tuple[str, pb.Call, str | None]] = collections.deque()
        self._posted = False

    def take(self, daemon: Master, stream_id: str, call: pb.Call, who: str | None) -> None:
        """HTTP thread: hand a call answered 202 to the actor (one wakeup for all
        that come before it drains them)."""
        self._taken.append((stream_id, call, who))
        if not self._posted:
            self._posted = True
            daemon.actor.call_soon(self._drain, daemon)

    def _drain(self, daemon: Master) -> None:
        self._posted = False  # before popping: a call added from now on posts again
        while self._taken:
            _take(daemon, self, *self._taken.popleft())

    def wake(self) -> None:
        """Actor thread, after each turn."""
        while self.to_wake:
            self.to_wake.pop().wake()

    def admits(self, stream_id: str | None, framework_id: str, who: str | None) -> bool:
        stream = self._open.get(stream_id) if stream_id is not None else None
        return stream is not None and not stream.ended and self._callers.get(stream_id) == (framework_id, who)

    def opened(self, stream: EventStream) -> None:
        for gone in [key for key, known in self._open.items() if known.ended]:
            del self._open[gone]
            self._callers.pop(gone, None)
        self._open[stream.stream_id] = stream

    def verified(self, stream_id: str, framework_id: str, who: str | None) -> None:
        if stream_id in self._open:
            self._callers[stream_id] = (framework_id, who)

    def forget(self, stream_id: str) -> None:
        self._callers.pop(stream_id, None)


class _TurnStream(EventStream):
    """An event stream the actor wakes at the end of its turn (_Streams.wake)."""

    wake_on_push = False

    def __init__(self, stream_id: str, media: str, streams: _Streams):
        super().__init__(stream_id, media)
        self._streams = streams

    def push(self, payload: bytes) -> bool:
        self._streams.to_wake.add(self)
        return super().push(payload)


@accepts(JSON, PROTOBUF)
def scheduler():
    try:
        return _serve()
    except Refusal as refusal:
        return text_response(refusal.message, refusal.status)


def _serve() -> Response:
    daemon: Master = master()  # type: ignore[assignment]
    v1_call = _parse(daemon.flags.max_message_bytes)
    call = _convert(v1_call)
    stream_id = request.headers.get(STREAM_ID_HEADER)
    if call.type == pb.Call.SUBSCRIBE:
        if stream_id is not None:
            raise Refusal(400, f"Subscribe calls should not include the '{STREAM_ID_HEADER}' header")
        return _subscribe(daemon, call)
    if call.type not in daemon._call_handlers:
        raise Refusal(501, f"Not Implemented: this master does not support {V1Call.Type.Name(v1_call.type)} calls")
    who = principal()
    verified: _Streams = current_app.config[_STREAMS]
    if not _taken_unchecked(daemon, verified, stream_id, call, who):
        status, message = daemon.actor.call(_dispatch, daemon, verified, stream_id, call, who)
        if status not in (200, 202):
            raise Refusal(status, message)
        return Response(b"", status=status)
    return Response(b"", status=202)


def _taken_unchecked(daemon: Master, verified: _Streams, stream_id: str | None, call: pb.Call,
                     who: str | None) -> bool:
    """Hand the call of a verified stream to the actor without waiting (True),
    or leave it to the actor's checks (False)."""
    # UPDATE_FRAMEWORK is answered after it is done (200, or why it was refused).
    if call.type == pb.Call.UPDATE_FRAMEWORK or not verified.admits(stream_id, call.framework_id.value, who) \
            or not daemon.leadership.is_leader:
        return False
    verified.take(daemon, stream_id, call, who)
    return True


class _VerifiedCalls:
    """WSGI in front of the master's Flask app: a call on a verified stream
    (see the module's doc) answered 202 without Flask's request machinery.
    It takes only requests every step before the view would pass unchanged
    (POST of a v1 Call as protobuf or JSON with a length, no cross-site
    signs, no HTTP authentication configured, this master leading); anything
    else, and anything the shared parsing and conversion refuse, goes to the
    Flask app with its body, which answers as for any request."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST" \
                and environ.get(_STREAM_ID_ENVIRON) and self._taken(environ):
            start_response("202 ACCEPTED", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0"),
                                            ("Date", http_date())])
            hold = environ.get("offerd.hold_answer")
            if hold is not None:  # sent with the answers of the calls pipelined behind it
                hold()
            return [b""]
        return self.wsgi_app(environ, start_response)

    def _taken(self, environ) -> bool:
        daemon: Master = self.app.config["OFFERD_MASTER"]
        media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        headers = {"Sec-Fetch-Site": environ.get("HTTP_SEC_FETCH_SITE", ""), "Origin": environ.get("HTTP_ORIGIN"),
                   "Host": environ.get("HTTP_HOST")}
        if media not in (JSON, PROTOBUF) or not length.isdigit() or getattr(daemon, "credentials", None) \
                or "HTTP_TRANSFER_ENCODING" in environ or cross_site_reason("POST", headers) is not None \
                or not daemon.leadership.is_leader or int(length) > daemon.flags.max_message_bytes:
            return False
        body = environ["wsgi.input"].read(int(length))
        try:
            call = _convert(_decode(media, body, daemon.flags.max_message_bytes))
        except Refusal:
            call = None
        if call is not None and call.type != pb.Call.SUBSCRIBE and call.type in daemon._call_handlers \
                and _taken_unchecked(daemon, self.app.config[_STREAMS], environ[_STREAM_ID_ENVIRON], call, None):
            return True
        environ["wsgi.input"] = io.BytesIO(body)
        return False


# -- the request ----------------------------------------------------------------------


def _parse(max_bytes: int) -> V1Call:
    """The request's Call, or a Refusal saying what is wrong with it."""
    media = request.mimetype
    if media not in (JSON, PROTOBUF):
        raise Refusal(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF}, not "
                           f"{media or 'none'}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise Refusal(413, f"Request Entity Too Large: the call has {request.content_length} bytes, "
                           f"more than --max_message_bytes ({max_bytes})")
    return _decode(media, request.get_data(cache=False), max_bytes)


def _decode(media: str, body: bytes, max_bytes: int) -> V1Call:
    """The Call in a body of type `media` (JSON or protobuf), or a Refusal."""
    if len(body) > max_bytes:
        raise Refusal(413, f"Request Entity Too Large: the call has {len(body)} bytes, "
                           f"more than --max_message_bytes ({max_bytes})")
    if media == JSON:
        try:
            v1_call, ignored = mesos_json.loads(body, V1Call)
        except mesos_json.MesosJsonError as exc:
            raise Refusal(400, f"Failed to convert JSON into Call protobuf: {exc}") from None
        if ignored:
            # Mesos would ignore them; offerd says so rather than acting on part of a call.
            raise Refusal(400, "Failed to validate scheduler::Call: unknown field(s) or enum value(s): "
                               + ", ".join(ignored))
    else:
        try:
            v1_call = V1Call.FromString(body)
        except DecodeError as exc:
            raise Refusal(400, f"Failed to parse body into Call protobuf: {exc}") from None
        missing = v1_call.FindInitializationErrors()
        if missing:
            raise Refusal(400, "Failed to validate scheduler::Call: missing required field(s) "
                               + ", ".join(missing))
    _validate(v1_call)
    return v1_call


def _validate(call: V1Call) -> None:
    """Mesos' structural checks of a scheduler Call (before any framework is looked up)."""
    if not call.HasField("type") or call.type == V1Call.UNKNOWN:
        raise Refusal(400, "Failed to validate scheduler::Call: Expecting 'type' to be present")
    field = _NEEDS_MESSAGE.get(call.type)
    if field is not None and not call.HasField(field):
        raise Refusal(400, f"Failed to validate scheduler::Call: Expecting '{field}' to be present")
    if call.type == V1Call.SUBSCRIBE:
        if call.subscribe.framework_info.id.value != call.framework_id.value:
            raise Refusal(400, "Failed to validate scheduler::Call: 'framework_id' differs from "
                               "'subscribe.framework_info.id'")
    elif not call.framework_id.value:
        raise Refusal(400, "Failed to validate scheduler::Call: Expecting 'framework_id' to be present")


def _convert(v1_call: V1Call) -> pb.Call:
    call, unsupported = mesos_v1.to_offerd(v1_call, pb.Call)
    if not unsupported:
        return call
    kind = V1Call.Type.Name(v1_call.type)
    if any(path.startswith("type=") for path in unsupported):
        raise Refusal(501, f"Not Implemented: this master does not support {kind} calls")
    raise Refusal(501, f"Not Implemented: this master does not support {', '.join(unsupported)} "
                       f"(in a {kind} call)")


def _accept_type() -> str:
    """The media type of the event stream, from Accept (JSON when it says nothing)."""
    if not request.headers.get("Accept"):
        return JSON
    best = request.accept_mimetypes.best_match([JSON, PROTOBUF])
    if best is None:
        raise Refusal(406, f"Expecting 'Accept' to allow {JSON} or {PROTOBUF}")
    return best


# -- SUBSCRIBE -----------------------------------------------------------------------------


def _subscribe(daemon: Master, call: pb.Call) -> Response:
    streams: _Streams = current_app.config[_STREAMS]
    stream = _TurnStream(str(uuid.uuid4()), _accept_type(), streams)
    actor = daemon.actor
    try:
        status, message = actor.call(_open_stream, daemon, streams, stream, call, principal())
    except TimeoutError:
        # The busy actor may still subscribe it later: a closed stream then takes
        # nothing, which reports the peer lost, so no framework waits on it.
        stream.close()
        raise
    if status != 200:
        raise Refusal(status, message)
    server = daemon.server

    def gone(why: str) -> None:
        actor.call_soon(server.virtual_peer_gone, stream.peer, why)

    sock = request.environ.get("offerd.socket")
    body = stream.body(sock, gone, actor.stopped)
    return Response(body, status=200, direct_passthrough=True, headers={
        "Content-Type": stream.media, STREAM_ID_HEADER: stream.stream_id, "Cache-Control": "no-cache"})


def _open_stream(daemon: Master, streams: _Streams, stream: EventStream, call: pb.Call,
                 who: str | None) -> tuple[int, str]:
    """Actor thread: the stream joins as a peer and its SUBSCRIBE is handled."""
    if not streams.waking:
        streams.waking = True
        daemon.actor.after_each_turn(streams.wake)
    if not daemon.leadership.is_leader:
        return 503, "Not the leading master"
    server = daemon.server
    if server.virtual_peers() >= MAX_STREAMS:
        return 503, (f"Service Unavailable: this master serves {MAX_STREAMS} HTTP schedulers at most; "
                     "use the ZeroMQ driver or retry later")
    stall_timeout = max(daemon.flags.framework_timeout, 2 * daemon.heartbeat_interval)
    server.add_virtual_peer(stream.peer, stream, who, stall_timeout)
    counters = daemon.metrics.counters
    before = [counters[name] for name in _FORBIDDEN_COUNTERS]
    daemon._on_message(stream.peer, call)
    if stream.peer in daemon.state.peer_frameworks:
        streams.opened(stream)
        return 200, ""
    # Refused: the master told the peer why, as an ERROR event.
    error = stream.take_error() or "SUBSCRIBE refused"
    server.end_virtual_peer(stream.peer)
    forbidden = [counters[name] for name in _FORBIDDEN_COUNTERS] != before
    return (403 if forbidden else 400), error


# -- every other call ----------------------------------------------------------------------

def _take(daemon: Master, verified: _Streams, stream_id: str, call: pb.Call, who: str | None) -> None:
    """Actor thread: a call already answered 202 (see the module's doc)."""
    status, message = _dispatch(daemon, verified, stream_id, call, who)
    if status != 202:
        verified.forget(stream_id)
        log.warning("%s call of framework %s on stream %s dropped after its 202: %s",
                    pb.Call.Type.Name(call.type), call.framework_id.value, stream_id, message)


def _dispatch(daemon: Master, verified: _Streams, stream_id: str | None, call: pb.Call,
              who: str | None) -> tuple[int, str]:
    """Actor thread: Mesos' checks of the caller against the framework, then the call."""
    if not daemon.leadership.is_leader:
        return 503, "Not the leading master"
    framework_id = call.framework_id.value
    framework = daemon.state.frameworks.get(framework_id)
    if framework is None:
        return 400, f"Framework {framework_id} cannot be found"
    stored = framework.info.principal or None
    if who is not None and stored is not None and who != stored:
        # 400, not 403: Mesos' answer to this check (it is not an ACL).
        return 400, (f"Authenticated principal '{who}' does not match principal '{stored}' "
                     f"set in `FrameworkInfo` of framework {framework_id}")
    if not framework.connected:
        return 403, f"Framework {framework_id} is not subscribed"
    if not is_stream_peer(framework.peer):
        return 403, f"Framework {framework_id} is not connected via HTTP"
    if stream_id is None:
        return 400, f"All non-subscribe calls should include the '{STREAM_ID_HEADER}' header"
    if framework.peer != peer_id(stream_id):
        return 400, (f"The stream ID '{stream_id}' included in this request didn't match the stream ID "
                     f"currently associated with framework ID {framework_id}")
    verified.verified(stream_id, framework_id, who)
    if call.type == pb.Call.UPDATE_FRAMEWORK:
        return daemon.frameworks.update_framework(framework, call) or (200, "")
    daemon._on_message(framework.peer, call)
    return 202, ""


def register(app: Flask) -> None:
    app.config[_STREAMS] = _Streams()
    app.wsgi_app = _VerifiedCalls(app, app.wsgi_app)
    app.add_url_rule(PATH, "scheduler_v1", scheduler, methods=["POST"])
