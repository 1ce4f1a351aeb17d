"""Mesos v1 wire shapes: field numbers, RecordIO framing, Mesos' JSON mapping and
the v1 <-> offerd conversion the /api/v1 endpoints are built on."""

import base64
import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerd.common import mesos_json, mesos_v1, recordio
from offerd.common.mesos_json import MesosJsonError
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import mesos_v1_executor_pb2 as v1_executor
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2

# ---------------------------------------------------------------------------
# Golden bytes: a hand-written protobuf encoder fed Mesos' field numbers
# (include/mesos/v1/*.proto), so a wrong number or type in our protos fails.


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vint(number, value):
    return _varint(number << 3 | 0) + _varint(value)


def ld(number, *payload):
    body = b"".join(p if isinstance(p, bytes) else p.encode() for p in payload)
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def dbl(number, value):
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def test_subscribe_call_bytes():
    call = v1_scheduler.Call(type=v1_scheduler.Call.SUBSCRIBE)
    info = call.subscribe.framework_info
    info.user, info.name = "foo", "bar"
    info.roles.append("r")
    info.capabilities.add(type=v1.FrameworkInfo.Capability.MULTI_ROLE)
    call.subscribe.suppressed_roles.append("r")
    # Call.type = 2 (SUBSCRIBE = 1), Call.subscribe = 3, Subscribe.framework_info = 1,
    # suppressed_roles = 2; FrameworkInfo user = 1, name = 2, capabilities = 10
    # (Capability.type = 1, MULTI_ROLE = 7), roles = 12.
    expected = vint(2, 1) + ld(3, ld(1, ld(1, "foo"), ld(2, "bar"), ld(10, vint(1, 6)), ld(12, "r")), ld(2, "r"))
    assert call.SerializeToString() == expected
    assert b"\x10\x01\x1a" == expected[:3]  # also spelled out once by hand
    assert v1_scheduler.Call.FromString(expected) == call


def test_accept_with_launch_bytes():
    call = v1_scheduler.Call(type=v1_scheduler.Call.ACCEPT)
    call.framework_id.value = "f"
    call.accept.offer_ids.add(value="o")
    op = call.accept.operations.add(type=v1.Offer.Operation.LAUNCH)
    task = op.launch.task_infos.add(name="t")
    task.task_id.value = "t1"
    task.agent_id.value = "a"
    task.resources.add(name="cpus", type=v1.Value.SCALAR).scalar.value = 0.5
    task.command.value = "sleep 1"
    call.accept.filters.refuse_seconds = 7.0
    # Call: framework_id = 1, type = 2 (ACCEPT = 3), accept = 4.
    # Accept: offer_ids = 1, operations = 2, filters = 3 (refuse_seconds = 1).
    # Operation: type = 1 (LAUNCH = 1), launch = 2 (task_infos = 1).
    # TaskInfo: name = 1, task_id = 2, agent_id = 3, resources = 4, command = 7.
    # Resource: name = 1, type = 2 (SCALAR = 0), scalar = 3; CommandInfo.value = 3.
    resource = ld(1, "cpus") + vint(2, 0) + ld(3, dbl(1, 0.5))
    task_bytes = ld(1, "t") + ld(2, ld(1, "t1")) + ld(3, ld(1, "a")) + ld(4, resource) + ld(7, ld(3, "sleep 1"))
    operation = vint(1, 1) + ld(2, ld(1, task_bytes))
    accept = ld(1, ld(1, "o")) + ld(2, operation) + ld(3, dbl(1, 7.0))
    expected = ld(1, ld(1, "f")) + vint(2, 3) + ld(4, accept)
    assert call.SerializeToString() == expected


def test_offers_and_update_event_bytes():
    event = v1_scheduler.Event(type=v1_scheduler.Event.OFFERS)
    offer = event.offers.offers.add(hostname="h")
    offer.id.value, offer.framework_id.value, offer.agent_id.value = "o", "f", "a"
    offer.executor_ids.add(value="e")
    # Event: type = 1 (OFFERS = 2), offers = 3 (Offers.offers = 1).
    # Offer: id = 1, framework_id = 2, agent_id = 3, hostname = 4, executor_ids = 6.
    offer_bytes = ld(1, ld(1, "o")) + ld(2, ld(1, "f")) + ld(3, ld(1, "a")) + ld(4, "h") + ld(6, ld(1, "e"))
    assert event.SerializeToString() == vint(1, 2) + ld(3, ld(1, offer_bytes))

    event = v1_scheduler.Event(type=v1_scheduler.Event.UPDATE)
    status = event.update.status
    status.task_id.value = "t"
    status.state = v1.TASK_RUNNING
    status.agent_id.value = "a"
    status.timestamp = 2.5
    status.source = v1.TaskStatus.SOURCE_EXECUTOR
    status.uuid = b"\x01\x02"
    # Event: type = 1 (UPDATE = 4), update = 5 (Update.status = 1). TaskStatus:
    # task_id = 1, state = 2 (TASK_RUNNING = 1), agent_id = 5, timestamp = 6,
    # source = 9 (SOURCE_EXECUTOR = 2), uuid = 11.
    status_bytes = ld(1, ld(1, "t")) + vint(2, 1) + ld(5, ld(1, "a")) + dbl(6, 2.5) + vint(9, 2) + ld(11, b"\x01\x02")
    assert event.SerializeToString() == vint(1, 4) + ld(5, ld(1, status_bytes))


def test_operator_and_executor_numbers():
    # A few numbers the other APIs depend on, from Mesos' master/agent/executor protos.
    assert v1_master.Call.GET_STATE == 9 and v1_master.Call.SUBSCRIBE == 18
    assert v1_agent.Call.LAUNCH_NESTED_CONTAINER_SESSION == 17
    assert v1_agent.Call.ATTACH_CONTAINER_INPUT == 18 and v1_agent.Call.ATTACH_CONTAINER_OUTPUT == 19
    pio = v1_agent.ProcessIO(type=v1_agent.ProcessIO.DATA)
    pio.data.type = v1_agent.ProcessIO.Data.STDOUT
    pio.data.data = b"x"
    assert pio.SerializeToString() == vint(1, 1) + ld(2, vint(1, 2) + ld(2, b"x"))
    call = v1_executor.Call(type=v1_executor.Call.UPDATE)
    call.executor_id.value, call.framework_id.value = "e", "f"
    call.update.status.task_id.value = "t"
    call.update.status.state = v1.TASK_FINISHED
    # executor Call: executor_id = 1, framework_id = 2, type = 3 (UPDATE = 2), update = 5.
    expected = ld(1, ld(1, "e")) + ld(2, ld(1, "f")) + vint(3, 2) + ld(5, ld(1, ld(1, ld(1, "t")) + vint(2, 2)))
    assert call.SerializeToString() == expected


def test_required_fields_are_mesos_own():
    # A v1 Call missing what Mesos requires does not parse, as in Mesos.
    partial = v1_scheduler.Call(type=v1_scheduler.Call.SUBSCRIBE)
    partial.subscribe.SetInParent()
    assert partial.FindInitializationErrors() == ["subscribe.framework_info"]


# ---------------------------------------------------------------------------
# RecordIO


def test_recordio_encode_and_chunked_decode():
    stream = recordio.encode(b"hello") + recordio.encode(b"") + recordio.encode(b"x" * 300)
    assert stream.startswith(b"5\nhello0\n300\n")
    decoder = recordio.Decoder()
    records = []
    for i in range(len(stream)):  # one byte at a time: prefixes cut everywhere
        records += decoder.feed(stream[i : i + 1])
    decoder.finish()
    assert records == [b"hello", b"", b"x" * 300]


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.binary(max_size=200), max_size=8), st.lists(st.integers(1, 50), max_size=20))
def test_recordio_round_trip_any_chunking(records, cuts):
    stream = recordio.encode_all(records)
    decoder = recordio.Decoder(max_record_size=200)
    out, pos = [], 0
    for cut in cuts:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    decoder.finish()
    assert out == records


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"x\nabc", "not a decimal digit"),
        (b"-1\n", "not a decimal digit"),
        (b" 5\nhello", "not a decimal digit"),
        (b"\nhello", "empty prefix"),
        (b"12345678", "longer than"),
        (b"101\n", "exceeds the maximum record size 100"),
    ],
)
def test_recordio_malformed(data, problem):
    decoder = recordio.Decoder(max_record_size=100)
    with pytest.raises(recordio.RecordIOError, match=problem):
        decoder.feed(data)
    assert decoder.failed
    with pytest.raises(recordio.RecordIOError, match="already failed"):
        decoder.feed(b"1\nx")


def test_recordio_truncated_stream():
    with pytest.raises(recordio.RecordIOError, match="inside a record: 2 of 5"):
        recordio.decode_all(b"5\nhe")
    with pytest.raises(recordio.RecordIOError, match="inside a length prefix"):
        recordio.decode_all(b"1\na12")
    assert recordio.decode_all(b"1\na2\nbc") == [b"a", b"bc"]
    with pytest.raises(TypeError):
        recordio.encode("text")


# ---------------------------------------------------------------------------
# Mesos' JSON mapping, with the examples of Mesos' scheduler HTTP API docs
# (mesos.apache.org/documentation/latest/scheduler-http-api/).

DOC_SUBSCRIBE = """{
   "type"\t\t: "SUBSCRIBE",
   "subscribe"\t: {
      "framework_info"\t: {
        "user" :  "foo",
        "name" :  "Example HTTP Framework",
        "roles": ["test1", "test2"],
        "capabilities" : [{"type": "MULTI_ROLE"}]
      },
      "suppressed_roles" : ["test2"],
      "offer_constraints" : {
        "role_constraints": {
          "test1": {
            "groups": [{
              "attribute_constraints": [{
                "selector": {"attribute_name": "foo"},
                "predicate": {"exists": {}}
              }]
            }]
          }
        }
      }
   }
}"""

DOC_ACCEPT = {
    "framework_id": {"value": "12220-3440-12532-2345"},
    "type": "ACCEPT",
    "accept": {
        "offer_ids": [{"value": "12220-3440-12532-O12"}],
        "operations": [{
            "type": "LAUNCH",
            "launch": {"task_infos": [{
                "name": "My Task",
                "task_id": {"value": "12220-3440-12532-my-task"},
                "agent_id": {"value": "12220-3440-12532-S1233"},
                "executor": {
                    "command": {"shell": True, "value": "sleep 1000"},
                    "executor_id": {"value": "12214-23523-my-executor"},
                },
                "resources": [
                    {"allocation_info": {"role": "engineering"}, "name": "cpus", "role": "*",
                     "type": "SCALAR", "scalar": {"value": 1.0}},
                    {"allocation_info": {"role": "engineering"}, "name": "mem", "role": "*",
                     "type": "SCALAR", "scalar": {"value": 128.0}},
                ],
                "limits": {"cpus": "Infinity", "mem": 512.0},
            }]},
        }],
        "filters": {"refuse_seconds": 5.0},
    },
}

DOC_UPDATE = """{
  "type"\t: "UPDATE",
  "update"\t: {
    "status"\t: {
        "task_id"\t: { "value" : "12344-my-task"},
        "state"\t\t: "TASK_RUNNING",
        "source"\t: "SOURCE_EXECUTOR",
        "uuid"\t\t: "adfadfadbhgvjayd23r2uahj",
        "bytes"\t\t: "uhdjfhuagdj63d7hadkf"
      }
  }
}"""


def test_doc_subscribe():
    call, ignored = mesos_json.loads(DOC_SUBSCRIBE, v1_scheduler.Call)
    assert ignored == []
    expected = v1_scheduler.Call(type=v1_scheduler.Call.SUBSCRIBE)
    info = expected.subscribe.framework_info
    info.user, info.name = "foo", "Example HTTP Framework"
    info.roles.extend(["test1", "test2"])
    info.capabilities.add(type=v1.FrameworkInfo.Capability.MULTI_ROLE)
    expected.subscribe.suppressed_roles.append("test2")
    group = expected.subscribe.offer_constraints.role_constraints["test1"].groups.add()
    constraint = group.attribute_constraints.add()
    constraint.selector.attribute_name = "foo"
    constraint.predicate.exists.SetInParent()
    assert call == expected
    assert call.subscribe.offer_constraints.role_constraints["test1"].groups[0] \
        .attribute_constraints[0].predicate.WhichOneof("predicate") == "exists"


def test_doc_accept_limits_need_a_scalar_object():
    # The docs write `"cpus": "Infinity"`, but limits are map<string, Value.Scalar>
    # and Mesos' parser refuses a string for a message; the value goes in {"value": ...}.
    with pytest.raises(MesosJsonError) as e:
        mesos_json.from_json(DOC_ACCEPT, v1_scheduler.Call)
    assert e.value.path == 'accept.operations[0].launch.task_infos[0].limits["cpus"]'
    fixed = json.loads(json.dumps(DOC_ACCEPT))
    fixed["accept"]["operations"][0]["launch"]["task_infos"][0]["limits"] = {
        "cpus": {"value": "Infinity"}, "mem": {"value": 512.0}}
    call, ignored = mesos_json.from_json(fixed, v1_scheduler.Call)
    assert ignored == []
    task = call.accept.operations[0].launch.task_infos[0]
    assert math.isinf(task.limits["cpus"].value) and task.limits["mem"].value == 512.0
    assert task.resources[1].scalar.value == 128.0 and task.executor.command.shell
    assert call.accept.filters.refuse_seconds == 5.0
    out = mesos_json.to_json(call)
    assert out["accept"]["operations"][0]["launch"]["task_infos"][0]["limits"]["cpus"] == {"value": "Infinity"}
    assert mesos_json.from_json(out, v1_scheduler.Call)[0] == call


def test_doc_update_event_ignores_unknown_key_and_reports_it():
    event, ignored = mesos_json.loads(DOC_UPDATE, v1_scheduler.Event)
    assert ignored == ["update.status.bytes"]
    status = event.update.status
    assert status.state == v1.TASK_RUNNING and status.source == v1.TaskStatus.SOURCE_EXECUTOR
    assert status.uuid == base64.b64decode("adfadfadbhgvjayd23r2uahj")
    with pytest.raises(MesosJsonError, match="update.status.bytes"):
        mesos_json.loads(DOC_UPDATE, v1_scheduler.Event, strict=True)


def test_doc_offers_example_is_not_the_proto_shape():
    # The docs' OFFERS example puts the array straight under "offers"; in the
    # proto, Event.offers is an Offers message holding the array.
    doc = {"type": "OFFERS", "offers": [{"id": {"value": "o"}}]}
    with pytest.raises(MesosJsonError, match="'offers': not expecting a JSON array"):
        mesos_json.from_json(doc, v1_scheduler.Event)


def test_json_output_rules():
    call = v1_scheduler.Call(type=v1_scheduler.Call.DECLINE)
    call.framework_id.value = "f"
    call.decline.offer_ids.add(value="o")
    call.decline.filters.SetInParent()
    info = v1.FrameworkInfo(user="u", name="n")
    # Unset fields with an explicit, non-deprecated default are emitted (as Mesos does);
    # the deprecated `role` default ("*") is not; int64/uint64 are numbers; bytes base64.
    assert mesos_json.to_json(call) == {
        "framework_id": {"value": "f"}, "type": "DECLINE",
        "decline": {"offer_ids": [{"value": "o"}], "filters": {"refuse_seconds": 5.0}}}
    assert mesos_json.to_json(info) == {"user": "u", "name": "n", "failover_timeout": 0.0, "checkpoint": False}
    duration = v1.DurationInfo(nanoseconds=2**62)
    assert mesos_json.dumps(duration) == '{"nanoseconds":4611686018427387904}'
    status = v1.TaskStatus(state=v1.TASK_LOST, uuid=b"\xff\x00")
    status.task_id.value = "t"
    assert mesos_json.to_json(status)["uuid"] == "/wA="
    assert list(mesos_json.to_json(status)) == ["task_id", "state", "uuid"]


def test_json_input_rules():
    parse = lambda value, cls=v1.DurationInfo: mesos_json.from_json(value, cls)[0]
    assert parse({"nanoseconds": "9223372036854775807"}).nanoseconds == 2**63 - 1
    assert parse({"nanoseconds": 5.0}).nanoseconds == 5
    assert parse({"refuse_seconds": None}, v1.Filters).HasField("refuse_seconds") is False
    assert parse({"checkpoint": "true", "user": "u", "name": "n"}, v1.FrameworkInfo).checkpoint is True
    assert parse({"roles": "a", "user": "u", "name": "n"}, v1.FrameworkInfo).roles == ["a"]
    assert parse({"refuse_seconds": "2.5"}, v1.Filters).refuse_seconds == 2.5
    caps, ignored = mesos_json.from_json(
        {"user": "u", "name": "n", "capabilities": [{"type": "FUTURE_THING"}, {"type": "MULTI_ROLE"}]},
        v1.FrameworkInfo)
    assert ignored == ["capabilities[0].type=FUTURE_THING"]
    assert [c.HasField("type") for c in caps.capabilities] == [False, True]


@pytest.mark.parametrize(
    "value, cls, path, problem",
    [
        ([], v1.Filters, "", "expecting a JSON object"),
        ({"nanoseconds": 1.5}, v1.DurationInfo, "nanoseconds", "expecting an integer"),
        ({"nanoseconds": 2**63}, v1.DurationInfo, "nanoseconds", "out of range for int64"),
        ({"nanoseconds": "12x"}, v1.DurationInfo, "nanoseconds", "failed to parse '12x'"),
        ({"nanoseconds": True}, v1.DurationInfo, "nanoseconds", "got a boolean"),
        ({"type": "NOPE"}, v1.Value, "type", "unknown enum value 'NOPE'"),
        ({"nanoseconds": None}, v1.DurationInfo, "nanoseconds", "missing required field"),
        ({"value": 3}, v1.TaskID, "value", "expecting a JSON string"),
        ({"task_id": []}, v1.TaskStatus, "task_id", "not expecting a JSON array"),
        ({"task_id": "x"}, v1.TaskStatus, "task_id", "expecting a JSON object"),
        ({"type": "SUBSCRIBE", "subscribe": {}}, v1_scheduler.Call, "subscribe.framework_info", "missing required"),
        ({"data": "!!"}, v1_executor.Call.Message, "data", "base64"),
    ],
)
def test_json_errors_name_the_field(value, cls, path, problem):
    with pytest.raises(MesosJsonError) as e:
        mesos_json.from_json(value, cls)
    assert problem in e.value.problem
    assert e.value.path == path


def test_json_invalid_text():
    with pytest.raises(MesosJsonError, match="invalid JSON"):
        mesos_json.loads(b"{nope", v1_scheduler.Call)


def _sample_offer():
    offer = v1.Offer(hostname="h")
    offer.id.value, offer.framework_id.value, offer.agent_id.value = "o", "f", "a"
    r = offer.resources.add(name="ports", type=v1.Value.RANGES)
    r.ranges.range.add(begin=31000, end=32000)
    r.allocation_info.role = "web"
    offer.attributes.add(name="rack", type=v1.Value.TEXT).text.value = "r1"
    offer.url.scheme = "http"
    offer.url.address.port = 5051
    return offer


def test_json_round_trips():
    offer = _sample_offer()
    for message in (offer, _launch_call(), _update_event()):
        back, ignored = mesos_json.loads(mesos_json.dumps(message), type(message))
        assert ignored == []
        # Parsing sets the emitted defaults explicitly; compare the wire-visible values.
        assert mesos_json.to_json(back) == mesos_json.to_json(message)


# ---------------------------------------------------------------------------
# v1 <-> offerd conversion


def _launch_call():
    call = v1_scheduler.Call(type=v1_scheduler.Call.ACCEPT)
    call.framework_id.value = "f"
    call.accept.offer_ids.add(value="o")
    op = call.accept.operations.add(type=v1.Offer.Operation.LAUNCH)
    task = op.launch.task_infos.add(name="t")
    task.task_id.value, task.agent_id.value = "t1", "a1"
    task.resources.add(name="cpus", type=v1.Value.SCALAR).scalar.value = 0.1
    task.command.value = "sleep 1"
    task.command.environment.variables.add(name="A", value="1")
    task.health_check.type = v1.HealthCheck.HTTP
    task.health_check.http.port = 8080
    task.kill_policy.grace_period.nanoseconds = 3 * 10**9
    task.labels.labels.add(key="k", value="v")
    call.accept.filters.refuse_seconds = 1.0
    return call


def _update_event():
    event = v1_scheduler.Event(type=v1_scheduler.Event.UPDATE)
    status = event.update.status
    status.task_id.value = "t"
    status.state = v1.TASK_UNREACHABLE
    status.reason = v1.TaskStatus.REASON_AGENT_REMOVED
    status.source = v1.TaskStatus.SOURCE_MASTER
    status.agent_id.value = "a"
    status.uuid = b"u" * 16
    status.unreachable_time.nanoseconds = 7
    return event


def test_scheduler_call_round_trip():
    call = _launch_call()
    ours, unsupported = mesos_v1.to_offerd(call, offerd_pb2.Call)
    assert unsupported == []
    task = ours.accept.operations[0].launch.task_infos[0]
    assert ours.type == offerd_pb2.Call.ACCEPT and task.slave_id.value == "a1"
    assert task.health_check.http.port == 8080 and task.kill_policy.grace_period.nanoseconds == 3 * 10**9
    back, unsupported = mesos_v1.to_v1(ours, v1_scheduler.Call)
    assert unsupported == [] and back == call
    assert back.SerializeToString() == call.SerializeToString()


def test_event_and_enum_renames():
    ours, unsupported = mesos_v1.to_offerd(_update_event(), offerd_pb2.Event)
    assert unsupported == []
    status = ours.update.status
    assert status.reason == offerd_pb2.TaskStatus.REASON_SLAVE_REMOVED
    assert status.state == offerd_pb2.TASK_UNREACHABLE and status.slave_id.value == "a"
    back, unsupported = mesos_v1.to_v1(ours, v1_scheduler.Event)
    assert unsupported == [] and back == _update_event()

    event = offerd_pb2.Event(type=offerd_pb2.Event.OFFERS)
    offer = event.offers.offers.add(hostname="h")
    offer.id.value, offer.framework_id.value, offer.slave_id.value = "o", "f", "s"
    event_v1, unsupported = mesos_v1.to_v1(event, v1_scheduler.Event)
    assert unsupported == [] and event_v1.offers.offers[0].agent_id.value == "s"
    assert event_v1.FindInitializationErrors() == []

    sub = offerd_pb2.Event(type=offerd_pb2.Event.SUBSCRIBED)
    sub.subscribed.framework_id.value = "f"
    sub.subscribed.resubscribed = True
    sub.subscribed.master_info.zmq_port = 5
    _, unsupported = mesos_v1.to_v1(sub, v1_scheduler.Event)
    assert unsupported == ["subscribed.master_info.zmq_port", "subscribed.resubscribed"]


def test_unsupported_fields_and_values_are_reported():
    call = _launch_call()
    grow = call.accept.operations.add(type=v1.Offer.Operation.GROW_VOLUME).grow_volume
    grow.volume.name, grow.volume.type = "disk", v1.Value.SCALAR
    grow.addition.name, grow.addition.type = "disk", v1.Value.SCALAR
    reserve = call.accept.operations.add(type=v1.Offer.Operation.RESERVE)
    reserve.reserve.source.add(name="cpus", type=v1.Value.SCALAR).scalar.value = 1
    task = call.accept.operations[0].launch.task_infos[0]
    task.check.type = v1.CheckInfo.COMMAND
    task.limits["cpus"].value = 2
    ours, unsupported = mesos_v1.to_offerd(call, offerd_pb2.Call)
    assert unsupported == [
        "accept.operations[0].launch.task_infos[0].check",
        "accept.operations[0].launch.task_infos[0].limits",
        "accept.operations[1].type=GROW_VOLUME",
        "accept.operations[1].grow_volume",
        "accept.operations[2].reserve.source",
    ]
    assert ours.accept.operations[2].type == offerd_pb2.Offer.Operation.RESERVE

    _, unsupported = mesos_v1.to_offerd(
        v1_scheduler.Call(type=v1_scheduler.Call.RECONCILE_OPERATIONS), offerd_pb2.Call)
    assert unsupported == ["type=RECONCILE_OPERATIONS"]

    # A field number our v1 protos do not know (a newer client's) is reported too.
    call = v1_scheduler.Call.FromString(vint(2, 1) + vint(100, 5))
    assert mesos_v1.to_offerd(call, offerd_pb2.Call)[1] == ["#100"]


def test_executor_call_and_event():
    call = v1_executor.Call(type=v1_executor.Call.SUBSCRIBE)
    call.executor_id.value, call.framework_id.value = "e", "f"
    task = call.subscribe.unacknowledged_tasks.add(name="t")
    task.task_id.value, task.agent_id.value = "t", "a"
    status = call.subscribe.unacknowledged_updates.add().status
    status.state = v1.TASK_RUNNING
    status.task_id.value = "t"
    ours, unsupported = mesos_v1.to_offerd(call, offerd_pb2.ExecutorCall)
    assert unsupported == [] and ours.subscribe.unacknowledged_tasks[0].slave_id.value == "a"
    assert ours.subscribe.unacknowledged_updates[0].state == offerd_pb2.TASK_RUNNING
    assert mesos_v1.to_v1(ours, v1_executor.Call) == (call, [])

    event = offerd_pb2.ExecutorEvent(type=offerd_pb2.ExecutorEvent.SUBSCRIBED)
    event.subscribed.slave_info.hostname = "h"
    event.subscribed.slave_info.id.value = "a"
    event.subscribed.executor_info.executor_id.value = "e"
    event.subscribed.framework_info.user = "u"
    event.subscribed.framework_info.name = "n"
    event.subscribed.container_id.value = "c"
    out, unsupported = mesos_v1.to_v1(event, v1_executor.Event)
    assert unsupported == [] and out.subscribed.agent_info.id.value == "a"
    assert out.subscribed.agent_info.port == 5051 and out.subscribed.container_id.value == "c"
    shutdown, unsupported = mesos_v1.to_v1(
        offerd_pb2.ExecutorEvent(type=offerd_pb2.ExecutorEvent.SHUTDOWN), v1_executor.Event)
    assert unsupported == [] and shutdown.type == v1_executor.Event.SHUTDOWN


def test_common_messages_round_trip():
    info = v1.FrameworkInfo(user="u", name="n", failover_timeout=60, checkpoint=True, roles=["a", "b"])
    info.id.value = "f"
    info.capabilities.add(type=v1.FrameworkInfo.Capability.PARTITION_AWARE)
    agent = v1.AgentInfo(hostname="h", port=5052)
    agent.id.value = "a"
    agent.attributes.add(name="rack", type=v1.Value.SCALAR).scalar.value = 3
    master = v1.MasterInfo(id="m", ip=1, port=5050, hostname="mh", version="1.0")
    for message in (info, agent, master, _sample_offer(), _update_event().update.status,
                    _launch_call().accept.operations[0].launch.task_infos[0]):
        target = mesos_v1.offerd_type_for(type(message))
        assert target is not None, type(message)
        ours, unsupported = mesos_v1.to_offerd(message, target)
        assert unsupported == [], (type(message), unsupported)
        assert mesos_v1.to_v1(ours, type(message)) == (message, [])
    assert mesos_v1.offerd_type_for(v1.AgentInfo) is offerd_pb2.SlaveInfo
    assert mesos_v1.offerd_type_for(v1_scheduler.Call.Accept) is offerd_pb2.Call.Accept
    assert mesos_v1.offerd_type_for(v1_executor.Call.Update) is offerd_pb2.ExecutorCall.Update
    assert mesos_v1.offerd_type_for(v1.CheckInfo) is None
