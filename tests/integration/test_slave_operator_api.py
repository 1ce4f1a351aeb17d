"""The slave's v1 operator API (POST /api/v1, Mesos' agent calls) against a real
master, a real slave and real tasks, over real HTTP, in JSON and in protobuf."""

from __future__ import annotations

import base64
import json
import os
import signal

import pytest
import requests

from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import offerd_pb2 as pb
from offerd.slave.daemon import Slave
from offerd.slave.flags import make_flags
from tests.builders import RunningFramework
from tests.support import wait_for

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A master, an open slave and a framework with one long-running task."""
    directory = tmp_path_factory.mktemp("slave-v1")
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(
        master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(directory / "slave"),
        resources="cpus:2;mem:1024;disk:1024", registration_backoff_factor=0.2,
        executor_shutdown_grace_period=1.0)).start()
    framework = RunningFramework(f"127.0.0.1:{master.http_port}").__enter__()
    try:
        task_id = framework.scheduler.submit("echo v1-sandbox-text; sleep 120")
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        base = f"http://127.0.0.1:{slave.http_port}"
        state = requests.get(base + "/state", timeout=10).json()
        executor = state["frameworks"][0]["executors"][0]
        stdout = os.path.join(executor["directory"], "stdout")
        wait_for(lambda: os.path.exists(stdout) and b"v1-sandbox-text" in open(stdout, "rb").read(),
                 timeout=30, message="the task to write its stdout")
        yield {"base": base, "url": base + "/api/v1", "sandbox": executor["directory"], "stdout": stdout,
               "task_id": task_id, "framework_id": framework.framework_id, "slave_id": state["id"],
               "container_id": executor["container"], "framework": framework, "work_dir": str(directory / "slave")}
    finally:
        framework.__exit__(None, None, None)
        slave.stop()
        master.stop()


def call(agent, body, accept=JSON, content_type=JSON, auth=None, **kwargs):
    data = json.dumps(body) if content_type == JSON and not isinstance(body, (bytes, str)) else body
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    return requests.post(agent["url"], data=data, headers=headers, auth=auth, timeout=kwargs.pop("timeout", 30),
                         **kwargs)


def ok(agent, body, **kwargs) -> dict:
    answer = call(agent, body, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith(JSON)
    return answer.json()


def proto_call(agent, message: v1_agent.Call) -> v1_agent.Response:
    answer = call(agent, message.SerializeToString(), accept=PROTOBUF, content_type=PROTOBUF)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == PROTOBUF
    response = v1_agent.Response()
    response.ParseFromString(answer.content)
    return response


# -- the documented shapes ----------------------------------------------------


def test_get_health_as_documented(agent):
    assert ok(agent, {"type": "GET_HEALTH"}) == {"type": "GET_HEALTH", "get_health": {"healthy": True}}


def test_get_version_as_documented(agent):
    answer = ok(agent, {"type": "GET_VERSION"})
    assert answer["type"] == "GET_VERSION"
    assert set(answer["get_version"]) == {"version_info"}
    assert answer["get_version"]["version_info"]["version"]


def test_get_flags_lists_name_value_pairs(agent):
    answer = ok(agent, {"type": "GET_FLAGS"})
    flags = {f["name"]: f["value"] for f in answer["get_flags"]["flags"]}
    assert flags["work_dir"] == agent["work_dir"]
    assert all(isinstance(f["value"], str) for f in answer["get_flags"]["flags"])


def test_get_metrics_are_named_numbers(agent):
    answer = ok(agent, {"type": "GET_METRICS", "get_metrics": {"timeout": {"nanoseconds": 5000000000}}})
    metrics = {m["name"]: m["value"] for m in answer["get_metrics"]["metrics"]}
    assert metrics["slave/registered"] == 1.0
    assert metrics["slave/tasks_running"] >= 1.0


def test_logging_level_is_set_for_a_while_then_read_back(agent):
    assert ok(agent, {"type": "GET_LOGGING_LEVEL"}) == {"type": "GET_LOGGING_LEVEL", "get_logging_level": {"level": 0}}
    answer = call(agent, {"type": "SET_LOGGING_LEVEL",
                          "set_logging_level": {"level": 1, "duration": {"nanoseconds": 60 * 10**9}}})
    assert answer.status_code == 200 and answer.content == b""
    assert ok(agent, {"type": "GET_LOGGING_LEVEL"})["get_logging_level"] == {"level": 1}
    call(agent, {"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": 0, "duration": {"nanoseconds": 0}}})
    wait_for(lambda: ok(agent, {"type": "GET_LOGGING_LEVEL"})["get_logging_level"]["level"] == 0,
             message="the logging level to fall back")


def test_get_state_as_documented(agent):
    answer = ok(agent, {"type": "GET_STATE"})
    assert answer["type"] == "GET_STATE"
    state = answer["get_state"]
    assert set(state) == {"get_tasks", "get_executors", "get_frameworks"}
    (framework,) = state["get_frameworks"]["frameworks"]
    assert framework["framework_info"]["id"] == {"value": agent["framework_id"]}
    # "role" of the 1.0 example is deprecated (multi-role) and left out unless set, as Mesos does now.
    assert {"user", "name", "checkpoint", "failover_timeout", "hostname"} <= set(framework["framework_info"])
    (executor,) = state["get_executors"]["executors"]
    info = executor["executor_info"]
    assert info["executor_id"] == {"value": agent["task_id"]}
    assert info["framework_id"] == {"value": agent["framework_id"]}
    assert info["name"].startswith("Command Executor (Task: ")
    assert info["command"]["value"] == "echo v1-sandbox-text; sleep 120"
    assert {r["name"] for r in info["resources"]} >= {"cpus", "mem"}
    (task,) = state["get_tasks"]["launched_tasks"]
    _assert_documented_task(agent, task)


def _assert_documented_task(agent, task):
    assert task["task_id"] == {"value": agent["task_id"]}
    assert task["framework_id"] == {"value": agent["framework_id"]}
    assert task["agent_id"] == {"value": agent["slave_id"]}
    assert task["state"] == "TASK_RUNNING"
    assert task["status_update_state"] == "TASK_RUNNING"
    assert "executor_id" not in task  # a command task, as Mesos shows it
    cpus = next(r for r in task["resources"] if r["name"] == "cpus")
    assert cpus["type"] == "SCALAR" and cpus["scalar"] == {"value": 0.1}
    running = task["statuses"][-1]
    assert running["state"] == "TASK_RUNNING"
    assert running["task_id"] == {"value": agent["task_id"]}
    assert running["agent_id"] == {"value": agent["slave_id"]}
    assert isinstance(running["timestamp"], float)
    assert base64.b64decode(task["status_update_uuid"]) == base64.b64decode(running["uuid"])


def test_get_tasks_as_documented(agent):
    answer = ok(agent, {"type": "GET_TASKS"})
    assert answer["type"] == "GET_TASKS"
    (task,) = answer["get_tasks"]["launched_tasks"]
    _assert_documented_task(agent, task)


def test_get_frameworks_and_executors(agent):
    frameworks = ok(agent, {"type": "GET_FRAMEWORKS"})["get_frameworks"]
    assert [f["framework_info"]["id"]["value"] for f in frameworks["frameworks"]] == [agent["framework_id"]]
    executors = ok(agent, {"type": "GET_EXECUTORS"})["get_executors"]
    assert [e["executor_info"]["executor_id"]["value"] for e in executors["executors"]] == [agent["task_id"]]


def test_get_agent(agent):
    info = ok(agent, {"type": "GET_AGENT"})["get_agent"]["agent_info"]
    assert info["id"] == {"value": agent["slave_id"]}
    assert info["hostname"]
    assert {r["name"] for r in info["resources"]} >= {"cpus", "mem", "disk"}


def test_get_containers_as_documented(agent):
    answer = ok(agent, {"type": "GET_CONTAINERS", "get_containers": {"show_nested": True, "show_standalone": False}})
    assert answer["type"] == "GET_CONTAINERS"
    (container,) = answer["get_containers"]["containers"]
    assert container["container_id"] == {"value": agent["container_id"]}
    assert container["executor_id"] == {"value": agent["task_id"]}
    assert container["framework_id"] == {"value": agent["framework_id"]}
    assert container["executor_name"].startswith("Command Executor")
    assert container["container_status"]["executor_pid"] > 0
    statistics = container["resource_statistics"]
    assert isinstance(statistics["timestamp"], float)
    assert statistics["processes"] >= 1 and statistics["mem_rss_bytes"] > 0


# -- files --------------------------------------------------------------------


def test_list_files_of_the_sandbox(agent):
    answer = ok(agent, {"type": "LIST_FILES", "list_files": {"path": agent["sandbox"]}})
    infos = {i["path"]: i for i in answer["list_files"]["file_infos"]}
    stdout = infos[agent["stdout"]]
    assert stdout["nlink"] == 1 and stdout["size"] > 0
    assert stdout["mode"] & 0o100000  # a regular file, as Mesos' raw st_mode
    assert stdout["mtime"]["nanoseconds"] > 0
    assert isinstance(stdout["uid"], str) and isinstance(stdout["gid"], str)


def test_read_file_with_offset_and_length(agent):
    text = open(agent["stdout"], "rb").read()
    answer = ok(agent, {"type": "READ_FILE", "read_file": {"path": agent["stdout"], "offset": 3, "length": 6}})
    assert answer["type"] == "READ_FILE"
    assert answer["read_file"]["size"] == len(text)
    assert base64.b64decode(answer["read_file"]["data"]) == text[3:9]
    past = ok(agent, {"type": "READ_FILE", "read_file": {"path": agent["stdout"], "offset": len(text) + 10}})
    assert past["read_file"] == {"size": len(text), "data": ""}


def test_read_file_refuses_dotdot_out_of_the_sandboxes(agent):
    escape = agent["sandbox"] + "/../../../../../../../../meta"  # work_dir/meta: the checkpoints
    answer = call(agent, {"type": "READ_FILE", "read_file": {"path": escape, "offset": 0}})
    assert answer.status_code == 403
    assert "outside this slave's sandboxes" in answer.json()["message"]
    answer = call(agent, {"type": "READ_FILE", "read_file": {"path": "/etc/passwd", "offset": 0}})
    assert answer.status_code == 403


def test_read_file_refuses_a_symlink_out_of_the_sandbox(agent):
    link = os.path.join(agent["sandbox"], "escape")
    os.symlink("/etc/passwd", link)
    try:
        answer = call(agent, {"type": "READ_FILE", "read_file": {"path": link, "offset": 0}})
        assert answer.status_code == 403
        assert "symbolic link" in answer.json()["message"]
        listed = call(agent, {"type": "LIST_FILES", "list_files": {"path": link}})
        assert listed.status_code == 403
    finally:
        os.unlink(link)


def test_files_missing_are_404(agent):
    answer = call(agent, {"type": "LIST_FILES", "list_files": {"path": agent["sandbox"] + "/no-such-dir"}})
    assert answer.status_code == 404


# -- protobuf -----------------------------------------------------------------


def test_protobuf_round_trips(agent):
    health = proto_call(agent, v1_agent.Call(type=v1_agent.Call.GET_HEALTH))
    assert health.type == v1_agent.Response.GET_HEALTH and health.get_health.healthy
    tasks = proto_call(agent, v1_agent.Call(type=v1_agent.Call.GET_TASKS))
    assert [t.task_id.value for t in tasks.get_tasks.launched_tasks] == [agent["task_id"]]
    read = v1_agent.Call(type=v1_agent.Call.READ_FILE)
    read.read_file.path = agent["stdout"]
    read.read_file.offset = 0
    answer = proto_call(agent, read)
    assert answer.read_file.data == open(agent["stdout"], "rb").read()
    containers = proto_call(agent, v1_agent.Call(type=v1_agent.Call.GET_CONTAINERS))
    assert containers.get_containers.containers[0].container_id.value == agent["container_id"]


def test_json_request_protobuf_answer(agent):
    answer = call(agent, {"type": "GET_STATE"}, accept=PROTOBUF)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == PROTOBUF
    response = v1_agent.Response.FromString(answer.content)
    assert response.get_state.get_frameworks.frameworks[0].framework_info.id.value == agent["framework_id"]


def test_no_accept_header_answers_json(agent):
    answer = call(agent, {"type": "GET_HEALTH"}, accept=None)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == JSON


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("body, status, words", [
    ({"type": "NO_SUCH_CALL"}, 400, "unknown value 'NO_SUCH_CALL'"),
    ({}, 400, "Expecting 'type' to be present"),
    ({"type": "READ_FILE"}, 400, "Expecting 'read_file' to be present"),
    ({"type": "READ_FILE", "read_file": {"path": "x"}}, 400, "read_file.offset"),
    ({"type": "GET_HEALTH", "bogus": 1}, 400, "'bogus' is not a field"),
    ({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "nope"}}}, 404, "cannot be found"),
    ({"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": "nope"}}}, 404, "cannot be found"),
    ({"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": "x"}, "signal": 999}}, 400,
     "Invalid signal"),
])
def test_bad_calls_are_refused_with_a_reason(agent, body, status, words):
    answer = call(agent, body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"]


def test_malformed_json_is_400(agent):
    answer = call(agent, '{"type": "GET_HEALTH"', content_type=JSON)
    assert answer.status_code == 400
    assert "Failed to parse body into JSON" in answer.json()["message"]


def test_malformed_protobuf_is_400(agent):
    answer = call(agent, b"\xff\xff\xff", content_type=PROTOBUF)
    assert answer.status_code == 400


def test_wrong_content_type_is_415(agent):
    answer = call(agent, '{"type": "GET_HEALTH"}', content_type="text/plain")
    assert answer.status_code == 415


def test_unacceptable_accept_is_406(agent):
    answer = call(agent, {"type": "GET_HEALTH"}, accept="text/html")
    assert answer.status_code == 406
    assert "Expecting 'Accept' to allow" in answer.json()["message"]


def test_get_is_405(agent):
    assert requests.get(agent["url"], timeout=10).status_code == 405


@pytest.mark.parametrize("kind", ["LAUNCH_CONTAINER", "REMOVE_CONTAINER", "GET_OPERATIONS", "PRUNE_IMAGES",
                                  "GET_RESOURCE_PROVIDERS", "LAUNCH_NESTED_CONTAINER"])
def test_calls_not_served_are_501_naming_the_call(agent, kind):
    answer = call(agent, {"type": kind})
    assert answer.status_code == 501
    assert kind in answer.json()["message"]


def test_attach_container_input_without_a_container_id_is_400(agent):
    # The calls themselves: tests/integration/test_task_exec.py.
    from offerd.common import recordio

    record = json.dumps({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {"type": "CONTAINER_ID"}})
    answer = requests.post(agent["url"], data=recordio.encode(record.encode()), timeout=10, headers={
        "Content-Type": "application/recordio", "Message-Content-Type": JSON, "Accept": JSON})
    assert answer.status_code == 400
    assert "CONTAINER_ID" in answer.json()["message"]


# -- containers: wait and kill (last: they end a task) --------------------------


def test_wait_container_blocks_until_a_kill_ends_it(agent):
    import threading

    framework = agent["framework"]
    task_id = framework.scheduler.submit("sleep 300")
    framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
    containers = ok(agent, {"type": "GET_CONTAINERS"})["get_containers"]["containers"]
    (container,) = [c for c in containers if c["executor_id"]["value"] == task_id]
    container_id = container["container_id"]["value"]

    waited = {}

    def wait():
        waited["answer"] = call(agent, {"type": "WAIT_CONTAINER",
                                        "wait_container": {"container_id": {"value": container_id}}}, timeout=60)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        # Not ended yet: the WAIT is still open while the task runs.
        assert waiter.is_alive()
        killed = call(agent, {"type": "KILL_CONTAINER", "kill_container": {
            "container_id": {"value": container_id}, "signal": int(signal.SIGTERM)}})
        assert killed.status_code == 200, killed.text
    finally:
        waiter.join(60)
    answer = waited["answer"]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["type"] == "WAIT_CONTAINER"
    status = body["wait_container"]["exit_status"]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM or \
        os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM
    framework.scheduler.wait_state(task_id, (pb.TASK_FAILED, pb.TASK_KILLED))
    # Ended: a later WAIT answers at once, a KILL finds nothing to kill.
    again = call(agent, {"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": container_id}}})
    assert again.status_code == 200 and again.json() == body
    gone = call(agent, {"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": container_id}}})
    assert gone.status_code == 404


# -- a secure cluster: authentication and ACLs ----------------------------------


def test_secure_cluster_authenticates_and_authorizes_each_call(cluster_factory):
    from offerd.cli import secure_setup

    cluster = cluster_factory(slaves=1, secure=True)
    security = cluster.security
    admin = (secure_setup.OPERATOR, security.secret(secure_setup.OPERATOR))
    readonly = ("readonly", security.secret("readonly"))
    url = f"https://{cluster.ip}:{cluster.slave_port(0)}/api/v1"

    def post(body, auth):
        return requests.post(url, data=json.dumps(body), headers={"Content-Type": JSON}, auth=auth,
                             verify=security.ca_file, timeout=30)

    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs()) as framework:
        task_id = framework.scheduler.submit("echo secure-v1; sleep 120")
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)

        refused = post({"type": "GET_HEALTH"}, None)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="mesos-agent-readwrite"'
        assert post({"type": "GET_HEALTH"}, ("readonly", "wrong-secret")).status_code == 401

        # readonly may view frameworks, executors, tasks and flags, nothing more.
        tasks = post({"type": "GET_TASKS"}, readonly)
        assert tasks.status_code == 200
        assert [t["task_id"]["value"] for t in tasks.json()["get_tasks"]["launched_tasks"]] == [task_id]
        assert post({"type": "GET_FLAGS"}, readonly).status_code == 200
        assert post({"type": "GET_CONTAINERS"}, readonly).json()["get_containers"] == {}
        containers = post({"type": "GET_CONTAINERS"}, admin).json()["get_containers"]["containers"]
        container_id = containers[0]["container_id"]["value"]
        kill = {"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": container_id}}}
        forbidden = post(kill, readonly)
        assert forbidden.status_code == 403
        assert "kill_standalone_containers" in forbidden.json()["message"]
        level = {"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": 1, "duration": {"nanoseconds": 0}}}
        assert post(level, readonly).status_code == 403
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)  # nothing was killed

        # The operator may do everything.
        assert post(kill, admin).status_code == 200
        framework.scheduler.wait_state(task_id, (pb.TASK_FAILED, pb.TASK_KILLED))


def test_acls_cut_the_state_and_refuse_files_flags_and_kills(tmp_path):
    import getpass

    user = getpass.getuser()
    owner, other = ("owner", "owner-secret"), ("other", "other-secret")
    credentials = tmp_path / "http_credentials"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in (owner, other)]}))
    mine = {"principals": {"values": ["owner"]}, "users": {"values": [user]}}
    acls = {"permissive": False, "view_flags": [{"principals": {"values": ["owner"]}, "flags": {"type": "ANY"}}],
            **{action: [mine] for action in ("view_frameworks", "view_executors", "view_tasks", "access_sandboxes",
                                             "view_containers", "wait_standalone_containers",
                                             "kill_standalone_containers")}}
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(
        master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
        resources="cpus:2;mem:1024;disk:1024", http_credentials=str(credentials),
        authenticate_http_readonly=True, authenticate_http_readwrite=True, acls=json.dumps(acls),
        registration_backoff_factor=0.2, executor_shutdown_grace_period=1.0)).start()
    try:
        with RunningFramework(f"127.0.0.1:{master.http_port}") as framework:
            task_id = framework.scheduler.submit("echo acl-v1; sleep 120")
            framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
            guarded = {"url": f"http://127.0.0.1:{slave.http_port}/api/v1"}

            def post(body, auth):
                return call(guarded, body, auth=auth)

            state = post({"type": "GET_STATE"}, owner).json()["get_state"]
            assert [t["task_id"]["value"] for t in state["get_tasks"]["launched_tasks"]] == [task_id]
            hidden = post({"type": "GET_STATE"}, other).json()["get_state"]
            assert hidden == {"get_tasks": {}, "get_executors": {}, "get_frameworks": {}}
            assert post({"type": "GET_CONTAINERS"}, other).json()["get_containers"] == {}
            container_id = post({"type": "GET_CONTAINERS"}, owner).json()[
                "get_containers"]["containers"][0]["container_id"]["value"]

            flags = post({"type": "GET_FLAGS"}, other)
            assert flags.status_code == 403 and "view_flags" in flags.json()["message"]
            executor = json.loads(requests.get(f"http://127.0.0.1:{slave.http_port}/state", auth=owner,
                                               timeout=10).text)["frameworks"][0]["executors"][0]
            stdout = os.path.join(executor["directory"], "stdout")
            read = {"type": "READ_FILE", "read_file": {"path": stdout, "offset": 0}}
            refused = post(read, other)
            assert refused.status_code == 403 and "access_sandboxes" in refused.json()["message"]
            wait_for(lambda: b"acl-v1" in base64.b64decode(post(read, owner).json()["read_file"]["data"]),
                     timeout=30, message="the owner to read the task's stdout")
            wait = {"type": "WAIT_CONTAINER", "wait_container": {"container_id": {"value": container_id}}}
            refused = post(wait, other)
            assert refused.status_code == 403 and "wait_standalone_containers" in refused.json()["message"]
            kill = {"type": "KILL_CONTAINER", "kill_container": {"container_id": {"value": container_id}}}
            assert post(kill, other).status_code == 403
            assert post(kill, owner).status_code == 200
            assert os.WTERMSIG(post(wait, owner).json()["wait_container"]["exit_status"]) == signal.SIGKILL
    finally:
        slave.stop()
        master.stop()
