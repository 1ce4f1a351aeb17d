"""The scheduling core without a cluster: constraints, matching against fake
offers, backoff, victim order and rolling-restart arithmetic."""

from __future__ import annotations

import pytest

from offerd.common.resources import Resources
from offerd.proto import offerd_pb2 as pb

from frameworks.marathon_like import constraints
from frameworks.marathon_like.deployments import RollingRestart
from frameworks.marathon_like.model import with_defaults


def offer(n=1, host="h1", resources="cpus:4;mem:1024;disk:100;ports:[31000-31010]", **attrs):
    o = pb.Offer(hostname=host)
    o.id.value = f"offer-{host}-{n}"
    o.slave_id.value = f"slave-{host}"
    o.framework_id.value = "fw"
    o.resources.extend(Resources.parse(resources).to_protos())
    for name, value in attrs.items():
        a = o.attributes.add(name=name, type=pb.Value.TEXT)
        a.text.value = value
    return o


def launched(core):
    return [task for call in core.driver.calls if call[0] == "launchTasks" for task in call[2]]


@pytest.mark.parametrize("constraint,placed,host,attrs,fits", [
    (["hostname", "UNIQUE"], ["h1"], "h1", {}, False),
    (["hostname", "UNIQUE"], ["h1"], "h2", {}, True),
    (["rack", "CLUSTER", "r1"], [], "h1", {"rack": "r1"}, True),
    (["rack", "CLUSTER", "r1"], [], "h1", {"rack": "r2"}, False),
    (["rack", "CLUSTER"], ["h9"], "h1", {"rack": "r2"}, True),
    (["hostname", "GROUP_BY", "2"], ["h1"], "h1", {}, False),
    (["hostname", "GROUP_BY", "2"], ["h1"], "h2", {}, True),
    (["hostname", "GROUP_BY"], ["h1", "h2", "h1"], "h1", {}, False),
    (["hostname", "GROUP_BY"], ["h1", "h2", "h1"], "h2", {}, True),
    (["hostname", "LIKE", "h[12]"], [], "h1", {}, True),
    (["hostname", "LIKE", "h[12]"], [], "h3", {}, False),
    (["hostname", "UNLIKE", "h1"], [], "h1", {}, False),
    (["hostname", "MAX_PER", "2"], ["h1", "h1"], "h1", {}, False),
    (["hostname", "MAX_PER", "2"], ["h1"], "h1", {}, True),
    (["@zone", "IS", "a"], [], "h1", {"zone": "a"}, True),
    (["zone", "IS", "a"], [], "h1", {}, False),
])
def test_constraint_checkers(constraint, placed, host, attrs, fits):
    placed_on = [(h, {"rack": "r2"} if constraint[0] == "rack" else {}) for h in placed]
    reason = constraints.check([constraint], host, attrs, placed_on)
    assert (reason is None) == fits, reason


def test_offer_matching_env_ports_and_max_per_offer(core):
    core.config.max_instances_per_offer = 2
    core.create_app({"id": "/web", "cmd": "x", "instances": 3, "cpus": 0.5, "mem": 32,
                     "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}], "labels": {"team": "a"}})
    core.on_offers([offer()])
    tasks = launched(core)
    assert len(tasks) == 2
    env = {v.name: v.value for v in tasks[0].command.environment.variables}
    assert env["PORT0"] == "31000" and env["PORT1"] == "31001" and env["PORTS"] == "31000,31001"
    assert env["PORT_HTTP"] == "31000" and env["HOST"] == "h1" and env["MARATHON_APP_ID"] == "/web"
    assert env["MARATHON_APP_LABEL_TEAM"] == "a" and env["MARATHON_APP_VERSION"] == core.apps["/web"]["version"]
    used = Resources.from_protos(tasks[0].resources)
    assert used.scalar("cpus") == 0.5 and used.ranges("ports") == [(31000, 31001)]
    assert {p for t in tasks for p in [Resources.from_protos(t.resources).ranges("ports")[0]]} == \
        {(31000, 31001), (31002, 31003)}
    assert core.queue["/web"].count == 1


def test_reject_reasons_are_counted(core):
    core.create_app({"id": "/big", "cmd": "x", "cpus": 8, "mem": 32})
    core.create_app({"id": "/picky", "cmd": "x", "cpus": 0.1, "mem": 32, "constraints": [["hostname", "IS", "zz"]]})
    core.create_app({"id": "/role", "cmd": "x", "cpus": 0.1, "mem": 32, "acceptedResourceRoles": ["web"]})
    core.on_offers([offer(1), offer(2)])
    assert launched(core) == []
    assert core.queue["/big"].rejects == {"InsufficientCpus": 2}
    assert core.queue["/picky"].rejects == {"UnfulfilledConstraint": 2}
    assert core.queue["/role"].rejects == {"UnfulfilledRole": 2}
    assert [c[0] for c in core.driver.calls].count("declineOffer") == 2


def test_failures_back_off_exponentially_and_reset(core):
    core.create_app({"id": "/crash", "cmd": "x", "cpus": 0.1, "mem": 32, "backoffSeconds": 10,
                     "backoffFactor": 2, "maxLaunchDelaySeconds": 30})
    delays = []
    for n in range(4):
        core.queue["/crash"].backoff.until = 0  # pretend the delay passed
        core.on_offers([offer(n)])
        task = launched(core)[-1]
        status = pb.TaskStatus(state=pb.TASK_FAILED, message="boom")
        status.task_id.CopyFrom(task.task_id)
        core.on_status(status)
        delays.append(core.queue["/crash"].backoff.delay)
    assert delays == [10, 20, 30, 30]
    assert core.last_failure["/crash"]["state"] == "TASK_FAILED"
    core.update_app("/crash", {"cmd": "y"}, force=True)
    assert core.queue["/crash"].backoff.delay == 0


def test_killed_tasks_do_not_back_off(core):
    core.create_app({"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 32})
    core.on_offers([offer()])
    inst = next(iter(core.instances.values()))
    core.kill(inst, "test")
    status = pb.TaskStatus(state=pb.TASK_KILLED)
    status.task_id.value = inst.task_id
    core.on_status(status)
    assert core.queue["/a"].backoff.delay == 0 and core.queue["/a"].count == 1


def test_scale_down_kills_youngest_first(core):
    core.create_app({"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 32, "instances": 3})
    core.on_offers([offer()])
    for age, inst in enumerate(core.instances.values()):
        inst.state, inst.started_at = "TASK_RUNNING", 100.0 + age
    youngest = max(core.instances.values(), key=lambda i: i.started_at)
    core.update_app("/a", {"instances": 2}, force=True)
    assert [c[1].value for c in core.driver.calls if c[0] == "killTask"] == [youngest.task_id]


def test_unanswered_kills_are_sent_again(core, monkeypatch):
    """A kill sent while the master was away (just elected, failing over) reaches no one:
    it is sent again after --kill_retry_timeout until the task's end is heard."""
    core.create_app({"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 32, "instances": 2})
    core.on_offers([offer()])
    for inst in core.instances.values():
        inst.state, inst.started_at = "TASK_RUNNING", 100.0
    clock = [1000.0]
    monkeypatch.setattr("frameworks.marathon_like.ids.now", lambda: clock[0])
    core.connected = False
    core.update_app("/a", {"instances": 1}, force=True)
    kills = lambda: [c[1].value for c in core.driver.calls if c[0] == "killTask"]  # noqa: E731
    assert len(kills()) == 1
    victim = kills()[0]
    core.tick()
    clock[0] += core.config.kill_retry_timeout
    core.tick()
    assert kills() == [victim]             # not connected: nothing to send it to
    core.on_connected()                    # (re)registered: sent at once
    assert kills() == [victim, victim]
    core.tick()
    assert kills() == [victim, victim]
    clock[0] += core.config.kill_retry_timeout
    core.tick()
    assert kills() == [victim] * 3         # still unanswered: again after the timeout
    clock[0] += core.config.kill_retry_timeout / 2
    core.tick()
    assert kills() == [victim] * 3         # not before the timeout again
    status = pb.TaskStatus(state=pb.TASK_KILLED)
    status.task_id.value = victim
    core.on_status(status)
    clock[0] += core.config.kill_retry_timeout
    core.tick()
    assert kills() == [victim] * 3         # answered: never again


@pytest.mark.parametrize("n,strategy,expected", [
    (4, (1.0, 1.0), (4, 8)), (4, (0.5, 0.0), (2, 4)), (4, (0.0, 0.0), (0, 4)), (3, (0.5, 0.5), (2, 4)),
])
def test_rolling_restart_bounds(n, strategy, expected):
    app = with_defaults({"id": "/a", "cmd": "x", "instances": n,
                         "upgradeStrategy": {"minimumHealthCapacity": strategy[0], "maximumOverCapacity": strategy[1]}})
    restart = RollingRestart.of(app)
    assert (restart.min_healthy, restart.max_capacity) == expected


def test_rolling_restart_plus_one_when_stuck():
    app = with_defaults({"id": "/a", "cmd": "x", "instances": 4,
                         "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.0}})
    restart = RollingRestart.of(app)
    assert restart.capacity(4) == 5
    assert restart.launches(old=4, new=0, capacity=5) == 1
    assert restart.kills(ready_old=4, ready_new=1, unready_old=0) == (1, 0)
