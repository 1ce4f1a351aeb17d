"""Placement constraints, each a small checker that returns None (fits) or a
reason. A checker sees the offer's field value and the values of the app's
already placed instances.

LIKE and UNLIKE patterns are the user's, and they are matched against every
offer under the core's lock. So they run on RE2 (google-re2), whose time is
linear in the value matched: no pattern, however written, backtracks for
minutes and holds the lock (Python's re takes exponential time on ``(a+)+$``
against ``aaa…b``). RE2 has no backreferences or lookaround; such a pattern is
refused when the app is posted. Patterns are at most MAX_PATTERN characters and
are compiled once (a cache), not per offer."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Callable, Iterable

import re2

UNFULFILLED = "UnfulfilledConstraint"
MAX_PATTERN = 1024
# RE2's memory for one compiled pattern (its default is 8 MiB too); a pattern
# needing more is refused rather than grown.
_PATTERN_MEMORY = 8 << 20


class PatternError(ValueError):
    """A LIKE/UNLIKE pattern that is too long or not valid RE2; the message says which."""


@functools.lru_cache(maxsize=512)
def pattern(text: str):
    """The compiled LIKE/UNLIKE pattern; raises PatternError saying what is wrong."""
    if len(text) > MAX_PATTERN:
        raise PatternError(f"the pattern is {len(text)} characters long; at most {MAX_PATTERN} are allowed")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _PATTERN_MEMORY
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PatternError(f"'{text}' is not a valid regular expression ({reason}); patterns use RE2 syntax, "
                           "without backreferences or lookaround") from None


def _full_match(arg: str, value: str) -> bool | None:
    """Whether `value` matches the whole pattern (as Marathon's Java matches());
    None when the pattern is unusable (an app stored before patterns were checked)."""
    try:
        return pattern(arg).fullmatch(value) is not None
    except PatternError:
        return None


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


def _clip(text: str, most: int = 80) -> str:
    """A value or pattern as shown in a reason ("why is my app waiting?"), cut short."""
    return text if len(text) <= most else text[:most] + f"…({len(text)} characters)"


def _like(value, arg, placed: list) -> str | None:
    if value is None:
        return f"LIKE: attribute missing, !~ {_clip(arg)}"
    matched = _full_match(arg, value)
    if matched is None:
        return f"LIKE: {_clip(arg)} is not a usable pattern"
    return None if matched else f"LIKE: {_clip(value)} !~ {_clip(arg)}"


def _unlike(value, arg, placed: list) -> str | None:
    if value is None:
        return None
    matched = _full_match(arg, value)
    if matched is None:
        return f"UNLIKE: {_clip(arg)} is not a usable pattern"
    return None if not matched else f"UNLIKE: {_clip(value)} ~ {_clip(arg)}"


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
