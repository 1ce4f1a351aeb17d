"""Hypothesis strategies for offerd's ZeroMQ protocol (offerd/proto/offerd.proto,
frames as offerd/common/framing.py lays them out).

Messages are built from the protobuf descriptors, so every field of every call is
reachable: a call's `type` comes with its matching sub-message most of the time,
ids are drawn from the ones the running cluster knows (and some it does not), and
strings and bytes are sometimes empty or huge. Frames then get mutated: truncated,
re-labelled with another type, prefixed wrongly, split into the wrong number of
parts, given an unknown enum value or unknown field, or replaced by random bytes.
"""

from __future__ import annotations

import functools

from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import strategies as st

from offerd.common.framing import AUTH, GOODBYE, HEARTBEAT, MAGIC, PROOF, encode
from offerd.proto import offerd_pb2 as pb

MAX_DEPTH = 4
HUGE = 1 << 20  # a 1 MiB field: well inside the 16 MiB limit, far beyond any sane id

_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def texts(known: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Ids and names: one the cluster knows, a short random one, empty, or huge."""
    choices = [st.text(max_size=12), st.just(""), st.just(HUGE).map(lambda n: "x" * n)]
    if known:
        choices.insert(0, st.sampled_from(known))
    return st.one_of(*choices)


def _scalar(field, known) -> st.SearchStrategy:
    kind = field.type
    if kind == F.TYPE_STRING:
        return texts(known)
    if kind == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), st.just(HUGE).map(lambda n: b"\0" * n))
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(width=32 if kind == F.TYPE_FLOAT else 64)  # NaN and infinities included
    if kind == F.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    low, high = _INT_RANGES[kind]
    return st.one_of(st.integers(-3, 10).filter(lambda n: low <= n <= high), st.integers(low, high))


@functools.lru_cache(maxsize=None)
def message_of(descriptor, known: tuple[str, ...] = (), depth: int = MAX_DEPTH) -> st.SearchStrategy:
    """Any message of `descriptor`'s type, fields set at random, nested `depth` deep."""
    optional = {}
    for field in descriptor.fields:
        if field.type == F.TYPE_GROUP:
            continue
        if field.type == F.TYPE_MESSAGE:
            if depth <= 0:
                continue
            value = st.deferred(lambda f=field: message_of(f.message_type, known, depth - 1))
        else:
            value = _scalar(field, known)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        optional[field.name] = value
    cls = pb.__dict__.get(descriptor.name) if descriptor.containing_type is None else None
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(descriptor, values, cls))


def _build(descriptor, values: dict, cls):
    from google.protobuf import message_factory
    message = (cls or message_factory.GetMessageClass(descriptor))()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.is_repeated:
            if field.type == F.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == F.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def typed_call(cls, known: tuple[str, ...] = ()) -> st.SearchStrategy:
    """A `cls` (Call, SlaveCall, ExecutorCall, ExecutorEvent, ...) whose `type` and
    matching sub-message agree most of the time, as a real peer's would."""
    descriptor = cls.DESCRIPTOR
    types = [v for v in descriptor.enum_types_by_name["Type"].values]

    @st.composite
    def build(draw):
        message = draw(message_of(descriptor, known, depth=1))
        value = draw(st.sampled_from(types))
        message.type = value.number
        body = descriptor.fields_by_name.get(value.name.lower())
        if body is not None and body.type == F.TYPE_MESSAGE and draw(st.integers(0, 4)) > 0:
            getattr(message, body.name).CopyFrom(draw(message_of(body.message_type, known)))
        return message

    return build()


def _varint(number: int) -> bytes:
    out = bytearray()
    number &= (1 << 64) - 1
    while True:
        byte = number & 0x7F
        number >>= 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def unknown_enum(payload: bytes, field_number: int = 1) -> st.SearchStrategy[bytes]:
    """The payload with its `type` (field 1 in every call) set to a value no enum has,
    and sometimes an unknown field appended."""
    return st.tuples(st.integers(14, 2**31 - 1), st.booleans(), st.integers(500, 10_000)).map(
        lambda drawn: payload + _varint(field_number << 3) + _varint(drawn[0])
        + ((_varint(drawn[2] << 3) + _varint(7)) if drawn[1] else b""))


def frames_for(message, accepted_names: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """`message`'s frames, intact or mutated in one of the ways a broken or hostile peer would."""
    frames = encode(message)
    payload = frames[2]
    return st.one_of(
        st.just(frames),
        st.integers(0, max(0, len(payload) - 1)).map(lambda cut: [MAGIC, frames[1], payload[:cut]]),
        unknown_enum(payload).map(lambda body: [MAGIC, frames[1], body]),
        st.sampled_from(accepted_names + [b"offerd.v1.Nope", b"", b"~x"]).map(lambda name: [MAGIC, name, payload]),
        st.binary(max_size=64).map(lambda body: [MAGIC, frames[1], body]),
        st.just([b"offerd/0", frames[1], payload]),
        st.lists(st.binary(max_size=16), max_size=5),
        st.just([MAGIC, frames[1], payload, b"extra"]),
    )


def control_frames() -> st.SearchStrategy[list[bytes]]:
    """Handshake and liveness frames, well- and ill-formed (never ~bye: the fuzzing
    peer stays one connection, so nothing it owns is dropped behind the checks)."""
    return st.one_of(
        st.just([MAGIC, HEARTBEAT]),
        st.just([MAGIC, HEARTBEAT, b"extra", b"more"]),
        st.tuples(texts(), st.binary(max_size=80)).map(lambda t: [MAGIC, AUTH, t[0].encode()[:300], t[1]]),
        st.binary(max_size=64).map(lambda proof: [MAGIC, PROOF, proof]),
        st.just([MAGIC, AUTH]),
        st.just([MAGIC, GOODBYE + b"!"]),
    )


def inputs(cls, known: tuple[str, ...], accepted: list[type]) -> st.SearchStrategy[list[list[bytes]]]:
    """One fuzzing input: a short sequence of frame lists (so wrong order and
    duplicates happen), for an endpoint accepting `accepted` messages."""
    names = [c.DESCRIPTOR.full_name.encode() for c in accepted]
    one = st.one_of(
        typed_call(cls, known).flatmap(lambda message: frames_for(message, names)),
        control_frames(),
    )
    return st.lists(one, min_size=1, max_size=3).flatmap(
        lambda seq: st.sampled_from([seq, seq + seq[-1:]]))  # sometimes the last one twice
