"""ZeroMQ transport: framing, heartbeats, size limits, reconnection.

The only module that touches ZeroMQ sockets for protocol traffic. A daemon's
server side is a ROUTER (:class:`Server`); a client is a DEALER (:class:`Client`).
Both live on an :class:`~offerd.common.actor.Actor` and call back on its thread.

Frame layout (see docs/protocol.md):

    data       [MAGIC, <protobuf full name>, <serialized message>]
    heartbeat  [MAGIC, b"~hb"]  (the server's echo adds its 8-byte incarnation id)
    goodbye    [MAGIC, b"~bye"]

A ROUTER sees the DEALER's identity as an extra first frame. Heartbeats flow from
client to server and are echoed; silence past a timeout means the peer is gone.
Frames that are malformed, oversized or of a type the receiver does not accept are
answered with a ``ProtocolError`` message and otherwise ignored.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Callable, Iterable

import zmq
from google.protobuf.message import DecodeError, Message

from offerd.common.actor import Actor, Timer
from offerd.proto import offerd_pb2

log = logging.getLogger(__name__)

MAGIC = b"offerd/1"
HEARTBEAT = b"~hb"
GOODBYE = b"~bye"

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

    def as_dict(self, prefix: str) -> dict[str, int]:
        return {f"{prefix}/{key}": value for key, value in vars(self).items()}


def encode(message: Message) -> list[bytes]:
    return [MAGIC, message.DESCRIPTOR.full_name.encode(), message.SerializeToString()]


class _Decoder:
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


def _error_frames(reason: str, kind: bytes = b"") -> list[bytes]:
    error = offerd_pb2.ProtocolError(message=reason, kind=kind[:200].decode("utf-8", "replace"))
    return encode(error)


class Server:
    """A ROUTER endpoint. Peers are identified by their opaque ZeroMQ identity."""

    def __init__(
        self,
        actor: Actor,
        bind: str,
        accepted: Iterable[type[Message]],
        on_message: Callable[[bytes, Message], None],
        on_peer_lost: Callable[[bytes], None] | None = None,
        peer_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        self.actor = actor
        self.on_message = on_message
        self.on_peer_lost = on_peer_lost or (lambda peer: None)
        self.default_peer_timeout = peer_timeout
        self.stats = TransportStats()
        self._decoder = _Decoder(accepted, max_message_bytes, self.stats)
        # Echoed with every heartbeat so clients notice a restarted server on the
        # same address, which ZeroMQ's silent reconnection would otherwise hide.
        self.incarnation = os.urandom(8)
        self._last_seen: dict[bytes, float] = {}
        self._peer_timeouts: dict[bytes, float] = {}

        sock = actor.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes * HARD_LIMIT_FACTOR)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        if bind.endswith(":0"):
            self.port = sock.bind_to_random_port(bind.rsplit(":", 1)[0])
        else:
            sock.bind(bind)
            self.port = int(bind.rsplit(":", 1)[1])
        self.socket = sock
        actor.add_socket(sock, self._on_readable)
        actor.on_close(self.close)
        self._liveness_timer = actor.call_every(max(0.1, min(1.0, peer_timeout / 4)), self._check_liveness)

    def set_peer_timeout(self, peer: bytes, seconds: float) -> None:
        self._peer_timeouts[peer] = seconds

    def send(self, peer: bytes, message: Message) -> bool:
        return self._send_frames(peer, encode(message))

    def send_raw(self, peer: bytes, frames: list[bytes]) -> bool:
        """Send frames already produced by :func:`encode` (to fan one message out)."""
        return self._send_frames(peer, frames)

    def forget(self, peer: bytes) -> None:
        """Stop tracking a peer's liveness (the upper layer dropped it)."""
        self._last_seen.pop(peer, None)
        self._peer_timeouts.pop(peer, None)

    def knows(self, peer: bytes) -> bool:
        return peer in self._last_seen

    def close(self) -> None:
        self._liveness_timer.cancel()
        self.actor.remove_socket(self.socket)
        self.socket.close(0)

    def _send_frames(self, peer: bytes, frames: list[bytes]) -> bool:
        try:
            self.socket.send_multipart([peer, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # EHOSTUNREACH: the peer is gone; EAGAIN: its queue is full.
            self.stats.dropped_sends += 1
            log.debug("send to %r dropped: %s", peer, exc)
            return False
        self.stats.messages_sent += 1
        return True

    def _on_readable(self) -> None:
        sock = self.socket
        now = time.monotonic()
        # Drain what is queued, but yield to the loop now and then; the poller
        # is level-triggered, so whatever is left is seen on the next turn.
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            peer, body = frames[0], frames[1:]
            self._last_seen[peer] = now
            if len(body) == 2 and body[0] == MAGIC:
                if body[1] == HEARTBEAT:
                    self._send_frames(peer, [MAGIC, HEARTBEAT, self.incarnation])
                    continue
                if body[1] == GOODBYE:
                    self.forget(peer)
                    self.actor._guard(self.on_peer_lost, peer)
                    continue
            message, error = self._decoder.decode(body)
            if error is not None:
                log.warning("refused a frame from peer %s: %s", peer.hex(), error)
                kind = body[1] if len(body) > 1 else b""
                self._send_frames(peer, _error_frames(error, kind))
                continue
            self.actor._guard(self.on_message, peer, message)

    def _check_liveness(self) -> None:
        now = time.monotonic()
        lost = [
            peer
            for peer, seen in self._last_seen.items()
            if now - seen > self._peer_timeouts.get(peer, self.default_peer_timeout)
        ]
        for peer in lost:
            self.forget(peer)
            log.info("peer %s silent past its timeout: treating it as disconnected", peer.hex())
            self.actor._guard(self.on_peer_lost, peer)


class Backoff:
    """Capped, jittered exponential backoff ("full jitter")."""

    def __init__(self, base: float = 0.2, cap: float = 10.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Client:
    """A DEALER that keeps itself connected to whatever `resolve()` names.

    `resolve` returns a ``tcp://host:port`` endpoint (or raises); it may block
    (an HTTP lookup, a ZooKeeper read), so it runs on a helper thread. When the
    server stays silent past `heartbeat_interval * max_missed`, the socket is
    dropped and the endpoint resolved again after a jittered backoff, which is
    how clients follow a new leading master.
    """

    def __init__(
        self,
        actor: Actor,
        resolve: Callable[[], str],
        accepted: Iterable[type[Message]],
        on_message: Callable[[Message], None],
        on_connected: Callable[[], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        heartbeat_interval: float = 1.0,
        max_missed: int = 5,
        backoff: Backoff | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        name: str = "client",
    ):
        self.actor = actor
        self.resolve = resolve
        self.on_message = on_message
        self.on_connected = on_connected or (lambda: None)
        self.on_disconnected = on_disconnected or (lambda: None)
        self.heartbeat_interval = heartbeat_interval
        self.max_missed = max_missed
        self.backoff = backoff or Backoff()
        self.name = name
        self.stats = TransportStats()
        self._decoder = _Decoder(accepted, max_message_bytes, self.stats)
        self._max_message_bytes = max_message_bytes
        self.socket = None
        self.endpoint: str | None = None
        self.connected = False
        self._last_heard = 0.0
        self._server_incarnation: bytes | None = None
        self._heartbeat_timer: Timer | None = None
        self._reconnect_timer: Timer | None = None
        self._generation = 0
        self._closed = False
        actor.on_close(self.close)

    # -- public ---------------------------------------------------------------

    def start(self) -> None:
        self._resolve_async()

    def send(self, message: Message) -> bool:
        if self.socket is None or not self.connected:
            self.stats.dropped_sends += 1
            log.debug("%s: not connected, dropping %s", self.name, message.DESCRIPTOR.name)
            return False
        try:
            self.socket.send_multipart(encode(message), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.stats.dropped_sends += 1
            log.debug("%s: send failed: %s", self.name, exc)
            return False
        self.stats.messages_sent += 1
        return True

    def reconnect(self) -> None:
        """Drop the connection and look for the server again (e.g. a new leader)."""
        self._drop("reconnect requested")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.socket is not None:
            try:
                self.socket.send_multipart([MAGIC, GOODBYE], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            self._close_socket(linger_ms=200)
        for timer in (self._heartbeat_timer, self._reconnect_timer):
            if timer is not None:
                timer.cancel()

    # -- connection lifecycle -------------------------------------------------

    def _resolve_async(self) -> None:
        generation = self._generation

        def lookup():
            try:
                endpoint, error = self.resolve(), None
            except Exception as exc:  # reported on the actor thread
                endpoint, error = None, exc
            self.actor.call_soon(self._resolved, generation, endpoint, error)

        threading.Thread(target=lookup, name=f"{self.name}-resolve", daemon=True).start()

    def _resolved(self, generation: int, endpoint: str | None, error: Exception | None) -> None:
        if self._closed or generation != self._generation:
            return
        if error is not None or not endpoint:
            delay = self.backoff.next_delay()
            log.info("%s: cannot find the server (%s); retrying in %.1fs", self.name, error, delay)
            self._reconnect_timer = self.actor.call_later(delay, self._resolve_async)
            return
        self._open(endpoint)

    def _open(self, endpoint: str) -> None:
        sock = self.actor.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes * HARD_LIMIT_FACTOR)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.IDENTITY, os.urandom(8))
        sock.connect(endpoint)
        self.socket = sock
        self.endpoint = endpoint
        self._server_incarnation = None
        self._last_heard = time.monotonic()
        self.actor.add_socket(sock, self._on_readable)
        log.debug("%s: connecting to %s", self.name, endpoint)
        self._heartbeat()

    def _heartbeat(self) -> None:
        if self.socket is None or self._closed:
            return
        silent_for = time.monotonic() - self._last_heard
        if silent_for > self.heartbeat_interval * self.max_missed:
            self._drop(f"no heartbeat from {self.endpoint} for {silent_for:.1f}s")
            return
        try:
            self.socket.send_multipart([MAGIC, HEARTBEAT], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected yet; silence will tell
        # Until the first echo, beat often: the echo is what tells us we are connected,
        # and a full interval's wait would delay every (re)connection.
        delay = self.heartbeat_interval if self.connected else min(self.heartbeat_interval, 0.02)
        self._heartbeat_timer = self.actor.call_later(delay, self._heartbeat)

    def _drop(self, reason: str) -> None:
        was_connected = self.connected
        self.connected = False
        self._generation += 1
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        if self.socket is not None:
            self._close_socket()
        if self._closed:
            return
        delay = self.backoff.next_delay()
        log.info("%s: disconnected (%s); looking for the server again in %.1fs", self.name, reason, delay)
        self._reconnect_timer = self.actor.call_later(delay, self._resolve_async)
        if was_connected:
            self.actor._guard(self.on_disconnected)

    def _close_socket(self, linger_ms: int = 0) -> None:
        self.actor.remove_socket(self.socket)
        self.socket.setsockopt(zmq.LINGER, linger_ms)
        self.socket.close()
        self.socket = None

    def _on_readable(self) -> None:
        sock = self.socket
        for _ in range(1000):
            if sock is not self.socket:
                return  # a handler dropped the connection
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            if not self.connected:
                self.connected = True
                self.backoff.reset()
                log.debug("%s: connected to %s", self.name, self.endpoint)
                self.actor._guard(self.on_connected)
            if len(frames) == 3 and frames[0] == MAGIC and frames[1] == HEARTBEAT:
                if self._server_incarnation is None:
                    self._server_incarnation = frames[2]
                elif frames[2] != self._server_incarnation:
                    self._drop("the server restarted")
                    return
                continue
            message, error = self._decoder.decode(frames)
            if error is not None:
                log.warning("%s: refused a frame from %s: %s", self.name, self.endpoint, error)
                continue
            self.actor._guard(self.on_message, message)
