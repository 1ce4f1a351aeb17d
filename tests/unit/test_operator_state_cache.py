"""The v1 operator state's direct encoders (offerd/master/operator_state_cache.py)
give exactly what the generic road gives (offerd Task -> v1 Task message ->
Mesos' JSON mapping / protobuf encoding), and answers after a change show it."""

from __future__ import annotations

import types

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from offerd.common.mesos_json import to_json
from offerd.common.mesos_v1 import to_v1
from offerd.common.resources import Resources
from offerd.master import operator_api_state as oas
from offerd.master import operator_state_cache as fast
from offerd.master.state import Framework, MasterState, Offer, Slave, Task
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import offerd_pb2 as pb

STATES = [v.number for v in v1.TaskState.DESCRIPTOR.values]
TEXT = st.text(min_size=0, max_size=12)
IDS = st.text(min_size=1, max_size=150)  # past 127 bytes: two-byte lengths

RESOURCES = st.sampled_from([
    "", "cpus:0.1;mem:32", "cpus(web):0.5;mem:32;disk:0.001", "ports:[31000-31005,31010-31010]",
    "zones:{a,b};cpus:2", "gpus:1;mem(ops):1024;ports(ops):[1-2]",
]).map(Resources.parse)

TIMESTAMPS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 2**40))
STATUS = st.one_of(
    st.tuples(st.sampled_from(STATES), TIMESTAMPS),
    st.tuples(st.sampled_from(STATES), TIMESTAMPS, st.one_of(st.none(), st.booleans())))


@st.composite
def tasks(draw):
    labels = None
    if draw(st.booleans()):
        labels = pb.Labels()
        for key, value in draw(st.lists(st.tuples(TEXT, st.one_of(st.none(), TEXT)), max_size=3)):
            label = labels.labels.add(key=key)
            if value is not None:
                label.value = value
    task = Task(draw(IDS), draw(IDS), draw(IDS), draw(st.one_of(st.just(""), IDS)), draw(TEXT),
                draw(RESOURCES), state=draw(st.sampled_from(STATES)), labels=labels,
                user=draw(st.one_of(st.none(), st.just(""), TEXT)))
    task.statuses = draw(st.lists(STATUS, max_size=4))
    task.status_update_state = draw(st.one_of(st.none(), st.sampled_from(STATES)))
    task.status_update_uuid = draw(st.one_of(st.none(), st.just(b""), st.binary(max_size=20)))
    return task


@settings(max_examples=300, deadline=None)
@given(tasks(), st.one_of(st.just("*"), st.sampled_from(["web", "ops/dev"])))
def test_task_json_and_encoding_equal_the_generic_road(task, role):
    view = fast.TaskView(task)
    message = oas._task(task, role)
    assert fast.task_json(view, role) == to_json(message)
    # the same text too (key order), as the answer is written with orjson
    assert orjson.dumps(fast.task_json(view, role)) == orjson.dumps(to_json(message))
    assert fast.task_wire(view, role) == message.SerializeToString()
    assert oas.TaskEntry(view, role).message == message


ROLES = st.sampled_from(["*", "web", "eng/backend", "a.b-c_d"])


@st.composite
def any_resources(draw):
    """Random values of every kind: scalars down to 0.001, ranges from 0 to past 2**63, sets."""
    text = []
    for name in draw(st.lists(st.sampled_from(["cpus", "mem", "disk", "gpus", "ports", "zz", "bandwidth"]),
                              max_size=5, unique=True)):
        role = draw(ROLES)
        kind = {"ports": "ranges", "zz": "set"}.get(name, "scalar")
        if kind == "scalar":
            value = str(draw(st.integers(1, 10**6))) if name == "gpus" else str(draw(st.integers(1, 10**9)) / 1000)
        elif kind == "ranges":
            bounds = sorted(draw(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=6, unique=True)))
            value = "[" + ",".join(f"{b}-{e}" for b, e in zip(bounds[::2], bounds[1::2])) + "]" \
                if len(bounds) >= 2 else "[0-0]"
        else:
            value = "{" + ",".join(draw(st.lists(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), min_size=1,
                                                 max_size=4, unique=True))) + "}"
        text.append(f"{name}({role}):{value}" if role != "*" else f"{name}:{value}")
    return Resources.parse(";".join(text))


@settings(max_examples=200, deadline=None)
@given(st.one_of(RESOURCES, any_resources()), st.one_of(st.none(), st.just("web"), st.just("eng/x")))
def test_resources_equal_the_generic_road(resources, role):
    generic = []
    for proto in resources.to_protos():
        message, unsupported = to_v1(proto, v1.Resource)
        assert not unsupported
        if role is not None:
            message.allocation_info.role = role
        generic.append(message)
    assert fast.resource_messages(resources, role) == generic
    assert fast.resources_json(resources, role) == [to_json(m) for m in generic]
    assert orjson.dumps(fast.resources_json(resources, role)) == orjson.dumps([to_json(m) for m in generic])
    assert fast.resources_wire(resources, role) == [m.SerializeToString() for m in generic]


def _master(slaves=3, tasks=7, now=1.7e9):
    state = MasterState(10)
    for i in range(slaves):
        info = pb.SlaveInfo(hostname=f"host-{i}", port=5051 + i)
        info.id.value = f"S{i}"
        info.attributes.add(name="rack", type=pb.Value.TEXT).text.value = f"r{i % 2}"
        total = Resources.parse("cpus:16;mem:65536;ports:[31000-32000]")
        info.resources.extend(total.to_protos())
        slave = Slave(f"S{i}", info, total, b"peer", "1.0", now)
        if i == 1:
            slave.active = False
            slave.reregistered_time = now + 5
        state.slaves[slave.slave_id] = slave
    framework = Framework("F1", pb.FrameworkInfo(name="f", user="u"), ("web",), 10, now)
    framework.active = framework.connected = True
    state.frameworks["F1"] = framework
    slaves = list(state.slaves.values())
    for t in range(tasks):
        slave = slaves[t % len(slaves)]
        task = Task(f"t{t}", "F1", slave.slave_id, "e1" if t % 2 else "", f"task {t}",
                    Resources.parse("cpus:0.1;mem:32"), state=pb.TASK_RUNNING)
        task.statuses = [(pb.TASK_STARTING, now + t), (pb.TASK_RUNNING, now + t + 0.5, True)]
        task.status_update_state, task.status_update_uuid = pb.TASK_RUNNING, b"u%d" % t
        framework.tasks[task.task_id] = task
        slave.tasks[("F1", task.task_id)] = task
    offer = Offer("O1", "F1", "S0", "web", Resources.parse("cpus:1;mem:128"), now)
    slaves[0].offers["O1"] = framework.offers["O1"] = offer
    return types.SimpleNamespace(state=state)


def _answers(master):
    visible = oas.Visible(oas.build(master), None)
    state = visible.get_state()
    generic = v1_master.Response(type=v1_master.Response.GET_STATE, get_state=state)
    return visible, state, generic


def test_state_answers_equal_the_generic_road():
    visible, state, generic = _answers(_master())
    assert orjson.dumps(visible.get_state_json()) == orjson.dumps(to_json(state))
    assert oas.response_wire("GET_STATE", visible.get_state_wire()) == generic.SerializeToString()
    tasks = v1_master.Response(type=v1_master.Response.GET_TASKS, get_tasks=visible.get_tasks())
    assert oas.response_wire("GET_TASKS", visible.get_tasks_wire()) == tasks.SerializeToString()
    assert [orjson.dumps(a.json()) for a in visible.all.agents] == \
        [orjson.dumps(to_json(a.message)) for a in visible.all.agents]


def test_answers_after_a_change_show_it():
    master = _master()
    first, _, _ = _answers(master)
    before_json, before_wire = first.get_state_json(), first.get_state_wire()
    framework = master.state.frameworks["F1"]
    task = framework.tasks["t3"]
    task.state = pb.TASK_FINISHED
    task.statuses.append((pb.TASK_FINISHED, 1.8e9))
    task.status_update_state = pb.TASK_FINISHED
    del framework.tasks["t3"]
    del master.state.slaves[task.slave_id].tasks[("F1", "t3")]
    framework.add_completed(task)
    slave = master.state.slaves["S2"]
    slave.info.hostname = "renamed"   # reregistration updates the info in place
    second, state, generic = _answers(master)
    now_json = second.get_state_json()
    assert orjson.dumps(now_json) == orjson.dumps(to_json(state))
    assert oas.response_wire("GET_STATE", second.get_state_wire()) == generic.SerializeToString()
    finished = [t for t in now_json["get_tasks"]["completed_tasks"] if t["task_id"]["value"] == "t3"]
    assert finished and finished[0]["state"] == "TASK_FINISHED"
    assert finished[0]["statuses"][-1]["state"] == "TASK_FINISHED"
    assert all(t["task_id"]["value"] != "t3" for t in now_json["get_tasks"]["tasks"])
    hosts = {a["agent_info"]["id"]["value"]: a["agent_info"]["hostname"] for a in now_json["get_agents"]["agents"]}
    assert hosts["S2"] == "renamed"
    # the first answer was not changed under its readers
    assert any(t["task_id"]["value"] == "t3" for t in before_json["get_tasks"]["tasks"])
    assert first.get_state_wire() == before_wire
    # an unchanged task's kept JSON is reused, a changed one's is not
    kept = {k: e.json() for k, e in first.all.tasks}
    again = {k: e.json() for k, e in second.all.tasks}
    assert again[("F1", "t0")] is kept[("F1", "t0")]


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), TEXT), st.one_of(st.none(), st.integers(0, 65535)), RESOURCES,
       st.lists(st.tuples(TEXT, TEXT), max_size=2), st.one_of(st.none(), TEXT))
def test_agent_info_equals_the_generic_road(hostname, port, resources, attributes, ip):
    info = pb.SlaveInfo()
    if hostname is not None:
        info.hostname = hostname
    if port is not None:
        info.port = port
    info.resources.extend(resources.to_protos())
    for name, text in attributes:
        info.attributes.add(name=name or "a", type=pb.Value.TEXT).text.value = text
    if ip is not None:
        info.ip = ip
    generic, _ = to_v1(info, v1.AgentInfo)
    generic.id.value = "S9"
    entry = oas.AgentInfoEntry("S9", info.SerializeToString(deterministic=True))
    assert orjson.dumps(entry.json()) == orjson.dumps(to_json(generic))
    assert entry.message.SerializePartialToString() == generic.SerializePartialToString()
