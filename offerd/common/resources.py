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
only at the edges (parse, from_scalars, from_ranges, from_protos, to_protos,
str, to_json), which is also where input is validated; arithmetic trusts
canonical operands. Agent attributes, which share the text grammar but have
no arithmetic, are in offerd.common.attributes.
"""

from __future__ import annotations

import json
import numbers
from decimal import Decimal
from typing import Iterable, Mapping

from google.protobuf import json_format, text_format

from offerd.common.value_text import (
    BadValue as _Bad,
    MAX_RANGE as _MAX_RANGE,
    check_name as _check_name,
    check_role as _check_role,
    check_token as _check_token,
    fmt_value as _fmt_value,
    norm_ranges as _norm_ranges,
    parse_compound as _parse_compound,
    split_items as _split_items,
    text_scalar as _text_scalar,
    to_millis as _to_millis,
)
from offerd.proto import offerd_pb2 as pb

__all__ = ["DEFAULT_MIN_ALLOCATABLE", "ResourceError", "Resources", "parse_min_allocatable", "validate_role"]

DEFAULT_MIN_ALLOCATABLE = "cpus:0.01|mem:32"  # Mesos' default

_SCALAR, _RANGES, _SET = pb.Value.SCALAR, pb.Value.RANGES, pb.Value.SET
_KIND_NAME = {int: "scalar", tuple: "ranges", frozenset: "set"}
_PROTO_FIELD = {_SCALAR: "scalar", _RANGES: "ranges", _SET: "set"}
# Names the rest of offerd (isolators, DRF, web UI) assumes have one shape.
_KNOWN_KINDS = {"cpus": int, "mem": int, "disk": int, "gpus": int, "ports": tuple}
# Output order of str/to_protos/to_json: the familiar ones first.
_ORDER = {"cpus": 0, "mem": 1, "disk": 2, "gpus": 3, "ports": 4}


class ResourceError(ValueError):
    """Invalid resources, or arithmetic that would make them negative."""


def validate_role(role: str) -> None:
    """Raise ResourceError if `role` is not a valid Mesos role name."""
    try:
        _check_role(role)
    except _Bad as exc:
        raise ResourceError(str(exc)) from None


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

    __slots__ = ("_items", "_kinds", "_totals", "_flat", "_hash")
    EMPTY: Resources  # set below the class

    def __init__(self, text: str = "", default_role: str = "*") -> None:
        self._items = Resources.parse(text, default_role)._items if text else {}
        self._kinds = self._totals = self._flat = self._hash = None

    @classmethod
    def _make(cls, items: dict) -> Resources:
        # Trusted constructor: `items` must already be canonical.
        self = object.__new__(cls)
        self._items = items
        self._kinds = self._totals = self._flat = self._hash = None  # lazy caches
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

    @classmethod
    def from_scalars(cls, quantities: Mapping[str, float], role: str = "*") -> Resources:
        """Scalars from numbers: ``from_scalars({"cpus": 1.5, "mem": 128}, role="web")``
        equals ``parse("cpus(web):1.5;mem(web):128")``. Validated as `parse` validates
        text; zero amounts are left out, as in text."""
        try:
            _check_role(role)
        except _Bad as e:
            raise ResourceError(f"role {role!r}: {e}") from None
        builder = _Builder()
        for name, amount in quantities.items():
            try:
                _check_name(name)
                if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
                    raise _Bad(f"{name!r} must be a number, not {type(amount).__name__}")
                # An int goes through Decimal: exact however many digits it has.
                builder.add(name, role, _to_millis(Decimal(amount) if isinstance(amount, int)
                                                   else float(amount), name))
            except _Bad as e:
                raise ResourceError(f'"{name}:{amount!r}": {e}') from None
        return builder.build()

    @classmethod
    def from_ranges(cls, name: str, ranges: Iterable[tuple[int, int]], role: str = "*") -> Resources:
        """Ranges from numbers: ``from_ranges("ports", [(31000, 31005), (31010, 31010)])``
        equals ``parse("ports:[31000-31005,31010-31010]")``. Validated as `parse` is."""
        try:
            _check_role(role)
            _check_name(name)
            if not isinstance(ranges, Iterable):
                raise _Bad(f"want (begin, end) pairs, not {type(ranges).__name__}")
            pairs = []
            for pair in ranges:
                try:
                    begin, end = pair
                except (TypeError, ValueError):
                    raise _Bad(f"bad range {pair!r} (want a (begin, end) pair)") from None
                for bound in (begin, end):
                    if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= _MAX_RANGE:
                        raise _Bad(f"bad range bound {bound!r} (want an integer in [0, {_MAX_RANGE}])")
                pairs.append((begin, end))
            builder = _Builder()
            builder.add(name, role, _norm_ranges(pairs))
        except _Bad as e:
            raise ResourceError(f"ranges of {name!r}: {e}") from None
        return builder.build()

    @classmethod
    def sum_of(cls, many: Iterable[Resources]) -> Resources:
        """The sum of many Resources in one pass: ``a + b + c + ...`` copies the
        whole bag at every step, and merges ranges again at every step."""
        items: dict = {}
        kinds: dict = {}
        for resources in many:
            for key, v in resources._items.items():
                cur, kind = items.get(key), type(v)
                if kind is int and type(cur) is int:  # the common case first
                    items[key] = cur + v
                elif cur is None and kinds.setdefault(key[0], kind) is kind:
                    items[key] = list(v) if kind is tuple else v  # ranges: merged once, at the end
                elif kind is tuple and type(cur) is list:
                    cur.extend(v)
                elif kind is frozenset and type(cur) is frozenset:
                    items[key] = cur | v
                else:
                    have = _KIND_NAME[kinds[key[0]]]
                    raise ResourceError(f'"{_fmt_entry(key, v)}": {key[0]!r} is {have} here')
        for key, v in items.items():
            if type(v) is list:
                items[key] = _norm_ranges(v)
        return Resources._make(items)

    def entries(self) -> list[tuple[str, str, int | tuple | frozenset]]:
        """(name, role, value) in output order, for encoders that write Mesos'
        shapes directly: a scalar in thousandths, ranges as merged (begin, end)
        pairs, a set as a frozenset. `to_protos` makes one Resource of each."""
        return [(name, role, self._items[(name, role)]) for name, role in sorted(self._items, key=_sort_key)]

    def to_protos(self) -> list[pb.Resource]:
        """One Resource per (name, role); reserved ones carry a STATIC reservation."""
        out = []
        for name, role, v in self.entries():
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
        # Kept: values are immutable, and memo tables keyed by Resources hash them often.
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

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
