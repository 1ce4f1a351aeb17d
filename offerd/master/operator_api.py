"""The master's v1 operator API: ``POST /api/v1`` with a ``mesos.v1.master.Call``.

Mesos' calls, shapes and status codes (mesos.apache.org/documentation/latest/
operator-http-api/; docs/v1-api.md lists what offerd answers). The request is
``application/json`` (Mesos' JSON mapping, offerd.common.mesos_json) or
``application/x-protobuf`` by its Content-Type; the answer, a
``mesos.v1.master.Response``, is encoded once for the Accept header (JSON when
it allows both). Calls that change something answer 200 with no body.
SUBSCRIBE answers a stream of events instead (offerd.master.operator_events).

Each call reuses what the REST endpoint for the same thing does (snapshot,
flags, metrics, quota and weights, teardown, sandbox proxy) and its ACL check in
offerd.master.http_authz. Errors are plain text, as Mesos': 400 for a malformed
call, 501 naming a call offerd does not serve, 415 and 406 for content types.
A standby master redirects every call to the leader (offerd.master.http_leader),
as Mesos does.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import orjson
from flask import Response, current_app, request
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from offerd import __version__
from offerd.common.http_hygiene import JSON, PROTOBUF, accepts
from offerd.common.logs import LoggingLevel
from offerd.common.v1_http import MediaTypes, V1HttpError, decode_call, encode_response, negotiate
from offerd.common.mesos_v1 import to_offerd, to_v1
from offerd.common.resources import Resources, ResourceError
from offerd.master import http_authz, http_files, http_maintenance, operator_api_state, operator_events
from offerd.master import maintenance_schedule
from offerd.master.http_common import invalidate_snapshots, master, principal, snapshot, text_response
from offerd.master.metrics import system_metrics
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import mesos_v1_maintenance_pb2 as v1_maintenance
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import mesos_v1_quota_pb2 as v1_quota
from offerd.proto import offerd_pb2 as pb

Call = v1_master.Call
V1Response = v1_master.Response

log = logging.getLogger(__name__)


class CallError(Exception):
    """A call refused with `status` and a plain-text reason."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- decoding and encoding -------------------------------------------------------------------


def _required_paths(message_type, prefix: str = "") -> list[str]:
    """The required fields of a call's body, to say what a malformed one lacks."""
    out = []
    for field in message_type.DESCRIPTOR.fields:
        if not field.is_required:
            continue
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type is not None:
            out.extend(_required_paths(field.message_type._concrete_class, path) or [path])
        else:
            out.append(path)
    return out


def _usage(kind) -> str:
    """`` (MARK_AGENT_GONE needs mark_agent_gone.agent_id.value)`` for a call type with a body."""
    if not isinstance(kind, str) or kind not in Call.Type.keys():
        return ""
    body = kind.lower()
    field = Call.DESCRIPTOR.fields_by_name.get(body)
    if field is None:
        return ""
    needs = _required_paths(field.message_type._concrete_class, body)
    return f" ({kind} needs {', '.join(needs)})" if needs else ""


def _json_type(body: bytes):
    """The "type" a JSON call names, if it parses that far (for the usage hint)."""
    try:
        value = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get("type") if isinstance(value, dict) else None


def parse_call(media: MediaTypes) -> Call:
    body = request.get_data()
    try:
        return decode_call(body, media, Call)
    except V1HttpError as exc:
        hint = _usage(_json_type(body)) if exc.status == 400 and media.content == JSON else ""
        raise CallError(exc.reason + hint, exc.status) from None


def encode(answer: V1Response, media: MediaTypes) -> tuple[bytes, str]:
    try:
        return encode_response(answer, media)
    except V1HttpError as exc:
        raise CallError(exc.reason, exc.status) from None


def _answer(handler, call: Call, name: str, media: MediaTypes) -> tuple[bytes, str, int]:
    """(body, media type, status) of the handler's answer or refusal: plain values,
    so a kept answer is never a Response object some other request changed."""
    if media.accept == JSON and call.type in _JSON_FROM_KEPT_TASKS:
        # The same JSON as encoding the message, from each task's kept JSON (see
        # operator_api_state.TaskEntry): a big state is not walked again per change.
        payload = _JSON_FROM_KEPT_TASKS[call.type](operator_api_state.visible())
        return orjson.dumps({"type": name, **payload}), JSON, 200
    if media.accept == PROTOBUF and call.type in _WIRE_FROM_KEPT_TASKS:
        # The same bytes as serializing the message, from each task's kept encoding.
        body = _WIRE_FROM_KEPT_TASKS[call.type](operator_api_state.visible())
        return operator_api_state.response_wire(name, body), PROTOBUF, 200
    answer = handler(call)
    if isinstance(answer, Response):
        return answer.get_data(), answer.mimetype, answer.status_code
    answer.type = V1Response.Type.Value(name)
    return (*encode(answer, media), 200)


def _done() -> Response:
    return Response(b"", status=200)


# -- the endpoint ----------------------------------------------------------------------------


@accepts(JSON, PROTOBUF)
def serve():
    try:
        try:
            media = negotiate(request.headers)
        except V1HttpError as exc:
            raise CallError(exc.reason, exc.status) from None
        if media.streaming_request:
            raise CallError("No call of this master takes a stream: use application/json or "
                            "application/x-protobuf", 415)
        call = parse_call(media)
        if not call.HasField("type") or call.type == Call.UNKNOWN:
            raise CallError("Failed to validate master::Call: Expecting 'type' to be present")
        name = Call.Type.Name(call.type)
        if call.type == Call.SUBSCRIBE:
            return subscribe(media)
        if media.streaming_response:
            raise CallError(f"{name} does not stream its answer: use application/json or "
                            "application/x-protobuf", 406)
        handler = HANDLERS.get(call.type)
        if handler is None:
            raise CallError(f"{name} is not implemented by this master (see docs/v1-api.md)", 501)
        body_field = name.lower()
        if body_field in Call.DESCRIPTOR.fields_by_name and _usage(name) and not call.HasField(body_field):
            raise CallError(f"Failed to validate master::Call: Expecting '{body_field}' to be present{_usage(name)}")
        if call.type in _ONE_PER_SNAPSHOT:
            # Built and encoded once per state, caller and encoding: a dashboard polling
            # GET_STATE costs a lookup until the cluster changes.
            body, mimetype, status = operator_api_state.answers().derived(
                ("v1-answer", call.type, principal(), media.accept), lambda: _answer(handler, call, name, media))
        else:
            body, mimetype, status = _answer(handler, call, name, media)
        return Response(body, status=status, mimetype=mimetype)
    except CallError as exc:
        return text_response(str(exc), exc.status)
    except http_files.ProxyError as exc:
        return text_response(str(exc), exc.status)


# -- calls -----------------------------------------------------------------------------------


def get_health(call):
    return V1Response(get_health=V1Response.GetHealth(healthy=True))


def get_flags(call):
    refusal = http_authz.refused("view_flags")
    if refusal is not None:
        return refusal
    flags = [v1.Flag(name=k, value=str(v)) for k, v in sorted(master().flags_json().items())]
    return V1Response(get_flags=V1Response.GetFlags(flags=flags))


def get_version(call):
    # What GET /version says (offerd records no build date, time or user).
    info = v1.VersionInfo(version=__version__, build_date="", build_time=0.0, build_user="")
    return V1Response(get_version=V1Response.GetVersion(version_info=info))


_metric_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="v1-metrics")


def get_metrics(call):
    from offerd.master.http_api import _all_metrics  # the view /metrics/snapshot serves

    values = None
    if call.get_metrics.HasField("timeout"):
        seconds = call.get_metrics.timeout.nanoseconds / 1e9
        if seconds < 0:
            raise CallError("Failed to validate master::Call: 'get_metrics.timeout' must not be negative")
        app = current_app._get_current_object()

        def read():
            with app.app_context():
                return _all_metrics()

        try:
            values = _metric_pool.submit(read).result(timeout=seconds)
        except (FutureTimeout, TimeoutError):
            # As Mesos: past the timeout, the metrics not yet gathered are left out.
            values = system_metrics()
    if values is None:
        values = _all_metrics()
    metrics = [v1.Metric(name=k, value=float(v)) for k, v in sorted(values.items())
               if isinstance(v, (int, float))]
    return V1Response(get_metrics=V1Response.GetMetrics(metrics=metrics))


LOGGING = LoggingLevel()


def get_logging_level(call):
    return V1Response(get_logging_level=V1Response.GetLoggingLevel(level=LOGGING.level))


def set_logging_level(call):
    body = call.set_logging_level
    seconds = body.duration.nanoseconds / 1e9
    if seconds <= 0:
        raise CallError("Failed to validate master::Call: 'set_logging_level.duration' must be positive")
    refusal = http_authz.refused("set_log_level")
    if refusal is not None:
        return refusal
    LOGGING.set(body.level, seconds)
    return _done()


_MODE_TYPES = {"d": 0o040000, "-": 0o100000, "l": 0o120000, "c": 0o020000, "b": 0o060000,
               "p": 0o010000, "s": 0o140000}


def _mode_bits(text: str) -> int:
    """``drwxr-xr-x`` (what a slave's /files/browse says) as st_mode bits (v1 FileInfo.mode)."""
    if len(text) != 10:
        return 0
    mode = _MODE_TYPES.get(text[0], 0)
    for i, ch in enumerate(text[1:]):
        if ch not in "-STst":
            mode |= 1 << (8 - i)
        elif ch in "st":
            mode |= 1 << (8 - i)
    specials = ((3, "sS", 0o4000), (6, "sS", 0o2000), (9, "tT", 0o1000))
    for index, marks, bit in specials:
        if text[index] in marks:
            mode |= bit
    return mode


def _sandbox(path: str) -> tuple[dict, str, str]:
    """v1 paths name the slave: ``/slaves/<slave_id>/<absolute sandbox path>``
    (the master holds no files of its own; sandboxes are proxied from slaves)."""
    parts = path.split("/", 3)
    if len(parts) < 4 or parts[0] != "" or parts[1] != "slaves" or not parts[2]:
        raise CallError(f"'{path}': expecting /slaves/<slave_id>/<absolute path inside a sandbox>", 404)
    slave = http_files.find_slave(parts[2])
    prefix = f"/slaves/{parts[2]}"
    return slave, http_files.confined_path(slave, "/" + parts[3]), prefix


def list_files(call):
    slave, path, prefix = _sandbox(call.list_files.path)
    entries = http_files.fetch_from_slave(slave, "/files/browse", {"path": path})
    infos = []
    for entry in entries if isinstance(entries, list) else []:
        info = v1.FileInfo(path=prefix + str(entry.get("path", "")))
        for name in ("nlink", "size"):
            if isinstance(entry.get(name), int):
                setattr(info, name, entry[name])
        if isinstance(entry.get("mtime"), (int, float)):
            info.mtime.nanoseconds = int(entry["mtime"] * 1e9)
        if isinstance(entry.get("mode"), str):
            info.mode = _mode_bits(entry["mode"])
        for name in ("uid", "gid"):
            if isinstance(entry.get(name), str):
                setattr(info, name, entry[name])
        infos.append(info)
    return V1Response(list_files=V1Response.ListFiles(file_infos=infos))


def read_file(call):
    """Proxied to the slave's own v1 READ_FILE, in protobuf: the bytes arrive as the
    file holds them (the REST /files/read carries text, which binary data does not survive)."""
    body = call.read_file
    slave, path, _ = _sandbox(body.path)
    agent_call = v1_agent.Call(type=v1_agent.Call.READ_FILE)
    agent_call.read_file.path = path
    agent_call.read_file.offset = body.offset
    if body.HasField("length"):
        agent_call.read_file.length = body.length
    answer = http_files.post_to_slave(slave, "/api/v1", agent_call.SerializeToString(),
                                      {"Content-Type": PROTOBUF, "Accept": PROTOBUF})
    try:
        read = v1_agent.Response.FromString(answer).read_file
    except DecodeError as exc:
        raise CallError(f"slave {slave['id']} answered READ_FILE with something that is not a "
                        f"Response: {exc}", 502) from None
    return V1Response(read_file=V1Response.ReadFile(size=read.size, data=read.data))


def get_state(call):
    return V1Response(get_state=operator_api_state.visible().get_state())


def get_agents(call):
    return V1Response(get_agents=operator_api_state.visible().get_agents())


def get_frameworks(call):
    return V1Response(get_frameworks=operator_api_state.visible().get_frameworks())


def get_executors(call):
    return V1Response(get_executors=operator_api_state.visible().get_executors())


def get_tasks(call):
    return V1Response(get_tasks=operator_api_state.visible().get_tasks())


def get_roles(call):
    return V1Response(get_roles=operator_api_state.get_roles())


def _policy_call(fn, *args):
    return master().actor.call(fn, *args)


def get_weights(call):
    weights = http_authz.filter_weights(_policy_call(master().roles.weights_json))
    infos = [v1.WeightInfo(role=w["role"], weight=float(w["weight"])) for w in weights]
    return V1Response(get_weights=V1Response.GetWeights(weight_infos=infos))


def _changed(error: str | None) -> Response:
    invalidate_snapshots()
    if error:
        raise CallError(error)
    return _done()


def update_weights(call):
    body = [{"role": w.role, "weight": w.weight} for w in call.update_weights.weight_infos]
    if any(not w["role"] for w in body):
        raise CallError("Failed to validate master::Call: every weight_info needs a 'role'")
    refusal = http_authz.weights_refused(body)
    if refusal is not None:
        return refusal
    return _changed(_policy_call(master().roles.update_weights, body))


def get_master(call):
    serving = master()
    info, _ = to_v1(serving.master_info, v1.MasterInfo)  # offerd's zmq_port has no v1 field
    state = snapshot().state
    return V1Response(get_master=V1Response.GetMaster(
        master_info=info, start_time=float(state["start_time"]), elected_time=float(state["elected_time"])))


def _scalars(resources: Resources) -> dict[str, float]:
    return {name: value for name, value in resources.scalars().items() if value}


def get_quota(call):
    document = http_authz.filter_quota(_policy_call(master().roles.quota_json))
    status = v1_quota.QuotaStatus()
    for entry in document.get("infos", []):
        guarantee = Resources.parse(json.dumps(entry.get("guarantee") or []))
        limit = Resources.parse(json.dumps(entry.get("limit") or []))
        # Both forms: QuotaInfo for pre-1.9 tools, QuotaConfig (guarantees and limits) for later ones.
        status.infos.add(role=entry["role"], guarantee=operator_api_state.v1_resources(guarantee))
        config = status.configs.add(role=entry["role"])
        for name, value in _scalars(guarantee).items():
            config.guarantees[name].value = value
        for name, value in _scalars(limit).items():
            config.limits[name].value = value
    return V1Response(get_quota=V1Response.GetQuota(status=status))


def _text(quantities) -> str:
    return ";".join(f"{name}:{quantities[name].value:g}" for name in sorted(quantities))


def update_quota(call):
    """All or nothing: every role is checked (ACL, resources) before any changes."""
    bodies, removals = [], []
    for config in call.update_quota.quota_configs:
        refusal = http_authz.refused("update_quotas", config.role)
        if refusal is not None:
            return refusal
        try:
            guarantee = Resources.parse(_text(config.guarantees)) if config.guarantees else None
            limit = Resources.parse(_text(config.limits)) if config.limits else None
        except ResourceError as exc:
            raise CallError(f"Failed to validate master::Call: role '{config.role}': {exc}") from None
        if guarantee is None and limit is None:
            removals.append(config.role)  # as Mesos: no guarantees and no limits = the default
        else:
            bodies.append({"role": config.role, "force": True,
                           "guarantee": str(guarantee) if guarantee else None,
                           "limit": str(limit) if limit else None})
    policy = master().roles

    def apply():
        current = policy.quota_json()["infos"]
        existing = {i["role"] for i in current}
        for body in bodies:
            error = policy.set_quota(body)
            if error:
                return error
        for role in removals:
            if role in existing:
                error = policy.remove_quota(role)
                if error:
                    return error
        return None

    return _changed(_policy_call(apply))


def set_quota(call):
    request_body = call.set_quota.quota_request
    refusal = http_authz.refused("update_quotas", request_body.role)
    if refusal is not None:
        return refusal
    protos = []
    for resource in request_body.guarantee:
        converted, unsupported = to_offerd(resource, pb.Resource)
        if unsupported:
            raise CallError(f"Failed to validate master::Call: unsupported in a guarantee: {', '.join(unsupported)}")
        protos.append(converted)
    try:
        guarantee = Resources.from_protos(protos)
    except ResourceError as exc:
        raise CallError(f"Failed to validate master::Call: {exc}") from None
    body = {"role": request_body.role, "guarantee": str(guarantee) if guarantee else None,
            "force": request_body.force}
    return _changed(_policy_call(master().roles.set_quota, body))


def remove_quota(call):
    role = call.remove_quota.role
    refusal = http_authz.refused("update_quotas", role)
    if refusal is not None:
        return refusal
    return _changed(_policy_call(master().roles.remove_quota, role))


def subscribe(media: MediaTypes) -> Response:
    """The operator event stream (offerd.master.operator_events): records in the
    encoding Accept asks for, or in Message-Accept's under application/recordio."""
    serving = master()
    encoding = media.message_accept if media.streaming_response else media.accept
    stream = operator_events.SubscriberStream(str(uuid.uuid4()), encoding, principal())
    events = serving.operator_events
    try:
        status, answer = serving.actor.call(events.subscribe, stream)
    except TimeoutError:
        stream.close()  # a late subscribe still joins a closed stream: the next event drops it
        raise
    if status != 200:
        raise CallError(answer, status)
    subscribed = stream.encode(answer)
    actor = serving.actor
    sock = request.environ.get("offerd.socket")

    def gone(why: str) -> None:
        actor.call_soon(events.unsubscribe, stream.stream_id, why)

    def body():
        yield subscribed
        yield from stream.body(sock, gone, actor.stopped)

    headers = {"Cache-Control": "no-cache", "Mesos-Stream-Id": stream.stream_id}
    if media.streaming_response:
        headers["Content-Type"] = operator_events.RECORDIO
        headers["Message-Content-Type"] = encoding
    else:
        headers["Content-Type"] = encoding
    return Response(body(), status=200, direct_passthrough=True, headers=headers)


def mark_agent_gone(call):
    agent_id = call.mark_agent_gone.agent_id.value
    if not agent_id:
        raise CallError("MARK_AGENT_GONE needs mark_agent_gone.agent_id.value")
    refusal = http_authz.refused("mark_agents_gone")
    if refusal is not None:
        return refusal
    return _changed(master().actor.call(_mark_gone, master(), agent_id))


def _mark_gone(serving, slave_id: str) -> str | None:
    serving.touch()
    return serving.leadership.mark_gone(slave_id)


def get_maintenance_status(call):
    status = json_format.ParseDict(http_maintenance.status_document(), v1_maintenance.ClusterStatus())
    return V1Response(get_maintenance_status=V1Response.GetMaintenanceStatus(status=status))


def get_maintenance_schedule(call):
    schedule = json_format.ParseDict(http_maintenance.schedule_document(), v1_maintenance.Schedule())
    return V1Response(get_maintenance_schedule=V1Response.GetMaintenanceSchedule(schedule=schedule))


def _maintenance_input(parse, *args):
    try:
        return parse(*args)
    except maintenance_schedule.ScheduleError as exc:
        raise CallError(str(exc)) from None


def update_maintenance_schedule(call):
    windows = _maintenance_input(maintenance_schedule.schedule_from_proto, call.update_maintenance_schedule.schedule)
    return http_maintenance.update_schedule(windows)


def start_maintenance(call):
    machines = _maintenance_input(maintenance_schedule.machines_from_protos, call.start_maintenance.machines)
    return http_maintenance.machines_down(machines)


def stop_maintenance(call):
    machines = _maintenance_input(maintenance_schedule.machines_from_protos, call.stop_maintenance.machines)
    return http_maintenance.machines_up(machines)


def teardown(call):
    response = http_authz.teardown(call.teardown.framework_id.value)
    invalidate_snapshots()
    return response


_JSON_FROM_KEPT_TASKS = {
    Call.GET_STATE: lambda visible: {"get_state": visible.get_state_json()},
    Call.GET_TASKS: lambda visible: {"get_tasks": visible.get_tasks_json()},
}

_WIRE_FROM_KEPT_TASKS = {
    Call.GET_STATE: lambda visible: visible.get_state_wire(),
    Call.GET_TASKS: lambda visible: visible.get_tasks_wire(),
}

# Calls without parameters whose answer depends only on the snapshot and the caller.
_ONE_PER_SNAPSHOT = frozenset({Call.GET_STATE, Call.GET_AGENTS, Call.GET_FRAMEWORKS, Call.GET_EXECUTORS,
                               Call.GET_TASKS, Call.GET_ROLES})

HANDLERS = {
    Call.GET_HEALTH: get_health,
    Call.GET_FLAGS: get_flags,
    Call.GET_VERSION: get_version,
    Call.GET_METRICS: get_metrics,
    Call.GET_LOGGING_LEVEL: get_logging_level,
    Call.SET_LOGGING_LEVEL: set_logging_level,
    Call.LIST_FILES: list_files,
    Call.READ_FILE: read_file,
    Call.GET_STATE: get_state,
    Call.GET_AGENTS: get_agents,
    Call.GET_FRAMEWORKS: get_frameworks,
    Call.GET_EXECUTORS: get_executors,
    Call.GET_TASKS: get_tasks,
    Call.GET_ROLES: get_roles,
    Call.GET_WEIGHTS: get_weights,
    Call.UPDATE_WEIGHTS: update_weights,
    Call.GET_MASTER: get_master,
    Call.GET_QUOTA: get_quota,
    Call.UPDATE_QUOTA: update_quota,
    Call.SET_QUOTA: set_quota,
    Call.REMOVE_QUOTA: remove_quota,
    Call.MARK_AGENT_GONE: mark_agent_gone,
    Call.TEARDOWN: teardown,
    Call.GET_MAINTENANCE_STATUS: get_maintenance_status,
    Call.GET_MAINTENANCE_SCHEDULE: get_maintenance_schedule,
    Call.UPDATE_MAINTENANCE_SCHEDULE: update_maintenance_schedule,
    Call.START_MAINTENANCE: start_maintenance,
    Call.STOP_MAINTENANCE: stop_maintenance,
}
