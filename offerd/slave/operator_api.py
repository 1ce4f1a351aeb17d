"""The slave's v1 operator API: Mesos' agent calls at ``POST /api/v1``.

One endpoint; the Call in the body (JSON or protobuf, offerd.common.v1_http)
says what is asked, the answer is a ``mesos.v1.agent.Response`` in the encoding
the client accepts. The calls and shapes are those of Mesos' agent (see
mesos.apache.org/documentation/latest/operator-http-api/#agent-api); the state
calls show the same books as ``/state`` (offerd.slave.operator_api_state), the
file calls read the sandboxes through the same link-refusing code as ``/files``.

Refusals are the slave's HTTP error shape (``{"message": reason}``) with
Mesos' plain-text reason and status: 400 for a bad call, 415/406 for content
types, 403 for an ACL, 404 for an unknown path or container, and 501 naming
every agent call offerd does not serve (standalone containers and nested ones
other than sessions, resource providers, operations, image pruning).

Container sessions (LAUNCH_NESTED_CONTAINER_SESSION), the streamed
ATTACH_CONTAINER_INPUT/OUTPUT calls and WAIT/KILL of a nested container id are
offerd.slave.operator_api_sessions; a streamed (RecordIO) request body is read
record by record there instead of whole.

Authentication: ``/api/v1`` is a read-write endpoint, as Mesos' agent routes
it: with ``--authenticate_http_readwrite`` every call needs HTTP Basic
credentials (the guard, offerd.common.http_auth, answers 401 in realm
``mesos-agent-readwrite``).

Authorization (with ``--acls``), as Mesos' agent: GET_FLAGS needs
``view_flags``, SET_LOGGING_LEVEL ``set_log_level``, LIST_FILES and READ_FILE
``access_sandboxes``, the state calls leave out what the caller may not
``view_frameworks`` / ``view_executors`` / ``view_tasks``, GET_CONTAINERS shows
the containers the caller may ``view_containers``, and WAIT_CONTAINER and
KILL_CONTAINER need ``wait_standalone_containers`` / ``kill_standalone_containers``
(every object: the user the executor runs as); for a session's nested id
``wait_nested_containers`` / ``kill_nested_containers``, and the session calls
``launch_nested_container_sessions``, ``attach_containers_input`` and
``attach_containers_output`` (object: the user the session runs as).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal as signals
import stat
from typing import Callable

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from offerd import __version__
from offerd.common.acls import Authorizer
from offerd.common.http_hygiene import accepts
from offerd.common.logs import LoggingLevel
from offerd.common.v1_http import (JSON, PROTOBUF, RECORDIO, MediaTypes, V1HttpError, decode_call, encode_response,
                                   json_to_message, negotiate)
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import offerd_pb2 as pb
from offerd.slave import operator_api_state as v1_state
from offerd.slave.operator_api_containers import TooManyWaiters
from offerd.slave.operator_api_sessions import SessionCalls

log = logging.getLogger(__name__)

Call = v1_agent.Call
AgentResponse = v1_agent.Response
MAX_READ_BYTES = 16 * 1024 * 1024

# Streamed in or out by Mesos; refused before any content-type complaint.
_STREAMING_IN = {Call.ATTACH_CONTAINER_INPUT}
_STREAMING_OUT = {Call.ATTACH_CONTAINER_OUTPUT, Call.LAUNCH_NESTED_CONTAINER_SESSION}

# Calls that read the books of one real slave (a simulated fleet's view has none).
_NEEDS_A_SLAVE = {Call.GET_STATE, Call.GET_FRAMEWORKS, Call.GET_EXECUTORS, Call.GET_TASKS, Call.GET_AGENT,
                  Call.GET_CONTAINERS, Call.WAIT_CONTAINER, Call.KILL_CONTAINER, Call.WAIT_NESTED_CONTAINER,
                  Call.KILL_NESTED_CONTAINER, *_STREAMING_IN, *_STREAMING_OUT}

_NOT_IMPLEMENTED_WHY = {
    Call.LAUNCH_NESTED_CONTAINER: "offerd nests only container sessions (LAUNCH_NESTED_CONTAINER_SESSION)",
    Call.GET_OPERATIONS: "offerd's slaves run no offer operations of their own",
    Call.GET_RESOURCE_PROVIDERS: "offerd has no resource providers",
}


LOGGING_LEVEL = LoggingLevel()


def install(app: Flask, view, acls: Authorizer | None, open_sandbox: Callable) -> None:
    """Route ``POST /api/v1`` of the slave's app to the agent calls. `view` is
    the slave's HTTP view (offerd.slave.http_api.SlaveView plus `on_actor`,
    `usage`, `waits`, `sessions` and `kill_container`); `open_sandbox(view, acls, principal,
    path)` is the /files views' safe open."""

    @accepts(JSON, PROTOBUF, RECORDIO)
    def api_v1():
        try:
            media = negotiate(request.headers)
            if media.streaming_request:
                # Read record by record, as they come (ATTACH_CONTAINER_INPUT).
                if not hasattr(view, "sessions"):
                    raise V1HttpError(501, "ATTACH_CONTAINER_INPUT is not implemented by a simulated fleet's "
                                           "HTTP server")
                return sessions.attach_input(media)
            call = decode_call(request.get_data(cache=False), media, Call)
            return _dispatch(call, media)
        except V1HttpError as error:
            response = jsonify(message=error.reason)
            response.status_code = error.status
            return response

    app.add_url_rule("/api/v1", "api_v1", api_v1, methods=["POST"])

    def principal() -> str | None:
        return getattr(g, "principal", None)

    def viewer() -> Callable[[str, str | None], bool]:
        """What the caller may see, as a function the actor thread can call
        (the principal is read here, in the request's context)."""
        caller = principal()
        return lambda action, obj: acls is None or acls.allowed(caller, action, obj)

    def refuse_unless(action: str, obj: str | None) -> None:
        if acls is None:
            return
        refusal = acls.check(principal(), action, obj)
        if refusal is not None:
            raise V1HttpError(403, refusal)

    def ok(response: AgentResponse, media: MediaTypes) -> Response:
        # The answer's payload is there even when empty ("get_containers": {}), as in Mesos.
        payload = AgentResponse.Type.Name(response.type).lower()
        if payload in AgentResponse.DESCRIPTOR.fields_by_name:
            getattr(response, payload).SetInParent()
        body, content_type = encode_response(response, media)
        return Response(body, status=200, content_type=content_type)

    def _dispatch(call, media: MediaTypes):
        if not call.HasField("type") or call.type == Call.UNKNOWN:
            raise V1HttpError(400, "Failed to validate agent::Call: Expecting 'type' to be present")
        name = Call.Type.Name(call.type)
        if media.streaming_request and call.type not in _STREAMING_IN:
            raise V1HttpError(415, f"Streaming 'Content-Type' {media.content} is not supported for {name} call")
        if media.streaming_response and call.type not in _STREAMING_OUT:
            raise V1HttpError(406, f"Streaming response is not supported for {name} call")
        if call.type in _NEEDS_A_SLAVE and not hasattr(view, "on_actor"):
            raise V1HttpError(501, f"{name} is not implemented by a simulated fleet's HTTP server")
        handler = HANDLERS.get(call.type)
        if handler is None:
            why = _NOT_IMPLEMENTED_WHY.get(call.type, "offerd's slave serves no such call yet")
            raise V1HttpError(501, f"{name} is not implemented: {why}")
        payload = PAYLOADS.get(call.type)
        if payload is not None and not call.HasField(payload):
            raise V1HttpError(400, f"Failed to validate agent::Call: Expecting '{payload}' to be present")
        return handler(call, media)

    # -- calls --------------------------------------------------------------

    def get_health(call, media):
        out = AgentResponse(type=AgentResponse.GET_HEALTH)
        out.get_health.healthy = True
        return ok(out, media)

    def get_flags(call, media):
        refuse_unless("view_flags", None)
        out = AgentResponse(type=AgentResponse.GET_FLAGS)
        for name, value in view.flags().items():
            if value is None:
                continue   # unset: Mesos leaves such flags out too
            out.get_flags.flags.add(name=name, value=_flag_text(value))
        return ok(out, media)

    def get_version(call, media):
        out = AgentResponse(type=AgentResponse.GET_VERSION)
        info = out.get_version.version_info
        info.version = __version__
        info.build_user = "offerd"
        return ok(out, media)

    def get_metrics(call, media):
        out = AgentResponse(type=AgentResponse.GET_METRICS)
        for name, value in sorted(view.metrics().items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue   # Mesos' metrics are numbers; offerd keeps none that are not
            out.get_metrics.metrics.add(name=name, value=float(value))
        return ok(out, media)

    def get_logging_level(call, media):
        out = AgentResponse(type=AgentResponse.GET_LOGGING_LEVEL)
        out.get_logging_level.level = LOGGING_LEVEL.level
        return ok(out, media)

    def set_logging_level(call, media):
        refuse_unless("set_log_level", None)
        request_ = call.set_logging_level
        LOGGING_LEVEL.set(request_.level, request_.duration.nanoseconds / 1e9)
        log.info("logging level set to %d for %.0f seconds (v1 SET_LOGGING_LEVEL)", request_.level,
                 request_.duration.nanoseconds / 1e9)
        return Response(b"", status=200)

    def opened(path: str) -> tuple[int, str]:
        try:
            return open_sandbox(view, acls, principal(), path)
        except HTTPException as error:
            raise V1HttpError(error.code or 500, error.description) from None

    def list_files(call, media):
        fd, path = opened(call.list_files.path)
        out = AgentResponse(type=AgentResponse.LIST_FILES)
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                out.list_files.file_infos.add().CopyFrom(_file_info(path, st))
            else:
                for name in sorted(os.listdir(fd)):
                    try:
                        entry = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        continue  # removed while listing
                    out.list_files.file_infos.add().CopyFrom(_file_info(os.path.join(path, name), entry))
        finally:
            os.close(fd)
        return ok(out, media)

    def read_file(call, media):
        fd, _ = opened(call.read_file.path)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise V1HttpError(400, "Cannot read a directory")
            if not stat.S_ISREG(st.st_mode):
                raise V1HttpError(400, "Cannot read a FIFO, socket or device: not a regular file")
            offset = call.read_file.offset
            length = call.read_file.length if call.read_file.HasField("length") else st.st_size
            data = b""
            if offset < st.st_size:
                data = os.pread(fd, max(0, min(length, MAX_READ_BYTES, st.st_size - offset)), offset)
        finally:
            os.close(fd)
        out = AgentResponse(type=AgentResponse.READ_FILE)
        out.read_file.size = st.st_size
        out.read_file.data = data
        return ok(out, media)

    def state_call(kind: int, build: Callable, field: str):
        def handler(call, media):
            out = AgentResponse(type=kind)
            getattr(out, field).CopyFrom(view.on_actor(build, viewer()))
            return ok(out, media)
        return handler

    def get_agent(call, media):
        out = AgentResponse(type=AgentResponse.GET_AGENT)
        out.get_agent.CopyFrom(view.on_actor(v1_state.get_agent))
        return ok(out, media)

    def get_containers(call, media):
        # show_standalone: offerd runs no standalone containers. show_nested adds the
        # container sessions (nested in an executor's container, which they are listed with).
        out = AgentResponse(type=AgentResponse.GET_CONTAINERS)
        entries = view.on_actor(v1_state.containers, viewer())
        if call.get_containers.show_nested and hasattr(view, "sessions"):
            parents = {entry["container_id"]: entry for entry in entries}
            for session in view.sessions.live():
                parent = parents.get(session.parent)
                if parent is None or not viewer()("view_containers", session.user):
                    continue
                nested = out.get_containers.containers.add(executor_name=parent["executor_name"])
                nested.framework_id.value = parent["framework_id"]
                nested.executor_id.value = parent["executor_id"]
                nested.container_id.value = session.container_id
                nested.container_id.parent.value = session.parent
                nested.container_status.container_id.CopyFrom(nested.container_id)
                if session.pid:
                    nested.container_status.executor_pid = session.pid
        for entry in entries:
            container = out.get_containers.containers.add(executor_name=entry["executor_name"])
            container.framework_id.value = entry["framework_id"]
            container.executor_id.value = entry["executor_id"]
            container.container_id.value = entry["container_id"]
            container.container_status.container_id.value = entry["container_id"]
            if entry["pid"]:
                container.container_status.executor_pid = entry["pid"]
            # cgroups and /proc are read here, on the HTTP thread, never stalling the actor.
            statistics, ignored = json_to_message(view.usage(entry["container_id"], entry["pid"]),
                                                  v1.ResourceStatistics)
            if ignored:
                log.debug("statistics without a ResourceStatistics field: %s", ", ".join(ignored))
            container.resource_statistics.CopyFrom(statistics)
        return ok(out, media)

    def container(container_id: str, action: str) -> dict:
        found = view.on_actor(v1_state.find_container, container_id)
        if found is None:
            raise V1HttpError(404, f"Container {container_id} cannot be found")
        refuse_unless(action, found["user"] or None)
        return found

    def wait_container(call, media):
        container_id = call.wait_container.container_id
        if container_id.HasField("parent"):
            return sessions.wait_nested(container_id, media, AgentResponse.WAIT_CONTAINER)
        container(container_id.value, "wait_standalone_containers")
        try:
            termination = view.waits.wait(container_id.value)
        except TooManyWaiters as exc:
            raise V1HttpError(503, str(exc)) from None
        if termination is None:
            raise V1HttpError(503, "Agent is shutting down: container "
                                   f"{container_id.value} had not ended")
        out = AgentResponse(type=AgentResponse.WAIT_CONTAINER)
        _termination_into(termination, out.wait_container)
        return ok(out, media)

    def kill_container(call, media):
        container_id = call.kill_container.container_id
        signal = call.kill_container.signal if call.kill_container.HasField("signal") else int(signals.SIGKILL)
        if not 0 < signal < signals.NSIG:
            raise V1HttpError(400, f"Invalid signal {signal}")
        if container_id.HasField("parent"):
            return sessions.kill_nested(container_id, signal)
        found = container(container_id.value, "kill_standalone_containers")
        if found["terminated"]:
            raise V1HttpError(404, f"Container '{container_id.value}' cannot be found (or is already killed)")
        error = view.kill_container(container_id.value, signal)
        if error is not None:
            raise V1HttpError(error[0], error[1])
        log.info("container %s sent signal %d (v1 KILL_CONTAINER)", container_id.value, signal)
        return Response(b"", status=200)

    HANDLERS = {
        Call.GET_HEALTH: get_health,
        Call.GET_FLAGS: get_flags,
        Call.GET_VERSION: get_version,
        Call.GET_METRICS: get_metrics,
        Call.GET_LOGGING_LEVEL: get_logging_level,
        Call.SET_LOGGING_LEVEL: set_logging_level,
        Call.LIST_FILES: list_files,
        Call.READ_FILE: read_file,
        Call.GET_STATE: state_call(AgentResponse.GET_STATE, v1_state.get_state, "get_state"),
        Call.GET_FRAMEWORKS: state_call(AgentResponse.GET_FRAMEWORKS, v1_state.get_frameworks, "get_frameworks"),
        Call.GET_EXECUTORS: state_call(AgentResponse.GET_EXECUTORS, v1_state.get_executors, "get_executors"),
        Call.GET_TASKS: state_call(AgentResponse.GET_TASKS, v1_state.get_tasks, "get_tasks"),
        Call.GET_AGENT: get_agent,
        Call.GET_CONTAINERS: get_containers,
        Call.WAIT_CONTAINER: wait_container,
        Call.KILL_CONTAINER: kill_container,
    }
    # Container sessions and streamed container I/O (offerd.slave.operator_api_sessions).
    sessions = SessionCalls(view, acls, refuse_unless, container, ok)
    HANDLERS.update(sessions.handlers())
    # The sub-message each call must carry (Mesos' agent call validation).
    PAYLOADS = {
        Call.GET_METRICS: None,   # Mesos asks for it; its only field is optional, so none is fine
        Call.SET_LOGGING_LEVEL: "set_logging_level",
        Call.LIST_FILES: "list_files",
        Call.READ_FILE: "read_file",
        Call.WAIT_CONTAINER: "wait_container",
        Call.KILL_CONTAINER: "kill_container",
        Call.WAIT_NESTED_CONTAINER: "wait_nested_container",
        Call.KILL_NESTED_CONTAINER: "kill_nested_container",
        Call.LAUNCH_NESTED_CONTAINER_SESSION: "launch_nested_container_session",
        Call.ATTACH_CONTAINER_OUTPUT: "attach_container_output",
    }


def kill_container(core, container_id: str, signal: int) -> tuple[int, str] | None:
    """On the actor thread: SIGKILL destroys the container (the containerizer
    kills all of it, cgroups included); any other signal goes to its process
    group, as Mesos sends it to the container's init. (status, reason) when it
    cannot be done."""
    found = v1_state.find_container(core, container_id)
    if found is None or found["terminated"]:
        return 404, f"Container '{container_id}' cannot be found (or is already killed)"
    if signal == signals.SIGKILL:
        core.containerizer.kill(container_id, 0.0)
        return None
    if not found["pid"]:
        return 409, f"Container '{container_id}' has no process to signal yet; try again once it runs"
    try:
        os.killpg(found["pid"], signal)
    except ProcessLookupError:
        return 404, f"Container '{container_id}' cannot be found (or is already killed)"
    return None


def _flag_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _file_info(path: str, st: os.stat_result) -> v1.FileInfo:
    info = v1.FileInfo(path=path, nlink=st.st_nlink, size=st.st_size, mode=st.st_mode,
                       uid=_name(pwd.getpwuid, st.st_uid), gid=_name(grp.getgrgid, st.st_gid))
    info.mtime.nanoseconds = int(st.st_mtime * 1e9)
    return info


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _termination_into(termination, out) -> None:
    """A containerizer Termination as Mesos' WaitContainer: the raw wait(2)
    status when the process ended, and why when the slave ended it."""
    if termination.returncode is not None and termination.launch_error is None:
        out.exit_status = termination.wait_status
    if termination.launch_error is not None:
        out.state = v1.TASK_FAILED
        out.reason = v1.TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
    elif termination.limitation is not None:
        out.state = v1.TASK_FAILED
        name = pb.TaskStatus.Reason.Name(termination.limitation.reason).replace("SLAVE", "AGENT")
        known = name in v1.TaskStatus.Reason.keys()
        out.reason = v1.TaskStatus.Reason.Value(name) if known else v1.TaskStatus.REASON_CONTAINER_LIMITATION
    if termination.launch_error is not None or termination.limitation is not None:
        out.message = termination.message
