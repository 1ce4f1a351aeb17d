"""ZeroMQ transport: framing, heartbeats, size limits, reconnection.

The only module that touches ZeroMQ sockets for protocol traffic. A daemon's
server side is a ROUTER (:class:`Server`); a client is a DEALER (:class:`Client`).
Both live on an :class:`~offerd.common.actor.Actor` and call back on its thread.

The frames, their names and their decoding are offerd.common.framing's (and
docs/protocol.md's). A ROUTER sees the DEALER's identity as an extra first frame. Heartbeats flow from
client to server and are echoed; silence past a timeout means the peer is gone.
Frames that are malformed, oversized or of a type the receiver does not accept are
answered with a ``ProtocolError`` message and otherwise ignored.

Security (docs/security.md): a server given a CURVE key pair encrypts every
link and proves itself to clients that know its public key; each message then
carries the client's key, and a routing id is bound to the key that first used
it, so no other connection can speak under it. A server given credentials
answers the challenge-response above and remembers each peer's principal
(:meth:`Server.principal`); the upper layers decide what needs one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Callable, Iterable

import zmq
from google.protobuf.message import Message

from offerd.common import credentials as creds
from offerd.common import curve
from offerd.common.actor import Actor, Timer
# The frame names and helpers, for the modules and tests that speak the protocol raw.
from offerd.common.framing import (  # noqa: F401
    AUTH,
    AUTH_FAIL,
    AUTH_OK,
    CHALLENGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    GOODBYE,
    HARD_LIMIT_FACTOR,
    HEARTBEAT,
    MAGIC,
    MESSAGE_TYPES,
    NO_AUTH,
    PROOF,
    TransportStats,
    Decoder,
    encode,
    error_frames,
)

log = logging.getLogger(__name__)

MAX_PRINCIPAL_BYTES = 256
# A failed proof is answered this much later, which slows down guessing.
AUTH_FAILURE_DELAY = 0.5
# Failed handshakes waiting for their delayed answer, at most.
MAX_DELAYED_REFUSALS = 1000
# A client whose authentication is not answered in this time tries again.
AUTH_TIMEOUT = 10.0


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
        curve_key: tuple[bytes, bytes] | None = None,
        credentials: Callable[[str], str | None] | None = None,
    ):
        """`curve_key` (public, secret) turns encryption on; `credentials` maps a
        principal to its secret (None: unknown) and turns authentication on."""
        self.actor = actor
        self.on_message = on_message
        self.credentials = credentials
        self.encrypted = curve_key is not None
        self.on_peer_lost = on_peer_lost or (lambda peer: None)
        self.default_peer_timeout = peer_timeout
        self.stats = TransportStats()
        self._decoder = Decoder(accepted, max_message_bytes, self.stats)
        # Echoed with every heartbeat so clients notice a restarted server on the
        # same address, which ZeroMQ's silent reconnection would otherwise hide.
        self.incarnation = os.urandom(8)
        self._last_seen: dict[bytes, float] = {}
        self._peer_timeouts: dict[bytes, float] = {}
        self._principals: dict[bytes, str] = {}
        self._peer_keys: dict[bytes, bytes] = {}
        self._challenges: dict[bytes, tuple[str, bytes, bytes]] = {}
        self._delayed_refusals = 0

        sock = actor.context.socket(zmq.ROUTER)
        if curve_key is not None:
            curve.acquire_zap(actor.context)
            sock.setsockopt(zmq.ZAP_DOMAIN, curve.ZAP_DOMAIN)
            sock.curve_server = True
            sock.curve_secretkey = curve_key[1]
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
        """Stop tracking a peer (the upper layer dropped it, or it left)."""
        self._last_seen.pop(peer, None)
        self._peer_timeouts.pop(peer, None)
        self._principals.pop(peer, None)
        self._peer_keys.pop(peer, None)
        self._challenges.pop(peer, None)

    def knows(self, peer: bytes) -> bool:
        return peer in self._last_seen

    def principal(self, peer: bytes) -> str | None:
        """The principal `peer` proved on this connection, or None."""
        return self._principals.get(peer)

    def close(self) -> None:
        if self.socket.closed:
            return
        self._liveness_timer.cancel()
        self.actor.remove_socket(self.socket)
        self.socket.close(0)
        if self.encrypted:
            curve.release_zap(self.actor.context)

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
        encrypted = self.encrypted
        for _ in range(1000):
            try:
                if encrypted:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    frames = [part.bytes for part in parts]
                    if not self._bind_key(frames[0], parts[-1].get("User-Id")):
                        continue
                else:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            peer, body = frames[0], frames[1:]
            self._last_seen[peer] = now
            if 2 <= len(body) <= 4 and body[0] == MAGIC and body[1][:1] == b"~":
                control = body[1]
                if control == HEARTBEAT:
                    self._send_frames(peer, [MAGIC, HEARTBEAT, self.incarnation])
                    continue
                if control == GOODBYE:
                    self.forget(peer)
                    self.actor._guard(self.on_peer_lost, peer)
                    continue
                if control == AUTH and len(body) == 4:
                    self._on_auth(peer, body[2], body[3])
                    continue
                if control == PROOF and len(body) == 3:
                    self._on_proof(peer, body[2])
                    continue
            message, error = self._decoder.decode(body)
            if error is not None:
                log.warning("refused a frame from peer %s: %s", peer.hex(), error)
                kind = body[1] if len(body) > 1 else b""
                self._send_frames(peer, error_frames(error, kind))
                continue
            self.actor._guard(self.on_message, peer, message)

    def _bind_key(self, peer: bytes, key: str | None) -> bool:
        """Whether a message under routing id `peer` comes from the connection that
        owns it. A new connection under a known id means the old one is gone (libzmq
        refuses a duplicate while the first is connected): the old peer is dropped
        and the new one starts unauthenticated, so it inherits nothing."""
        if not key:
            return False
        known = self._peer_keys.get(peer)
        if known is None:
            self._peer_keys[peer] = key.encode()
            return True
        if known == key.encode():
            return True
        self.stats.rebound_peers += 1
        log.warning("peer id %s reused by another connection: the old connection is treated as gone", peer.hex())
        self.forget(peer)
        self.actor._guard(self.on_peer_lost, peer)
        self._peer_keys[peer] = key.encode()
        return True

    def _on_auth(self, peer: bytes, principal_bytes: bytes, client_nonce: bytes) -> None:
        if self.credentials is None:
            self._send_frames(peer, [MAGIC, NO_AUTH])
            return
        try:
            principal = principal_bytes.decode("utf-8")
        except UnicodeDecodeError:
            principal = ""
        if not principal or len(principal_bytes) > MAX_PRINCIPAL_BYTES or not 16 <= len(client_nonce) <= 64:
            self._refuse_auth(peer, "malformed authentication request")
            return
        current = self._principals.get(peer)
        if current is not None and current != principal:
            self._refuse_auth(peer, f"this connection is already authenticated as {current!r}")
            return
        server_nonce = creds.new_nonce()
        self._challenges[peer] = (principal, client_nonce, server_nonce)
        self._send_frames(peer, [MAGIC, CHALLENGE, server_nonce])

    def _on_proof(self, peer: bytes, proof: bytes) -> None:
        pending = self._challenges.pop(peer, None)
        if pending is None or self.credentials is None:
            self._refuse_auth(peer, "no authentication in progress on this connection")
            return
        principal, client_nonce, server_nonce = pending
        try:
            secret = self.credentials(principal)
        except Exception:
            log.exception("credential lookup failed")
            secret = None
        if not creds.verify(secret, server_nonce, client_nonce, principal, proof):
            log.warning("authentication of principal %r from peer %s failed", principal, peer.hex())
            self._refuse_auth(peer, f"authentication of principal {principal!r} failed: unknown principal "
                                    "or wrong secret")
            return
        self._principals[peer] = principal
        self.stats.authentications += 1
        log.debug("peer %s authenticated as %r", peer.hex(), principal)
        self._send_frames(peer, [MAGIC, AUTH_OK, principal.encode()])

    def _refuse_auth(self, peer: bytes, reason: str) -> None:
        self.stats.authentication_failures += 1
        if self._delayed_refusals >= MAX_DELAYED_REFUSALS:
            # A flood of failing handshakes: beyond this many waiting answers the
            # rest get none (their clients time out), so the flood costs no memory.
            return
        self._delayed_refusals += 1
        frames = [MAGIC, AUTH_FAIL, reason.encode()]

        def answer():
            self._delayed_refusals -= 1
            self._send_frames(peer, frames)
        self.actor.call_later(AUTH_FAILURE_DELAY, answer)

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
        server_key: bytes | None = None,
        credential: creds.Credential | None = None,
        on_auth_failed: Callable[[str], None] | None = None,
    ):
        """`server_key` (the server's public CURVE key) turns encryption on;
        `credential` makes the client prove its principal before `on_connected`.
        A refused proof calls `on_auth_failed(reason)` and is retried after the
        backoff unless that callback closes the client."""
        self.actor = actor
        self.server_key = server_key
        self.credential = credential
        self.on_auth_failed = on_auth_failed or (lambda reason: None)
        self.principal: str | None = None
        self.resolve = resolve
        self.on_message = on_message
        self.on_connected = on_connected or (lambda: None)
        self.on_disconnected = on_disconnected or (lambda: None)
        self.heartbeat_interval = heartbeat_interval
        self.max_missed = max_missed
        self.backoff = backoff or Backoff()
        self.name = name
        self.stats = TransportStats()
        self._decoder = Decoder(accepted, max_message_bytes, self.stats)
        self._max_message_bytes = max_message_bytes
        self.socket = None
        self.endpoint: str | None = None
        # `_link_up`: the server answers; `connected`: authenticated too, ready for calls.
        self._link_up = False
        self.connected = False
        self._auth_nonce: bytes | None = None
        self._auth_timer: Timer | None = None
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
        for timer in (self._heartbeat_timer, self._reconnect_timer, self._auth_timer):
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
        if self.server_key is not None:
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey = self.server_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
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
            hint = ""
            if not self._link_up:
                hint = ("; if it is up, check that it uses encryption exactly when this client does, "
                        "with the public key this client was given") if self.server_key is not None else \
                       "; if it is up, it may require encryption (give its public key)"
            self._drop(f"no answer from {self.endpoint} for {silent_for:.1f}s{hint}")
            return
        try:
            self.socket.send_multipart([MAGIC, HEARTBEAT], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected yet; silence will tell
        # Until the first echo, beat often: the echo is what tells us we are connected,
        # and a full interval's wait would delay every (re)connection.
        delay = self.heartbeat_interval if self._link_up else min(self.heartbeat_interval, 0.02)
        self._heartbeat_timer = self.actor.call_later(delay, self._heartbeat)

    def _drop(self, reason: str) -> None:
        was_connected = self.connected
        self.connected = False
        self._link_up = False
        self._auth_nonce = None
        self._generation += 1
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
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
            if not self._link_up:
                self._link_up = True
                self.backoff.reset()
                log.debug("%s: connected to %s", self.name, self.endpoint)
                if self.credential is None:
                    self._ready()
                else:
                    self._authenticate()
            if 2 <= len(frames) <= 3 and frames[0] == MAGIC and frames[1][:1] == b"~":
                if frames[1] == HEARTBEAT and len(frames) == 3:
                    if self._server_incarnation is None:
                        self._server_incarnation = frames[2]
                    elif frames[2] != self._server_incarnation:
                        self._drop("the server restarted")
                        return
                    continue
                if self._on_auth_frame(frames):
                    continue
            if not self.connected:
                continue  # nothing but the handshake counts before authentication
            message, error = self._decoder.decode(frames)
            if error is not None:
                log.warning("%s: refused a frame from %s: %s", self.name, self.endpoint, error)
                continue
            self.actor._guard(self.on_message, message)

    # -- authentication -------------------------------------------------------

    def _ready(self) -> None:
        self.connected = True
        self.actor._guard(self.on_connected)

    def _authenticate(self) -> None:
        self._auth_nonce = creds.new_nonce()
        self.socket.send_multipart([MAGIC, AUTH, self.credential.principal.encode(), self._auth_nonce],
                                   zmq.NOBLOCK)
        generation = self._generation

        def timed_out():
            if generation == self._generation and not self.connected:
                self._drop(f"{self.endpoint} did not answer the authentication of {self.credential.principal!r}")
        self._auth_timer = self.actor.call_later(AUTH_TIMEOUT, timed_out)

    def _on_auth_frame(self, frames: list[bytes]) -> bool:
        """Handle a handshake frame; False if `frames` is not one."""
        kind = frames[1]
        if kind == CHALLENGE and len(frames) == 3 and self._auth_nonce is not None:
            proof = creds.prove(self.credential.secret, frames[2], self._auth_nonce, self.credential.principal)
            self.socket.send_multipart([MAGIC, PROOF, proof], zmq.NOBLOCK)
            return True
        if kind == AUTH_OK and self._auth_nonce is not None and not self.connected:
            self._auth_nonce = None
            self.principal = self.credential.principal
            log.info("%s: authenticated to %s as %r", self.name, self.endpoint, self.principal)
            self._ready()
            return True
        if kind == NO_AUTH and self._auth_nonce is not None and not self.connected:
            self._auth_nonce = None
            log.warning("%s: %s does not authenticate (no --credentials there); continuing without",
                        self.name, self.endpoint)
            self._ready()
            return True
        if kind == AUTH_FAIL and len(frames) == 3 and self._auth_nonce is not None:
            reason = frames[2].decode("utf-8", "replace")
            log.error("%s: %s refused authentication: %s", self.name, self.endpoint, reason)
            self.actor._guard(self.on_auth_failed, reason)
            if not self._closed:
                self._drop(f"authentication refused: {reason}")
            return True
        return kind in (CHALLENGE, AUTH_OK, NO_AUTH, AUTH_FAIL)
