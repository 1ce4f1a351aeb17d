"""The slave's streaming v1 calls: LAUNCH_NESTED_CONTAINER_SESSION,
ATTACH_CONTAINER_INPUT and ATTACH_CONTAINER_OUTPUT, and WAIT/KILL of the
nested containers sessions are (offerd.slave.container_sessions).

As Mesos' agent (mesos.apache.org/documentation/latest/operator-http-api/#agent-api):

* LAUNCH_NESTED_CONTAINER_SESSION and ATTACH_CONTAINER_OUTPUT answer 200 with a
  chunked ``application/recordio`` body of ``mesos.v1.agent.ProcessIO`` records
  (``Message-Content-Type`` JSON or protobuf, by ``Message-Accept``): DATA
  STDOUT/STDERR (with a TTY everything is STDOUT) and a CONTROL HEARTBEAT every
  few seconds; the body ends when the process has exited and its output is drained.
  The session is destroyed when its launch call's connection breaks.
* ATTACH_CONTAINER_INPUT is a streamed request: a chunked RecordIO body of Calls,
  the first naming the container (CONTAINER_ID), then PROCESS_IO records: DATA
  STDIN (empty data: end of input), CONTROL TTY_INFO (window size) or HEARTBEAT.
  It is answered 200 when the body ends; a second input connection while one is
  open is 409 ("Multiple input connections are not allowed").
* ATTACH_CONTAINER_OUTPUT of an executor's own container follows the sandbox's
  stdout and stderr files from their current end until the container ends
  (its processes write to files, not to the slave); input to such a container is
  refused (400): it has no stdin to write to.

Each stream holds one HTTP worker thread, so at most
container_sessions.MAX_STREAMS of them run at once (503 beyond).
"""

from __future__ import annotations

import logging
import os
import select
import signal as signals
import socket
import stat
import time

from cheroot.errors import MaxSizeExceeded
from flask import Response, request

from offerd.common import mesos_json, recordio
from offerd.common.http import MAX_REQUEST_BODY
from offerd.common.v1_http import (JSON, MESSAGE_CONTENT_TYPE, PROTOBUF, RECORDIO, MediaTypes, V1HttpError,
                                   accepts, decode_call)
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.slave.container_sessions import (HEARTBEAT_SECONDS, STDERR, STDOUT, ContainerSessions, SessionError,
                                             parent_of)

log = logging.getLogger(__name__)

Call = v1_agent.Call
AgentResponse = v1_agent.Response
ProcessIO = v1_agent.ProcessIO
# One input record: a chunk of a terminal's or a pipe's input.
MAX_INPUT_RECORD = 1024 * 1024
FOLLOW_INTERVAL = 0.2   # seconds between looks at a task's output files
MAX_PREFIX_DIGITS = len(str(MAX_INPUT_RECORD))


class SessionCalls:
    """The handlers, bound to the slave's view and operator_api's helpers:
    `refuse_unless(action, obj)` (ACLs), `container(id, action)` (a top-level
    container's record, 404 when unknown), `ok(response, media)`."""

    def __init__(self, view, acls, refuse_unless, container, ok):
        self.view = view
        self.acls = acls
        self.refuse_unless = refuse_unless
        self.container = container
        self.ok = ok

    @property
    def sessions(self) -> ContainerSessions:
        return self.view.sessions

    def handlers(self) -> dict:
        return {Call.LAUNCH_NESTED_CONTAINER_SESSION: self.launch_session,
                Call.ATTACH_CONTAINER_OUTPUT: self.attach_output,
                Call.WAIT_NESTED_CONTAINER: self.wait_nested_call,
                Call.KILL_NESTED_CONTAINER: self.kill_nested_call}

    # -- LAUNCH_NESTED_CONTAINER_SESSION ----------------------------------------------

    def launch_session(self, call, media: MediaTypes):
        message_type = _streaming_answer(media)
        launch = call.launch_nested_container_session
        container_id = launch.container_id
        if not container_id.HasField("parent"):
            raise V1HttpError(400, "Failed to validate agent::Call: Expecting 'launch_nested_container_session."
                                   "container_id.parent' to be present")
        if container_id.parent.HasField("parent"):
            raise V1HttpError(400, "offerd runs sessions only in an executor's container, not in a nested one")
        if not container_id.value or "/" in container_id.value or container_id.value in (".", ".."):
            raise V1HttpError(400, f"Invalid container id '{container_id.value}'")
        if not launch.HasField("command"):
            raise V1HttpError(400, "Failed to validate agent::Call: Expecting "
                                   "'launch_nested_container_session.command' to be present")
        command = launch.command
        if command.uris:
            raise V1HttpError(400, "offerd does not fetch URIs for a container session")
        if launch.HasField("container") and launch.container.type not in (launch.container.MESOS,):
            raise V1HttpError(400, "A container session's ContainerInfo must be of type MESOS")
        parent_id = container_id.parent.value
        parent = self.view.on_actor(parent_of, parent_id)
        if parent is None:
            raise V1HttpError(404, f"Container {parent_id} cannot be found (or has ended)")
        user = self._session_user(parent, command)
        self.refuse_unless("launch_nested_container_sessions", user)
        tty = launch.HasField("container") and launch.container.HasField("tty_info")
        window = None
        if tty and launch.container.tty_info.HasField("window_size"):
            size = launch.container.tty_info.window_size
            window = (size.rows, size.columns)
        self._acquire("LAUNCH_NESTED_CONTAINER_SESSION")
        try:
            session = self.sessions.launch(parent, container_id.value, command, user, window, tty)
        except SessionError as exc:
            self.sessions.release()
            raise V1HttpError(exc.status, exc.reason) from None
        except BaseException:
            self.sessions.release()
            raise
        log.info("container session %s.%s launched (v1 LAUNCH_NESTED_CONTAINER_SESSION)", parent_id,
                 container_id.value)
        body = _OutputBody(self.sessions, session.launch_output, session, message_type, request.environ.get("offerd.socket"),
                           destroy_on_break=True)
        return _stream_response(body, message_type)

    def _session_user(self, parent, command) -> str | None:
        """The user the session runs as: the container's, or the command's when the
        ACLs allow it (never root unless the container runs as root)."""
        wanted = command.user if command.HasField("user") and command.user else None
        if wanted is None or wanted == parent.user:
            return parent.user
        if wanted == "root" and (parent.user or "root") != "root":
            raise V1HttpError(403, f"A session in a container running as '{parent.user}' cannot run as root")
        if self.acls is None:
            raise V1HttpError(403, f"A session runs as its container's user '{parent.user}'; running it as "
                                   f"'{wanted}' needs --acls allowing launch_nested_container_sessions for it")
        return wanted

    # -- ATTACH_CONTAINER_OUTPUT ------------------------------------------------------

    def attach_output(self, call, media: MediaTypes):
        message_type = _streaming_answer(media)
        container_id = call.attach_container_output.container_id
        if container_id.HasField("parent"):
            session = self._session(container_id, "attach_containers_output")
            self._acquire("ATTACH_CONTAINER_OUTPUT")
            body = _OutputBody(self.sessions, session.attach_output(), session, message_type,
                               request.environ.get("offerd.socket"), destroy_on_break=False)
            return _stream_response(body, message_type)
        found = self.container(container_id.value, "attach_containers_output")
        if found["terminated"]:
            raise V1HttpError(404, f"Container {container_id.value} has ended")
        sandbox = self.view.on_actor(_sandbox_of, container_id.value)
        if sandbox is None:
            raise V1HttpError(404, f"Container {container_id.value} cannot be found")
        self._acquire("ATTACH_CONTAINER_OUTPUT")
        body = _FollowBody(self.sessions, self.view, container_id.value, sandbox, message_type,
                           request.environ.get("offerd.socket"))
        return _stream_response(body, message_type)

    # -- ATTACH_CONTAINER_INPUT ---------------------------------------------------------

    def attach_input(self, media: MediaTypes):
        """The streamed request: read record by record from the request body."""
        reader = _RecordReader(request.environ["wsgi.input"])
        first = reader.next()
        if first is None:
            raise V1HttpError(400, "Received EOF while reading request body")
        record_media = MediaTypes(media.message_content, media.accept)
        call = decode_call(first, record_media, Call)
        if call.type != Call.ATTACH_CONTAINER_INPUT:
            name = Call.Type.Name(call.type) if call.type in Call.Type.values() else str(call.type)
            raise V1HttpError(415, f"Streaming 'Content-Type' {RECORDIO} is not supported for {name} call")
        attach = call.attach_container_input
        if attach.type != attach.CONTAINER_ID or not attach.HasField("container_id"):
            raise V1HttpError(400, "Expecting 'attach_container_input.type' to be CONTAINER_ID "
                                   "(with 'container_id') in the first record")
        container_id = attach.container_id
        if not container_id.HasField("parent"):
            self.container(container_id.value, "attach_containers_input")
            raise V1HttpError(400, f"Container {container_id.value} was not launched with an attachable stdin "
                                   "or TTY (an executor's container reads no input from the slave); start a "
                                   "session in it with LAUNCH_NESTED_CONTAINER_SESSION")
        session = self._session(container_id, "attach_containers_input")
        if session.ended.is_set():
            raise V1HttpError(404, f"Container {_name(container_id)} has ended")
        self._acquire("ATTACH_CONTAINER_INPUT")
        try:
            with _InputConnection(session):
                return self._pump_input(reader, record_media, session)
        finally:
            self.sessions.release()

    def _pump_input(self, reader: "_RecordReader", record_media: MediaTypes, session) -> Response:
        writable = True
        while True:
            record = reader.next()
            if record is None:
                return Response(b"", status=200)
            call = decode_call(record, record_media, Call)
            attach = call.attach_container_input
            if call.type != Call.ATTACH_CONTAINER_INPUT or attach.type != attach.PROCESS_IO:
                raise V1HttpError(400, "Expecting every record after the first to be an ATTACH_CONTAINER_INPUT "
                                       "call of type PROCESS_IO")
            io = attach.process_io
            if io.type == ProcessIO.DATA:
                if io.data.type != ProcessIO.Data.STDIN:
                    raise V1HttpError(400, "Expecting 'process_io.data.type' to be STDIN")
                if writable:
                    writable = session.write_stdin(io.data.data)
            elif io.type == ProcessIO.CONTROL:
                if io.control.type == ProcessIO.Control.TTY_INFO:
                    size = io.control.tty_info.window_size
                    session.resize(size.rows, size.columns)
                elif io.control.type != ProcessIO.Control.HEARTBEAT:
                    raise V1HttpError(400, "Expecting 'process_io.control.type' to be TTY_INFO or HEARTBEAT")
            else:
                raise V1HttpError(400, "Expecting 'process_io.type' to be DATA or CONTROL")

    # -- nested WAIT / KILL ---------------------------------------------------------------

    def wait_nested(self, container_id, media: MediaTypes, kind: int) -> Response:
        session = self._session(container_id, "wait_nested_containers")
        if not session.ended.is_set():
            self._acquire("WAIT_CONTAINER")
            try:
                while not session.ended.wait(1.0):
                    if self.sessions.closed:
                        raise V1HttpError(503, f"Agent is shutting down: container {_name(container_id)} "
                                               "had not ended")
            finally:
                self.sessions.release()
        # operator_api imports this module: its one WaitContainer shape is fetched here.
        from offerd.slave.operator_api import _termination_into
        out = AgentResponse(type=kind)
        _termination_into(session.termination, out.wait_container if kind == AgentResponse.WAIT_CONTAINER
                          else out.wait_nested_container)
        return self.ok(out, media)

    def kill_nested(self, container_id, signal: int) -> Response:
        session = self._session(container_id, "kill_nested_containers")
        if session.ended.is_set():
            raise V1HttpError(404, f"Container '{_name(container_id)}' cannot be found (or is already killed)")
        session.kill(signal)
        log.info("container session %s sent signal %d (v1 KILL)", _name(container_id), signal)
        return Response(b"", status=200)

    def wait_nested_call(self, call, media):
        return self.wait_nested(call.wait_nested_container.container_id, media, AgentResponse.WAIT_NESTED_CONTAINER)

    def kill_nested_call(self, call, media):
        kill = call.kill_nested_container
        signal = kill.signal if kill.HasField("signal") else int(signals.SIGKILL)
        if not 0 < signal < signals.NSIG:
            raise V1HttpError(400, f"Invalid signal {signal}")
        return self.kill_nested(kill.container_id, signal)

    # -- helpers ----------------------------------------------------------------------------

    def _session(self, container_id, action: str):
        session = self.sessions.find(container_id.parent.value, container_id.value)
        if session is None or container_id.parent.HasField("parent"):
            raise V1HttpError(404, f"Container {_name(container_id)} cannot be found")
        self.refuse_unless(action, session.user)
        return session

    def _acquire(self, what: str) -> None:
        try:
            self.sessions.acquire(what)
        except SessionError as exc:
            raise V1HttpError(exc.status, exc.reason) from None


class _InputConnection:
    """The one input connection a session may have at a time (409 for another)."""

    def __init__(self, session):
        self.session = session

    def __enter__(self):
        with self.session._lock:
            if self.session.input_connected:
                raise V1HttpError(409, "Multiple input connections are not allowed")
            self.session.input_connected = True

    def __exit__(self, *exc):
        with self.session._lock:
            self.session.input_connected = False


def _name(container_id) -> str:
    return f"{container_id.parent.value}.{container_id.value}" if container_id.HasField("parent") \
        else container_id.value


def _streaming_answer(media: MediaTypes) -> str:
    """The encoding of the ProcessIO records; 406 unless Accept allows RecordIO."""
    if not accepts(request.headers.get("Accept"), RECORDIO):
        raise V1HttpError(406, f"Expecting 'Accept' to allow {RECORDIO}")
    if media.message_accept is not None:
        return media.message_accept
    header = request.headers.get("Message-Accept")
    for kind in (JSON, PROTOBUF):
        if accepts(header, kind):
            return kind
    raise V1HttpError(406, f"Expecting 'Message-Accept' to allow {JSON} or {PROTOBUF}")


def _stream_response(body, message_type: str) -> Response:
    return Response(body, status=200, direct_passthrough=True,
                    headers={"Content-Type": RECORDIO, MESSAGE_CONTENT_TYPE: message_type,
                             "Cache-Control": "no-cache"})


def _record(message_type: str, kind: str | None, data: bytes = b"") -> bytes:
    io = ProcessIO()
    if kind is None:
        io.type = ProcessIO.CONTROL
        io.control.type = ProcessIO.Control.HEARTBEAT
        io.control.heartbeat.interval.nanoseconds = int(HEARTBEAT_SECONDS * 1e9)
    else:
        io.type = ProcessIO.DATA
        io.data.type = ProcessIO.Data.STDOUT if kind == STDOUT else ProcessIO.Data.STDERR
        io.data.data = data
    payload = io.SerializeToString() if message_type == PROTOBUF else mesos_json.dumps(io).encode()
    return recordio.encode(payload)


def _client_closed(sock) -> bool:
    """Whether the client closed its end, without consuming what it sent."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _OutputBody:
    """A session's output as the response body; releases its streaming slot
    when done (close() is called by the server even if it never started)."""

    def __init__(self, sessions, stream, session, message_type: str, sock, destroy_on_break: bool):
        self.sessions, self.stream, self.session = sessions, stream, session
        self.message_type, self.sock, self.destroy_on_break = message_type, sock, destroy_on_break
        self.finished = False
        self.closed = False

    def __iter__(self):
        # At once: the server sends the answer's headers with its first chunk.
        yield _record(self.message_type, None)
        last = time.monotonic()
        while True:
            items = self.stream.take(0.5)
            if items and items[-1] is None:
                items.pop()
                self.finished = True
            if items:
                yield b"".join(_record(self.message_type, kind, data) for kind, data in items)
                last = time.monotonic()
            if self.finished:
                return
            if time.monotonic() - last >= HEARTBEAT_SECONDS:
                yield _record(self.message_type, None)
                last = time.monotonic()
            if _client_closed(self.sock):
                return

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.session.detach_output(self.stream)
        if self.destroy_on_break and not self.finished and not self.session.ended.is_set():
            log.info("container session %s.%s: its output connection broke; destroying it", self.session.parent,
                     self.session.container_id)
            self.session.kill()
        self.sessions.release()


def _sandbox_of(core, container_id: str) -> str | None:
    for framework in core.frameworks.values():
        for executor in framework.executors.values():
            if executor.container_id == container_id and not executor.terminated:
                return executor.directory
    return None


def _container_running(core, container_id: str) -> bool:
    return _sandbox_of(core, container_id) is not None


class _FollowBody:
    """An executor's container's stdout and stderr files, from their current end,
    until the container ends (the files' last words included)."""

    def __init__(self, sessions, view, container_id: str, sandbox: str, message_type: str, sock):
        self.sessions, self.view, self.container_id = sessions, view, container_id
        self.message_type, self.sock = message_type, sock
        self.files = {}
        for kind, name in ((STDOUT, "stdout"), (STDERR, "stderr")):
            fd = _open_output(os.path.join(sandbox, name))
            if fd is not None:
                self.files[kind] = [fd, os.fstat(fd).st_size]
        self.closed = False

    def __iter__(self):
        yield _record(self.message_type, None)   # the headers, at once
        last = checked = time.monotonic()
        while True:
            ended = self.view.waits.termination(self.container_id) is not None
            if not ended and time.monotonic() - checked >= HEARTBEAT_SECONDS:
                checked = time.monotonic()
                ended = not self.view.on_actor(_container_running, self.container_id)
            chunk = b"".join(self._read())
            if chunk:
                yield chunk
                last = time.monotonic()
                continue
            if ended or self.sessions.closed:
                return
            if time.monotonic() - last >= HEARTBEAT_SECONDS:
                yield _record(self.message_type, None)
                last = time.monotonic()
            if _client_closed(self.sock):
                return
            time.sleep(FOLLOW_INTERVAL)

    def _read(self):
        for kind, entry in self.files.items():
            data = os.pread(entry[0], 1 << 20, entry[1])
            if data:
                entry[1] += len(data)
                yield _record(self.message_type, kind, data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd, _ in self.files.values():
            os.close(fd)
        self.sessions.release()


def _open_output(path: str) -> int | None:
    """A sandbox output file, never through a link nor a FIFO the task put there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


class _RecordReader:
    """RecordIO records of a (chunked) request body, each read as soon as it is
    complete; 400 for bad framing, 413 beyond the record or body size limits."""

    def __init__(self, stream):
        self.stream = stream
        self.total = 0

    def _read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except MaxSizeExceeded:
            raise V1HttpError(413, f"The request body is larger than {MAX_REQUEST_BODY} bytes") from None
        except (OSError, ValueError) as exc:
            if "Too Large" in str(exc):   # cheroot's check of a chunk's announced size
                raise V1HttpError(413, f"The request body is larger than {MAX_REQUEST_BODY} bytes") from None
            raise V1HttpError(400, f"Failed to read the request body: {exc}") from None
        self.total += len(data)
        return data

    def next(self) -> bytes | None:
        prefix = b""
        while True:
            byte = self._read(1)
            if not byte:
                if prefix:
                    raise V1HttpError(400, f"Failed to decode the RecordIO body: stream ended inside a length "
                                           f"prefix {prefix!r}")
                return None
            if byte == b"\n":
                break
            if not byte.isdigit():
                raise V1HttpError(400, f"Failed to decode the RecordIO body: malformed record length "
                                       f"{(prefix + byte)[:32]!r}")
            prefix += byte
            if len(prefix) > MAX_PREFIX_DIGITS:
                raise V1HttpError(413, f"A record is larger than the {MAX_INPUT_RECORD} bytes allowed")
        if not prefix:
            raise V1HttpError(400, "Failed to decode the RecordIO body: empty record length")
        length = int(prefix)
        if length > MAX_INPUT_RECORD:
            raise V1HttpError(413, f"A record of {length} bytes is larger than the {MAX_INPUT_RECORD} allowed")
        record = b""
        while len(record) < length:
            data = self._read(length - len(record))
            if not data:
                raise V1HttpError(400, f"Failed to decode the RecordIO body: stream ended inside a record "
                                       f"({len(record)} of {length} bytes)")
            record += data
        return record
