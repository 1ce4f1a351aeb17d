"""ZeroMQ transport: framing, heartbeats, size limits, reconnection.

The only module that touches ZeroMQ sockets for protocol traffic. A daemon's
server side is a ROUTER (:class:`Server`); a client is a DEALER (:class:`Client`, in
offerd.common.transport_client and re-exported here).
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

Virtual peers: a peer that is not a ZeroMQ connection but, say, an HTTP event
stream (Mesos' v1 scheduler API) joins with :meth:`Server.add_virtual_peer`.
The upper layer sends to it, reads its principal and hears of its loss exactly
as for a ZeroMQ peer; its sends go to the sink's own bounded queue, so the actor
never blocks on a slow reader. Their ids start with a zero byte and are longer
than the five bytes of libzmq's generated ids, and libzmq refuses client-chosen
ids that start with a zero byte: no ZeroMQ connection can ever speak under one.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Callable, Iterable, Protocol

import zmq
from google.protobuf.message import Message

from offerd.common import credentials as creds
from offerd.common import curve
from offerd.common.actor import Actor
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
# Bytes of received messages a server holds before its actor handles them; past
# it the server stops reading (see Server).
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
# Messages read from, and handled off, the queue per turn of the actor loop, so
# timers, HTTP calls and other sockets get their turn during a flood.
BATCH = 1000
# What ZeroMQ itself may hold per connected peer while the server does not read
# (its high-water mark counts messages, not bytes; past it TCP pushes back).
RECEIVE_HWM = 1000
# Timed-out peers remembered so a returning heartbeat is told GOODBYE (see Server).
MAX_TIMED_OUT_PEERS = 100_000
# libzmq generates 5-byte routing ids starting with a zero byte (and refuses
# client-chosen ones that start with it); virtual peer ids are longer.
VIRTUAL_PEER_PREFIX = b"\x00v:"


class VirtualPeerSink(Protocol):
    """Where the sends to a virtual peer go. Called on the actor thread only, and
    must never block: a full or finished sink returns False from deliver()."""

    def deliver(self, frames: list[bytes]) -> bool:
        """Queue one message (frames as :func:`encode` makes them)."""

    def stalled_for(self, now: float) -> float:
        """Seconds its oldest queued message has waited for the reader (0: none waits)."""

    def close(self) -> None:
        """Nothing more will come: end after what is queued."""


class Server:
    """A ROUTER endpoint. Peers are identified by their opaque ZeroMQ identity.

    Received messages wait in a queue bounded in bytes (`max_queue_bytes`)
    until the actor handles them, a batch per loop turn. When the queue holds
    the bound (it can go over by at most one message: a message is read whole),
    the server stops reading the socket; ZeroMQ then keeps at most
    RECEIVE_HWM messages per peer and TCP slows the senders down. Reading
    resumes once half the bound is handled. Heartbeats are answered as they are
    read and take no room. Silence the server caused itself does not count
    against a peer: while reading is paused no peer is declared lost, and the
    pause is added to every peer's last-seen time when reading resumes; before
    declaring a peer lost the server also reads what is waiting, so a busy actor
    never mistakes unread heartbeats for silence.
    """

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
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ):
        """`curve_key` (public, secret) turns encryption on; `credentials` maps a
        principal to its secret (None: unknown) and turns authentication on."""
        self.actor = actor
        self.max_queue_bytes = max(1, max_queue_bytes)
        # (peer, frames, size) read but not yet handled, and their total size.
        self._inbox: collections.deque[tuple[bytes, list[bytes], int]] = collections.deque()
        self.queued_bytes = 0
        self.peak_queued_bytes = 0
        self.pauses = 0
        self._paused_at: float | None = None
        self._drain_posted = False
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
        # Peers timed out for silence (bounded, oldest first). The link may come back
        # with the old TCP connection intact: their next heartbeat is answered with
        # GOODBYE, so the client reconnects and its upper layer registers again,
        # instead of believing itself connected to a server that wrote it off.
        self._timed_out: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._peer_timeouts: dict[bytes, float] = {}
        self._principals: dict[bytes, str] = {}
        self._peer_keys: dict[bytes, bytes] = {}
        self._challenges: dict[bytes, tuple[str, bytes, bytes]] = {}
        self._delayed_refusals = 0
        # Virtual peers (see the module docstring): id -> (sink, stall timeout).
        self._virtual: dict[bytes, tuple[VirtualPeerSink, float]] = {}

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
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        try:
            if bind.endswith(":0"):
                self.port = sock.bind_to_random_port(bind.rsplit(":", 1)[0])
            else:
                sock.bind(bind)
                self.port = int(bind.rsplit(":", 1)[1])
        except zmq.ZMQError as exc:
            sock.close(0)
            # An OSError, as for the HTTP port, so daemons report both the same way.
            raise OSError(exc.errno, f"cannot listen on {bind}: {os.strerror(exc.errno)}") from None
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
        if self._virtual:
            entry = self._virtual.pop(peer, None)
            if entry is not None:
                entry[0].close()

    # -- virtual peers (actor thread) -------------------------------------------------

    def add_virtual_peer(self, peer: bytes, sink: VirtualPeerSink, principal: str | None,
                         stall_timeout: float) -> None:
        """Let `sink` be a peer. `principal` is what its own transport proved
        (None: nothing); a sink whose reader takes nothing for `stall_timeout`
        seconds while messages wait is lost, as a silent ZeroMQ peer is."""
        if not peer.startswith(VIRTUAL_PEER_PREFIX) or len(peer) <= 5:
            raise ValueError(f"a virtual peer id starts with {VIRTUAL_PEER_PREFIX!r} and is longer than 5 bytes")
        if peer in self._virtual:
            raise ValueError(f"virtual peer {peer!r} exists")
        self._virtual[peer] = (sink, stall_timeout)
        if principal is not None:
            self._principals[peer] = principal

    def virtual_peers(self) -> int:
        return len(self._virtual)

    def end_virtual_peer(self, peer: bytes) -> None:
        """The upper layer is done with a virtual peer: its sink ends after what
        is queued. No loss is reported. Nothing happens for any other peer."""
        if self._virtual and peer in self._virtual:
            self.forget(peer)

    def virtual_peer_gone(self, peer: bytes, why: str) -> None:
        """The far end of a virtual peer went away: reported as a lost peer."""
        if not self._virtual or peer not in self._virtual:
            return
        log.info("virtual peer %r %s: treating it as disconnected", peer, why)
        self.forget(peer)
        self.actor._guard(self.on_peer_lost, peer)

    def _send_virtual(self, peer: bytes, sink: VirtualPeerSink, frames: list[bytes]) -> bool:
        if sink.deliver(frames):
            self.stats.messages_sent += 1
            return True
        self.stats.dropped_sends += 1
        # Reported on a later turn: the sender may be walking the very records
        # the loss changes.
        self.actor.call_soon(self.virtual_peer_gone, peer, "does not take its messages (queue full)")
        return False

    def knows(self, peer: bytes) -> bool:
        return peer in self._last_seen

    def principal(self, peer: bytes) -> str | None:
        """The principal `peer` proved on this connection, or None."""
        return self._principals.get(peer)

    def close(self) -> None:
        if self.socket.closed:
            return
        self._inbox.clear()
        self.queued_bytes = 0
        self._liveness_timer.cancel()
        for sink, _ in self._virtual.values():
            sink.close()
        self._virtual.clear()
        self.actor.remove_socket(self.socket)
        self.socket.close(0)
        if self.encrypted:
            curve.release_zap(self.actor.context)

    def _send_frames(self, peer: bytes, frames: list[bytes]) -> bool:
        if self._virtual:
            entry = self._virtual.get(peer)
            if entry is not None:
                return self._send_virtual(peer, entry[0], frames)
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
        self._read()
        self._drain()

    def _read(self) -> None:
        """Move what the socket holds into the queue, up to its bound; yield to the
        loop now and then (the poller is level-triggered: the rest is seen next turn)."""
        sock = self.socket
        if sock.closed or self._paused_at is not None:
            return
        now = time.monotonic()
        encrypted = self.encrypted
        for _ in range(BATCH):
            if self.queued_bytes >= self.max_queue_bytes:
                self._pause(now)
                return
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
            if self._timed_out and peer in self._timed_out:
                del self._timed_out[peer]
                if 2 <= len(body) <= 4 and body[0] == MAGIC and body[1] == HEARTBEAT:
                    self._send_frames(peer, [MAGIC, GOODBYE])
                    continue
            self._last_seen[peer] = now
            if 2 <= len(body) <= 4 and body[0] == MAGIC and body[1] == HEARTBEAT:
                # Answered at once: liveness must not wait behind a queue of work.
                self._send_frames(peer, [MAGIC, HEARTBEAT, self.incarnation])
                continue
            size = sum(len(frame) for frame in body) + len(peer)
            self._inbox.append((peer, body, size))
            self.queued_bytes += size
            if self.queued_bytes > self.peak_queued_bytes:
                self.peak_queued_bytes = self.queued_bytes

    def _pause(self, now: float) -> None:
        self._paused_at = now
        self.pauses += 1
        self.actor.remove_socket(self.socket)
        # Once per 100 pauses: a sustained flood must not flood the log as well.
        level = logging.WARNING if self.pauses % 100 == 1 else logging.DEBUG
        log.log(level, "receive queue holds %d bytes (bound %d): not reading until half is handled",
                    self.queued_bytes, self.max_queue_bytes)

    def _resume(self) -> None:
        paused_for = time.monotonic() - self._paused_at
        self._paused_at = None
        # The pause was our silence, not the peers': it does not count against them.
        for peer in self._last_seen:
            self._last_seen[peer] += paused_for
        self.actor.add_socket(self.socket, self._on_readable)
        log.debug("receive queue down to %d bytes after %.2fs: reading again", self.queued_bytes, paused_for)

    def _drain(self) -> None:
        """Handle a batch of queued messages; the rest on a later turn."""
        self._drain_posted = False
        inbox = self._inbox
        for _ in range(BATCH):
            if not inbox or self.socket.closed:
                break
            peer, body, size = inbox.popleft()
            self.queued_bytes -= size
            self._handle(peer, body)
        if self.socket.closed:
            return
        if self._paused_at is not None and self.queued_bytes <= self.max_queue_bytes // 2:
            self._resume()
        if inbox and not self._drain_posted:
            self._drain_posted = True
            self.actor.call_soon(self._drain)

    def _handle(self, peer: bytes, body: list[bytes]) -> None:
        # Control frames other than heartbeats keep their place in the queue: a
        # GOODBYE must not overtake the calls sent before it.
        if 2 <= len(body) <= 4 and body[0] == MAGIC and body[1][:1] == b"~":
            control = body[1]
            if control == GOODBYE:
                self.forget(peer)
                self.actor._guard(self.on_peer_lost, peer)
                return
            if control == AUTH and len(body) == 4:
                self._on_auth(peer, body[2], body[3])
                return
            if control == PROOF and len(body) == 3:
                self._on_proof(peer, body[2])
                return
        message, error = self._decoder.decode(body)
        if error is not None:
            log.warning("refused a frame from peer %s: %s", peer.hex(), error)
            kind = body[1] if len(body) > 1 else b""
            self._send_frames(peer, error_frames(error, kind))
            return
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
        if self._paused_at is not None:
            return  # our own silence: see the class docstring
        # Heartbeats still unread (the actor was busy) are not silence.
        self._on_readable()
        if self._paused_at is not None:
            return
        now = time.monotonic()
        lost = [
            peer
            for peer, seen in self._last_seen.items()
            if now - seen > self._peer_timeouts.get(peer, self.default_peer_timeout)
        ]
        if self._virtual:
            for peer, (sink, timeout) in list(self._virtual.items()):
                if sink.stalled_for(now) > timeout:
                    self.virtual_peer_gone(peer, f"took no message for {timeout:g}s")
        for peer in lost:
            self.forget(peer)
            self._timed_out[peer] = None
            if len(self._timed_out) > MAX_TIMED_OUT_PEERS:
                self._timed_out.popitem(last=False)
            log.info("peer %s silent past its timeout: treating it as disconnected", peer.hex())
            self.actor._guard(self.on_peer_lost, peer)


# The client side lives in its own module; importers keep using this one.
from offerd.common.transport_client import AUTH_TIMEOUT, Backoff, Client  # noqa: E402,F401
