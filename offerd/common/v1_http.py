"""Content negotiation of Mesos' v1 operator endpoints (``POST /api/v1``).

Shared by the master's and the slave's ``/api/v1``, independent of the web
framework: a view hands in the request's headers and body and gets back the
decoded Call, or a :class:`V1HttpError` carrying the status and the plain-text
reason Mesos would give, which each HTTP surface renders in its own error shape.

As Mesos (see mesos.apache.org/documentation/latest/operator-http-api/):

* the body is a Call as ``application/json`` (Mesos' JSON mapping,
  offerd.common.mesos_json) or ``application/x-protobuf``; no Content-Type is
  400, another type 415. ``application/recordio`` (one streamed Call per record,
  each of the type in ``Message-Content-Type``) is decoded up to its first Call
  so that the endpoint can say which call it does not stream;
* the answer is JSON unless ``Accept`` rules JSON out and allows protobuf (or
  recordio, for streaming calls); an Accept that allows none of them is 406.
  ``Message-Accept`` / ``Message-Content-Type`` belong to streaming only.

Unlike Mesos, a JSON call with keys that are not fields (or enum names this
build does not know) is refused with 400 naming them, instead of running
without them: nothing a client asked for is silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from offerd.common import recordio
from offerd.common.mesos_json import MesosJsonError, from_json, loads, to_json

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
RECORDIO = "application/recordio"
MESSAGE_CONTENT_TYPE = "Message-Content-Type"
MESSAGE_ACCEPT = "Message-Accept"

_ENCODINGS = (JSON, PROTOBUF)


class V1HttpError(Exception):
    """A refused v1 call: `status` and Mesos' plain-text `reason`."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class MediaTypes:
    """What a request sends and wants; ``message_*`` only for streaming."""

    content: str
    accept: str
    message_content: str | None = None
    message_accept: str | None = None

    @property
    def streaming_request(self) -> bool:
        return self.content == RECORDIO

    @property
    def streaming_response(self) -> bool:
        return self.accept == RECORDIO


def _media_type(value: str | None) -> str | None:
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


def _parse_accept(header: str) -> list[tuple[str, float]]:
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        quality = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        out.append((fields[0].lower(), quality))
    return out


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept header allows `media_type` (absent: anything), with the
    most specific matching range deciding, as in RFC 7231 and Mesos."""
    if header is None or not header.strip():
        return True
    kind = media_type.split("/", 1)[0]
    best = None   # (specificity, quality)
    for pattern, quality in _parse_accept(header):
        if pattern == media_type:
            specificity = 2
        elif pattern == f"{kind}/*":
            specificity = 1
        elif pattern == "*/*":
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    return best is not None and best[1] > 0


def negotiate(headers) -> MediaTypes:
    """The media types of a request from its headers (a Mapping with .get);
    raises V1HttpError 400/415/406 as Mesos does."""
    raw = headers.get("Content-Type")
    if raw is None or not raw.strip():
        raise V1HttpError(400, "Expecting 'Content-Type' to be present")
    content = _media_type(raw)
    if content not in (JSON, PROTOBUF, RECORDIO):
        raise V1HttpError(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF} or {RECORDIO}")
    message_content = _media_type(headers.get(MESSAGE_CONTENT_TYPE))
    if content == RECORDIO:
        if message_content is None:
            raise V1HttpError(400, f"Expecting '{MESSAGE_CONTENT_TYPE}' to be set for streaming requests")
        if message_content not in _ENCODINGS:
            raise V1HttpError(415, f"Expecting '{MESSAGE_CONTENT_TYPE}' of {JSON} or {PROTOBUF}")
    elif message_content is not None:
        raise V1HttpError(415, f"Expecting '{MESSAGE_CONTENT_TYPE}' to be not set for non-streaming requests")

    accept_header = headers.get("Accept")
    accept = next((t for t in (JSON, PROTOBUF, RECORDIO) if accepts(accept_header, t)), None)
    if accept is None:
        raise V1HttpError(406, f"Expecting 'Accept' to allow {JSON} or {PROTOBUF} or {RECORDIO}")
    message_accept_header = headers.get(MESSAGE_ACCEPT)
    message_accept = None
    if accept == RECORDIO:
        message_accept = next((t for t in _ENCODINGS if accepts(message_accept_header, t)), None)
        if message_accept is None:
            raise V1HttpError(406, f"Expecting '{MESSAGE_ACCEPT}' to allow {JSON} or {PROTOBUF}")
    elif message_accept_header is not None:
        raise V1HttpError(406, f"Expecting '{MESSAGE_ACCEPT}' to be not set for non-streaming responses")
    return MediaTypes(content, accept, message_content, message_accept)


def decode_call(body: bytes, media: MediaTypes, call_type):
    """The Call (a `call_type` message) in `body`, the first one of a recordio
    stream; raises V1HttpError 400 naming what is wrong with it."""
    encoding = media.content
    if media.streaming_request:
        decoder = recordio.Decoder()
        try:
            records = decoder.feed(body)
        except recordio.RecordIOError as exc:
            raise V1HttpError(400, f"Failed to decode the RecordIO body: {exc}") from None
        if not records:
            raise V1HttpError(400, "Received EOF while reading request body")
        body, encoding = records[0], media.message_content
    name = call_type.DESCRIPTOR.full_name
    if encoding == JSON:
        try:
            call, ignored = loads(body, call_type)
        except MesosJsonError as exc:
            if exc.problem.startswith("invalid JSON"):
                raise V1HttpError(400, f"Failed to parse body into JSON: {exc.problem[len('invalid JSON: '):]}") \
                    from None
            raise V1HttpError(400, f"Failed to convert JSON into Call protobuf: {exc}") from None
        if ignored:
            raise V1HttpError(400, f"Failed to convert JSON into Call protobuf: {_describe_ignored(ignored)}")
        return call
    call = call_type()
    try:
        call.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise V1HttpError(400, f"Failed to parse body into {name}: {exc}") from None
    missing = call.FindInitializationErrors()
    if missing:
        raise V1HttpError(400, f"Failed to parse body into {name}: missing required fields: {', '.join(missing)}")
    unknown = _unknown_field_numbers(call)
    if unknown:
        raise V1HttpError(400, f"Failed to parse body into {name}: unknown field numbers "
                               f"{', '.join(map(str, unknown))} (a newer client's fields are not supported)")
    return call


def _describe_ignored(ignored: list[str]) -> str:
    parts = []
    for entry in ignored:
        path, _, value = entry.partition("=")
        parts.append(f"unknown value '{value}' of field '{path}'" if value else f"'{path}' is not a field")
    return "; ".join(parts)


def _unknown_field_numbers(message) -> list[int]:
    """Field numbers of `message` (and its set sub-messages) that its type does not declare."""
    try:
        from google.protobuf import unknown_fields
    except ImportError:
        return []
    found = sorted({f.field_number for f in unknown_fields.UnknownFieldSet(message)})
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            continue
        for item in (value if field.is_repeated else [value]):
            found.extend(_unknown_field_numbers(item))
    return found


def encode_response(message, media: MediaTypes) -> tuple[bytes, str]:
    """(body, Content-Type) of a Response message in the negotiated encoding.
    A message missing a required field is a bug here, never sent half-made."""
    missing = message.FindInitializationErrors()
    if missing:
        raise V1HttpError(500, f"Internal error: the {message.DESCRIPTOR.full_name} answer misses "
                               f"required fields {', '.join(missing)}")
    if media.accept == PROTOBUF:
        return message.SerializeToString(), PROTOBUF
    return json.dumps(to_json(message), allow_nan=False).encode(), JSON


def json_to_message(value, message_type):
    """A message from already-built JSON in Mesos' mapping (e.g. a statistics
    dict); returns (message, ignored paths)."""
    return from_json(value, message_type)

