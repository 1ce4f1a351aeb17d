"""Tests for offerd.common.resources: parsing, conversion, roles and the algebra."""

import json

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from offerd.common.resources import (
    DEFAULT_MIN_ALLOCATABLE,
    ResourceError,
    Resources,
    parse_min_allocatable,
)
from offerd.proto import offerd_pb2 as pb

R = Resources.parse


# ---------------------------------------------------------------------------
# Parsing: good input


def test_parse_mesos_text():
    r = R("cpus:4;mem:2048;ports:[31000-32000,40000-41000];disks:{a,b}")
    assert r.scalar("cpus") == 4.0
    assert r.scalar("mem") == 2048.0
    assert r.ranges("ports") == [(31000, 32000), (40000, 41000)]
    assert r.range_len("ports") == 2002 == r.count_ranges("ports")
    assert r.names() == {"cpus", "mem", "ports", "disks"}
    assert r.roles() == {"*"}


def test_parse_roles_and_default_role():
    r = R("cpus(web):2;cpus:1;mem(a/b):10")
    assert r.scalar("cpus", "web") == 2.0 and r.scalar("cpus", "*") == 1.0
    assert r.scalar("cpus") == 3.0
    assert r.roles() == {"*", "web", "a/b"}
    assert R("cpus:1;mem(*):2", default_role="ops") == R("cpus(ops):1;mem:2")


def test_parse_repeats_add_up_and_ranges_merge():
    assert R("cpus:1;cpus:2.5") == R("cpus:3.5")
    assert R("ports:[1-5];ports:[3-7,9-9];ports:[8-8]").ranges("ports") == [(1, 9)]
    assert R("disks:{a};disks:{b,a}") == R("disks:{a,b}")


def test_parse_tolerates_whitespace_empty_items_and_zeros():
    assert R("  cpus : 1 ; ; mem:2 ;") == R("cpus:1;mem:2")
    assert R("") == Resources.EMPTY and not R("") and R("").is_empty()
    assert R("cpus:0;ports:[];disks:{}").is_empty()
    assert R("ports:[ 1 - 2 , 4-5 ]").ranges("ports") == [(1, 2), (4, 5)]


def test_scalar_rounding_to_three_places():
    assert R("cpus:0.0015").scalar("cpus") == 0.002  # half away from zero
    assert R("cpus:0.0004") == Resources.EMPTY
    assert R("cpus:0.1;cpus:0.2").scalar("cpus") == 0.3  # no float drift
    assert str(R("cpus:1e2;mem:.5")) == "cpus:100;mem:0.5"


def test_parse_json():
    text = json.dumps(
        [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "role": "*"},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 3}]}},
            {"name": "disks", "type": "SET", "set": {"item": ["x"]}, "role": "web"},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 1},
             "reservations": [{"type": "STATIC", "role": "eng"}]},
        ]
    )
    assert R(text) == R("cpus:2;ports:[1-3];disks(web):{x};mem(eng):1")
    assert R('[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]', "ops") == R("cpus(ops):1")


def test_constructor_accepts_text():
    assert Resources("cpus:1") == R("cpus:1") and Resources() == Resources.EMPTY


# ---------------------------------------------------------------------------
# Parsing: every bad case names the bad part


@pytest.mark.parametrize(
    "text, message",
    [
        ("cpus:-1", "\"cpus:-1\": negative scalar value -1 for 'cpus'"),
        ("ports:[3-1]", '"ports:[3-1]": range begin 3 > end 1'),
        ("mem:1;cpus:1;cpus:[1-2]", '"cpus:[1-2]": \'cpus\' must be scalar'),
        ("foo:1;foo:{a}", "\"foo:{a}\": 'foo' is already scalar, cannot also be set"),
        ("ports:5", "\"ports:5\": 'ports' must be ranges"),
        (":1", '":1": empty name'),
        ("cpus(web):", '"cpus(web):": missing value'),
        ("cpus", '"cpus": expected name:value'),
        ("mem:1;cpus:abc", "\"cpus:abc\": bad number 'abc'"),
        ("cpus:1.2.3", "\"cpus:1.2.3\": bad number"),
        ("cpus:1,5", "\"cpus:1,5\": bad number"),
        ("cpus:nan", '"cpus:nan": non-finite'),
        ("cpus:inf", '"cpus:inf": non-finite'),
        ("cpus:-Infinity", '"cpus:-Infinity": non-finite'),
        ("cpus:1e13", '"cpus:1e13": scalar value'),
        ("gpus:0.5", "\"gpus:0.5\": 'gpus' must be a whole number"),
        ("cpus:1;ports:[1-2", '"ports:[1-2": unbalanced brackets'),
        ("ports:1-2];cpus:1", '"ports:1-2]": unbalanced brackets'),
        ("disks:{a,b]", '"disks:{a,b]": unbalanced brackets'),
        ("cpus(web:1", '"cpus(web:1": unbalanced brackets'),
        ("ports:[1-2]x", '"ports:[1-2]x": unexpected text'),
        ("ports:[1-]", "\"ports:[1-]\": bad range '1-'"),
        ("ports:[-1-5]", "\"ports:[-1-5]\": bad range '-1-5'"),
        ("ports:[a-b]", "\"ports:[a-b]\": bad range 'a-b'"),
        ("ports:[1-2,,4-5]", "\"ports:[1-2,,4-5]\": bad range ''"),
        ("ports:[0-18446744073709551616]", "exceeds 18446744073709551615"),
        ("disks:{a,,b}", '"disks:{a,,b}": empty set item'),
        ("cpus():1", '"cpus():1": empty role'),
        ("cpus(.):1", "\"cpus(.):1\": role '.' cannot have '.'"),
        ("cpus(..):1", "\"cpus(..):1\": role '..' cannot have '..'"),
        ("cpus(-x):1", "\"cpus(-x):1\": role '-x' has a component starting with '-'"),
        ("cpus(a/-x):1", "component starting with '-'"),
        ("cpus(a b):1", "\"cpus(a b):1\": invalid character ' ' in role 'a b'"),
        ("cpus(a//b):1", "\"cpus(a//b):1\": role 'a//b' has an empty component"),
        ("cpus(/a):1", "cannot start or end with '/'"),
        ("cpus(a/):1", "cannot start or end with '/'"),
        ("cpus(web)x:1", '"cpus(web)x:1": bad role suffix'),
        ("c pus:1", "\"c pus:1\": invalid character ' ' in name"),
        ("[not json", "invalid JSON resources"),
        ('{"name": "cpus"}', "invalid character"),
        ('[{"name":"cpus","type":"SCALAR","scalar":{"value":-2}}]', "negative scalar value -2.0"),
        ('[{"name":"cpus","type":"SCALAR"}]', "missing scalar value for 'cpus'"),
        ('[{"name":"cpus","scalar":{"value":1}}]', "missing type for 'cpus'"),
        ('[{"name":"cpus","type":"TEXT"}]', "unsupported type TEXT for 'cpus'"),
        ('[{"name":"cpus","typo":1}]', '{"name": "cpus", "typo": 1}: '),
        ('[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]',
         "range begin 5 > end 1"),
        ("[3]", "3: expected a resource object"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ResourceError) as info:
        R(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_default_role():
    with pytest.raises(ResourceError, match="default role '-a'"):
        R("cpus:1", default_role="-a")


# ---------------------------------------------------------------------------
# Text, JSON and protobuf forms


def test_str_order_and_format():
    r = R("zeta:1;ports:[5-6,1-2];disks:{b,a};cpus(web):2;gpus:1;disk:10;mem:1.25;cpus:4")
    assert str(r) == (
        "cpus:4;cpus(web):2;mem:1.25;disk:10;gpus:1;ports:[1-2,5-6];disks:{a,b};zeta:1"
    )
    assert repr(R("cpus:1")) == "Resources('cpus:1')"
    assert str(Resources.EMPTY) == ""


def test_to_json():
    assert R("cpus:4;mem:2048;ports:[31000-32000]").to_json() == {
        "cpus": 4.0, "mem": 2048.0, "disk": 0.0, "gpus": 0.0, "ports": "[31000-32000]"
    }
    j = R("cpus(web):1;cpus:0.5;ports:[1-2,4-4];foo:3;s:{x,y}").to_json()
    assert j["cpus"] == 1.5 and j["foo"] == 3.0
    assert j["ports"] == "[1-2, 4-4]" and j["s"] == "{x, y}"  # Mesos' ", " form


def test_to_protos_marks_reservations():
    protos = R("cpus:1;cpus(web):2;ports:[1-2];s(web):{a}").to_protos()
    assert [(p.name, p.role) for p in protos] == [
        ("cpus", "*"), ("cpus", "web"), ("ports", "*"), ("s", "web")
    ]
    cpus, web, ports, s = protos
    assert cpus.type == pb.Value.SCALAR and cpus.scalar.value == 1.0 and not cpus.reservations
    assert [(x.type, x.role) for x in web.reservations] == [
        (pb.Resource.ReservationInfo.STATIC, "web")
    ]
    assert ports.type == pb.Value.RANGES and [(x.begin, x.end) for x in ports.ranges.range] == [(1, 2)]
    assert s.type == pb.Value.SET and list(s.set.item) == ["a"]


def test_from_protos_role_forms_and_validation():
    def res(**kw):
        return pb.Resource(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=1), **kw)

    info = pb.Resource.ReservationInfo
    assert Resources.from_protos([res()]) == R("cpus:1")
    assert Resources.from_protos([res(role="web")]) == R("cpus(web):1")
    refined = res(reservations=[info(role="eng"), info(role="eng/web")])
    assert Resources.from_protos([refined]) == R("cpus(eng/web):1")
    # What a MULTI_ROLE framework echoes back is accepted.
    echoed = res(allocation_info=pb.Resource.AllocationInfo(role="web"))
    assert Resources.from_protos([echoed]) == R("cpus:1")
    for bad, message in [
        (res(role="a", reservations=[info(role="b")]), "disagrees"),
        (res(reservations=[info(type=info.STATIC)]), "reservation without a role"),
        (res(role=""), "empty role"),
        (pb.Resource(name="", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=1)), "empty name"),
        (pb.Resource(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=float("nan"))),
         "non-finite"),
        (pb.Resource(name="ports", type=pb.Value.RANGES), "missing ranges value"),
        (pb.Resource(name="s", type=pb.Value.SET), "missing set value"),
        (pb.Resource(name="s", type=pb.Value.SET, set=pb.Value.Set(item=["a b"])), "set item"),
    ]:
        with pytest.raises(ResourceError, match=message) as e:
            Resources.from_protos([bad])
        assert str(e.value).startswith("<")  # the offending proto is shown


# ---------------------------------------------------------------------------
# Arithmetic and roles


def test_ranges_merge_subtract_contain():
    a = R("ports:[1-10,20-30]")
    assert (a - R("ports:[3-4,6-6,20-20,30-30]")).ranges("ports") == [
        (1, 2), (5, 5), (7, 10), (21, 29)
    ]
    assert (a - a).is_empty()
    assert a.contains(R("ports:[1-10,25-25]"))
    assert not a.contains(R("ports:[9-11]")) and not a.contains(R("ports:[15-15]"))
    assert R("ports:[1-2]") + R("ports:[3-4]") == R("ports:[1-4]")  # adjacent coalesce
    assert R("ports:[1-5]") + R("ports:[3-7]") == R("ports:[1-7]")  # union, as in Mesos


def test_subtract_errors_name_the_part():
    a = R("cpus:4;mem:10;ports:[1-10]")
    for b, message in [
        ("cpus:5", '"cpus:5": cannot subtract, have "cpus:4"'),
        ("ports:[9-11]", '"ports:[9-11]": cannot subtract, have "ports:[1-10]"'),
        ("gpus:1", '"gpus:1": cannot subtract, have none'),
        ("cpus(web):1", '"cpus(web):1": cannot subtract, have none'),
    ]:
        with pytest.raises(ResourceError) as e:
            a - R(b)
        assert message in str(e.value)


def test_subtract_saturating():
    a = R("cpus:4;ports:[1-10];s:{a,b}")
    got = a.subtract_saturating(R("cpus:5;ports:[9-12];s:{b,c};mem:3;cpus(web):1"))
    assert got == R("ports:[1-8];s:{a}")


def test_add_rejects_kind_conflict():
    with pytest.raises(ResourceError, match="'foo' is scalar here"):
        R("foo:1") + R("foo(web):[1-2]")
    with pytest.raises(ResourceError, match="'foo' is scalar here"):
        R("foo:1") + R("foo:{a}")


def test_role_views():
    r = R("cpus:1;cpus(web):2;cpus(eng):4;cpus(eng/web):8;mem(web):5")
    assert r.unreserved() == R("cpus:1")
    assert r.reserved() == R("cpus(web):2;cpus(eng):4;cpus(eng/web):8;mem(web):5")
    assert r.reserved("web") == R("cpus(web):2;mem(web):5")
    assert r.for_role("web") == R("cpus:1;cpus(web):2;mem(web):5")
    # A reservation for "eng" is usable by its sub-role, but not the other way round.
    assert r.for_role("eng/web") == R("cpus:1;cpus(eng):4;cpus(eng/web):8")
    assert r.for_role("eng") == R("cpus:1;cpus(eng):4")
    assert r.for_role("engineering") == R("cpus:1")
    assert r.with_role("x") == R("cpus(x):15;mem(x):5")
    assert r.with_role("*") == R("cpus:15;mem:5")
    assert r.scalars() == {"cpus": 15.0, "mem": 5.0}
    assert r.scalar("cpus", "nobody") == 0.0 and r.scalar("gpus") == 0.0
    with pytest.raises(ResourceError):
        r.with_role("a b")


def test_ranges_over_roles():
    r = R("ports:[1-5];ports(web):[6-8,20-20]")
    assert r.ranges("ports") == [(1, 8), (20, 20)]
    assert r.ranges("ports", "web") == [(6, 8), (20, 20)]
    assert r.range_len("ports") == 9 and r.range_len("nope") == 0


def test_sum_and_hash():
    parts = [R("cpus:1"), R("cpus:2;mem:1"), R("mem:3")]
    assert sum(parts) == R("cpus:3;mem:4")
    assert hash(R("cpus:1;mem:2")) == hash(R("mem:2;cpus:1"))
    assert R("cpus:1") != "cpus:1"


# ---------------------------------------------------------------------------
# --min_allocatable_resources


def test_min_allocatable():
    mins = parse_min_allocatable(DEFAULT_MIN_ALLOCATABLE)
    assert mins == [R("cpus:0.01"), R("mem:32")]
    assert Resources.parse_min_allocatable("cpus:1;mem:64|gpus:1") == [R("cpus:1;mem:64"), R("gpus:1")]
    assert R("cpus:0.01").meets_minimum(mins)
    assert R("mem:16;cpus(web):0.5").meets_minimum(mins)  # roles are ignored
    assert R("mem:16;cpus(web):0.003;cpus:0.007").meets_minimum(mins)  # summed over roles
    assert not R("mem:31;cpus:0.009").meets_minimum(mins)
    assert not R("cpus:1;mem:32").meets_minimum(parse_min_allocatable("cpus:1;mem:64"))
    assert R("").meets_minimum([])  # no minimum configured
    for bad, message in [
        ("cpus:1|", "alternative 2 is empty"),
        ("cpus(web):1", "must be an unreserved scalar"),
        ("ports:[1-2]", "must be an unreserved scalar"),
        ("cpus:0", "only zero quantities"),
        ("cpus:-1", "negative"),
    ]:
        with pytest.raises(ResourceError, match=message):
            parse_min_allocatable(bad)


# ---------------------------------------------------------------------------
# Building from numbers, and sums of many


def test_from_scalars_equals_parse():
    assert Resources.from_scalars({"cpus": 1.5, "mem": 128, "disk": 0}) == R("cpus:1.5;mem:128")
    assert Resources.from_scalars({"cpus": 0.1, "gpus": 2}, role="eng/web") == R("cpus(eng/web):0.1;gpus(eng/web):2")
    assert Resources.from_scalars({"cpus": 0.0005, "mem": 10**12}) == R("cpus:0.0005;mem:1000000000000")
    assert Resources.from_scalars({"foo": 3}).scalar("foo", "*") == 3.0
    assert Resources.from_scalars({}) == Resources.from_scalars({"cpus": 0.0}) == Resources.EMPTY


@pytest.mark.parametrize(
    "quantities, role, message",
    [
        ({"cpus": -1}, "*", "\"cpus:-1\": negative scalar value -1 for 'cpus'"),
        ({"mem": float("nan")}, "*", "\"mem:nan\": non-finite scalar value nan for 'mem'"),
        ({"mem": float("inf")}, "*", "non-finite scalar value inf"),
        ({"cpus": "1"}, "*", "'cpus' must be a number, not str"),
        ({"cpus": True}, "*", "'cpus' must be a number, not bool"),
        ({"cpus": None}, "*", "'cpus' must be a number, not NoneType"),
        ({"ports": 5}, "*", "'ports' must be ranges, not scalar"),
        ({"gpus": 0.5}, "*", "'gpus' must be a whole number"),
        ({"mem": 10**13}, "*", "exceeds"),
        ({"a b": 1}, "*", "invalid character ' ' in name 'a b'"),
        ({"": 1}, "*", "empty name"),
        ({7: 1}, "*", "resource name 7 is not a string"),
        ({"cpus": 1}, "-web", "role '-web'"),
        ({"cpus": 1}, "", "empty role"),
    ],
)
def test_from_scalars_rejects_what_parse_rejects(quantities, role, message):
    with pytest.raises(ResourceError) as info:
        Resources.from_scalars(quantities, role=role)
    assert message in str(info.value)


def test_from_ranges_equals_parse():
    assert Resources.from_ranges("ports", [(31005, 31010), (31000, 31004), (31020, 31020)]) == \
        R("ports:[31000-31010,31020-31020]")
    assert Resources.from_ranges("ports", ((p, p) for p in (80, 81)), role="web") == R("ports(web):[80-81]")
    assert Resources.from_ranges("ports", []) == Resources.EMPTY
    ports = Resources.from_ranges("ports", [(1, 2)])
    assert Resources.from_scalars({"cpus": 1}) + ports == R("cpus:1;ports:[1-2]")


@pytest.mark.parametrize(
    "name, ranges, message",
    [
        ("ports", [(3, 1)], "range begin 3 > end 1"),
        ("ports", [(1,)], "want a (begin, end) pair"),
        ("ports", 5, "want (begin, end) pairs, not int"),
        ("ports", [(-1, 2)], "bad range bound -1"),
        ("ports", [(1, 2**64)], "bad range bound"),
        ("ports", [(1.5, 2)], "bad range bound 1.5"),
        ("cpus", [(1, 2)], "'cpus' must be scalar, not ranges"),
        ("po rts", [(1, 2)], "invalid character"),
    ],
)
def test_from_ranges_rejects_bad_input(name, ranges, message):
    with pytest.raises(ResourceError) as info:
        Resources.from_ranges(name, ranges)
    assert message in str(info.value)


def test_sum_of_many():
    parts = [R("cpus:0.1;ports:[1-3]"), R("cpus(web):2;ports:[4-5]"), R("cpus:0.2;mem:32;ports:[10-11]")]
    total = Resources.sum_of(parts)
    assert total == parts[0] + parts[1] + parts[2] == R("cpus:0.3;cpus(web):2;mem:32;ports:[1-5,10-11]")
    assert total.to_json() == {"cpus": 2.3, "mem": 32.0, "disk": 0.0, "gpus": 0.0, "ports": "[1-5, 10-11]"}
    assert Resources.sum_of([]) == Resources.EMPTY
    assert Resources.sum_of(R(f"cpus:0.1;ports:[{p}-{p}]") for p in range(1000)) == R("cpus:100;ports:[0-999]")
    assert parts == [R("cpus:0.1;ports:[1-3]"), R("cpus(web):2;ports:[4-5]"), R("cpus:0.2;mem:32;ports:[10-11]")]
    with pytest.raises(ResourceError, match="'x' is scalar here"):
        Resources.sum_of([R("x:1"), R("x(web):[1-2]")])


# ---------------------------------------------------------------------------
# Properties of the algebra

ROLES = ["*", "web", "a/b"]
SCALAR_NAMES = ["cpus", "mem", "gpus", "foo"]


def _role(role):
    return "" if role == "*" else f"({role})"


def _millis(m):
    return f"{m // 1000}.{m % 1000:03d}"


@st.composite
def groups(draw, n):
    """n Resources (built through the text parser) whose ranges and set items
    are pairwise disjoint; scalars are unconstrained."""
    texts = [[] for _ in range(n)]

    def give(name, value):  # to one of the n texts, or to none
        owner, role = draw(st.integers(0, n)), draw(st.sampled_from(ROLES))
        if owner < n:
            texts[owner].append(f"{name}{_role(role)}:{value}")

    for text in texts:
        for name in draw(st.lists(st.sampled_from(SCALAR_NAMES), max_size=4)):
            m = draw(st.integers(0, 10**8))
            role = _role(draw(st.sampled_from(ROLES)))
            text.append(f"{name}{role}:{_millis(m - m % 1000 if name == 'gpus' else m)}")
    # Cut ports 0-300 into segments and hand each out (adjacent ones may merge).
    bounds = [0, *sorted(draw(st.sets(st.integers(1, 300), max_size=10))), 301]
    for lo, hi in zip(bounds, bounds[1:]):
        give("ports", f"[{lo}-{hi - 1}]")
    for item in draw(st.sets(st.sampled_from("abcdefgh"), max_size=5)):
        give("disks", f"{{{item}}}")
    return [R(";".join(t)) for t in texts]


one = groups(1).map(lambda g: g[0])
pairs = groups(2)
triples = groups(3)
PROPS = settings(max_examples=200, deadline=None)


@PROPS
@given(pairs)
def test_add_then_subtract_is_identity(ab):
    a, b = ab
    assert (a + b) - b == a
    assert (a + b) - a == b


@PROPS
@given(st.tuples(one, one))
def test_add_commutes_and_contains_operands(ab):
    a, b = ab  # independent: ranges and sets may overlap
    assert a + b == b + a
    assert (a + b).contains(a) and (a + b).contains(b)
    assert a.contains(a) and a.contains(Resources.EMPTY)
    assert a + Resources.EMPTY == a


@PROPS
@given(st.tuples(one, one, one))
def test_add_is_associative(abc):
    a, b, c = abc
    assert (a + b) + c == a + (b + c)


@PROPS
@given(st.tuples(one, one))
def test_subtract_iff_contained(ab):
    a, b = ab
    if a.contains(b):
        rest = a - b
        assert a.contains(rest)
        assert rest + b == a
        assert a.subtract_saturating(b) == rest
    else:
        with pytest.raises(ResourceError):
            a - b
        assert a.contains(a.subtract_saturating(b))


@PROPS
@given(pairs)
def test_subtracting_more_than_present_raises(ab):
    a, b = ab
    if b:
        with pytest.raises(ResourceError):
            a - (a + b)


@PROPS
@given(triples)
def test_contains_is_monotone(abc):
    a, b, c = abc
    assert (a + b + c).contains(a + c)
    assert (a + b).contains(b - Resources.EMPTY)


@PROPS
@given(one)
def test_text_json_and_proto_round_trips(a):
    assert R(str(a)) == a
    assert Resources.from_protos(a.to_protos()) == a
    as_json = json.dumps([json_format.MessageToDict(p) for p in a.to_protos()])
    assert R(as_json) == a
    assert a.with_role("web").with_role("*") == a.with_role("*")
    assert a.for_role("web") + a.reserved("a/b") == a
    assert a.unreserved() + a.reserved() == a


@PROPS
@given(st.floats(0, 1e6, allow_nan=False), st.floats(0, 1e6, allow_nan=False))
def test_scalar_input_is_fixed_point(x, y):
    a = Resources.from_protos(
        [pb.Resource(name="mem", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=x))]
    )
    b = R(f"mem:{y!r}")
    assert R(str(a)) == a
    assert abs(a.scalar("mem") - x) <= 0.0005 + 1e-9
    assert (a + b) - b == a


@PROPS
@given(triples)
def test_sum_of_is_repeated_addition(abc):
    a, b, c = abc
    assert Resources.sum_of([a, b, c]) == a + b + c
    assert Resources.sum_of([a, b, c]).to_json() == (a + b + c).to_json()


@PROPS
@given(st.dictionaries(st.sampled_from(SCALAR_NAMES), st.floats(0, 1e6, allow_nan=False)),
       st.sampled_from(ROLES))
def test_from_scalars_is_parse_of_the_same_numbers(quantities, role):
    quantities = {n: float(round(v)) if n == "gpus" else v for n, v in quantities.items()}
    text = ";".join(f"{n}{_role(role)}:{v!r}" for n, v in quantities.items())
    assert Resources.from_scalars(quantities, role) == R(text)
