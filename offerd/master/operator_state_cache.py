"""The v1 operator state's hot parts encoded straight from offerd's records.

A GET_STATE of 10,000 tasks and 1,000 agents cannot afford the generic road
(offerd message -> ``mesos_v1.to_v1`` -> ``mesos_json.to_json``, ~200 us a task in
Python) on the first call after the cluster filled or after thousands of tasks
changed. Here a task's v1 JSON (Mesos' mapping) and its protobuf encoding are
written directly from a frozen copy of the master's Task, and Resources are
converted once per distinct value and allocation role.

Everything here must equal the generic road exactly: the same dict, key order
and bytes as ``to_json(message)`` and ``message.SerializeToString()`` of the
message ``operator_api_state._task`` builds (tests/unit/test_operator_state_cache.py
checks it over generated tasks). Values handed out are shared: never mutate them.
"""

from __future__ import annotations

import base64
import struct
import threading

from offerd.common.mesos_json import to_json
from offerd.common.mesos_v1 import to_v1
from offerd.common.resources import Resources
from offerd.proto import mesos_v1_pb2 as v1

_STATE_NAMES = {v.number: v.name for v in v1.TaskState.DESCRIPTOR.values}


class TaskView:
    """What the v1 answers show of a Task, copied on the actor thread: the
    master keeps changing its Task while HTTP threads encode this."""

    __slots__ = ("task_id", "name", "framework_id", "slave_id", "executor_id", "state", "resources",
                 "statuses", "status_update_state", "status_update_uuid", "labels", "user")

    def __init__(self, task):
        self.task_id = task.task_id
        self.name = task.name
        self.framework_id = task.framework_id
        self.slave_id = task.slave_id
        self.executor_id = task.executor_id
        self.state = task.state
        self.resources = task.resources
        self.statuses = tuple(task.statuses)
        self.status_update_state = task.status_update_state
        self.status_update_uuid = task.status_update_uuid
        # Labels are converted once, here: offerd's message is not copied otherwise.
        self.labels = to_v1(task.labels, v1.Labels)[0] if task.labels is not None else None
        self.user = task.user


# -- Resources, once per distinct value ------------------------------------------------------

_MEMO_LIMIT = 20000
_memo_lock = threading.Lock()
_resource_messages: dict = {}
_resource_json: dict = {}
_resource_wire: dict = {}


def _remember(memo: dict, key, value):
    with _memo_lock:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()  # values that vary without end (e.g. per-task ports) must not grow it
        memo[key] = value
    return value


def resource_messages(resources: Resources, allocated_to: str | None = None) -> list:
    """offerd Resources as v1 Resource messages (see operator_api_state.v1_resources).
    Shared: pass them to a message constructor (which copies), never change them."""
    key = (resources, allocated_to)
    hit = _resource_messages.get(key)
    if hit is None:
        hit = []
        for proto in resources.to_protos():
            message, _ = to_v1(proto, v1.Resource)
            if allocated_to is not None:
                message.allocation_info.role = allocated_to
            hit.append(message)
        hit = _remember(_resource_messages, key, hit)
    return hit


def resources_json(resources: Resources, allocated_to: str | None = None) -> list:
    """``to_json`` of each of `resource_messages`, written from the values: tasks
    that each hold their own ports make thousands of distinct values."""
    key = (resources, allocated_to)
    hit = _resource_json.get(key)
    if hit is None:
        hit = _remember(_resource_json, key, [_resource_json_of(name, role, value, allocated_to)
                                              for name, role, value in resources.entries()])
    return hit


def _resource_json_of(name: str, role: str, value, allocated_to: str | None) -> dict:
    if value.__class__ is int:
        out = {"name": name, "type": "SCALAR", "scalar": {"value": value / 1000}}
    elif value.__class__ is tuple:
        out = {"name": name, "type": "RANGES", "ranges": {"range": [{"begin": b, "end": e} for b, e in value]}}
    else:
        out = {"name": name, "type": "SET", "set": {"item": sorted(value)}}
    out["role"] = role
    if allocated_to is not None:
        out["allocation_info"] = {"role": allocated_to}
    if role != "*":
        out["reservations"] = [{"role": role, "type": "STATIC"}]
    return out


def resources_wire(resources: Resources, allocated_to: str | None = None) -> list:
    """Each Resource's encoding (without the field's tag and length), written
    from the values as `resources_json` is."""
    key = (resources, allocated_to)
    hit = _resource_wire.get(key)
    if hit is None:
        hit = _remember(_resource_wire, key, [_resource_wire_of(name, role, value, allocated_to)
                                              for name, role, value in resources.entries()])
    return hit


_SCALAR_HEAD = b"\x10\x00\x1a\x09\x09"  # type SCALAR, then scalar {value: <8 bytes>}
_STATIC = b"\x20\x01"  # ReservationInfo.type STATIC


def _resource_wire_of(name: str, role: str, value, allocated_to: str | None) -> bytes:
    parts = [field(1, name.encode())]
    if value.__class__ is int:
        parts.append(_SCALAR_HEAD + _DOUBLE(value / 1000))
    elif value.__class__ is tuple:
        parts.append(b"\x10\x01" + field(4, b"".join(field(1, b"\x08" + _varint(b) + b"\x10" + _varint(e))
                                                    for b, e in value)))
    else:
        parts.append(b"\x10\x02" + field(5, b"".join(field(1, item.encode()) for item in sorted(value))))
    raw_role = role.encode()
    parts.append(field(6, raw_role))
    if allocated_to is not None:
        parts.append(field(11, field(1, allocated_to.encode())))
    if role != "*":
        parts.append(field(13, field(3, raw_role) + _STATIC))
    return b"".join(parts)


# -- a task's JSON ---------------------------------------------------------------------------


def task_json(view: TaskView, role: str) -> dict:
    """``to_json`` of the v1 Task message, keys in field-number order as it writes them."""
    task_id, agent_id, executor_id = {"value": view.task_id}, {"value": view.slave_id}, None
    out = {"name": view.name, "task_id": task_id, "framework_id": {"value": view.framework_id}}
    if view.executor_id:
        executor_id = out["executor_id"] = {"value": view.executor_id}
    out["agent_id"] = agent_id
    out["state"] = _STATE_NAMES.get(view.state, view.state)
    resources = resources_json(view.resources, role)
    if resources:
        out["resources"] = resources
    if view.statuses:
        statuses = []
        for status in view.statuses:
            stamp = status[1]
            if stamp.__class__ is not float or stamp - stamp != 0.0:  # an int, or not finite
                stamp = _double_json(float(stamp))
            entry = {"task_id": task_id, "state": _STATE_NAMES.get(status[0], status[0]), "agent_id": agent_id,
                     "timestamp": stamp}
            if executor_id is not None:
                entry["executor_id"] = executor_id
            if len(status) > 2 and status[2] is not None:
                entry["healthy"] = bool(status[2])
            statuses.append(entry)
        out["statuses"] = statuses
    if view.status_update_state is not None:
        out["status_update_state"] = _STATE_NAMES.get(view.status_update_state, view.status_update_state)
    if view.status_update_uuid:
        out["status_update_uuid"] = base64.b64encode(view.status_update_uuid).decode("ascii")
    if view.labels is not None:
        out["labels"] = to_json(view.labels)
    if view.user:
        out["user"] = view.user
    return out


def _double_json(value: float):
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# -- a task's protobuf encoding --------------------------------------------------------------


_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # negative int32/int64/enum values: ten bytes, as protobuf writes them
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return _TAGS[number] + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


_TAGS = [_varint(n << 3 | 2) for n in range(64)]  # length-delimited fields 0..63


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _id(number: int, value: str) -> bytes:
    """An *ID message ({value: ...}) as field `number`."""
    raw = value.encode()
    size = len(raw)
    if size < 0x7E:  # both lengths one byte
        return _TAGS[number] + _SMALL[size + 2] + b"\x0a" + _SMALL[size] + raw
    return field(number, field(1, raw))


_DOUBLE = struct.Struct("<d").pack
_TIMESTAMP_TAG = bytes((6 << 3 | 1,))
_HEALTHY_TAG = bytes((8 << 3,))


def task_wire(view: TaskView, role: str) -> bytes:
    """``SerializeToString()`` of the v1 Task message (fields in number order, as upb writes them)."""
    task_id, agent_id = _id(1, view.task_id), _id(5, view.slave_id)
    executor_id = _id(7, view.executor_id) if view.executor_id else b""
    parts = [field(1, view.name.encode()), _id(2, view.task_id), _id(3, view.framework_id)]
    if view.executor_id:
        parts.append(_id(4, view.executor_id))
    parts.append(_id(5, view.slave_id))
    parts.append(b"\x30" + _varint(view.state))
    for resource in resources_wire(view.resources, role):
        parts.append(field(7, resource))
    for status in view.statuses:
        entry = (task_id + b"\x10" + _varint(status[0]) + agent_id + _TIMESTAMP_TAG + _DOUBLE(float(status[1]))
                 + executor_id)
        if len(status) > 2 and status[2] is not None:
            entry += _HEALTHY_TAG + (b"\x01" if status[2] else b"\x00")
        parts.append(field(8, entry))
    if view.status_update_state is not None:
        parts.append(b"\x48" + _varint(view.status_update_state))
    if view.status_update_uuid:
        parts.append(field(10, view.status_update_uuid))
    if view.labels is not None:
        parts.append(field(11, view.labels.SerializeToString()))
    if view.user:
        parts.append(field(14, view.user.encode()))
    return b"".join(parts)
