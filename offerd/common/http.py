"""The HTTP side of a daemon: a real WSGI server (cheroot) on its own threads,
with optional TLS, and the small HTTP(S) clients offerd's processes use.

Views never touch actor state; they read the snapshot the actor publishes and
post commands through the actor's mailbox.

How the server treats connections, and why:

* A new connection waits in cheroot's selector until it sends something; only
  then does a worker thread take it. A client that connects and stays silent
  costs a file descriptor, not one of the few worker threads.
* The TLS handshake runs in that worker, not in the thread that accepts
  connections, so a slow or hostile handshake never stalls other clients.
  Whatever fails the handshake (plain HTTP sent to the TLS port, a client that
  does not trust the certificate) is closed without any HTTP answer.
* Idle keep-alive connections wait in the selector, not in workers.
* Requests a client pipelined are served in turn by the worker that read them.
  A view may ask (``environ["offerd.hold_answer"]()``) that its short, complete
  answer wait for the answers of the requests already read behind it: they
  then leave in one write when none is left, not one write (and one wake-up of
  the client) each.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from cheroot.makefile import StreamWriter
from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cheroot.workers.threadpool import ThreadPool, WorkerThread

from offerd.common import tls

log = logging.getLogger(__name__)

MAX_REQUEST_BODY = 16 * 1024 * 1024
MAX_REQUEST_HEADERS = 256 * 1024
# Seconds a connection may stay silent (between requests, or in the middle of
# one) before it is closed; also bounds one blocked write to a slow reader.
IDLE_TIMEOUT = 60
# Idle keep-alive connections kept open at once (cheroot's default is 10, which
# would close the connections of the 11th browser after every response).
KEEP_ALIVE_CONNECTIONS = 1024
# The listen backlog (cheroot's default of 5 makes a burst of new clients wait
# for TCP's SYN retries, a second or more).
LISTEN_BACKLOG = 1024
# How long close() lets running requests finish before it returns.
CLOSE_GRACE = 0.5


class _TlsAdapter(BuiltinSSLAdapter):
    """cheroot's builtin adapter with our own context and a handshake deferred
    to the worker thread (see the module docstring)."""

    def __init__(self, context: ssl.SSLContext):
        # BuiltinSSLAdapter.__init__ reads the files again (we already did, with
        # clearer errors); set up only what its other methods use.
        super(BuiltinSSLAdapter, self).__init__(None, None)
        self.context = context
        self._server_env = {}

    def wrap(self, sock):
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, {}


_date = (0, "")


def http_date() -> str:
    """The Date header's value, formatted once a second, not once an answer."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


class _HoldingWriter(StreamWriter):
    """The connection's writer; an answer marked `hold` stays in the buffer until
    the next answer not held, or the connection's flush."""

    hold = False

    def write(self, val, *args, **kwargs):
        if not self.hold:
            return super().write(val, *args, **kwargs)
        with self._write_lock:
            self._write_buf.extend(val)
        self.bytes_written += len(val)
        return len(val)


class _Connection(HTTPConnection):
    """A connection whose TLS handshake (if any) happens on its first read."""

    _handshaken = False

    def __init__(self, server, sock, *args, **kwargs):
        super().__init__(server, sock, *args, **kwargs)
        self.wfile = _HoldingWriter(sock, "wb", self.wbufsize)

    def communicate(self):
        if not self._handshaken and isinstance(self.socket, ssl.SSLSocket):
            try:
                self.socket.do_handshake()
            except (OSError, ValueError) as exc:
                # Plain HTTP to the TLS port, an untrusted certificate on the
                # client's side, a timeout: no HTTP answer, just close.
                log.debug("TLS handshake with %s failed: %s", getattr(self, "remote_addr", "?"), exc)
                return False
            self._handshaken = True
            self.ssl_env = self.server.ssl_adapter.get_environ(self.socket)
        # Requests a client pipelined, already read into the buffer, are served
        # here in turn rather than each handed back through the selector to
        # another worker thread; answers held meanwhile leave together.
        keep_open = False
        try:
            while True:
                self.wfile.hold = False
                keep_open = super().communicate()
                if not keep_open or not self.rfile.has_data():
                    break
        finally:
            self.wfile.hold = False
            try:
                self.wfile.flush()
            except (OSError, ValueError):  # the client went away: close
                keep_open = False
        return keep_open

    def hold_answer(self) -> None:
        self.wfile.hold = True


class _DaemonThreadPool(ThreadPool):
    """Workers that never keep a process alive after its daemon stopped."""

    def _spawn_worker(self):
        thread = WorkerThread(self.server)
        thread.name = f"{self.server.offerd_name}-{thread.name}"
        thread.daemon = True
        thread.start()
        return thread


class _Gateway(wsgi.Gateway_10):
    """WSGI 1.0 plus the connection's socket as ``environ["offerd.socket"]`` (a
    long streaming response looks at it to notice a client that went away
    while nothing was being written) and ``environ["offerd.hold_answer"]``."""

    def get_environ(self):
        environ = super().get_environ()
        environ["offerd.socket"] = self.req.conn.socket
        environ["offerd.hold_answer"] = self.req.conn.hold_answer
        return environ


class _Server(wsgi.Server):
    ConnectionClass = _Connection

    def process_conn(self, conn):
        if getattr(conn, "_offerd_waited", False):
            return super().process_conn(conn)
        # A brand-new connection: wait in the selector until it sends something.
        conn._offerd_waited = True
        self.put_conn(conn)

    def error_log(self, msg="", level=logging.INFO, traceback=False):
        # cheroot writes its errors to stderr; ours go to the process log. Lost
        # or refused clients are routine (debug), a failing view is not.
        level = logging.DEBUG if level < logging.ERROR else level
        log.log(level, "%s: %s", self.offerd_name, msg, exc_info=traceback)


class HttpServer:
    """Serve a WSGI app on host:port (0 picks a free port) until :meth:`close`.

    With `ssl_cert_file` and `ssl_key_file` it serves HTTPS only (TLS 1.2+).
    The port is bound by the constructor (errors such as "address in use" raise
    there); :meth:`start` begins serving.
    """

    def __init__(self, app, host: str, port: int, threads: int = 8, name: str = "http",
                 ssl_cert_file: str | None = None, ssl_key_file: str | None = None):
        context = None
        if ssl_cert_file or ssl_key_file:
            context = tls.server_context(ssl_cert_file, ssl_key_file)
        # SERVER_NAME, which URLs fall back on when a request has no Host header.
        server_name = host if host not in ("", "0.0.0.0", "::") else socket.gethostname()
        server = _Server((host, port), app, numthreads=threads, server_name=server_name, timeout=IDLE_TIMEOUT,
                         shutdown_timeout=CLOSE_GRACE, request_queue_size=LISTEN_BACKLOG)
        server.offerd_name = name
        server.gateway = _Gateway
        server.version = "offerd"
        server.max_request_body_size = MAX_REQUEST_BODY
        server.max_request_header_size = MAX_REQUEST_HEADERS
        server.keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS
        # How often the selector loop looks up; close() waits for it once.
        server.expiration_interval = 0.1
        server.requests = _DaemonThreadPool(server, min=max(1, threads), max=max(1, threads))
        if context is not None:
            server.ssl_adapter = _TlsAdapter(context)
        server.prepare()
        self._server = server
        self.host = host
        self.port = int(server.bind_addr[1])
        self.tls = context is not None
        self.scheme = "https" if self.tls else "http"
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._server.serve()
        except OSError:
            pass  # closed under our feet during shutdown

    def close(self) -> None:
        """Stop listening and drop connections; returns within about CLOSE_GRACE
        even when a streaming response never ends."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        stopper = threading.Thread(target=self._server.stop, name=f"{self._server.offerd_name}-stop",
                                   daemon=True)
        stopper.start()
        stopper.join(CLOSE_GRACE + 0.5)
        if self._thread.is_alive():
            self._thread.join(1.0)


# -- clients ----------------------------------------------------------------------


def _open(request: urllib.request.Request, timeout: float, ssl_context: ssl.SSLContext | None):
    if request.type == "https" and ssl_context is None:
        ssl_context = tls.client_context()
    return urllib.request.urlopen(request, timeout=timeout, context=ssl_context)


def get_json(url: str, timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None,
             headers: dict[str, str] | None = None) -> Any:
    """GET a JSON document; raises OSError (urllib's errors, ssl.SSLError) on
    failure and ValueError when the answer is not JSON."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    with _open(request, timeout, ssl_context) as response:
        return json.loads(response.read().decode("utf-8"))


def post_form(url: str, fields: dict[str, str], timeout: float = 10.0,
              ssl_context: ssl.SSLContext | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=dict(headers or {}))
    try:
        with _open(request, timeout, ssl_context) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@dataclass
class Fetched:
    """One HTTP answer: status, headers (case-insensitive lookup) and body."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def fetch(url: str, ssl_context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
          timeout: float = 10.0, max_bytes: int | None = None, data: bytes | None = None) -> Fetched:
    """GET `url` (POST `data` when given) and return the answer whatever its
    status (4xx/5xx included).

    `ssl_context` verifies an https server (tls.client_context(ca_file));
    `headers` are sent as given (e.g. the caller's ``Authorization``). Raises
    OSError when the server cannot be reached or TLS fails (ssl.SSLError, or
    urllib.error.URLError whose ``reason`` is one), ValueError when the answer
    is larger than `max_bytes`.
    """
    request = urllib.request.Request(url, headers=dict(headers or {}), data=data,
                                     method="POST" if data is not None else "GET")
    try:
        response = _open(request, timeout, ssl_context)
    except urllib.error.HTTPError as exc:
        response = exc
    with response:
        body = response.read() if max_bytes is None else response.read(max_bytes + 1)
        if max_bytes is not None and len(body) > max_bytes:
            raise ValueError(f"answer of {url} is larger than {max_bytes} bytes")
        return Fetched(response.status, response.headers, body)


def base_url(host: str, port: int, ssl_context: ssl.SSLContext | None) -> str:
    """``https://host:port`` when a TLS context is given, else ``http://``."""
    return f"{'https' if ssl_context is not None else 'http'}://{host}:{port}"
