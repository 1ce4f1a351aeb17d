"""The event stream of one v1 HTTP subscriber: a virtual transport peer.

An :class:`EventStream` is a virtual peer of a daemon's transport Server
(offerd.common.transport): the actor's sends to the subscriber land in its
bounded queue as offerd events, already serialized, and never block. The HTTP
worker thread that answered the SUBSCRIBE drains the queue in :meth:`body`,
converts each event to its v1 counterpart (``v1_event_type``), encodes it as
JSON or protobuf (the request's Accept) and writes it as one RecordIO record of
the chunked response. The master's scheduler streams
(offerd.master.scheduler_stream, Mesos' v1 scheduler API) and the slave's
executor streams (offerd.slave.executor_http, Mesos' v1 executor API) are
subclasses naming their event types.

The stream ends when the daemon ends it (what is queued is written first),
when the client goes away (its socket reads end-of-file, or a write fails),
or when the client stops reading: the queue is bounded in events and bytes,
and the transport drops a sink whose oldest queued event waited past its stall
timeout. The last two are reported to the daemon as a lost peer, as a ZeroMQ
client's broken connection is.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import threading
import time
from typing import Callable, Iterator

from offerd.common import mesos_json, mesos_v1, recordio
from offerd.common.transport import VIRTUAL_PEER_PREFIX

log = logging.getLogger(__name__)

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
# Events and bytes a stream holds for a reader that is behind; past either
# bound the subscriber is dropped (as a lost peer).
MAX_QUEUED_EVENTS = 50_000
MAX_QUEUED_BYTES = 32 * 1024 * 1024
# How often a waiting writer looks whether its client went away or the
# daemon stopped.
POLL_SECONDS = 0.5


def peer_id(stream_id: str) -> bytes:
    """The transport peer id of the stream with this Mesos-Stream-Id."""
    return VIRTUAL_PEER_PREFIX + b"http:" + stream_id.encode()


def is_stream_peer(peer: bytes | None) -> bool:
    return peer is not None and peer.startswith(VIRTUAL_PEER_PREFIX + b"http:")


class EventStream:
    """A bounded queue of serialized offerd events between the actor and one response.
    Subclasses name `event_type` (what the actor sends) and `v1_event_type`."""

    event_type: type = None  # type: ignore[assignment]
    v1_event_type: type = None  # type: ignore[assignment]
    # Whether push() wakes the reader; a daemon that calls wake() once its turn is
    # over gets what the turn queued written together.
    wake_on_push = True

    def __init__(self, stream_id: str, media: str, max_events: int = MAX_QUEUED_EVENTS,
                 max_bytes: int = MAX_QUEUED_BYTES):
        self.stream_id = stream_id
        self.peer = peer_id(stream_id)
        self.media = media
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[bytes, float]] = collections.deque()
        self._bytes = 0
        self._ended = False
        # Output fields an event had that v1 has no place for (logged once each).
        self._unmapped: set[str] = set()

    # -- actor thread (transport.VirtualPeerSink) ------------------------------------

    def deliver(self, frames: list[bytes]) -> bool:
        if len(frames) != 3 or frames[1] != self.event_type.DESCRIPTOR.full_name.encode():
            # The daemon sends a stream its one event type only; anything else is a bug.
            log.warning("stream %s: not an Event (%r); not sent", self.stream_id, frames[1:2])
            return True
        return self.push(frames[2])

    def push(self, payload: bytes) -> bool:
        """Queue one serialized event; False once the stream is over (ended, or
        dropped now for holding too much for a reader that does not read)."""
        with self._cond:
            if self._ended:
                return False
            if len(self._queue) >= self.max_events or self._bytes + len(payload) > self.max_bytes:
                log.warning("stream %s: %d events (%d bytes) wait for a client that does not read; "
                            "dropping it", self.stream_id, len(self._queue), self._bytes)
                self._ended = True
                self._queue.clear()
                self._bytes = 0
                self._cond.notify_all()
                return False
            self._queue.append((payload, time.monotonic()))
            self._bytes += len(payload)
            if self.wake_on_push:
                self._cond.notify_all()
        return True

    def wake(self) -> None:
        """Let the reader write what is queued (for a stream not woken on each push)."""
        with self._cond:
            self._cond.notify_all()

    def stalled_for(self, now: float) -> float:
        with self._cond:
            return now - self._queue[0][1] if self._queue else 0.0

    def close(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        """Whether the stream is over (ended by the daemon, or dropped); any thread."""
        return self._ended

    # -- HTTP thread ----------------------------------------------------------------------

    def take_error(self) -> str | None:
        """The message of the first ERROR event queued (a refused SUBSCRIBE), or None."""
        with self._cond:
            payloads = [payload for payload, _ in self._queue]
        for payload in payloads:
            event = self.event_type.FromString(payload)
            if event.type == self.event_type.ERROR:
                return event.error.message
        return None

    def body(self, sock, on_gone: Callable[[str], None], stopped: threading.Event) -> Iterator[bytes]:
        """The response body: RecordIO records until the stream ends. `on_gone(why)`
        is called when it ends for any reason but the daemon's own ending."""
        why = "closed its connection"
        try:
            while True:
                with self._cond:
                    if not self._queue and not self._ended:
                        self._cond.wait(POLL_SECONDS)
                    batch = [payload for payload, _ in self._queue]
                    self._queue.clear()
                    self._bytes = 0
                    ended = self._ended
                if batch:
                    # One record per HTTP chunk, as Mesos writes its streams: clients
                    # such as the npm mesos-framework library parse each chunk as one
                    # record and fail on a chunk that holds several.
                    for payload in batch:
                        yield self.encode(payload)
                    continue
                if ended:
                    why = ""
                    return
                if stopped.is_set():
                    why = "outlived its daemon"
                    return
                if _client_closed(sock):
                    return
        finally:
            if why:
                on_gone(why)

    def encode(self, payload: bytes) -> bytes:
        """One offerd event (serialized) as a RecordIO record of its v1 event."""
        event, unmapped = mesos_v1.to_v1(self.event_type.FromString(payload), self.v1_event_type)
        for path in unmapped:
            if path not in self._unmapped:
                # offerd's own fields (MasterInfo.zmq_port): v1 clients have no use for them.
                self._unmapped.add(path)
                log.debug("stream %s: %s has no v1 counterpart; left out", self.stream_id, path)
        if self.media == PROTOBUF:
            record = event.SerializePartialToString()
        else:
            record = mesos_json.dumps(event).encode()
        return recordio.encode(record)


def _client_closed(sock) -> bool:
    """Whether the client closed its end (reads end-of-file), without consuming
    anything it sent."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        # The raw socket's recv, also under TLS: a peek at the bytes, not a record.
        return socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
