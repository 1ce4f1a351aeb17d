"""The master's v1 operator API (POST /api/v1) against a real local cluster with
tasks running, checked field by field against the examples of Mesos'
operator HTTP API documentation (mesos.apache.org/documentation/latest/operator-http-api/)."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from offerd.common import mesos_json
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.ha.test_masters import elected, masters  # noqa: F401 (the masters fixture: two masters on ZooKeeper)
from tests.support import wait_for

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


class Operator:
    """POSTs v1 calls to a cluster's master (as `principal` on a secure cluster)."""

    def __init__(self, cluster, principal: str | None = "admin"):
        self.url = cluster.master_url + "/api/v1"
        self.kwargs: dict = {"timeout": 30}
        if cluster.security is not None:
            self.kwargs["verify"] = cluster.security.ca_file
            if principal is not None:
                self.kwargs["auth"] = (principal, cluster.security.secret(principal))

    def post(self, body, content_type: str = JSON, accept: str | None = JSON) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        return requests.post(self.url, data=data, headers=headers, **self.kwargs)

    def call(self, kind: str, **fields) -> dict:
        answer = self.post({"type": kind, **fields})
        assert answer.status_code == 200, (kind, answer.status_code, answer.text)
        assert answer.headers["Content-Type"].startswith(JSON)
        document = answer.json()
        assert document["type"] == kind
        return document[kind.lower()]

    def do(self, kind: str, status: int = 200, **fields) -> requests.Response:
        answer = self.post({"type": kind, **fields})
        assert answer.status_code == status, (kind, answer.status_code, answer.text)
        return answer


def _scalar(resources: list, name: str) -> float:
    return sum(r["scalar"]["value"] for r in resources if r["name"] == name)


@pytest.fixture
def running(cluster_factory):
    """A one-slave cluster with a framework, a running task (it printed a line) and a finished one."""
    cluster = cluster_factory(slaves=1)
    with RunningFramework(cluster.master, info=framework_info(name="v1-fw", role="dev")) as fw:
        running_id = fw.scheduler.submit("echo hello-v1; printf '\\377\\376\\000' > binary; sleep 600")
        done_id = fw.scheduler.submit("true")
        fw.scheduler.wait_state(running_id, pb.TASK_RUNNING)
        fw.scheduler.wait_state(done_id, pb.TASK_FINISHED)
        yield cluster, fw, running_id, done_id


def test_read_calls_answer_in_mesos_shapes(running):
    cluster, fw, running_id, done_id = running
    op = Operator(cluster)
    assert op.call("GET_HEALTH") == {"healthy": True}

    version = op.call("GET_VERSION")["version_info"]
    assert isinstance(version["version"], str) and version["version"]
    assert set(version) >= {"version", "build_date", "build_time", "build_user"}

    flags = {f["name"]: f.get("value") for f in op.call("GET_FLAGS")["flags"]}
    assert flags["allocation_interval"] == "0.2secs" and "work_dir" in flags

    metrics = {m["name"]: m.get("value") for m in op.call("GET_METRICS", get_metrics={"timeout": {"nanoseconds": 5_000_000_000}})["metrics"]}
    assert metrics["master/slaves_active"] == 1.0 and metrics["master/frameworks_active"] == 1.0

    master = op.call("GET_MASTER")
    assert set(master["master_info"]) >= {"id", "ip", "port", "pid", "hostname", "address"}
    assert master["master_info"]["port"] == cluster.port and "zmq_port" not in master["master_info"]
    assert master["start_time"] > 0 and master["elected_time"] > 0

    agents = op.call("GET_AGENTS")
    [agent] = agents["agents"]
    assert agents.get("recovered_agents", []) == []
    assert agent["active"] is True and agent["pid"].startswith("slave(") and agent["version"]
    assert set(agent["agent_info"]) >= {"hostname", "id", "port", "resources"}
    slave_id = agent["agent_info"]["id"]["value"]
    assert agent["registered_time"]["nanoseconds"] > 10**18
    assert _scalar(agent["total_resources"], "cpus") == 4.0
    ports = [r for r in agent["total_resources"] if r["name"] == "ports"][0]
    assert ports == {"name": "ports", "type": "RANGES", "role": "*",
                     "ranges": {"range": [{"begin": 31000, "end": 32000}]}}
    assert _scalar(agent["allocated_resources"], "cpus") > 0

    frameworks = op.call("GET_FRAMEWORKS")
    [framework] = frameworks["frameworks"]
    assert framework["active"] is True and framework["connected"] is True and framework["recovered"] is False
    info = framework["framework_info"]
    assert info["id"]["value"] == fw.framework_id and info["name"] == "v1-fw" and info["role"] == "dev"
    assert framework["registered_time"]["nanoseconds"] > 10**18
    allocated = framework["allocated_resources"]
    assert allocated and all(r["allocation_info"] == {"role": "dev"} for r in allocated)

    # Command tasks run under an executor the master does not track, as in Mesos.
    assert op.call("GET_EXECUTORS") == {}

    tasks = op.call("GET_TASKS")
    [task] = tasks["tasks"]
    assert task["task_id"] == {"value": running_id} and task["state"] == "TASK_RUNNING"
    assert task["framework_id"] == {"value": fw.framework_id} and task["agent_id"] == {"value": slave_id}
    assert task["name"] and _scalar(task["resources"], "cpus") == pytest.approx(0.1)
    assert {r["name"] for r in task["resources"]} >= {"cpus", "mem"}
    assert [s["state"] for s in task["statuses"]][-1] == "TASK_RUNNING"
    assert all(s["task_id"] == {"value": running_id} and s["timestamp"] > 0 for s in task["statuses"])
    [done] = tasks["completed_tasks"]
    assert done["task_id"] == {"value": done_id} and done["state"] == "TASK_FINISHED"
    assert "orphan_tasks" not in tasks and "pending_tasks" not in tasks

    state = op.call("GET_STATE")
    assert set(state) == {"get_tasks", "get_executors", "get_frameworks", "get_agents"}
    assert state["get_tasks"]["tasks"][0]["task_id"] == {"value": running_id}
    assert state["get_frameworks"]["frameworks"][0]["framework_info"]["id"] == {"value": fw.framework_id}
    assert state["get_agents"]["agents"][0]["agent_info"]["id"] == {"value": slave_id}

    roles = {r["name"]: r for r in op.call("GET_ROLES")["roles"]}
    assert roles["dev"]["weight"] == 1.0 and roles["dev"]["frameworks"] == [{"value": fw.framework_id}]
    assert _scalar(roles["dev"]["resources"], "cpus") > 0

    # The same answer in protobuf, decoded with Mesos' own message.
    answer = op.post({"type": "GET_STATE"}, accept=PROTOBUF)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == PROTOBUF
    decoded = v1_master.Response.FromString(answer.content)
    assert decoded.type == v1_master.Response.GET_STATE and decoded.IsInitialized()
    assert decoded.get_state.get_tasks.tasks[0].task_id.value == running_id
    # The JSON answer (assembled from each task's kept JSON) is that very message in Mesos' mapping.
    assert op.post({"type": "GET_STATE"}).json() == mesos_json.to_json(decoded)
    tasks_answer = v1_master.Response.FromString(op.post({"type": "GET_TASKS"}, accept=PROTOBUF).content)
    assert op.post({"type": "GET_TASKS"}).json() == mesos_json.to_json(tasks_answer)
    # ... and a call sent in protobuf.
    call = v1_master.Call(type=v1_master.Call.GET_HEALTH).SerializeToString()
    answer = op.post(call, content_type=PROTOBUF, accept=PROTOBUF)
    assert v1_master.Response.FromString(answer.content).get_health.healthy is True

    # The running task's sandbox, through the slave, under /slaves/<slave_id>.
    box = requests.get(f"{cluster.master_url}/master/sandbox", params={"task_id": running_id}, timeout=10).json()
    sandbox = f"/slaves/{slave_id}{box['directory']}"
    wait_for(lambda: b"hello-v1" in base64.b64decode(op.call("READ_FILE", read_file={
        "path": sandbox + "/stdout", "offset": 0}).get("data", "")), timeout=30, message="the task's stdout")
    listing = {f["path"]: f for f in op.call("LIST_FILES", list_files={"path": sandbox})["file_infos"]}
    stdout = listing[sandbox + "/stdout"]
    assert stdout["mode"] & 0o100000 and stdout["nlink"] >= 1 and stdout["mtime"]["nanoseconds"] > 10**18
    part = op.call("READ_FILE", read_file={"path": sandbox + "/stdout", "offset": 1, "length": 4})
    assert base64.b64decode(part["data"]) == b"ello" and part["size"] == stdout["size"]
    # Bytes that are not UTF-8 arrive as the file holds them.
    binary = op.call("READ_FILE", read_file={"path": sandbox + "/binary", "offset": 0})
    assert base64.b64decode(binary["data"]) == b"\xff\xfe\x00" and binary["size"] == 3
    outside = op.post({"type": "READ_FILE", "read_file": {"path": f"/slaves/{slave_id}/etc/passwd", "offset": 0}})
    assert outside.status_code == 403


def test_write_calls_change_the_master_as_their_rest_equivalents(running):
    cluster, fw, running_id, _ = running
    op = Operator(cluster)
    op.do("UPDATE_WEIGHTS", update_weights={"weight_infos": [{"role": "dev", "weight": 2.5}]})
    assert {"role": "dev", "weight": 2.5} in op.call("GET_WEIGHTS")["weight_infos"]
    assert {"role": "dev", "weight": 2.5} in requests.get(cluster.master_url + "/weights", timeout=10).json()

    op.do("UPDATE_QUOTA", update_quota={"quota_configs": [
        {"role": "dev", "guarantees": {"cpus": {"value": 1}}, "limits": {"cpus": {"value": 2}, "mem": {"value": 2048}}},
        {"role": "test", "limits": {"cpus": {"value": 1}}}]})
    status = op.call("GET_QUOTA")["status"]
    configs = {c["role"]: c for c in status["configs"]}
    assert configs["dev"] == {"role": "dev", "guarantees": {"cpus": {"value": 1.0}},
                              "limits": {"cpus": {"value": 2.0}, "mem": {"value": 2048.0}}}
    assert configs["test"] == {"role": "test", "limits": {"cpus": {"value": 1.0}}}
    infos = {i["role"]: i for i in status["infos"]}
    assert infos["dev"]["guarantee"][0]["name"] == "cpus"
    # An empty config resets the role; the deprecated SET_QUOTA and REMOVE_QUOTA work too.
    op.do("UPDATE_QUOTA", update_quota={"quota_configs": [{"role": "test"}]})
    assert {c["role"] for c in op.call("GET_QUOTA")["status"]["configs"]} == {"dev"}
    op.do("SET_QUOTA", set_quota={"quota_request": {"role": "ops", "guarantee": [
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}]}})
    assert {c["role"] for c in op.call("GET_QUOTA")["status"]["configs"]} == {"dev", "ops"}
    op.do("REMOVE_QUOTA", remove_quota={"role": "ops"})
    assert "ops" not in requests.get(cluster.master_url + "/quota", timeout=10).text

    assert op.call("GET_LOGGING_LEVEL")["level"] == 0
    op.do("SET_LOGGING_LEVEL", set_logging_level={"level": 1, "duration": {"nanoseconds": 600 * 10**9}})
    assert op.call("GET_LOGGING_LEVEL")["level"] == 1
    op.do("SET_LOGGING_LEVEL", set_logging_level={"level": 0, "duration": {"nanoseconds": 10**8}})
    wait_for(lambda: op.call("GET_LOGGING_LEVEL")["level"] == 0, timeout=30, message="the level to revert")

    op.do("TEARDOWN", 400, teardown={"framework_id": {"value": "no-such-framework"}})
    op.do("TEARDOWN", teardown={"framework_id": {"value": fw.framework_id}})
    wait_for(lambda: any(t["task_id"]["value"] == running_id and t["state"] == "TASK_KILLED"
                         for t in op.call("GET_TASKS").get("completed_tasks", [])),
             timeout=30, message="the torn-down framework's task to be killed")
    frameworks = op.call("GET_FRAMEWORKS")
    assert frameworks.get("frameworks", []) == []
    assert frameworks["completed_frameworks"][0]["framework_info"]["id"] == {"value": fw.framework_id}

    slave_id = op.call("GET_AGENTS")["agents"][0]["agent_info"]["id"]["value"]
    op.do("MARK_AGENT_GONE", mark_agent_gone={"agent_id": {"value": slave_id}})
    assert op.call("GET_AGENTS").get("agents", []) == []
    op.do("MARK_AGENT_GONE", 400, mark_agent_gone={"agent_id": {"value": "no-such-agent"}})


def test_bad_calls_are_refused_and_change_nothing(cluster_factory):
    cluster = cluster_factory(slaves=1)
    op = Operator(cluster)
    before = requests.get(cluster.master_url + "/weights", timeout=10).json()
    cases = [
        ("not json", JSON, 400, "Failed to parse body into JSON"),
        ("[1, 2]", JSON, 400, "expecting a JSON object"),
        ("{}", JSON, 400, "Expecting 'type' to be present"),
        ('{"type": "NO_SUCH_CALL"}', JSON, 400, "unknown value 'NO_SUCH_CALL' of field 'type'"),
        ('{"type": "GET_HEALTH", "nonsense": 1}', JSON, 400, "nonsense"),
        ('{"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "dev"}]}}', JSON, 400, "weight"),
        ('{"type": "TEARDOWN"}', JSON, 400, "teardown.framework_id.value"),
        ('{"type": "MARK_AGENT_GONE", "mark_agent_gone": ["x"]}', JSON, 400, "agent_id"),
        (b"\xff\xff\xff", PROTOBUF, 400, "Failed to parse body into mesos.v1.master.Call"),
        ('{"type": "GET_HEALTH"}', "text/plain", 415, "application/json"),
    ]
    for body, content_type, status, reason in cases:
        answer = op.post(body, content_type=content_type)
        assert answer.status_code == status, (body, answer.status_code, answer.text)
        assert reason in answer.text, (body, answer.text)
        assert answer.headers["Content-Type"].startswith("text/plain")
    for kind in ("RESERVE_RESOURCES", "CREATE_VOLUMES", "DEACTIVATE_AGENT", "DRAIN_AGENT",
                 "GET_OPERATIONS"):
        answer = op.post({"type": kind})
        assert answer.status_code == 501 and kind in answer.text, (kind, answer.text)
    answer = op.post({"type": "GET_HEALTH"}, accept="text/html")
    assert answer.status_code == 406 and PROTOBUF in answer.text
    answer = op.post({"type": "GET_HEALTH"}, accept=None)  # no Accept: JSON, as Mesos
    assert answer.json() == {"type": "GET_HEALTH", "get_health": {"healthy": True}}
    answer = requests.get(op.url, timeout=10)
    assert answer.status_code == 405
    assert requests.get(cluster.master_url + "/weights", timeout=10).json() == before


def test_authentication_and_acls_as_the_rest_endpoints(cluster_factory):
    cluster = cluster_factory(slaves=1, secure=True)
    admin, readonly, nobody = Operator(cluster, "admin"), Operator(cluster, "readonly"), Operator(cluster, None)
    assert nobody.post({"type": "GET_HEALTH"}).status_code == 401
    assert readonly.call("GET_HEALTH") == {"healthy": True}
    assert readonly.call("GET_FLAGS")["flags"]
    assert readonly.call("GET_AGENTS")["agents"]
    for kind, fields in (
            ("UPDATE_WEIGHTS", {"update_weights": {"weight_infos": [{"role": "dev", "weight": 3}]}}),
            ("UPDATE_QUOTA", {"update_quota": {"quota_configs": [{"role": "dev", "limits": {"cpus": {"value": 1}}}]}}),
            ("SET_LOGGING_LEVEL", {"set_logging_level": {"level": 1, "duration": {"nanoseconds": 10**9}}}),
            ("MARK_AGENT_GONE", {"mark_agent_gone": {"agent_id": {"value": "x"}}})):
        answer = readonly.post({"type": kind, **fields})
        assert answer.status_code == 403 and "principal 'readonly'" in answer.text, (kind, answer.text)
    assert admin.call("GET_WEIGHTS").get("weight_infos", []) == []
    assert admin.call("GET_QUOTA")["status"] == {}
    admin.do("UPDATE_WEIGHTS", update_weights={"weight_infos": [{"role": "dev", "weight": 3}]})
    assert readonly.call("GET_WEIGHTS")["weight_infos"] == [{"role": "dev", "weight": 3.0}]


def test_state_calls_show_only_what_the_principal_may_view(cluster_factory):
    cluster = cluster_factory(slaves=1, secure=True)
    admin, marathon = Operator(cluster, "admin"), Operator(cluster, "marathon")
    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs()) as fw:
        task_id = fw.scheduler.submit("sleep 600")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        assert admin.call("GET_TASKS")["tasks"][0]["task_id"] == {"value": task_id}
        assert admin.call("GET_FRAMEWORKS")["frameworks"][0]["framework_info"]["id"] == {"value": fw.framework_id}
        # marathon may not view_frameworks, view_tasks nor view_flags: the same cut as /master/state.
        assert requests.get(cluster.master_url + "/master/state", **marathon.kwargs).json()["frameworks"] == []
        assert marathon.call("GET_TASKS") == {}
        assert marathon.call("GET_FRAMEWORKS") == {}
        state = marathon.call("GET_STATE")
        assert state["get_tasks"] == {} and state["get_frameworks"] == {} and state["get_agents"]["agents"]
        answer = marathon.post({"type": "GET_FLAGS"})
        assert answer.status_code == 403 and "'view_flags'" in answer.text


def test_a_standby_redirects_every_call_to_the_leader(masters):
    leader = masters()
    wait_for(lambda: elected(leader), 10, message="the first master to lead")
    standby = masters()
    wait_for(lambda: standby.leadership.leader_info() is not None, 10, message="the standby to see the leader")
    for kind in ("GET_HEALTH", "GET_STATE", "MARK_AGENT_GONE"):
        answer = requests.post(f"http://127.0.0.1:{standby.http_port}/api/v1", json={"type": kind},
                               allow_redirects=False, timeout=10)
        assert answer.status_code == 307, (kind, answer.text)
        assert answer.headers["Location"].endswith(f":{leader.http_port}/api/v1")
    answer = requests.post(f"http://127.0.0.1:{standby.http_port}/api/v1", json={"type": "GET_HEALTH"}, timeout=10)
    assert answer.json() == {"type": "GET_HEALTH", "get_health": {"healthy": True}}  # followed to the leader
