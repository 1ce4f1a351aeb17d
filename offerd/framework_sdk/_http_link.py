"""The scheduler driver's link to the master over Mesos' v1 scheduler HTTP API.

A drop-in for the ZeroMQ :class:`~offerd.common.transport.Client` at the seam
the driver uses (``start``, ``send``, ``reconnect``, ``close`` and the
``on_connected`` / ``on_message`` / ``on_disconnected`` / ``on_auth_failed``
callbacks, all called on the driver's actor thread), so registration,
failover, acknowledgements and callbacks stay the driver's, unchanged.

How it speaks (https://mesos.apache.org/documentation/latest/scheduler-http-api/):

* "connected" means a leading master was found; the driver's SUBSCRIBE then
  opens the event stream: one long-lived ``POST /api/v1/scheduler`` read on a
  thread of its own, RecordIO records of ``mesos.v1.scheduler.Event`` in
  protobuf, converted to offerd Events and handed to the driver in order.
* every other call is converted to ``mesos.v1.scheduler.Call`` and POSTed with
  the ``Mesos-Stream-Id`` by one sender thread (calls keep their order) over a
  keep-alive connection, pipelined (offerd.framework_sdk._http_calls);
  ``202 Accepted`` is success.
* a stream that ends, breaks, or stays silent past ``heartbeat_interval_seconds``
  times `max_missed` is a lost connection: the driver hears ``disconnected`` and
  the link looks for the leader again after a jittered backoff, and the
  driver's SUBSCRIBE with its framework id is a failover.
* a standby's ``307`` is followed to its Location; ``503`` (not leading) and
  connection errors are retried; ``401`` is a refused credential; any other
  refusal reaches the scheduler's ``error()`` with the master's reason.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import urllib.parse
from typing import Callable

from google.protobuf.message import DecodeError, Message

from offerd.common import credentials as creds
from offerd.common import mesos_v1, recordio
from offerd.common.actor import Actor, Timer
from offerd.common.detector import master_info, split_host_port
from offerd.common.election import is_zk_url
from offerd.common.transport_client import Backoff
from offerd.framework_sdk._http_calls import (
    MAX_REDIRECTS, PATH, PROTOBUF, STREAM_ID_HEADER, Call, CallSender, HttpError, base_of, basic_auth, connection)
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

# Bound on how long close() waits for queued calls (TEARDOWN) to reach the master.
FLUSH_SECONDS = 5.0


class HttpLink:
    """Keeps a v1 scheduler HTTP subscription to the leading master."""

    def __init__(self, actor: Actor, master: str, on_message: Callable[[Message], None],
                 on_connected: Callable[[], None], on_disconnected: Callable[[], None],
                 on_auth_failed: Callable[[str], None], *, ssl_context: ssl.SSLContext | None = None,
                 credential: creds.Credential | None = None, max_missed: int = 5,
                 subscribe_timeout: float = 15.0, backoff: Backoff | None = None,
                 name: str = "scheduler-http"):
        self.actor = actor
        self.master = master
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_auth_failed = on_auth_failed
        self.ssl_context = ssl_context
        self.credential = credential
        self.max_missed = max_missed
        self.subscribe_timeout = subscribe_timeout
        self.backoff = backoff or Backoff()
        self.name = name
        # Actor-thread state. `_generation` tells a stale thread's report from a current one.
        self.connected = False
        self.base_url: str | None = None
        self.stream_id: str | None = None
        self._generation = 0
        self._closed = False
        self._stream: _Stream | None = None
        self._reconnect_timer: Timer | None = None
        self._sender = CallSender(
            name, ssl_context, credential,
            on_refused=lambda *report: actor.call_soon(self._call_refused, *report),
            on_failed=lambda *report: actor.call_soon(self._call_failed, *report))
        # The calls of one actor turn (say, the acknowledgements of the updates one
        # read of the stream brought), handed to the sender together at its end:
        # written back to back, the master serves them in one go.
        self._turn_calls: list[Call] = []
        actor.after_each_turn(self._hand_over)
        actor.on_close(self.close)

    # -- what the driver calls (actor thread) ---------------------------------

    def start(self) -> None:
        self._find_leader()

    def send(self, message: Message) -> bool:
        if self._closed or not self.connected:
            log.debug("%s: not connected, dropping %s", self.name, pb.Call.Type.Name(message.type))
            return False
        v1_call, unsupported = mesos_v1.to_v1(message, v1_scheduler.Call)
        kind = pb.Call.Type.Name(message.type)
        if unsupported:
            # The v1 API cannot say it: the scheduler hears why rather than waiting for nothing.
            self._refused(kind, f"the v1 scheduler API cannot carry {', '.join(unsupported)}")
            return False
        # An empty message (RECONCILE of all tasks) is absent once converted; v1 needs it present.
        field = v1_scheduler.Call.Type.Name(v1_call.type).lower()
        if field in v1_scheduler.Call.DESCRIPTOR.fields_by_name:
            getattr(v1_call, field).SetInParent()
        if message.type == pb.Call.SUBSCRIBE:
            self._open_stream(v1_call)
            return True
        if self.stream_id is None:
            log.debug("%s: no event stream yet, dropping %s", self.name, kind)
            return False
        self._turn_calls.append(Call(self._generation, self.base_url, self.stream_id, kind,
                                     v1_call.SerializeToString()))
        return True

    def _hand_over(self) -> None:
        if self._turn_calls:
            calls, self._turn_calls = self._turn_calls, []
            self._sender.put(calls)

    def reconnect(self) -> None:
        self._drop("reconnect requested")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.connected = False
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        # Queued calls (a TEARDOWN) go out first; then the stream ends.
        self._hand_over()
        self._sender.close(FLUSH_SECONDS)
        if self._stream is not None:
            self._stream.abort()
            self._stream = None

    # -- finding the leader ---------------------------------------------------

    def _find_leader(self) -> None:
        generation = self._generation

        def lookup():
            try:
                url, error = self._leader_url(), None
            except Exception as exc:  # reported on the actor thread
                url, error = None, exc
            self.actor.call_soon(self._found, generation, url, error)

        threading.Thread(target=lookup, name=f"{self.name}-resolve", daemon=True).start()

    def _leader_url(self) -> str:
        """``http(s)://host:port`` to POST to. A named master is used as is (a
        standby redirects with 307); zk:// is read for the leader's address."""
        secure = self.ssl_context is not None or self.master.strip().startswith("https://")
        scheme = "https" if secure else "http"
        if not is_zk_url(self.master):
            host, port = split_host_port(self.master)
            return f"{scheme}://{_bracket(host)}:{port}"
        info = master_info(self.master)
        address = info.get("address") or {}
        host = address.get("hostname") or info.get("hostname") or address.get("ip")
        port = address.get("port") or info.get("port")
        if not host or not port:
            raise ValueError(f"the leader's MasterInfo has no HTTP address: {info}")
        return f"{scheme}://{_bracket(host)}:{port}"

    def _found(self, generation: int, url: str | None, error: Exception | None) -> None:
        if self._closed or generation != self._generation:
            return
        if error is not None:
            self._retry_later(f"cannot find the leading master ({error})")
            return
        self.base_url = url
        self.connected = True
        self.actor._guard(self.on_connected)

    def _retry_later(self, reason: str) -> None:
        delay = self.backoff.next_delay()
        log.info("%s: %s; trying again in %.1fs", self.name, reason, delay)
        self._reconnect_timer = self.actor.call_later(delay, self._find_leader)

    # -- the event stream -----------------------------------------------------

    def _open_stream(self, v1_call) -> None:
        if self._stream is not None:
            self._stream.abort()
        stream = _Stream(self, self._generation, self.base_url, v1_call.SerializeToString())
        self._stream = stream
        stream.start()

    def _stream_opened(self, generation: int, stream_id: str, url: str) -> None:
        if generation != self._generation or self._closed:
            return
        self.stream_id = stream_id
        self.base_url = url  # where a redirect led
        self.backoff.reset()

    def _events(self, generation: int, events: list[pb.Event]) -> None:
        for event in events:
            if generation != self._generation or self._closed:
                return  # the stream was dropped while handling an earlier one
            self.on_message(event)

    def _stream_ended(self, generation: int, reason: str) -> None:
        if generation == self._generation:
            self._drop(reason)

    def _subscribe_refused(self, generation: int, error: HttpError) -> None:
        if generation != self._generation or self._closed:
            return
        if error.status == 401:
            log.error("%s: the master refused authentication: %s", self.name, error.reason)
            self.actor._guard(self.on_auth_failed, error.reason)
            if not self._closed:
                self._drop(f"authentication refused: {error.reason}")
            return
        if error.status in (400, 403, 404, 406, 413, 415, 501):
            # The master's ERROR event, as a ZeroMQ scheduler would get it.
            event = pb.Event(type=pb.Event.ERROR)
            event.error.message = f"SUBSCRIBE refused ({error.status}): {error.reason}"
            self.on_message(event)
            return
        self._drop(f"SUBSCRIBE answered {error.status}: {error.reason}")

    def _drop(self, reason: str) -> None:
        was_connected = self.connected
        self.connected = False
        self.stream_id = None
        self._generation += 1
        if self._stream is not None:
            self._stream.abort()
            self._stream = None
        if self._closed:
            return
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        self._retry_later(f"disconnected ({reason})")
        if was_connected:
            self.actor._guard(self.on_disconnected)

    # -- what the sender reports (actor thread) ---------------------------------

    def _call_refused(self, generation: int, kind: str, error: HttpError) -> None:
        if generation != self._generation or self._closed:
            log.debug("%s: %s refused on an old stream (%s): ignored", self.name, kind, error.reason)
            return
        if error.status == 503:
            self._drop(f"{kind} answered 503: {error.reason}")
            return
        if error.status == 401:
            self.actor._guard(self.on_auth_failed, error.reason)
            return
        self._refused(kind, f"{error.status} {error.reason}")

    def _call_failed(self, generation: int, kind: str, reason: str) -> None:
        if generation == self._generation and not self._closed:
            self._drop(f"{kind} could not be sent: {reason}")

    def _refused(self, kind: str, reason: str) -> None:
        self.actor._guard(self.on_message, pb.ProtocolError(kind=kind, message=reason))


class _Stream:
    """One SUBSCRIBE response, read on its own thread."""

    def __init__(self, link: HttpLink, generation: int, url: str, body: bytes):
        self.link = link
        self.generation = generation
        self.url = url
        self.body = body
        self._conn: http.client.HTTPConnection | None = None
        self._aborted = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"{self.link.name}-events", daemon=True).start()

    def abort(self) -> None:
        """Unblock the reader; it reports nothing afterwards."""
        self._aborted.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _report(self, fn, *args) -> None:
        if not self._aborted.is_set():
            self.link.actor.call_soon(fn, self.generation, *args)

    def _run(self) -> None:
        link = self.link
        try:
            response, url = self._subscribe()
        except HttpError as exc:
            self._report(link._subscribe_refused, exc)
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._report(link._stream_ended, f"SUBSCRIBE to {self.url} failed: {exc}")
            return
        stream_id = response.getheader(STREAM_ID_HEADER)
        if not stream_id:
            self._report(link._stream_ended, f"{url} answered SUBSCRIBE without {STREAM_ID_HEADER}")
            self._close()
            return
        self._report(link._stream_opened, stream_id, url)
        try:
            reason = self._read(response)
        except (OSError, http.client.HTTPException, recordio.RecordIOError, DecodeError) as exc:
            reason = f"event stream broken: {exc or type(exc).__name__}"
        self._close()
        self._report(link._stream_ended, reason)

    def _subscribe(self):
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            self._conn = connection(url, self.link.subscribe_timeout, self.link.ssl_context)
            if self._aborted.is_set():
                raise OSError("aborted")
            headers = {"Content-Type": PROTOBUF, "Accept": PROTOBUF}
            if self.link.credential is not None:
                headers["Authorization"] = basic_auth(self.link.credential)
            self._conn.request("POST", PATH, body=self.body, headers=headers)
            response = self._conn.getresponse()
            if response.status == 200:
                return response, url
            text = response.read().decode("utf-8", "replace").strip() or response.reason
            self._close()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = base_of(urllib.parse.urljoin(url + PATH, response.getheader("Location")))
                log.info("%s: %s redirects SUBSCRIBE to the leader at %s", self.link.name, self.url, url)
                continue
            raise HttpError(response.status, text)
        raise HttpError(508, f"more than {MAX_REDIRECTS} redirects from {self.url}")

    def _read(self, response) -> str:
        decoder = recordio.Decoder()
        while not self._aborted.is_set():
            chunk = response.read1(65536)
            if not chunk:
                decoder.finish()
                return "the master ended the event stream"
            events: list[pb.Event] = []
            try:
                for record in decoder.feed(chunk):
                    events.append(self._decode(record))
            finally:
                if events:
                    # One hop to the actor for what one read brought, in order.
                    self._report(self.link._events, events)
        return "aborted"

    def _decode(self, record: bytes) -> pb.Event:
        v1_event = v1_scheduler.Event.FromString(record)
        event, unsupported = mesos_v1.to_offerd(v1_event, pb.Event)
        if unsupported:
            log.warning("%s: %s event carries what offerd has no field for: %s",
                        self.link.name, v1_scheduler.Event.Type.Name(v1_event.type), ", ".join(unsupported))
        if event.type == pb.Event.SUBSCRIBED and event.subscribed.heartbeat_interval_seconds > 0:
            # Silence past a few heartbeats is a dead master or a broken path.
            self._conn.sock.settimeout(event.subscribed.heartbeat_interval_seconds * self.link.max_missed)
        return event

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

