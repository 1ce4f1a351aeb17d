"""The client side of the ZeroMQ transport: a DEALER that keeps itself connected.

Split from offerd.common.transport (which re-exports `Client` and `Backoff`);
see that module for the frames, heartbeats and security.
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
from offerd.common.actor import Actor, Timer
from offerd.common.framing import (
    AUTH,
    AUTH_FAIL,
    AUTH_OK,
    CHALLENGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    GOODBYE,
    HARD_LIMIT_FACTOR,
    HEARTBEAT,
    MAGIC,
    NO_AUTH,
    PROOF,
    Decoder,
    TransportStats,
    encode,
)

log = logging.getLogger("offerd.common.transport")

# A client whose authentication is not answered in this time tries again.
AUTH_TIMEOUT = 10.0


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
                if frames[1] == GOODBYE and len(frames) == 2:
                    # The server wrote this connection off (it went silent past its timeout,
                    # e.g. a partition that healed): start over, so the upper layer registers again.
                    self._drop("the server dropped this connection")
                    return
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
