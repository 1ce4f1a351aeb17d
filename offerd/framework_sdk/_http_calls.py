"""The scheduler driver's calls over Mesos' v1 scheduler HTTP API, pipelined.

Every call but SUBSCRIBE is its own ``POST /api/v1/scheduler`` with the
``Mesos-Stream-Id``, answered ``202 Accepted`` or refused with a reason
(https://mesos.apache.org/documentation/latest/scheduler-http-api/). One
sender thread writes them, in the order the driver made them, on one
keep-alive HTTP/1.1 connection, and does not wait for an answer before writing
the next: up to ``WINDOW`` requests are in flight, written together when
several wait, and their answers are read in the order they were sent (HTTP/1.1
pipelining, RFC 7230 section 6.3.2). A master takes one connection's requests
one after the other, so the order of calls is the order of requests.

Each answer is matched to its call: 202 is success; a redirect (a standby's
307) sends the call again to its Location, keeping its place; any other status
reaches the link as a refusal of that call. An answer with ``Connection:
close`` means the master read nothing after it: the calls still in flight are
written again on a new connection.

A connection that breaks with calls in flight: if it ends in a reset or an end
of file (as an idle keep-alive connection the master timed out does) the
unanswered calls are written once more on a new connection, as a client that
does not pipeline resends its one request. A master that took a call and died
before answering would see it twice; for
ACCEPT that is an offer already used, refused like any invalid offer (its
tasks TASK_DROPPED, or TASK_LOST when not partition-aware, with reason
REASON_INVALID_OFFERS), so nothing runs twice. Otherwise (a timeout, a break after
a resend) the unanswered calls are logged by name and each is reported to the
link as not sent: the driver hears ``disconnected`` and subscribes again, as a
ZeroMQ scheduler does when its connection breaks; whether the master took them
is for the scheduler's reconciliation to tell.
"""

from __future__ import annotations

import base64
import collections
import http.client
import logging
import queue
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from offerd.common import credentials as creds

log = logging.getLogger(__name__)

PATH = "/api/v1/scheduler"
PROTOBUF = "application/x-protobuf"
STREAM_ID_HEADER = "Mesos-Stream-Id"
# A redirect chain longer than this is a loop between masters that disagree.
MAX_REDIRECTS = 5
# Requests written before their answers are read: enough to keep a busy master's
# HTTP thread fed, few enough that neither side's socket buffer fills (about
# 250 bytes each) and that a broken connection leaves little to resend.
WINDOW = 64
# Bounds on one answer's lines and headers (as http.client's).
_MAX_LINE = 65536
_MAX_HEADERS = 100
# The signs of a connection the master closed before reading (see the module's doc).
_CLOSED_UNREAD = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class HttpError(Exception):
    """An answer other than the expected one: `status` and the master's text."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Call:
    """One call to POST: `generation` is the link's when the driver made it."""

    generation: int
    url: str
    stream_id: str
    kind: str
    body: bytes
    redirects: int = 0
    resent: bool = False


class CallSender:
    """The sender thread and its connection. `on_refused(generation, kind,
    HttpError)` and `on_failed(generation, kind, reason)` are called on the
    sender thread."""

    def __init__(self, name: str, ssl_context: ssl.SSLContext | None, credential: creds.Credential | None,
                 on_refused: Callable[[int, str, HttpError], None], on_failed: Callable[[int, str, str], None],
                 window: int = WINDOW, timeout: float = 30.0):
        self.name = name
        self.ssl_context = ssl_context
        self.credential = credential
        self.on_refused = on_refused
        self.on_failed = on_failed
        self.window = max(1, window)
        self.timeout = timeout
        self._queue: queue.Queue = queue.Queue()
        # The connection: its base url, http.client connection (owning the socket)
        # and the one buffered reader every answer on it is read from (it may
        # hold the next answers already).
        self._url: str | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._rfile = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-calls", daemon=True)
        self._thread.start()

    def put(self, calls: list[Call]) -> None:
        """Calls to send, in order; they are written together when the window allows."""
        self._queue.put(calls)

    def close(self, timeout: float) -> None:
        """What is queued is sent first (a TEARDOWN), for at most `timeout` seconds."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        waiting: collections.deque[Call] = collections.deque()   # to write, in order
        in_flight: collections.deque[Call] = collections.deque()  # written, answers awaited in order
        redirected: list[Call] = []  # answered 307, written again once in_flight drains
        closing = False
        while True:
            if not closing:
                closing = self._take(waiting, block=not waiting and not in_flight)
            if not in_flight and redirected:
                waiting.extendleft(reversed(redirected))
                redirected.clear()
            if closing and not waiting and not in_flight:
                self._close_conn()
                return
            # Past half the window, answers are read before more is written: a
            # backlogged master then gets requests in batches, not one per answer.
            if waiting and len(in_flight) <= self.window // 2 and (not in_flight or waiting[0].url == self._url):
                self._write(waiting, in_flight)
            if in_flight:
                self._read_one(waiting, in_flight, redirected)

    def _take(self, waiting: collections.deque, block: bool) -> bool:
        """Move what the driver queued to `waiting` (waiting for the first only
        when `block`); True once the end was queued."""
        while len(waiting) < self.window:
            try:
                calls = self._queue.get(block=block)
            except queue.Empty:
                return False
            if calls is None:
                return True
            waiting.extend(calls)
            block = False
        return False

    def _write(self, waiting: collections.deque, in_flight: collections.deque) -> None:
        url = waiting[0].url
        try:
            self._connect(url)
        except (OSError, http.client.HTTPException) as exc:
            call = waiting.popleft()
            self.on_failed(call.generation, call.kind, f"cannot connect to {url}: {exc or type(exc).__name__}")
            return
        batch = []
        while waiting and waiting[0].url == url and len(in_flight) + len(batch) < self.window:
            batch.append(waiting.popleft())
        in_flight.extend(batch)
        try:
            self._conn.sock.sendall(b"".join(self._request(call) for call in batch))
        except OSError as exc:
            self._broken(exc, waiting, in_flight)

    def _read_one(self, waiting: collections.deque, in_flight: collections.deque, redirected: list) -> None:
        try:
            answer = _read_answer(self._rfile)
        except (OSError, http.client.HTTPException) as exc:
            self._broken(exc, waiting, in_flight)
            return
        call = in_flight.popleft()
        if answer.will_close:
            # The master reads nothing after this answer: what follows it was not taken.
            self._close_conn()
            waiting.extendleft(reversed(in_flight))
            in_flight.clear()
        status, location = answer.status, answer.headers.get("location")
        if status in (200, 202):   # 200: UPDATE_FRAMEWORK, answered once done
            return
        if status in (301, 302, 303, 307, 308) and location:
            if call.redirects < MAX_REDIRECTS:
                call.redirects += 1
                call.url = base_of(urllib.parse.urljoin(call.url + PATH, location))
                redirected.append(call)
                return
            status, text = 508, f"more than {MAX_REDIRECTS} redirects from {call.url}"
        else:
            text = answer.body.decode("utf-8", "replace").strip() or answer.reason
        self.on_refused(call.generation, call.kind, HttpError(status, text))

    def _broken(self, exc: Exception, waiting: collections.deque, in_flight: collections.deque) -> None:
        """The connection failed with `in_flight` unanswered (see the module's doc)."""
        self._close_conn()
        unanswered = list(in_flight)
        in_flight.clear()
        if isinstance(exc, _CLOSED_UNREAD) and not any(call.resent for call in unanswered):
            for call in unanswered:
                call.resent = True
            log.debug("%s: %s closed the connection before answering %d call(s): sending them again",
                      self.name, self._url, len(unanswered))
            waiting.extendleft(reversed(unanswered))
            return
        reason = str(exc) or type(exc).__name__
        log.warning("%s: the connection broke (%s) before the master answered %s; each is reported as "
                    "not sent (the master may have taken it: reconcile)", self.name, reason,
                    ", ".join(call.kind for call in unanswered))
        for call in unanswered:
            self.on_failed(call.generation, call.kind, reason)

    def _request(self, call: Call) -> bytes:
        netloc = urllib.parse.urlsplit(call.url).netloc
        auth = f"Authorization: {basic_auth(self.credential)}\r\n" if self.credential is not None else ""
        # No Accept: a 202 has no body, and a refusal is plain text whatever it says.
        head = (f"POST {PATH} HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: {PROTOBUF}\r\n"
                f"{STREAM_ID_HEADER}: {call.stream_id}\r\n{auth}Content-Length: {len(call.body)}\r\n\r\n")
        return head.encode("latin-1") + call.body

    def _connect(self, url: str) -> None:
        if self._conn is not None and self._url == url:
            return
        self._close_conn()
        conn = connection(url, self.timeout, self.ssl_context)
        conn.connect()
        self._url, self._conn, self._rfile = url, conn, conn.sock.makefile("rb")

    def _close_conn(self) -> None:
        conn, rfile, self._conn, self._rfile = self._conn, self._rfile, None, None
        if rfile is not None:
            rfile.close()
        if conn is not None:
            conn.close()


@dataclass
class _Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    will_close: bool


def _read_answer(rfile) -> _Answer:
    """One HTTP/1.x response from `rfile`, read to its end and no further (the
    next answer may follow it in the buffer). Raises http.client's errors."""
    line = rfile.readline(_MAX_LINE + 1)
    if not line:
        raise http.client.RemoteDisconnected("the master closed the connection without an answer")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(line)
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = rfile.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        if not line or len(line) > _MAX_LINE:
            raise http.client.HTTPException(f"malformed answer header: {line[:80]!r}")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise http.client.HTTPException(f"more than {_MAX_HEADERS} answer headers")
    connection = headers.get("connection", "").lower()
    will_close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(rfile)
    elif "content-length" in headers:
        body = _read_exactly(rfile, int(headers["content-length"]))
    elif code in ("204", "304"):
        body = b""
    else:  # delimited by the end of the connection
        body, will_close = rfile.read(), True
    return _Answer(int(code), reason, headers, body, will_close)


def _read_exactly(rfile, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise http.client.IncompleteRead(data, size - len(data))
    return data


def _read_chunked(rfile) -> bytes:
    parts = []
    while True:
        size_line = rfile.readline(_MAX_LINE + 1)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise http.client.HTTPException(f"malformed chunk size: {size_line[:80]!r}") from None
        if size == 0:
            while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(_read_exactly(rfile, size))
        rfile.readline(_MAX_LINE + 1)


def connection(url: str, timeout: float, ssl_context) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        context = ssl_context or ssl.create_default_context()
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def base_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def basic_auth(credential: creds.Credential) -> str:
    token = f"{credential.principal}:{_text(credential.secret)}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def _text(secret) -> str:
    return secret.decode("utf-8", "replace") if isinstance(secret, bytes) else str(secret)
