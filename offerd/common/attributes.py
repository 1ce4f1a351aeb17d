"""Agent attributes (--attributes): placement labels such as ``rack:2;zone:us-east-1a``.

Attributes share Mesos' text grammar with resources (``name:value`` items
separated by ';', ranges in ``[..]``, sets in ``{..}``) but have no arithmetic
and may also be text. See mesos.apache.org/documentation/latest/attributes-resources/.
"""

from __future__ import annotations

import math
from typing import Iterable

from offerd.common.value_text import NUMBER, BadValue, check_token, fmt_ranges, parse_compound, split_items
from offerd.proto import offerd_pb2 as pb

__all__ = ["AttributeParseError", "attributes_to_json", "parse_attributes"]


class AttributeParseError(ValueError):
    """Invalid --attributes text."""


def parse_attributes(text: str) -> list[pb.Attribute]:
    """Parse ``rack:2;zone:us-east-1a;r:[1-5];s:{a,b}`` into Attribute protos."""
    out, seen = [], set()
    for item in split_items(text.strip(), AttributeParseError):
        try:
            out.append(_parse_item(item, seen))
        except BadValue as e:
            raise AttributeParseError(f'"{item}": {e}') from None
    return out


def _parse_item(item: str, seen: set[str]) -> pb.Attribute:
    name, colon, value = (s.strip() for s in item.partition(":"))
    if not colon:
        raise BadValue("expected name:value")
    check_token(name)
    if name in seen:
        raise BadValue(f"duplicate attribute {name!r}")
    seen.add(name)
    if not value:
        raise BadValue(f"missing value for {name!r}")
    attr = pb.Attribute(name=name)
    if value[0] in "[{":
        parsed = parse_compound(value)
        if type(parsed) is tuple:
            attr.type = pb.Value.RANGES
            for b, e in parsed:
                attr.ranges.range.add(begin=b, end=e)
        else:
            attr.type = pb.Value.SET
            attr.set.item.extend(sorted(parsed))
    elif NUMBER.fullmatch(value.removeprefix("-")) and math.isfinite(float(value)):
        attr.type, attr.scalar.value = pb.Value.SCALAR, float(value)
    else:
        check_token(value, "text value")
        attr.type, attr.text.value = pb.Value.TEXT, value
    return attr


def attributes_to_json(attrs: Iterable[pb.Attribute]) -> dict:
    """Mesos' /master/state form: ``{"rack": 2.0, "zone": "us-east-1a"}``."""
    out: dict = {}
    for a in attrs:
        if a.type == pb.Value.SCALAR:
            out[a.name] = a.scalar.value
        elif a.type == pb.Value.RANGES:
            out[a.name] = fmt_ranges(((r.begin, r.end) for r in a.ranges.range), ", ")
        elif a.type == pb.Value.SET:
            out[a.name] = "{" + ", ".join(a.set.item) + "}"
        else:
            out[a.name] = a.text.value
    return out
