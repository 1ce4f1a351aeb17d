"""The frames of offerd's ZeroMQ protocol: their layout, names and limits, and
messages to frames and back (see docs/protocol.md).

    data       [MAGIC, <protobuf full name>, <serialized message>]
    heartbeat  [MAGIC, b"~hb"]  (the server's echo adds its 8-byte incarnation id)
    goodbye    [MAGIC, b"~bye"]
    authenticate (client first)
               [MAGIC, b"~auth", principal, client nonce]  ->  [MAGIC, b"~challenge", server nonce]
               [MAGIC, b"~proof", HMAC]  ->  [MAGIC, b"~authok", principal] | [MAGIC, b"~authfail", reason]
               (or [MAGIC, b"~noauth"] from a server that has no credentials)

Pure functions and data: the sockets are offerd.common.transport's.
"""

from __future__ import annotations

from typing import Iterable

from google.protobuf.message import DecodeError, Message

from offerd.proto import offerd_pb2

MAGIC = b"offerd/1"
HEARTBEAT = b"~hb"
GOODBYE = b"~bye"
AUTH = b"~auth"
CHALLENGE = b"~challenge"
PROOF = b"~proof"
AUTH_OK = b"~authok"
AUTH_FAIL = b"~authfail"
NO_AUTH = b"~noauth"

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# ZeroMQ drops a connection outright above this; below it we answer with an error.
HARD_LIMIT_FACTOR = 4

MESSAGE_TYPES: dict[bytes, type[Message]] = {
    cls.DESCRIPTOR.full_name.encode(): cls
    for cls in (
        offerd_pb2.Call,
        offerd_pb2.Event,
        offerd_pb2.SlaveCall,
        offerd_pb2.SlaveEvent,
        offerd_pb2.ExecutorCall,
        offerd_pb2.ExecutorEvent,
        offerd_pb2.ProtocolError,
    )
}


class TransportStats:
    """Counters a daemon publishes in its metrics."""

    def __init__(self):
        self.messages_received = 0
        self.messages_sent = 0
        self.invalid_frames = 0
        self.oversized_messages = 0
        self.unknown_types = 0
        self.dropped_sends = 0
        self.authentications = 0
        self.authentication_failures = 0
        self.rebound_peers = 0

    def as_dict(self, prefix: str) -> dict[str, int]:
        return {f"{prefix}/{key}": value for key, value in vars(self).items()}


def encode(message: Message) -> list[bytes]:
    return [MAGIC, message.DESCRIPTOR.full_name.encode(), message.SerializeToString()]


class Decoder:
    """Turns data frames into messages, or into the reason they were refused."""

    def __init__(self, accepted: Iterable[type[Message]], max_message_bytes: int, stats: TransportStats):
        self.accepted = {cls.DESCRIPTOR.full_name.encode(): cls for cls in accepted}
        self.max_message_bytes = max_message_bytes
        self.stats = stats

    def decode(self, frames: list[bytes]) -> tuple[Message | None, str | None]:
        if len(frames) != 3 or frames[0] != MAGIC:
            self.stats.invalid_frames += 1
            return None, (
                f"malformed frame: expected 3 parts [{MAGIC.decode()}, type, payload], "
                f"got {len(frames)} part(s)" + ("" if frames and frames[0] == MAGIC else " without the magic prefix")
            )
        kind, payload = frames[1], frames[2]
        if len(payload) > self.max_message_bytes:
            self.stats.oversized_messages += 1
            return None, (
                f"message of {len(payload)} bytes exceeds the limit of {self.max_message_bytes} bytes"
            )
        cls = self.accepted.get(kind)
        if cls is None:
            self.stats.unknown_types += 1
            known = ", ".join(sorted(k.decode() for k in self.accepted))
            return None, f"unknown message type {kind[:80]!r}; this endpoint accepts {known}"
        try:
            message = cls.FromString(payload)
        except (DecodeError, RuntimeError) as exc:
            self.stats.invalid_frames += 1
            return None, f"malformed {kind.decode()}: {exc}"
        self.stats.messages_received += 1
        return message, None


def error_frames(reason: str, kind: bytes = b"") -> list[bytes]:
    error = offerd_pb2.ProtocolError(message=reason, kind=kind[:200].decode("utf-8", "replace"))
    return encode(error)
