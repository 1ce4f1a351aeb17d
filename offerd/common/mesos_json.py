"""Mesos' JSON mapping of protobuf messages (the v1 APIs' ``application/json``).

This is Mesos' own mapping (stout's ``JSON::protobuf`` and ``protobuf::parse``),
not protobuf's canonical JSON: keys are the proto field names (``agent_id``, not
``agentId``), enums are their value names, every integer (int64 and uint64 too)
is a JSON number, bytes are base64, repeated fields are arrays and map fields are
objects.

Output: set fields, plus unset non-repeated fields that declare an explicit
default and are not deprecated (Mesos emits those, e.g. ``"shell": true`` and
``"refuse_seconds": 5.0``), in declaration order.

Input, as Mesos parses it: numbers, booleans and enums may also come as strings
(``"42"``, ``"true"``), doubles accept ``"Infinity"``/``"-Infinity"``, ``null``
means "not set", a single value for a repeated field adds one element, and the
top level must be an object. Mesos ignores object keys that are not fields and
enum names it does not know (unless the field is required); so do we, but every
ignored key or enum name is reported back so a caller can refuse or log it
(``strict=True`` makes them errors). Unlike Mesos, an integer field rejects a
fractional or out-of-range number instead of truncating it. Errors name the
field path: ``subscribe.framework_info.capabilities[0].type``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, List, Tuple

from google.protobuf import descriptor as _d

FD = _d.FieldDescriptor

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FD.TYPE_DOUBLE, FD.TYPE_FLOAT)
_JSON_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")


class MesosJsonError(ValueError):
    """Bad JSON for a message; ``path`` is the offending field ('' for the top)."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"field '{path}': {problem}" if path else problem)


def _is_map(field) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _emits_default(field) -> bool:
    return field.has_default_value and not field.GetOptions().deprecated


# ---------------------------------------------------------------------------
# message -> JSON


def to_json(message) -> dict:
    """The JSON value (a dict) Mesos would produce for ``message``."""
    out = {}
    # ListFields (in C) yields only what is set: a state answer has many thousands
    # of messages, each with far more declared fields than set ones.
    for field, value in message.ListFields():
        if field.is_repeated:
            if _is_map(field):
                vfield = field.message_type.fields_by_name["value"]
                out[field.name] = {str(k): _scalar_or_message(vfield, value[k]) for k in value}
            else:
                out[field.name] = [_scalar_or_message(field, v) for v in value]
        else:
            out[field.name] = _scalar_or_message(field, value)
    for field in _unset_defaults(message.DESCRIPTOR):
        if field.name not in out:
            out[field.name] = _scalar_or_message(field, getattr(message, field.name))
    return out


_DEFAULTS: dict = {}


def _unset_defaults(descriptor) -> tuple:
    """The fields Mesos writes even when unset: explicit defaults, not deprecated."""
    fields = _DEFAULTS.get(descriptor)
    if fields is None:
        fields = _DEFAULTS[descriptor] = tuple(
            f for f in descriptor.fields if not f.is_repeated and _emits_default(f))
    return fields


def _scalar_or_message(field, value) -> Any:
    if field.type == FD.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FD.TYPE_ENUM:
        v = field.enum_type.values_by_number.get(value)
        return v.name if v is not None else value
    if field.type == FD.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type in _FLOATS and not math.isfinite(value):
        # JSON has no literal for these; Mesos' parser takes the strings back.
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def dumps(message, **kwargs) -> str:
    """``to_json`` as compact JSON text."""
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(to_json(message), allow_nan=False, **kwargs)


# ---------------------------------------------------------------------------
# JSON -> message


def from_json(value: Any, message_type, strict: bool = False) -> Tuple[Any, List[str]]:
    """Parse a JSON value into a new ``message_type``.

    Returns ``(message, ignored)`` where ``ignored`` lists the paths of object
    keys that are not fields and of enum names the field does not know (as
    ``path=NAME``). Raises MesosJsonError on anything Mesos would refuse, on a
    missing required field, and (with ``strict``) on anything ignored.
    """
    if not isinstance(value, dict):
        raise MesosJsonError("", f"expecting a JSON object, got {_kind(value)}")
    message = message_type()
    ignored: List[str] = []
    _parse_object(message, value, "", ignored)
    if strict and ignored:
        where, _, name = ignored[0].partition("=")
        raise MesosJsonError(where, f"unknown enum value '{name}'" if name else "not a field of this message")
    missing = message.FindInitializationErrors()
    if missing:
        raise MesosJsonError(missing[0], "missing required field" + (
            f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""))
    return message, ignored


def loads(text, message_type, strict: bool = False) -> Tuple[Any, List[str]]:
    """Parse JSON text (str or bytes) into ``message_type``; see ``from_json``."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise MesosJsonError("", f"invalid JSON: {e}") from None
    return from_json(value, message_type, strict)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parse_object(message, obj: dict, path: str, ignored: List[str]) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in obj.items():
        field = fields.get(name)
        fpath = _join(path, name)
        if field is None:
            ignored.append(fpath)
            continue
        if value is None:
            continue
        if _is_map(field):
            if not isinstance(value, dict):
                raise MesosJsonError(fpath, f"expecting a JSON object (a map), got {_kind(value)}")
            _parse_map(message, field, value, fpath, ignored)
        elif isinstance(value, list):
            if not field.is_repeated:
                raise MesosJsonError(fpath, "not expecting a JSON array (the field is not repeated)")
            for i, item in enumerate(value):
                if item is not None:
                    _set(message, field, item, f"{fpath}[{i}]", ignored)
        else:
            _set(message, field, value, fpath, ignored)


def _parse_map(message, field, obj: dict, path: str, ignored: List[str]) -> None:
    container = getattr(message, field.name)
    kfield = field.message_type.fields_by_name["key"]
    vfield = field.message_type.fields_by_name["value"]
    for key, value in obj.items():
        kpath = f"{path}[{json.dumps(key)}]"
        k = key if kfield.type == FD.TYPE_STRING else _convert_scalar(kfield, key, kpath, ignored)
        if vfield.type == FD.TYPE_MESSAGE:
            if not isinstance(value, dict):
                raise MesosJsonError(kpath, f"expecting a JSON object, got {_kind(value)}")
            _parse_object(container[k], value, kpath, ignored)
        elif value is not None:
            v = _convert_scalar(vfield, value, kpath, ignored)
            if v is not _SKIP:
                container[k] = v


_SKIP = object()


def _set(message, field, value, path: str, ignored: List[str]) -> None:
    repeated = field.is_repeated
    if field.type == FD.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise MesosJsonError(path, f"expecting a JSON object, got {_kind(value)}")
        if repeated:
            sub = getattr(message, field.name).add()
        else:
            sub = getattr(message, field.name)
            sub.SetInParent()  # `{}` still marks the field as present
        _parse_object(sub, value, path, ignored)
        return
    converted = _convert_scalar(field, value, path, ignored)
    if converted is _SKIP:
        return
    if repeated:
        getattr(message, field.name).append(converted)
    else:
        setattr(message, field.name, converted)


def _convert_scalar(field, value, path: str, ignored: List[str]):
    t = field.type
    if isinstance(value, (dict, list)):
        raise MesosJsonError(path, f"not expecting {_kind(value)}")
    if t == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise MesosJsonError(path, f"expecting a JSON string, got {_kind(value)}")
        return value
    if t == FD.TYPE_BYTES:
        if not isinstance(value, str):
            raise MesosJsonError(path, f"expecting a base64 JSON string, got {_kind(value)}")
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError) as e:
            raise MesosJsonError(path, f"failed to base64 decode bytes: {e}") from None
    if t == FD.TYPE_ENUM:
        if not isinstance(value, str):
            raise MesosJsonError(path, f"expecting an enum name as a JSON string, got {_kind(value)}")
        v = field.enum_type.values_by_name.get(value)
        if v is None:
            if field.is_required:
                raise MesosJsonError(path, f"unknown enum value '{value}' for {field.enum_type.full_name}")
            ignored.append(f"{path}={value}")
            return _SKIP
        return v.number
    if t == FD.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise MesosJsonError(path, f"expecting a JSON boolean, got {_kind(value)}"
                             + (f" '{value}'" if isinstance(value, str) else ""))
    if isinstance(value, bool):
        raise MesosJsonError(path, "expecting a JSON number, got a boolean")
    if t in _FLOATS:
        if isinstance(value, str):
            if value in ("Infinity", "-Infinity", "NaN"):
                return float(value.replace("Infinity", "inf"))
            if not _JSON_NUMBER.match(value):
                raise MesosJsonError(path, f"failed to parse '{value}' as a JSON number")
            return float(value)
        if isinstance(value, (int, float)):
            return float(value)
        raise MesosJsonError(path, f"expecting a JSON number, got {_kind(value)}")
    low, high = _INT_RANGES[t]
    if isinstance(value, str):
        if _JSON_INT.match(value):
            value = int(value)
        elif _JSON_NUMBER.match(value):
            value = float(value)
        else:
            raise MesosJsonError(path, f"failed to parse '{value}' as a JSON number")
    if isinstance(value, float):
        if not value.is_integer():
            raise MesosJsonError(path, f"expecting an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise MesosJsonError(path, f"expecting a JSON number, got {_kind(value)}")
    if not low <= value <= high:
        raise MesosJsonError(path, f"{value} is out of range for {_TYPE_NAMES[t]}")
    return value


_TYPE_NAMES = {
    FD.TYPE_INT32: "int32", FD.TYPE_SINT32: "sint32", FD.TYPE_SFIXED32: "sfixed32",
    FD.TYPE_UINT32: "uint32", FD.TYPE_FIXED32: "fixed32", FD.TYPE_INT64: "int64",
    FD.TYPE_SINT64: "sint64", FD.TYPE_SFIXED64: "sfixed64", FD.TYPE_UINT64: "uint64",
    FD.TYPE_FIXED64: "fixed64",
}
