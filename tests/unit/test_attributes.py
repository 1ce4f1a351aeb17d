"""Tests for offerd.common.attributes: --attributes text and its /state JSON."""

import pytest

from offerd.common.attributes import AttributeParseError, attributes_to_json, parse_attributes
from offerd.proto import offerd_pb2 as pb


def test_parse_attributes():
    attrs = parse_attributes("rack:2;zone:us-east-1a;ssd:true;r:[1-5,7-9];s:{b,a};t:-1.5")
    by_name = {a.name: a for a in attrs}
    assert [a.name for a in attrs] == ["rack", "zone", "ssd", "r", "s", "t"]
    assert by_name["rack"].type == pb.Value.SCALAR and by_name["rack"].scalar.value == 2.0
    assert by_name["zone"].type == pb.Value.TEXT and by_name["zone"].text.value == "us-east-1a"
    assert by_name["r"].type == pb.Value.RANGES
    assert by_name["s"].type == pb.Value.SET and list(by_name["s"].set.item) == ["a", "b"]
    assert attributes_to_json(attrs) == {
        "rack": 2.0, "zone": "us-east-1a", "ssd": "true", "r": "[1-5, 7-9]",
        "s": "{a, b}", "t": -1.5,
    }
    assert parse_attributes("") == [] and parse_attributes(" a:1 ; ") != []


@pytest.mark.parametrize(
    "text, message",
    [
        ("rack", '"rack": expected name:value'),
        (":x", '":x": empty name'),
        ("rack:", "\"rack:\": missing value for 'rack'"),
        ("rack:1;rack:2", "\"rack:2\": duplicate attribute 'rack'"),
        ("r:[3-1]", '"r:[3-1]": range begin 3 > end 1'),
        ("r:[1-2", '"r:[1-2": unbalanced brackets'),
        ("zone:us east", "\"zone:us east\": invalid character ' '"),
        ("zone:a:b", "invalid character ':'"),
        ("s:{a,}", '"s:{a,}": empty set item'),
    ],
)
def test_parse_attribute_errors(text, message):
    with pytest.raises(AttributeParseError) as info:
        parse_attributes(text)
    assert message in str(info.value)
