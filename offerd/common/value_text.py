"""Mesos' resource and attribute text grammar: tokens, roles, scalars, ranges, sets.

Shared by offerd.common.resources and offerd.common.attributes. Each check
raises `BadValue` naming the piece that is wrong; callers wrap it in their own
error type, with the context (which resource, which attribute) only they know.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

# Bound on one input scalar: value * 1000 then has at most 15 significant
# digits, so a double carries it exactly through to_protos/from_protos.
MAX_SCALAR = 10**12
MAX_RANGE = 2**64 - 1  # Value.Range is uint64
NUMBER = re.compile(r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
UINT = re.compile(r"[0-9]+")
SYNTAX = frozenset("()[]{};:,\\")  # never part of a name, role or item
OPENERS = {"[": "]", "{": "}", "(": ")"}
CLOSERS = frozenset("]})")


class BadValue(Exception):
    """A problem in one piece of input; the caller says which piece."""


@functools.lru_cache(maxsize=4096)  # the same few names recur in every proto
def check_token(token: str, what: str = "name") -> None:
    if not token:
        raise BadValue(f"empty {what}")
    for ch in token:
        if ch.isspace() or ch in SYNTAX or ord(ch) < 0x20 or ch == "\x7f":
            raise BadValue(f"invalid character {ch!r} in {what} {token!r}")


@functools.lru_cache(maxsize=4096)
def check_role(role: str) -> None:
    """Mesos' role rules; '/' separates the levels of a hierarchical role."""
    if role == "*":
        return
    if not role:
        raise BadValue("empty role")
    if role[0] == "/" or role[-1] == "/":
        raise BadValue(f"role {role!r} cannot start or end with '/'")
    for part in role.split("/"):
        if not part:
            raise BadValue(f"role {role!r} has an empty component")
        if part in (".", "..", "*"):
            raise BadValue(f"role {role!r} cannot have {part!r} as a component")
        if part[0] == "-":
            raise BadValue(f"role {role!r} has a component starting with '-'")
        check_token(part, "role")


def check_name(name) -> None:
    if not isinstance(name, str):
        raise BadValue(f"resource name {name!r} is not a string")
    check_token(name)


def to_millis(value: Decimal | float, name: str) -> int:
    """Validate a scalar and round it to fixed point, half away from zero."""
    if not math.isfinite(value):
        raise BadValue(f"non-finite scalar value {value} for {name!r}")
    if value < 0:
        raise BadValue(f"negative scalar value {value} for {name!r}")
    if value > MAX_SCALAR:
        raise BadValue(f"scalar value {value} for {name!r} exceeds {MAX_SCALAR}")
    if type(value) is float:
        m = value * 1000.0
        millis = round(m)
        # Exact halves go through Decimal so text and protos round alike.
        if abs(m - millis) >= 1e-6:
            millis = int(Decimal(repr(value)).scaleb(3).to_integral_value(ROUND_HALF_UP))
    else:
        millis = int(value.scaleb(3).to_integral_value(ROUND_HALF_UP))
    if name == "gpus" and millis % 1000:
        raise BadValue(f"'gpus' must be a whole number, not {value}")
    return millis


def text_scalar(text: str, name: str) -> int:
    if NUMBER.fullmatch(text):
        return to_millis(Decimal(text), name)  # Decimal: exact for any digits
    if text[:1] == "-" and NUMBER.fullmatch(text[1:]):
        raise BadValue(f"negative scalar value {text} for {name!r}")
    try:
        finite = math.isfinite(float(text))  # "nan", "inf", "-Infinity", ...
    except ValueError:
        finite = True
    raise BadValue(f"{'bad number' if finite else 'non-finite scalar value'} {text!r} for {name!r}")


def norm_ranges(pairs: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge overlapping or adjacent ranges; validate begin <= end."""
    out: list[list[int]] = []
    for begin, end in sorted(pairs):
        if begin > end:
            raise BadValue(f"range begin {begin} > end {end}")
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def parse_compound(text: str):
    """Parse ``[1-5,7-9]`` into canonical ranges or ``{a,b}`` into a set."""
    close = "]" if text[0] == "[" else "}"
    if text[-1] != close:
        raise BadValue(f"unexpected text after {close!r} in {text!r}")
    inner = text[1:-1].strip()
    parts = [s.strip() for s in inner.split(",")] if inner else []
    if close == "}":
        for item in parts:
            check_token(item, "set item")
        return frozenset(parts)
    pairs = []
    for part in parts:
        begin, dash, end = (s.strip() for s in part.partition("-"))
        if not (dash and UINT.fullmatch(begin) and UINT.fullmatch(end)):
            raise BadValue(f"bad range {part!r} (want begin-end, non-negative integers)")
        if int(end) > MAX_RANGE:
            raise BadValue(f"range value {end} exceeds {MAX_RANGE}")
        pairs.append((int(begin), int(end)))
    return norm_ranges(pairs)


def split_items(text: str, error: type[ValueError]) -> list[str]:
    """The non-empty ';'-separated items of `text`, split outside brackets."""
    parts, stack, start = [], [], 0
    for i, ch in enumerate(text):
        if ch in OPENERS:
            stack.append(OPENERS[ch])
        elif ch in CLOSERS:
            if not stack or stack.pop() != ch:
                end = text.find(";", i)
                bad = text[start : end if end >= 0 else None].strip()
                raise error(f'"{bad}": unbalanced brackets')
        elif ch == ";" and not stack:
            parts.append(text[start:i])
            start = i + 1
    if stack:
        raise error(f'"{text[start:].strip()}": unbalanced brackets')
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]  # Mesos tolerates "a:1;;b:2;"


def fmt_ranges(ranges: Iterable[tuple[int, int]], sep: str = ",") -> str:
    return "[" + sep.join(f"{b}-{e}" for b, e in ranges) + "]"


def fmt_value(v, sep: str = ",") -> str:
    if type(v) is int:  # exact decimal form of the fixed point: 1500 -> "1.5"
        return str(v // 1000) if v % 1000 == 0 else f"{v // 1000}.{v % 1000:03d}".rstrip("0")
    if type(v) is tuple:
        return fmt_ranges(v, sep)
    return "{" + sep.join(sorted(v)) + "}"
