"""The master's pure validate_* functions, against hand-built records."""

import math

import pytest

from offerd.common.resources import Resources
from offerd.master.state import ExecutorRecord, Framework, Offer, Slave, Task
from offerd.master.validation import (
    DEFAULT_REFUSE_SECONDS,
    MAX_REFUSE_SECONDS,
    framework_roles,
    refuse_seconds,
    task_resources,
    validate_acknowledge,
    validate_fit,
    validate_framework_info,
    validate_id,
    validate_offers,
    validate_role,
    validate_slave_info,
    validate_task,
    validate_task_resources,
)
from offerd.proto import offerd_pb2 as pb

R = Resources.parse


def framework(fid="f1", partition_aware=False):
    info = pb.FrameworkInfo(name="fw", id=pb.FrameworkID(value=fid))
    if partition_aware:
        info.capabilities.add(type=pb.FrameworkInfo.Capability.PARTITION_AWARE)
    return Framework(fid, info, ("*",), max_completed=10, now=0.0)


def slave(sid="s1", connected=True):
    info = pb.SlaveInfo(hostname="h", port=5051, resources=R("cpus:4;mem:1024").to_protos())
    s = Slave(sid, info, R("cpus:4;mem:1024"), b"peer", "v", 0.0)
    s.connected = connected
    return s


def offer(oid, fid="f1", sid="s1", role="*", resources="cpus:1;mem:128"):
    return Offer(oid, fid, sid, role, R(resources), 0.0)


def cmd_task(tid="t1", resources="cpus:1;mem:128", **fields):
    return pb.TaskInfo(task_id=pb.TaskID(value=tid), command=pb.CommandInfo(value="true"),
                       resources=R(resources).to_protos(), **fields)


def exec_info(eid="e1", command="run"):
    return pb.ExecutorInfo(executor_id=pb.ExecutorID(value=eid), command=pb.CommandInfo(value=command))


def check(task, fw=None, launched=(), executors=None, new_executors=None, slave_id="s1"):
    return validate_task(task, slave_id=slave_id, framework=fw or framework(), launched_ids=set(launched),
                         executors=executors or {}, new_executors=new_executors or {})


# -- ids, roles, framework info -----------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("ok-1_2.3", None), ("", "must not be empty"), (".", "not allowed"), ("..", "not allowed"),
    ("a/b", "invalid character"), ("a b", "invalid character"), ("a\x00", "invalid character"),
])
def test_validate_id(value, expected):
    error = validate_id(value, "Task ID")
    assert error is None if expected is None else expected in error


@pytest.mark.parametrize("role, ok", [("*", True), ("web", True), ("eng/web", True), ("", False),
                                      ("a b", False), ("-x", False), ("..", False), ("/a", False)])
def test_validate_role(role, ok):
    assert (validate_role(role) is None) == ok


def test_framework_roles_prefers_roles_over_role():
    assert framework_roles(pb.FrameworkInfo(name="x")) == ("*",)
    assert framework_roles(pb.FrameworkInfo(name="x", role="web")) == ("web",)
    assert framework_roles(pb.FrameworkInfo(name="x", roles=["a", "b"])) == ("a", "b")


@pytest.mark.parametrize("info, expected", [
    (pb.FrameworkInfo(name="ok", user=""), None),
    (pb.FrameworkInfo(user="u"), "name is required"),
    (pb.FrameworkInfo(name="x", roles=["a", "a"]), "duplicates"),
    (pb.FrameworkInfo(name="x", roles=["a b"]), "invalid role"),
    (pb.FrameworkInfo(name="x", role="a", roles=["a"]), "must not be set together"),
    (pb.FrameworkInfo(name="x", failover_timeout=-1), "failover_timeout"),
    (pb.FrameworkInfo(name="x", failover_timeout=math.nan), "failover_timeout"),
    (pb.FrameworkInfo(name="x", failover_timeout=math.inf), "failover_timeout"),
    (pb.FrameworkInfo(name="x", id=pb.FrameworkID(value="a/b")), "invalid character"),
])
def test_validate_framework_info(info, expected):
    error = validate_framework_info(info)
    assert error is None if expected is None else expected in error


def test_validate_slave_info():
    good = pb.SlaveInfo(hostname="h", port=5051, resources=R("cpus:1").to_protos())
    assert validate_slave_info(good) is None
    assert "hostname" in validate_slave_info(pb.SlaveInfo(port=5051))
    assert "port" in validate_slave_info(pb.SlaveInfo(hostname="h", port=0))
    bad = pb.SlaveInfo(hostname="h", resources=[pb.Resource(name="cpus", type=pb.Value.SCALAR,
                                                             scalar=pb.Value.Scalar(value=-2))])
    assert "invalid resources" in validate_slave_info(bad)


# -- offers -------------------------------------------------------------------------------------


def test_validate_offers_accepts_offers_of_one_slave_and_role():
    offers = {"o1": offer("o1"), "o2": offer("o2")}
    assert validate_offers(["o1", "o2"], "f1", offers, {"s1": slave()}) is None


@pytest.mark.parametrize("ids, offers, slaves, expected", [
    ([], {}, {}, "No offers specified"),
    (["o1"], {}, {}, "Offer o1 is no longer valid"),
    (["o1", "o1"], {"o1": offer("o1")}, {"s1": slave()}, "more than once"),
    (["o1"], {"o1": offer("o1", fid="f2")}, {"s1": slave()}, "belongs to another framework"),
    (["o1", "o2"], {"o1": offer("o1"), "o2": offer("o2", sid="s2")}, {"s1": slave(), "s2": slave("s2")},
     "must belong to one slave"),
    (["o1", "o2"], {"o1": offer("o1"), "o2": offer("o2", role="web")}, {"s1": slave()},
     "must be allocated to one role"),
    (["o1"], {"o1": offer("o1")}, {}, "no longer connected"),
    (["o1"], {"o1": offer("o1")}, {"s1": slave(connected=False)}, "no longer connected"),
])
def test_validate_offers_errors(ids, offers, slaves, expected):
    assert expected in validate_offers(ids, "f1", offers, slaves)


# -- tasks ----------------------------------------------------------------------------------------


def test_a_plain_command_task_is_valid():
    assert check(cmd_task()) is None


def test_duplicate_task_ids():
    assert "duplicate ID: t1" in check(cmd_task(), launched={"t1"})
    fw = framework()
    fw.tasks["t1"] = Task("t1", "f1", "s1", "", "t1", R("cpus:1"))
    assert "duplicate ID" in check(cmd_task(), fw=fw)
    fw = framework()
    fw.add_completed(Task("t1", "f1", "s1", "", "t1", R("cpus:1"), state=pb.TASK_FINISHED))
    assert "duplicate ID" in check(cmd_task(), fw=fw)


def test_command_xor_executor():
    both = cmd_task(executor=exec_info())
    neither = pb.TaskInfo(task_id=pb.TaskID(value="t"), resources=R("cpus:1").to_protos())
    for task in (both, neither):
        assert "at least one (but not both)" in check(task)


def test_shell_command_needs_a_value():
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), command=pb.CommandInfo(), resources=R("cpus:1").to_protos())
    assert "shell command" in check(task)


def test_task_for_another_slave():
    assert "invalid slave" in check(cmd_task(slave_id=pb.SlaveID(value="s9")))


def test_executor_must_match_the_running_one():
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), executor=exec_info(command="other"),
                       resources=R("cpus:1").to_protos())
    running = {"e1": ExecutorRecord(exec_info(), R("cpus:0.1"))}
    assert "not compatible" in check(task, executors=running)
    assert "not compatible" in check(task, new_executors={"e1": exec_info()})
    same = pb.TaskInfo(task_id=pb.TaskID(value="t"), executor=exec_info(), resources=R("cpus:1").to_protos())
    same.executor.framework_id.value = "f1"  # filled in by the master: not a difference
    assert check(same, executors=running) is None


def test_executor_framework_id_and_command():
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), executor=exec_info(), resources=R("cpus:1").to_protos())
    task.executor.framework_id.value = "other"
    assert "invalid FrameworkID" in check(task)
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), executor=pb.ExecutorInfo(
        executor_id=pb.ExecutorID(value="e")), resources=R("cpus:1").to_protos())
    assert "has no command" in check(task)


def test_negative_kill_grace_period():
    task = cmd_task(kill_policy=pb.KillPolicy(grace_period=pb.DurationInfo(nanoseconds=-1)))
    assert "negative grace period" in check(task)


# -- resources ------------------------------------------------------------------------------------


def scalar_task(value, name="cpus"):
    return pb.TaskInfo(task_id=pb.TaskID(value="t"), command=pb.CommandInfo(value="x"),
                       resources=[pb.Resource(name=name, type=pb.Value.SCALAR,
                                              scalar=pb.Value.Scalar(value=value))])


@pytest.mark.parametrize("value, expected", [(-1.0, "negative"), (math.nan, "non-finite"),
                                             (math.inf, "non-finite")])
def test_bad_scalars(value, expected):
    error = validate_task_resources(scalar_task(value), new_executor=False)
    assert "invalid resources" in error and expected in error


def test_no_resources_at_all():
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), command=pb.CommandInfo(value="x"))
    assert "use no resources" in validate_task_resources(task, new_executor=False)


def test_new_executor_resources_count():
    task = pb.TaskInfo(task_id=pb.TaskID(value="t"), executor=exec_info(), resources=R("cpus:1").to_protos())
    task.executor.resources.extend(R("cpus:0.5;mem:32").to_protos())
    assert task_resources(task, new_executor=True) == (R("cpus:1"), R("cpus:0.5;mem:32"))
    assert task_resources(task, new_executor=False) == (R("cpus:1"), Resources.EMPTY)


def test_validate_fit():
    assert validate_fit(R("cpus:1;mem:128"), R("cpus:2;mem:256")) is None
    assert "more resources" in validate_fit(R("cpus:3"), R("cpus:2;mem:256"))
    assert "more resources" in validate_fit(R("cpus(web):1"), R("cpus:2"))
    assert "more resources" in validate_fit(R("ports:[80-80]"), R("ports:[31000-32000]"))


# -- filters and acknowledgements ---------------------------------------------------------------


@pytest.mark.parametrize("filters, expected", [
    (None, DEFAULT_REFUSE_SECONDS), (pb.Filters(), 5.0), (pb.Filters(refuse_seconds=0), 0.0),
    (pb.Filters(refuse_seconds=30), 30.0), (pb.Filters(refuse_seconds=-1), DEFAULT_REFUSE_SECONDS),
    (pb.Filters(refuse_seconds=math.nan), DEFAULT_REFUSE_SECONDS),
    (pb.Filters(refuse_seconds=1e12), MAX_REFUSE_SECONDS),
])
def test_refuse_seconds(filters, expected):
    assert refuse_seconds(filters) == expected


def test_validate_acknowledge():
    slaves = {"s1": slave(), "s2": slave("s2", connected=False)}

    def ack(uuid=b"u" * 16, sid="s1", tid="t1"):
        return pb.Call.Acknowledge(slave_id=pb.SlaveID(value=sid), task_id=pb.TaskID(value=tid), uuid=uuid)

    assert validate_acknowledge(ack(), slaves) is None
    assert "16 bytes" in validate_acknowledge(ack(uuid=b"x"), slaves)
    assert "task_id" in validate_acknowledge(ack(tid=""), slaves)
    assert "not registered" in validate_acknowledge(ack(sid="s9"), slaves)
    assert "disconnected" in validate_acknowledge(ack(sid="s2"), slaves)
