"""Placement constraints, each a small checker that returns None (fits) or a
reason. A checker sees the offer's field value and the values of the app's
already placed instances."""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable

UNFULFILLED = "UnfulfilledConstraint"


def field_value(field: str, hostname: str, attributes: dict) -> str | None:
    """The value of a constraint field on an offer (or where an instance runs)."""
    if field in ("hostname", "@hostname"):
        return hostname
    name = field.lstrip("@")
    value = attributes.get(name)
    return None if value is None else str(value)


def _unique(value, arg, placed: list) -> str | None:
    return None if value is not None and value not in placed else f"UNIQUE: {value} already used"


def _cluster(value, arg, placed: list) -> str | None:
    want = arg if arg else (placed[0] if placed else value)
    return None if value is not None and value == want else f"CLUSTER: {value} is not {want}"


def _group_by(value, arg, placed: list) -> str | None:
    if value is None:
        return "GROUP_BY: attribute missing"
    counts = Counter(placed)
    if arg and value not in counts and len(counts) < int(arg):
        return None  # a group not used yet, and more groups are expected
    if arg and len(counts) < int(arg):
        return f"GROUP_BY: waiting for an offer from another of {arg} groups"
    counts.setdefault(value, 0)
    # Spread evenly: only a value with the fewest instances may take the next one.
    return None if counts[value] <= min(counts.values()) else f"GROUP_BY: {value} has more instances"


def _like(value, arg, placed: list) -> str | None:
    return None if value is not None and re.fullmatch(arg, value) else f"LIKE: {value} !~ {arg}"


def _unlike(value, arg, placed: list) -> str | None:
    return None if value is None or not re.fullmatch(arg, value) else f"UNLIKE: {value} ~ {arg}"


def _max_per(value, arg, placed: list) -> str | None:
    if value is None:
        return "MAX_PER: attribute missing"
    return None if placed.count(value) < int(arg) else f"MAX_PER: {value} has {arg}"


def _is(value, arg, placed: list) -> str | None:
    return None if value == arg else f"IS: {value} is not {arg}"


CHECKERS: dict[str, Callable] = {
    "UNIQUE": _unique, "CLUSTER": _cluster, "GROUP_BY": _group_by, "LIKE": _like,
    "UNLIKE": _unlike, "MAX_PER": _max_per, "IS": _is,
}


def check(constraints: Iterable[list], hostname: str, attributes: dict,
          placed: list[tuple[str, dict]]) -> str | None:
    """The first unmet constraint's explanation, or None when the offer fits.

    `placed` holds (hostname, attributes) of the app's active instances."""
    for constraint in constraints:
        field, operator = constraint[0], constraint[1].upper()
        arg = constraint[2] if len(constraint) > 2 else None
        value = field_value(field, hostname, attributes)
        others = [field_value(field, h, a) for h, a in placed]
        reason = CHECKERS[operator](value, arg, others)
        if reason:
            return reason
    return None
