"""Resource arithmetic: the one place in offerd that knows how resources add up.

A `Resources` value is a bag of resources keyed by (name, role). The master
adds and subtracts these on every offer, accept and task exit, so the internal
form is plain Python data, never protobuf:

* scalars are ``int`` thousandths (Mesos' fixed point, 3 decimal places), so
  sums never drift and ``(a + b) - b == a`` holds exactly;
* ranges are a sorted tuple of merged, inclusive ``(begin, end)`` pairs;
* sets are a ``frozenset`` of strings.

Values are kept canonical (no zero scalars, no empty ranges or sets, ranges
merged), so equality is dict equality. As in Mesos, adding ranges or sets is a
union: ``ports:[1-5] + ports:[3-7] == ports:[1-7]``. Text and protobuf appear
only at the edges (parse, from_protos, to_protos, str, to_json), which is also
where input is validated; arithmetic trusts canonical operands.
"""

from __future__ import annotations

import functools
import json
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

from google.protobuf import json_format, text_format

from offerd.proto import offerd_pb2 as pb

__all__ = ["DEFAULT_MIN_ALLOCATABLE", "AttributeParseError", "ResourceError", "Resources",
           "attributes_to_json", "parse_attributes", "parse_min_allocatable"]

DEFAULT_MIN_ALLOCATABLE = "cpus:0.01|mem:32"  # Mesos' default

_SCALAR, _RANGES, _SET = pb.Value.SCALAR, pb.Value.RANGES, pb.Value.SET
_KIND_NAME = {int: "scalar", tuple: "ranges", frozenset: "set"}
_PROTO_FIELD = {_SCALAR: "scalar", _RANGES: "ranges", _SET: "set"}
# Names the rest of offerd (isolators, DRF, web UI) assumes have one shape.
_KNOWN_KINDS = {"cpus": int, "mem": int, "disk": int, "gpus": int, "ports": tuple}
# Output order of str/to_protos/to_json: the familiar ones first.
_ORDER = {"cpus": 0, "mem": 1, "disk": 2, "gpus": 3, "ports": 4}
# Bound on one input scalar: value * 1000 then has at most 15 significant
# digits, so a double carries it exactly through to_protos/from_protos.
_MAX_SCALAR = 10**12
_MAX_RANGE = 2**64 - 1  # Value.Range is uint64
_NUMBER = re.compile(r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UINT = re.compile(r"[0-9]+")
_SYNTAX = frozenset("()[]{};:,\\")  # never part of a name, role or item
_OPENERS = {"[": "]", "{": "}", "(": ")"}
_CLOSERS = frozenset("]})")


class ResourceError(ValueError):
    """Invalid resources, or arithmetic that would make them negative."""


class AttributeParseError(ValueError):
    """Invalid --attributes text."""


class _Bad(Exception):
    """A problem in one piece of input; the caller says which piece."""


# ---------------------------------------------------------------------------
# Validation and parsing of single values (shared by resources and attributes)


@functools.lru_cache(maxsize=4096)  # the same few names recur in every proto
def _check_token(token: str, what: str = "name") -> None:
    if not token:
        raise _Bad(f"empty {what}")
    for ch in token:
        if ch.isspace() or ch in _SYNTAX or ord(ch) < 0x20 or ch == "\x7f":
            raise _Bad(f"invalid character {ch!r} in {what} {token!r}")


@functools.lru_cache(maxsize=4096)
def _check_role(role: str) -> None:
    """Mesos' role rules; '/' separates the levels of a hierarchical role."""
    if role == "*":
        return
    if not role:
        raise _Bad("empty role")
    if role[0] == "/" or role[-1] == "/":
        raise _Bad(f"role {role!r} cannot start or end with '/'")
    for part in role.split("/"):
        if not part:
            raise _Bad(f"role {role!r} has an empty component")
        if part in (".", "..", "*"):
            raise _Bad(f"role {role!r} cannot have {part!r} as a component")
        if part[0] == "-":
            raise _Bad(f"role {role!r} has a component starting with '-'")
        _check_token(part, "role")


def validate_role(role: str) -> None:
    """Raise ResourceError if `role` is not a valid Mesos role name."""
    try:
        _check_role(role)
    except _Bad as exc:
        raise ResourceError(str(exc)) from None


def _to_millis(value: Decimal | float, name: str) -> int:
    """Validate a scalar and round it to fixed point, half away from zero."""
    if not math.isfinite(value):
        raise _Bad(f"non-finite scalar value {value} for {name!r}")
    if value < 0:
        raise _Bad(f"negative scalar value {value} for {name!r}")
    if value > _MAX_SCALAR:
        raise _Bad(f"scalar value {value} for {name!r} exceeds {_MAX_SCALAR}")
    if type(value) is float:
        m = value * 1000.0
        millis = round(m)
        # Exact halves go through Decimal so text and protos round alike.
        if abs(m - millis) >= 1e-6:
            millis = int(Decimal(repr(value)).scaleb(3).to_integral_value(ROUND_HALF_UP))
    else:
        millis = int(value.scaleb(3).to_integral_value(ROUND_HALF_UP))
    if name == "gpus" and millis % 1000:
        raise _Bad(f"'gpus' must be a whole number, not {value}")
    return millis


def _text_scalar(text: str, name: str) -> int:
    if _NUMBER.fullmatch(text):
        return _to_millis(Decimal(text), name)  # Decimal: exact for any digits
    if text[:1] == "-" and _NUMBER.fullmatch(text[1:]):
        raise _Bad(f"negative scalar value {text} for {name!r}")
    try:
        finite = math.isfinite(float(text))  # "nan", "inf", "-Infinity", ...
    except ValueError:
        finite = True
    raise _Bad(f"{'bad number' if finite else 'non-finite scalar value'} {text!r} for {name!r}")


def _norm_ranges(pairs: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge overlapping or adjacent ranges; validate begin <= end."""
    out: list[list[int]] = []
    for begin, end in sorted(pairs):
        if begin > end:
            raise _Bad(f"range begin {begin} > end {end}")
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _parse_compound(text: str):
    """Parse ``[1-5,7-9]`` into canonical ranges or ``{a,b}`` into a set."""
    close = "]" if text[0] == "[" else "}"
    if text[-1] != close:
        raise _Bad(f"unexpected text after {close!r} in {text!r}")
    inner = text[1:-1].strip()
    parts = [s.strip() for s in inner.split(",")] if inner else []
    if close == "}":
        for item in parts:
            _check_token(item, "set item")
        return frozenset(parts)
    pairs = []
    for part in parts:
        begin, dash, end = (s.strip() for s in part.partition("-"))
        if not (dash and _UINT.fullmatch(begin) and _UINT.fullmatch(end)):
            raise _Bad(f"bad range {part!r} (want begin-end, non-negative integers)")
        if int(end) > _MAX_RANGE:
            raise _Bad(f"range value {end} exceeds {_MAX_RANGE}")
        pairs.append((int(begin), int(end)))
    return _norm_ranges(pairs)


def _split_items(text: str, error: type[ValueError]) -> list[str]:
    """The non-empty ';'-separated items of `text`, split outside brackets."""
    parts, stack, start = [], [], 0
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif ch in _CLOSERS:
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


def _fmt_ranges(ranges: Iterable[tuple[int, int]], sep: str = ",") -> str:
    return "[" + sep.join(f"{b}-{e}" for b, e in ranges) + "]"


def _fmt_value(v, sep: str = ",") -> str:
    if type(v) is int:  # exact decimal form of the fixed point: 1500 -> "1.5"
        return str(v // 1000) if v % 1000 == 0 else f"{v // 1000}.{v % 1000:03d}".rstrip("0")
    if type(v) is tuple:
        return _fmt_ranges(v, sep)
    return "{" + sep.join(sorted(v)) + "}"


def _fmt_entry(key: tuple[str, str], v) -> str:
    name, role = key
    return f"{name}:{_fmt_value(v)}" if role == "*" else f"{name}({role}):{_fmt_value(v)}"


def _sort_key(key: tuple[str, str]):
    return (_ORDER.get(key[0], len(_ORDER)), key[0], key[1] != "*", key[1])


# ---------------------------------------------------------------------------
# Algebra on the internal representation


def _add_value(a, b):
    if type(a) is int:
        return a + b
    return _norm_ranges(a + b) if type(a) is tuple else a | b


def _ranges_contain(a, b) -> bool:
    # Both are merged, so each range of b must sit inside a single range of a.
    i, n = 0, len(a)
    for lo, hi in b:
        while i < n and a[i][1] < lo:
            i += 1
        if i == n or a[i][0] > lo or a[i][1] < hi:
            return False
    return True


def _ranges_sub(a, b) -> tuple[tuple[int, int], ...]:
    out, j, nb = [], 0, len(b)
    for lo, hi in a:
        while j < nb and b[j][1] < lo:
            j += 1
        cur, k = lo, j  # b[j] may also overlap the next range of a: keep j
        while k < nb and b[k][0] <= hi and cur <= hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            k += 1
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def _value_contains(a, b) -> bool:
    if type(a) is int:
        return a >= b
    return _ranges_contain(a, b) if type(a) is tuple else b <= a


class _Builder:
    """Accumulates validated entries, enforcing one kind per resource name."""

    def __init__(self) -> None:
        self.items: dict = {}
        self.kinds: dict = {}

    def add(self, name: str, role: str, value) -> None:
        kind, want = type(value), _KNOWN_KINDS.get(name)
        if want is not None and want is not kind:
            raise _Bad(f"{name!r} must be {_KIND_NAME[want]}, not {_KIND_NAME[kind]}")
        have = self.kinds.setdefault(name, kind)
        if have is not kind:
            raise _Bad(f"{name!r} is already {_KIND_NAME[have]}, cannot also be {_KIND_NAME[kind]}")
        cur = self.items.get((name, role))
        self.items[(name, role)] = value if cur is None else _add_value(cur, value)

    def build(self) -> Resources:
        return Resources._make({k: v for k, v in self.items.items() if v})


# ---------------------------------------------------------------------------


class Resources:
    """An immutable bag of resources keyed by (name, role); role "*" = unreserved."""

    __slots__ = ("_items", "_kinds", "_totals", "_flat")
    EMPTY: Resources  # set below the class

    def __init__(self, text: str = "", default_role: str = "*") -> None:
        self._items = Resources.parse(text, default_role)._items if text else {}
        self._kinds = self._totals = self._flat = None

    @classmethod
    def _make(cls, items: dict) -> Resources:
        # Trusted constructor: `items` must already be canonical.
        self = object.__new__(cls)
        self._items = items
        self._kinds = self._totals = self._flat = None  # lazy caches
        return self

    # -- the outside world ----------------------------------------------------

    @classmethod
    def parse(cls, text: str, default_role: str = "*") -> Resources:
        """Parse Mesos text (``cpus:4;cpus(web):2;ports:[1-5]``) or a JSON array."""
        try:
            _check_role(default_role)
        except _Bad as e:
            raise ResourceError(f"default role {default_role!r}: {e}") from None
        text = text.strip()
        if text.startswith("["):
            return cls._parse_json(text, default_role)
        builder = _Builder()
        for item in _split_items(text, ResourceError):
            try:
                head, colon, value = (s.strip() for s in item.partition(":"))
                if not colon:
                    raise _Bad("expected name:value")
                name, role = head, default_role
                if "(" in head:
                    if head[-1] != ")":
                        raise _Bad(f"bad role suffix in {head!r}")
                    name, _, role = head[:-1].partition("(")
                    name = name.strip()
                _check_token(name)
                _check_role(role)
                if not value:
                    raise _Bad(f"missing value for {name!r}")
                parsed = _parse_compound(value) if value[0] in "[{" else _text_scalar(value, name)
                builder.add(name, role, parsed)
            except _Bad as e:
                raise ResourceError(f'"{item}": {e}') from None
        return builder.build()

    @classmethod
    def _parse_json(cls, text: str, default_role: str) -> Resources:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ResourceError(f"invalid JSON resources: {e}") from None
        if not isinstance(data, list):
            raise ResourceError("JSON resources must be an array of objects")
        protos = []
        for elem in data:
            if not isinstance(elem, dict):
                raise ResourceError(f"{json.dumps(elem)}: expected a resource object")
            try:
                protos.append(json_format.ParseDict(elem, pb.Resource()))
            except json_format.ParseError as e:
                first_line = str(e).splitlines()[0]
                raise ResourceError(f"{json.dumps(elem)}: {first_line}") from None
        return cls.from_protos(protos, default_role)

    @classmethod
    def from_protos(cls, protos: Iterable[pb.Resource], default_role: str = "*") -> Resources:
        """Validate and convert protobuf Resources (e.g. from a TaskInfo).

        Only name, type, value and role are modelled: allocation_info (echoed
        by MULTI_ROLE frameworks), disk info and reservation principals/labels
        are dropped."""
        builder = _Builder()
        for r in protos:
            try:
                name = r.name
                _check_token(name)
                role = _proto_role(r, default_role)
                if not r.HasField("type"):
                    raise _Bad(f"missing type for {name!r}")
                field = _PROTO_FIELD.get(r.type)
                if field is None:
                    raise _Bad(f"unsupported type {pb.Value.Type.Name(r.type)} for {name!r}")
                if not r.HasField(field):
                    raise _Bad(f"missing {field} value for {name!r}")
                if field == "scalar":
                    value = _to_millis(r.scalar.value, name)
                elif field == "ranges":
                    value = _norm_ranges((x.begin, x.end) for x in r.ranges.range)
                else:
                    for item in r.set.item:
                        _check_token(item, "set item")
                    value = frozenset(r.set.item)
                builder.add(name, role, value)
            except _Bad as e:
                shown = text_format.MessageToString(r, as_one_line=True)
                raise ResourceError(f"<{shown}>: {e}") from None
        return builder.build()

    def to_protos(self) -> list[pb.Resource]:
        """One Resource per (name, role); reserved ones carry a STATIC reservation."""
        out = []
        for key in sorted(self._items, key=_sort_key):
            (name, role), v = key, self._items[key]
            r = pb.Resource(name=name, role=role)
            if type(v) is int:
                r.type, r.scalar.value = _SCALAR, v / 1000
            elif type(v) is tuple:
                r.type = _RANGES
                for b, e in v:
                    r.ranges.range.add(begin=b, end=e)
            else:
                r.type = _SET
                r.set.item.extend(sorted(v))
            if role != "*":
                r.reservations.add(type=pb.Resource.ReservationInfo.STATIC, role=role)
            out.append(r)
        return out

    # -- algebra --------------------------------------------------------------

    def __add__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        if not other._items or not self._items:
            return other if not self._items else self
        items = self._items.copy()
        for key, v in other._items.items():
            cur = items.get(key)
            if cur is None:
                if self._kinds is None:
                    self._kinds = {name: type(x) for (name, _), x in self._items.items()}
                cur_kind = self._kinds.get(key[0], type(v))
            else:
                cur_kind = type(cur)
            if cur_kind is not type(v):
                raise ResourceError(f'"{_fmt_entry(key, v)}": {key[0]!r} is {_KIND_NAME[cur_kind]} here')
            items[key] = v if cur is None else _add_value(cur, v)
        return Resources._make(items)

    def __radd__(self, other):
        return self if other == 0 else NotImplemented  # lets sum() start at 0

    def __sub__(self, other: Resources) -> Resources:
        """Remove `other`; ResourceError unless self.contains(other)."""
        if not isinstance(other, Resources):
            return NotImplemented
        return self._subtract(other, strict=True)

    def subtract_saturating(self, other: Resources) -> Resources:
        """Remove what of `other` is here: scalars clamp at 0, absent parts are ignored."""
        return self._subtract(other, strict=False)

    def _subtract(self, other: Resources, strict: bool) -> Resources:
        if not other._items:
            return self
        items = self._items.copy()
        for key, v in other._items.items():
            cur = items.get(key)
            if cur is None or type(cur) is not type(v) or (strict and not _value_contains(cur, v)):
                if strict:
                    have = "none" if cur is None else f'"{_fmt_entry(key, cur)}"'
                    raise ResourceError(f'"{_fmt_entry(key, v)}": cannot subtract, have {have}')
                continue
            if type(v) is int:
                rest = cur - v if cur > v else 0
            else:
                rest = _ranges_sub(cur, v) if type(v) is tuple else cur - v
            if rest:
                items[key] = rest
            else:
                del items[key]
        return Resources._make(items)

    def contains(self, other: Resources) -> bool:
        """True if every (name, role) of `other` is available here; roles must match."""
        for key, v in other._items.items():
            cur = self._items.get(key)
            if cur is None or type(cur) is not type(v) or not _value_contains(cur, v):
                return False
        return True

    def __eq__(self, other) -> bool:
        return self._items == other._items if isinstance(other, Resources) else NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __bool__(self) -> bool:
        return bool(self._items)

    def is_empty(self) -> bool:
        return not self._items

    def __str__(self) -> str:
        return ";".join(_fmt_entry(k, self._items[k]) for k in sorted(self._items, key=_sort_key))

    def __repr__(self) -> str:
        return f"Resources({str(self)!r})"

    # -- queries --------------------------------------------------------------

    def _scalar_totals(self) -> dict:
        if self._totals is None:  # cached: DRF asks for the same totals over and over
            totals: dict = {}
            for (name, _), v in self._items.items():
                if type(v) is int:
                    totals[name] = totals.get(name, 0) + v
            self._totals = totals
        return self._totals

    def scalar(self, name: str, role: str | None = None) -> float:
        """Amount of scalar `name` reserved for `role`, or over all roles if None."""
        m = self._scalar_totals().get(name, 0) if role is None else self._items.get((name, role), 0)
        return m / 1000 if type(m) is int else 0.0

    def scalars(self) -> dict[str, float]:
        """Every scalar summed over roles, e.g. for DRF shares."""
        return {name: m / 1000 for name, m in self._scalar_totals().items()}

    def ranges(self, name: str, role: str | None = None) -> list[tuple[int, int]]:
        """Merged, sorted inclusive ranges of `name` in `role` (all roles if None)."""
        items = self.flatten()._items if role is None else self._items
        v = items.get((name, "*" if role is None else role))
        return list(v) if type(v) is tuple else []

    def range_len(self, name: str, role: str | None = None) -> int:
        """Number of values (e.g. ports) in the ranges of `name`."""
        return sum(e - b + 1 for b, e in self.ranges(name, role))

    count_ranges = range_len  # alias: counts values, not intervals

    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self._items)

    def roles(self) -> frozenset[str]:
        return frozenset(role for _, role in self._items)

    # -- roles ------------------------------------------------------------------

    def _filter(self, keep) -> Resources:
        return Resources._make({k: v for k, v in self._items.items() if keep(k[1])})

    def reserved(self, role: str | None = None) -> Resources:
        """Reserved resources: all of them, or only those reserved for `role`."""
        return self._filter(lambda r: r != "*" if role is None else r == role)

    def unreserved(self) -> Resources:
        return self._filter(lambda r: r == "*")

    def for_role(self, role: str) -> Resources:
        """What a framework in `role` may use: unreserved resources plus those
        reserved for `role` or an ancestor (as in Mesos, "eng" -> "eng/web")."""
        return self._filter(lambda r: r == "*" or r == role or role.startswith(r + "/"))

    def with_role(self, role: str) -> Resources:
        """A copy with every resource relabelled to `role` (merging duplicates)."""
        try:
            _check_role(role)
        except _Bad as e:
            raise ResourceError(f"role {role!r}: {e}") from None
        return self.flatten() if role == "*" else self._relabel(role)

    def _relabel(self, role: str) -> Resources:
        items: dict = {}
        for (name, _), v in self._items.items():
            cur = items.get((name, role))
            items[(name, role)] = v if cur is None else _add_value(cur, v)
        return Resources._make(items)

    def flatten(self) -> Resources:
        """Role-agnostic view: everything as unreserved (cached)."""
        if self._flat is None:
            self._flat = self._relabel("*")
        return self._flat

    # -- policy and presentation ----------------------------------------------

    def meets_minimum(self, minimums: Iterable[Resources]) -> bool:
        """True if, ignoring roles, self holds at least one of the alternatives.
        No alternatives means no minimum (as in Mesos): always True."""
        flat, any_alt = self.flatten(), False
        for alt in minimums:
            if flat.contains(alt.flatten()):
                return True
            any_alt = True
        return not any_alt

    def to_json(self) -> dict:
        """Totals over roles, shaped like Mesos' /master/state "resources"."""
        out: dict = {"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
        flat = self.flatten()._items
        for key in sorted(flat, key=_sort_key):
            v = flat[key]  # Mesos writes ranges and sets with ", " separators
            out[key[0]] = v / 1000 if type(v) is int else _fmt_value(v, ", ")
        return out

    parse_min_allocatable: staticmethod  # set below the class


Resources.EMPTY = Resources._make({})


def _proto_role(r: pb.Resource, default_role: str) -> str:
    # The newest format wins: the last (most refined) entry of `reservations`.
    if len(r.reservations):
        role = r.reservations[-1].role
        if not role:
            raise _Bad(f"reservation without a role for {r.name!r}")
        if r.HasField("role") and r.role not in ("*", role):
            raise _Bad(f"role {r.role!r} disagrees with reservation role {role!r}")
    else:
        role = r.role if r.HasField("role") else default_role
    _check_role(role)
    return role


def parse_min_allocatable(text: str) -> list[Resources]:
    """Parse --min_allocatable_resources: ``cpus:0.01|mem:32`` ('|' = OR, ';' = AND)."""
    alternatives = []
    for i, part in enumerate(text.split("|"), 1):
        part = part.strip()
        if not part:
            raise ResourceError(f'"{text}": alternative {i} is empty')
        alt = Resources.parse(part)
        for (name, role), v in alt._items.items():
            if role != "*" or type(v) is not int:
                raise ResourceError(f'"{part}": minimum for {name!r} must be an unreserved scalar')
        if not alt:
            raise ResourceError(f'"{part}": alternative {i} has only zero quantities')
        alternatives.append(alt)
    return alternatives


Resources.parse_min_allocatable = staticmethod(parse_min_allocatable)


# ---------------------------------------------------------------------------
# Agent attributes (--attributes): placement labels, no arithmetic


def parse_attributes(text: str) -> list[pb.Attribute]:
    """Parse ``rack:2;zone:us-east-1a;r:[1-5];s:{a,b}`` into Attribute protos."""
    out, seen = [], set()
    for item in _split_items(text.strip(), AttributeParseError):
        try:
            name, colon, value = (s.strip() for s in item.partition(":"))
            if not colon:
                raise _Bad("expected name:value")
            _check_token(name)
            if name in seen:
                raise _Bad(f"duplicate attribute {name!r}")
            seen.add(name)
            if not value:
                raise _Bad(f"missing value for {name!r}")
            attr = pb.Attribute(name=name)
            if value[0] in "[{":
                parsed = _parse_compound(value)
                if type(parsed) is tuple:
                    attr.type = _RANGES
                    for b, e in parsed:
                        attr.ranges.range.add(begin=b, end=e)
                else:
                    attr.type = _SET
                    attr.set.item.extend(sorted(parsed))
            elif _NUMBER.fullmatch(value.removeprefix("-")) and math.isfinite(float(value)):
                attr.type, attr.scalar.value = _SCALAR, float(value)
            else:
                _check_token(value, "text value")
                attr.type, attr.text.value = pb.Value.TEXT, value
            out.append(attr)
        except _Bad as e:
            raise AttributeParseError(f'"{item}": {e}') from None
    return out


def attributes_to_json(attrs: Iterable[pb.Attribute]) -> dict:
    """Mesos' /master/state form: ``{"rack": 2.0, "zone": "us-east-1a"}``."""
    out: dict = {}
    for a in attrs:
        if a.type == _SCALAR:
            out[a.name] = a.scalar.value
        elif a.type == _RANGES:
            out[a.name] = _fmt_ranges(((r.begin, r.end) for r in a.ranges.range), ", ")
        elif a.type == _SET:
            out[a.name] = "{" + ", ".join(a.set.item) + "}"
        else:
            out[a.name] = a.text.value
    return out
