"""``POST /api/v1/executor``: Mesos' v1 executor HTTP API on the slave.

An HTTP executor is a custom executor (ExecutorInfo.command) that speaks HTTP
to ``$MESOS_AGENT_ENDPOINT`` instead of ZeroMQ to ``$MESOS_SLAVE_ENDPOINT``.
Its SUBSCRIBE opens an event stream (offerd.common.event_stream) that the
slave's executor transport Server takes as one more peer; each call is
converted to offerd's ExecutorCall and handed to offerd.slave.executors as if
it came over that peer, so registration, pending tasks sent as LAUNCH, acks,
kills and shutdown are the ones every executor goes through. What Mesos
documents at https://mesos.apache.org/documentation/latest/executor-http-api/
holds:

* SUBSCRIBE: ``200 OK``, a chunked body of RecordIO records of
  ``mesos.v1.executor.Event`` in the type the Accept header asks for
  (``application/json`` or ``application/x-protobuf``): SUBSCRIBED first, then
  LAUNCH, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR. A new SUBSCRIBE of the
  same executor (it reconnects) ends its previous stream.
* UPDATE, MESSAGE, HEARTBEAT: ``202 Accepted`` once the slave took the call.

Executors prove who they are as on the ZeroMQ endpoint: with the token the
slave put in ``MESOS_EXECUTOR_AUTHENTICATION_TOKEN``, sent as
``Authorization: Bearer <token>``; it names the container it was issued for,
and a call is served only for the executor of that container. Refusals are
plain text saying why: 400 for a malformed or invalid call or an executor
this slave does not run; 401 without a token, or with one no live executor
holds; 403 for a call about another container's executor, or an UPDATE or
MESSAGE of an executor not subscribed over HTTP; 406 for an Accept this API
cannot answer in; 413 for a body above MAX_CALL_BYTES; 415 for a body that is neither JSON nor protobuf; 503 while the slave holds
as many HTTP executors as it can serve or runs no executors (simulated).
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, request

from offerd.common import mesos_v1
from offerd.common.event_stream import JSON, PROTOBUF, EventStream, is_stream_peer
from offerd.common.v1_http import V1HttpError, decode_call, negotiate
from offerd.common.http_hygiene import accepts
from offerd.proto import mesos_v1_executor_pb2 as v1_executor
from offerd.proto import offerd_pb2 as pb
from offerd.slave.tasks import ExecutorRunState

log = logging.getLogger(__name__)

PATH = "/api/v1/executor"
# Each open stream holds one HTTP worker thread; the slave's HTTP server gets
# this many threads on top of its own (offerd.slave.daemon).
MAX_STREAMS = 32
# A stream whose reader takes nothing for this long while events wait is lost.
STALL_TIMEOUT = 60.0
REALM = "mesos-agent-executor"
# The largest call body taken (an UPDATE's data included).
MAX_CALL_BYTES = 4 * 1024 * 1024

V1Call = v1_executor.Call
_NEEDS_MESSAGE = {V1Call.SUBSCRIBE: "subscribe", V1Call.UPDATE: "update", V1Call.MESSAGE: "message"}


class ExecutorStream(EventStream):
    """One HTTP executor's queue of serialized ExecutorEvents."""

    event_type = pb.ExecutorEvent
    v1_event_type = v1_executor.Event


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def install(app: Flask, view) -> None:
    """`view` runs functions on the slave's actor (`on_actor(fn, *args)`: fn(core, *args))
    and gives the actor (`actor`) and the executor transport Server (`executor_server`)."""

    @accepts(JSON, PROTOBUF)
    def executor():
        try:
            return _serve(view)
        except Refusal as refusal:
            return Response(refusal.message + "\n", status=refusal.status, mimetype="text/plain",
                            headers=refusal.headers)

    app.add_url_rule(PATH, "executor_v1", executor, methods=["POST"])


def _serve(view) -> Response:
    if getattr(view, "executor_server", None) is None:
        raise Refusal(503, "Service Unavailable: this slave runs no executors (simulated containerizer)")
    v1_call, media = _parse(MAX_CALL_BYTES)
    token = _bearer_token()
    if v1_call.type == V1Call.HEARTBEAT:
        # Mesos' executors may send these to keep the connection alive; nothing to do.
        status, message, _ = view.on_actor(_authorize, v1_call.framework_id.value, v1_call.executor_id.value,
                                           token)
        _check((status, message))
        return Response(b"", status=202)
    call, unsupported = mesos_v1.to_offerd(v1_call, pb.ExecutorCall)
    if unsupported:
        raise Refusal(501, f"Not Implemented: this slave does not support {', '.join(unsupported)} "
                           f"(in a {V1Call.Type.Name(v1_call.type)} call)")
    if call.type == pb.ExecutorCall.SUBSCRIBE:
        return _subscribe(view, call, token, media)
    _check(view.on_actor(_dispatch, call, token))
    return Response(b"", status=202)


def _check(result: tuple[int, str]) -> None:
    status, message = result
    if status >= 400:
        headers = {"WWW-Authenticate": f'Bearer realm="{REALM}"'} if status == 401 else None
        raise Refusal(status, message, headers)


# -- the request ----------------------------------------------------------------------


def _parse(max_bytes: int) -> tuple[V1Call, str]:
    """The request's Call and the media type of the answer, or a Refusal."""
    try:
        media = negotiate(request.headers)
    except V1HttpError as exc:
        raise Refusal(exc.status, exc.reason) from None
    if media.streaming_request:
        raise Refusal(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise Refusal(413, f"Request Entity Too Large: the call has {request.content_length} bytes, "
                           f"more than {max_bytes}")
    body = request.get_data(cache=False)
    if len(body) > max_bytes:
        raise Refusal(413, f"Request Entity Too Large: the call has {len(body)} bytes, more than {max_bytes}")
    try:
        call = decode_call(body, media, V1Call)
    except V1HttpError as exc:
        raise Refusal(exc.status, exc.reason) from None
    _validate(call)
    return call, media.accept


def _validate(call: V1Call) -> None:
    """Mesos' structural checks of an executor Call (before any executor is looked up)."""
    prefix = "Failed to validate executor::Call: "
    if not call.HasField("type") or call.type == V1Call.UNKNOWN:
        raise Refusal(400, prefix + "Expecting 'type' to be present")
    for name in ("executor_id", "framework_id"):
        if not getattr(call, name).value:
            raise Refusal(400, prefix + f"Expecting '{name}' to be present")
    field = _NEEDS_MESSAGE.get(call.type)
    if field is not None and not call.HasField(field):
        raise Refusal(400, prefix + f"Expecting '{field}' to be present")
    if call.type == V1Call.UPDATE:
        status = call.update.status
        if not status.uuid:
            raise Refusal(400, prefix + "Expecting 'uuid' to be present")
        try:
            uuid.UUID(bytes=status.uuid)
        except ValueError:
            raise Refusal(400, prefix + "'uuid' is not a valid UUID (16 bytes)") from None
        if status.state == pb.TASK_STAGING:
            raise Refusal(400, prefix + "Received TASK_STAGING from executor which is not allowed")
        if status.HasField("executor_id") and status.executor_id.value != call.executor_id.value:
            raise Refusal(400, prefix + "ExecutorID in Call and in TaskStatus differ")


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "Unauthorized: an executor authenticates with 'Authorization: Bearer <token>' "
                           "(its MESOS_EXECUTOR_AUTHENTICATION_TOKEN)",
                      {"WWW-Authenticate": f'Bearer realm="{REALM}"'})
    return token.strip()


# -- actor thread ------------------------------------------------------------------------


def _authorize(core, framework_id: str, executor_id: str, token: str | None):
    """(status, message, executor): who the token proves, checked against the
    executor the call names. The token is checked before anything is looked
    up, so an unauthenticated caller learns nothing about which executors exist."""
    executors = core.executors
    if executors is None:
        return 503, "Service Unavailable: this slave runs no executors (simulated containerizer)", None
    if token is None:
        return 401, ("Unauthorized: an executor proves itself with the token its slave gave it "
                     "(MESOS_EXECUTOR_AUTHENTICATION_TOKEN) as 'Authorization: Bearer <token>'"), None
    container_id = executors.container_of(token)
    if container_id is None:
        return 401, "Unauthorized: no executor on this slave holds this token", None
    executor = core.find_executor(framework_id, executor_id)
    if executor is None or executor.is_command:
        return 400, f"Executor {executor_id!r} of framework {framework_id!r} is not running on this slave", None
    if executor.container_id != container_id:
        return 403, (f"Forbidden: the token is container {container_id}'s, which is not the container of "
                     f"executor {executor_id} of framework {framework_id}: an executor may only speak for "
                     "itself"), None
    return 200, "", executor


def _open_stream(core, stream: ExecutorStream, call: pb.ExecutorCall, token: str | None) -> tuple[int, str]:
    """Actor thread: the stream joins as a peer and its SUBSCRIBE is handled."""
    status, message, executor = _authorize(core, call.framework_id.value, call.executor_id.value, token)
    if status != 200:
        return status, message
    if executor.state in (ExecutorRunState.TERMINATING, ExecutorRunState.TERMINATED):
        return 400, f"Executor {executor.id} of framework {executor.framework.id} is terminating"
    server = core.executors.server
    if server.virtual_peers() >= MAX_STREAMS:
        return 503, f"Service Unavailable: this slave serves {MAX_STREAMS} HTTP executors at most"
    server.add_virtual_peer(stream.peer, stream, executor.container_id, STALL_TIMEOUT)
    core.executors.on_call(stream.peer, call)
    if executor.peer == stream.peer:
        return 200, ""
    error = stream.take_error() or "SUBSCRIBE refused"
    server.end_virtual_peer(stream.peer)
    return 400, error


def _dispatch(core, call: pb.ExecutorCall, token: str | None) -> tuple[int, str]:
    """Actor thread: an UPDATE or MESSAGE of a subscribed HTTP executor."""
    status, message, executor = _authorize(core, call.framework_id.value, call.executor_id.value, token)
    if status != 200:
        return status, message
    if executor.state is not ExecutorRunState.RUNNING or executor.peer is None:
        return 403, f"Forbidden: executor {executor.id} is not subscribed"
    if not is_stream_peer(executor.peer):
        return 403, f"Forbidden: executor {executor.id} is not subscribed over HTTP"
    refused = core.stats["invalid_executor_calls"]
    core.executors.on_call(executor.peer, call)
    if core.stats["invalid_executor_calls"] != refused:
        return 400, "The slave refused the call; the ERROR event on the executor's stream says why"
    return 202, ""


# -- SUBSCRIBE -----------------------------------------------------------------------------


def _subscribe(view, call: pb.ExecutorCall, token: str | None, media: str) -> Response:
    if media not in (JSON, PROTOBUF):
        raise Refusal(406, f"Expecting 'Accept' to allow {JSON} or {PROTOBUF}")
    stream = ExecutorStream(str(uuid.uuid4()), media)
    actor = view.actor
    try:
        result = view.on_actor(_open_stream, stream, call, token)
    except TimeoutError:
        # The busy actor may still subscribe it later: a closed stream then takes
        # nothing, which reports the peer lost.
        stream.close()
        raise
    _check(result)
    server = view.executor_server

    def gone(why: str) -> None:
        actor.call_soon(server.virtual_peer_gone, stream.peer, why)

    body = stream.body(request.environ.get("offerd.socket"), gone, actor.stopped)
    return Response(body, status=200, direct_passthrough=True,
                    headers={"Content-Type": stream.media, "Cache-Control": "no-cache"})
