"""Conversion between Mesos' v1 messages (mesos.v1.*) and offerd's (offerd.v1.*).

offerd's own protocol keeps Mesos' v0 names ("slave") and its own field numbers;
the v1 HTTP APIs speak ``mesos.v1`` ("agent", Mesos' numbers). Both sides share
Mesos' field and enum value names otherwise, so the conversion walks the
descriptors and matches fields and enum values by name, with one renaming rule:
the word ``agent`` in v1 is ``slave`` in offerd (``agent_id`` / ``slave_id``,
``agent_info`` / ``slave_info``, ``REASON_AGENT_REMOVED`` / ``REASON_SLAVE_REMOVED``,
``SOURCE_AGENT`` / ``SOURCE_SLAVE``). Message types need no table: a field's
type on the target side is whatever the target declares (AgentID -> SlaveID).

Nothing is dropped silently: both directions return the paths of everything set
in the source that the target cannot hold (``accept.operations[0].reserve``), of
enum values without a counterpart (``type=ACCEPT_INVERSE_OFFERS``) and of unknown
fields the source was parsed with (``subscribe.#99``), so an endpoint can refuse
the call with a reason. Required v1 fields the offerd source did not set stay
unset: check ``message.FindInitializationErrors()`` before serializing.
"""

from __future__ import annotations

import re
from typing import List, Tuple

from google.protobuf import descriptor as _d
from google.protobuf import message_factory

try:
    from google.protobuf import unknown_fields as _unknown_field_sets
except ImportError:  # an older protobuf: unknown fields cannot be listed
    _unknown_field_sets = None

from offerd.proto import mesos_v1_executor_pb2 as v1_executor
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2

FD = _d.FieldDescriptor

# v1 word -> offerd word, within underscore-separated names (either case).
_WORDS = {"agent": "slave"}
_WORDS_BACK = {v: k for k, v in _WORDS.items()}

_INTS = {
    FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}

# The pairs the v1 endpoints convert (v1 type -> offerd type); the common
# messages whose names agree are found by name in offerd_type_for().
PAIRS = {
    v1_scheduler.Call: offerd_pb2.Call,
    v1_scheduler.Event: offerd_pb2.Event,
    v1_executor.Call: offerd_pb2.ExecutorCall,
    v1_executor.Event: offerd_pb2.ExecutorEvent,
    v1.AgentID: offerd_pb2.SlaveID,
    v1.AgentInfo: offerd_pb2.SlaveInfo,
}


# Where the shapes differ, not just the names: v1's executor SUBSCRIBE lists
# unacknowledged updates as Call.Update messages, offerd's as bare TaskStatus.
# (v1 message, offerd message) -> the v1 field that holds the offerd message.
_WRAPPED = {
    ("mesos.v1.executor.Call.Update", "offerd.v1.TaskStatus"): "status",
}
_UNWRAP = _WRAPPED
_WRAP = {(o, w): f for (w, o), f in _WRAPPED.items()}


def _rename(name: str, words: dict) -> str:
    def swap(m):
        word = m.group(0)
        low = word.lower()
        if low not in words:
            return word
        new = words[low]
        return new.upper() if word.isupper() else (new.capitalize() if word[0].isupper() else new)

    return re.sub(r"[A-Za-z0-9]+", swap, name)


def _counterpart(by_name, name: str, words: dict):
    found = by_name.get(name)
    if found is None:
        found = by_name.get(_rename(name, words))
    return found


def to_offerd(v1_message, offerd_type) -> Tuple[object, List[str]]:
    """Convert a mesos.v1 message to ``offerd_type``: ``(message, unsupported_paths)``."""
    target = offerd_type()
    unsupported: List[str] = []
    _copy(v1_message, target, "", unsupported, _WORDS, _has_unknown_fields(v1_message))
    return target, unsupported


def to_v1(offerd_message, v1_type) -> Tuple[object, List[str]]:
    """Convert an offerd message to ``v1_type``: ``(message, unsupported_paths)``."""
    target = v1_type()
    unsupported: List[str] = []
    _copy(offerd_message, target, "", unsupported, _WORDS_BACK, _has_unknown_fields(offerd_message))
    return target, unsupported


def offerd_type_for(v1_type):
    """The offerd message class a v1 message class converts to, or None.

    Nested types follow their outer pair (scheduler ``Call.Accept`` is offerd's
    ``Call.Accept``, executor ``Call.Update`` is ``ExecutorCall.Update``); other
    mesos.v1 messages map to the offerd message of the same (renamed) name.
    """
    full = v1_type.DESCRIPTOR.full_name
    prefixes = {k.DESCRIPTOR.full_name: v.DESCRIPTOR.full_name for k, v in PAIRS.items()}
    prefixes["mesos.v1"] = "offerd.v1"
    head = max((p for p in prefixes if full == p or full.startswith(p + ".")), key=len, default=None)
    if head is None:
        return None
    name = prefixes[head] + _rename(full[len(head):], _WORDS)
    try:
        descriptor = offerd_pb2.DESCRIPTOR.pool.FindMessageTypeByName(name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _copy(source, target, path: str, unsupported: List[str], words: dict, unknown: bool) -> None:
    # `unknown`: the source holds unknown fields somewhere; only then is each
    # message looked at for them, and nothing is copied as bytes.
    plan = _PLANS.get((source.__class__, target.__class__, words is _WORDS))
    if plan is None:
        plan = _plan(source, target, words)
    if plan.__class__ is tuple:  # a wrapped or unwrapped pair
        how, name = plan
        if how == "unwrap":
            for field, _ in source.ListFields():
                if field.name != name:
                    unsupported.append(_join(path, field.name))
            if unknown:
                _unknown_fields(source, path, unsupported)
            _copy(getattr(source, name), target, _join(path, name), unsupported, words, unknown)
        else:
            wrapper = getattr(target, name)
            wrapper.SetInParent()
            _copy(source, wrapper, path, unsupported, words, unknown)
        return
    for field, value in source.ListFields():
        entry = plan.get(field, _SKIP)
        if entry is _SKIP:  # an extension
            entry = _entry(field, target.DESCRIPTOR, words)
        if entry is None:
            unsupported.append(_join(path, field.name))
            continue
        tfield, kind, tname = entry
        if kind is _PLAIN:
            setattr(target, tname, value)
        elif kind is _SAME_WIRE and not unknown:
            sub = getattr(target, tname)
            sub.SetInParent()
            sub.MergeFromString(value.SerializeToString())
        elif kind is _MESSAGE or kind is _SAME_WIRE:
            sub = getattr(target, tname)
            sub.SetInParent()
            _copy(value, sub, _join(path, field.name), unsupported, words, unknown)
        elif kind is _VALUE:
            converted = _scalar(field, tfield, value, path, unsupported, words)
            if converted is not _SKIP:
                setattr(target, tname, converted)
        elif kind is _MAP:
            _copy_map(value, getattr(target, tfield.name), field, tfield, _join(path, field.name), unsupported,
                      words, unknown)
        else:
            fpath = _join(path, field.name)
            out = getattr(target, tfield.name)
            for i, item in enumerate(value):
                ipath = f"{fpath}[{i}]"
                if kind is _MESSAGES:
                    _copy(item, out.add(), ipath, unsupported, words, unknown)
                else:
                    converted = _scalar(field, tfield, item, ipath, unsupported, words, indexed=True)
                    if converted is not _SKIP:
                        out.append(converted)
    if unknown:
        _unknown_fields(source, path, unsupported)


_SKIP = object()
# How a field is copied: a value as is, a value converted (enums, integer ranges),
# a message, a message whose type has the same encoding on both sides, a map,
# repeated messages, repeated values.
_PLAIN, _VALUE, _MESSAGE, _SAME_WIRE, _MAP, _MESSAGES, _VALUES = (object() for _ in range(7))
# (source class, target class, direction) -> {source field: (target field, how, its name)
# or None when the target cannot hold it}, or ("wrap" | "unwrap", field name): the descriptor
# walk done once per pair of types, not once per message.
_PLANS: dict = {}


def _plan(source, target, words: dict):
    source_type, target_type = source.DESCRIPTOR, target.DESCRIPTOR
    pair = (source_type.full_name, target_type.full_name)
    if pair in _UNWRAP:
        plan = ("unwrap", _UNWRAP[pair])
    elif pair in _WRAP:
        plan = ("wrap", _WRAP[pair])
    else:
        plan = {field: _entry(field, target_type, words) for field in source_type.fields}
    _PLANS[(source.__class__, target.__class__, words is _WORDS)] = plan
    return plan


def _entry(field, target_type, words: dict):
    tfield = _counterpart(target_type.fields_by_name, field.name, words)
    if tfield is None or not _compatible(field, tfield):
        return None
    if _is_map(field):
        return tfield, _MAP, tfield.name
    if field.is_repeated:
        return tfield, _MESSAGES if field.type == FD.TYPE_MESSAGE else _VALUES, tfield.name
    if field.type == FD.TYPE_MESSAGE:
        if _same_wire(field.message_type, tfield.message_type, words, set()):
            # Copied as bytes: an ID, or Acknowledge, costs two calls into protobuf, not a walk.
            return tfield, _SAME_WIRE, tfield.name
        return tfield, _MESSAGE, tfield.name
    if field.type != FD.TYPE_ENUM and field.cpp_type == tfield.cpp_type:
        return tfield, _PLAIN, tfield.name
    return tfield, _VALUE, tfield.name


def _same_wire(source_type, target_type, words: dict, seen: set) -> bool:
    """True when every message `source_type` can hold parses as the same message
    of `target_type`: each field, nested ones included, has its counterpart under
    the same number and type, and each enum value keeps its number."""
    pair = (source_type.full_name, target_type.full_name)
    if pair in seen:
        return True
    seen.add(pair)
    if pair in _UNWRAP or pair in _WRAP:
        return False
    for field in source_type.fields:
        tfield = _counterpart(target_type.fields_by_name, field.name, words)
        if tfield is None or tfield.number != field.number or tfield.type != field.type \
                or tfield.is_repeated != field.is_repeated:
            return False
        if field.type == FD.TYPE_MESSAGE and not _same_wire(field.message_type, tfield.message_type, words, seen):
            return False
        if field.type == FD.TYPE_ENUM:
            for value in field.enum_type.values:
                tvalue = _counterpart(tfield.enum_type.values_by_name, value.name, words)
                if tvalue is None or tvalue.number != value.number:
                    return False
    return True


def _has_unknown_fields(message) -> bool:
    """Whether `message` or any message in it holds fields its type does not declare
    (a newer client's): one pass in protobuf's C code, not one per message."""
    if _unknown_field_sets is None:
        return False
    known = message.__class__()
    known.MergeFrom(message)
    known.DiscardUnknownFields()
    return known.ByteSize() != message.ByteSize()


def _is_map(field) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _compatible(field, tfield) -> bool:
    if (field.is_repeated) != (tfield.is_repeated):
        return False
    if _is_map(field) != _is_map(tfield):
        return False
    if field.type in (FD.TYPE_MESSAGE, FD.TYPE_ENUM, FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_BOOL):
        return field.type == tfield.type
    return field.cpp_type in _INTS and tfield.cpp_type in _INTS or field.cpp_type == tfield.cpp_type


def _scalar(field, tfield, value, path: str, unsupported: List[str], words: dict, indexed: bool = False):
    """`value` as `tfield` holds it, or _SKIP (and why in `unsupported`). `path` is
    the message's, or the element's when `indexed`."""
    if field.type == FD.TYPE_ENUM:
        numbers = _ENUM_NUMBERS.get((field, tfield))
        if numbers is None:
            numbers = _ENUM_NUMBERS[(field, tfield)] = _enum_numbers(field, tfield, words)
        number = numbers.get(value)
        if number is None:
            name = field.enum_type.values_by_number[value].name if value in field.enum_type.values_by_number \
                else str(value)
            unsupported.append(f"{path if indexed else _join(path, field.name)}={name}")
            return _SKIP
        return number
    if tfield.cpp_type in _INTS:
        low, high = _INTS[tfield.cpp_type]
        if not low <= value <= high:
            unsupported.append(f"{path if indexed else _join(path, field.name)}={value}")
            return _SKIP
    return value


# (source field, target field) -> {source enum number: target enum number}, the
# values without a counterpart left out.
_ENUM_NUMBERS: dict = {}


def _enum_numbers(field, tfield, words: dict) -> dict:
    out = {}
    for value in field.enum_type.values:
        tvalue = _counterpart(tfield.enum_type.values_by_name, value.name, words)
        if tvalue is not None:
            out[value.number] = tvalue.number
    return out


def _copy_map(source, target, field, tfield, path, unsupported, words, unknown: bool) -> None:
    vfield = field.message_type.fields_by_name["value"]
    tvfield = tfield.message_type.fields_by_name["value"]
    for key in source:
        kpath = f"{path}[{key!r}]"
        if vfield.type == FD.TYPE_MESSAGE:
            _copy(source[key], target[key], kpath, unsupported, words, unknown)
        else:
            converted = _scalar(vfield, tvfield, source[key], kpath, unsupported, words, indexed=True)
            if converted is not _SKIP:
                target[key] = converted


def _unknown_fields(source, path: str, unsupported: List[str]) -> None:
    # Fields the source was parsed with but its own type does not declare
    # (a newer client's); they cannot be carried over either.
    if _unknown_field_sets is None:
        return
    try:
        numbers = sorted({f.field_number for f in _unknown_field_sets.UnknownFieldSet(source)})
    except (AttributeError, TypeError):
        return
    for number in numbers:
        unsupported.append(_join(path, f"#{number}"))
