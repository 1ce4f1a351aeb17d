"""Container sessions (v1 LAUNCH_NESTED_CONTAINER_SESSION, ATTACH_CONTAINER_INPUT,
ATTACH_CONTAINER_OUTPUT) and `offerd task exec` / `attach`, against a real master
and a real slave isolating its tasks with namespaces/pid, filesystem/linux and
cgroups, over real HTTP, with the real CLI as a subprocess."""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import select
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest
import requests

from offerd.common import recordio
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import cgroups
from offerd.slave.daemon import Slave
from offerd.slave.flags import make_flags
from tests.builders import RunningFramework
from tests.support import wait_for

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
RECORDIO = "application/recordio"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "nobody"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or cgroups.detect(cgroups.DEFAULT_HIERARCHY) is None,
                                reason="container sessions enter namespaces and cgroups: needs root and cgroups")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A master, a slave with PID/mount namespaces and cgroups, a framework running
    as `nobody` with a sleeping task and a ticking task."""
    directory = tmp_path_factory.mktemp("task-exec")
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(
        master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(directory / "slave"),
        resources="cpus:2;mem:1024;disk:1024", registration_backoff_factor=0.2,
        isolation="namespaces/pid,filesystem/linux,cgroups/cpu,cgroups/mem",
        executor_shutdown_grace_period=1.0)).start()
    info = pb.FrameworkInfo(name="exec-test", user=USER)
    framework = RunningFramework(f"127.0.0.1:{master.http_port}", info=info).__enter__()
    try:
        sleeper = framework.scheduler.submit("sleep 600")
        ticker = framework.scheduler.submit("i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done")
        framework.scheduler.wait_state(sleeper, pb.TASK_RUNNING)
        framework.scheduler.wait_state(ticker, pb.TASK_RUNNING)
        base = f"http://127.0.0.1:{slave.http_port}"
        executors = {e["id"]: e for f in requests.get(base + "/state", timeout=10).json()["frameworks"]
                     for e in f["executors"]}
        yield {"url": base + "/api/v1", "master": f"127.0.0.1:{master.http_port}", "sleeper": sleeper,
               "ticker": ticker, "container": executors[sleeper]["container"],
               "ticker_container": executors[ticker]["container"], "ticker_sandbox": executors[ticker]["directory"],
               "framework": framework}
    finally:
        framework.__exit__(None, None, None)
        slave.stop()
        master.stop()


def cli(agent, *args, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERD_")}
    return subprocess.run([sys.executable, "-m", "offerd", "task", *args[:1], "--master", agent["master"],
                           *args[1:]], cwd=ROOT, env=env, capture_output=True, timeout=60, **kwargs)


def nested(agent, session_id: str) -> dict:
    return {"value": session_id, "parent": {"value": agent["container"]}}


def launch(agent, session_id: str, command: dict, accept=JSON, **kwargs) -> requests.Response:
    body = {"type": "LAUNCH_NESTED_CONTAINER_SESSION",
            "launch_nested_container_session": {"container_id": nested(agent, session_id), "command": command,
                                                **kwargs}}
    return requests.post(agent["url"], json=body, stream=True, timeout=60,
                         headers={"Accept": RECORDIO, "Message-Accept": accept})


def records(response: requests.Response, message=JSON) -> list[v1_agent.ProcessIO]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == RECORDIO
    assert response.headers["Message-Content-Type"] == message
    out = []
    for record in recordio.decode_all(b"".join(response.iter_content(None))):
        if message == JSON:
            doc = json.loads(record)
            io = v1_agent.ProcessIO(type=v1_agent.ProcessIO.Type.Value(doc["type"]))
            if "data" in doc:
                io.data.type = v1_agent.ProcessIO.Data.Type.Value(doc["data"]["type"])
                io.data.data = base64.b64decode(doc["data"].get("data", ""))
            out.append(io)
        else:
            out.append(v1_agent.ProcessIO.FromString(record))
    return out


def output(ios, kind) -> bytes:
    return b"".join(io.data.data for io in ios if io.type == io.DATA and io.data.type == kind)


def wait_call(agent, session_id: str) -> requests.Response:
    return requests.post(agent["url"], json={"type": "WAIT_CONTAINER",
                                             "wait_container": {"container_id": nested(agent, session_id)}},
                         timeout=60)


def input_call(agent, records_: list[bytes]) -> requests.Response:
    return input_call_from(agent, iter(records_))


def input_call_from(agent, body) -> requests.Response:
    return requests.post(agent["url"], data=body, timeout=60,
                         headers={"Content-Type": RECORDIO, "Message-Content-Type": JSON, "Accept": JSON})


def container_id_record(agent, session_id: str) -> bytes:
    return recordio.encode(json.dumps({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
        "type": "CONTAINER_ID", "container_id": nested(agent, session_id)}}).encode())


def stdin_record(data: bytes) -> bytes:
    return recordio.encode(json.dumps({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
        "type": "PROCESS_IO", "process_io": {"type": "DATA", "data": {
            "type": "STDIN", "data": base64.b64encode(data).decode()}}}}).encode())


# -- the CLI ------------------------------------------------------------------------------


def test_exec_runs_in_the_tasks_pid_namespace(agent):
    done = cli(agent, "exec", agent["sleeper"], "--", "cat", "/proc/1/cmdline")
    assert done.returncode == 0, done.stderr
    argv = done.stdout.split(b"\0")
    assert "offerd-init" in os.path.basename(argv[0].decode())   # PID 1 of the task's namespace
    assert b"sleep 600" in done.stdout


def test_exec_separates_stdout_and_stderr_and_returns_the_exit_code(agent):
    done = cli(agent, "exec", agent["sleeper"], "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\n")


def test_exec_without_interactive_gives_an_empty_stdin(agent):
    done = cli(agent, "exec", agent["sleeper"], "--", "cat", input=b"not sent\n")
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


def test_exec_interactive_pipes_stdin(agent):
    done = cli(agent, "exec", "-i", agent["sleeper"], "--", "cat", input=b"hello\nworld\n")
    assert (done.returncode, done.stdout) == (0, b"hello\nworld\n"), done.stderr


def test_exec_runs_as_the_tasks_user_in_its_cgroups_and_sandbox(agent):
    done = cli(agent, "exec", agent["sleeper"], "--", "sh", "-c", "id -u; pwd; cat /proc/self/cgroup")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == str(pwd.getpwnam(USER).pw_uid)
    assert lines[1] == "/mnt/mesos/sandbox"
    task_pid = next(p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "600"])
    assert sorted(lines[2:]) == sorted(open(f"/proc/{task_pid}/cgroup").read().splitlines())
    assert any(agent["container"] in line for line in lines[2:])


def test_exec_with_a_tty(agent):
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERD_")}
    proc = subprocess.Popen([sys.executable, "-m", "offerd", "task", "exec", "--master", agent["master"], "--tty",
                             agent["sleeper"], "--", "sh"], cwd=ROOT, env=env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        written = False
        while proc.poll() is None and time.monotonic() < deadline:
            if not written and b"$ " in seen:   # the shell's prompt: the terminal is raw and attached
                os.write(master, b"tty; exit 3\n")
                written = True
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert proc.wait(30) == 3, seen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert re.search(rb"/dev/pts/\d+", seen), seen


def test_unknown_task_is_a_clear_error(agent):
    done = cli(agent, "exec", "no-such-task", "--", "true")
    assert done.returncode == 1 and b"no running task 'no-such-task'" in done.stderr


def test_missing_command_is_a_usage_error(agent):
    assert cli(agent, "exec", agent["sleeper"]).returncode == 2


def test_attach_follows_a_tasks_output(agent):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERD_")}
    proc = subprocess.Popen([sys.executable, "-m", "offerd", "task", "attach", "--master", agent["master"],
                             agent["ticker"]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.startswith(b"tick-"), proc.stderr.read() if not line else line
    finally:
        proc.kill()
        proc.wait()


# -- the raw calls ------------------------------------------------------------------------


def test_launch_in_protobuf_and_wait_for_the_exit_status(agent):
    call = v1_agent.Call(type=v1_agent.Call.LAUNCH_NESTED_CONTAINER_SESSION)
    session = call.launch_nested_container_session
    session.container_id.value = "proto-" + uuid.uuid4().hex
    session.container_id.parent.value = agent["container"]
    session.command.value = "echo protobuf; exit 5"
    answer = requests.post(agent["url"], data=call.SerializeToString(), stream=True, timeout=60,
                           headers={"Content-Type": PROTOBUF, "Accept": RECORDIO, "Message-Accept": PROTOBUF})
    ios = records(answer, PROTOBUF)
    assert output(ios, v1_agent.ProcessIO.Data.STDOUT) == b"protobuf\n"
    waited = wait_call(agent, session.container_id.value)
    assert waited.status_code == 200 and waited.json()["wait_container"]["exit_status"] == 5 << 8


def test_closing_the_output_connection_destroys_the_session(agent):
    session_id = "broken-" + uuid.uuid4().hex
    answer = launch(agent, session_id, {"value": "exec sleep 301"})
    assert answer.status_code == 200
    wait_for(lambda: any(p.info["cmdline"] == ["sleep", "301"] for p in psutil.process_iter(["cmdline"])),
             timeout=30, message="the session's process")
    answer.close()
    waited = wait_call(agent, session_id)
    assert waited.json()["wait_container"]["exit_status"] == 9   # SIGKILL
    wait_for(lambda: not any(p.info["cmdline"] == ["sleep", "301"] for p in psutil.process_iter(["cmdline"])),
             timeout=30, message="the session's process to be gone")


def test_attach_output_of_a_task_shows_what_it_prints_afterwards(agent):
    before = open(os.path.join(agent["ticker_sandbox"], "stdout"), "rb").read()
    last = max(int(n) for n in re.findall(rb"tick-(\d+)", before))
    answer = requests.post(agent["url"], json={"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {
        "container_id": {"value": agent["ticker_container"]}}}, stream=True, timeout=60,
        headers={"Accept": RECORDIO, "Message-Accept": JSON})
    assert answer.status_code == 200, answer.text
    decoder = recordio.Decoder()
    seen = b""
    for chunk in answer.iter_content(None):
        for record in decoder.feed(chunk):
            doc = json.loads(record)
            if doc["type"] == "DATA":
                seen += base64.b64decode(doc["data"]["data"])
        if re.search(rb"tick-\d+\n", seen):
            break
    answer.close()
    assert min(int(n) for n in re.findall(rb"tick-(\d+)\n", seen)) > last - 1


def test_input_streams_to_a_session(agent):
    session_id = "cat-" + uuid.uuid4().hex
    answer = launch(agent, session_id, {"value": "cat"})
    assert answer.status_code == 200
    sent = input_call(agent, [container_id_record(agent, session_id), stdin_record(b"streamed\n"),
                              stdin_record(b"")])
    assert sent.status_code == 200, sent.text
    assert output(records(answer), v1_agent.ProcessIO.Data.STDOUT) == b"streamed\n"
    assert wait_call(agent, session_id).json()["wait_container"]["exit_status"] == 0


def test_refusals_change_nothing(agent):
    unknown = launch(agent, "x", {"value": "true"})
    unknown.close()
    body = {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
        "container_id": {"value": "x", "parent": {"value": "no-such-container"}}, "command": {"value": "true"}}}
    answer = requests.post(agent["url"], json=body, headers={"Accept": RECORDIO}, timeout=30)
    assert answer.status_code == 404
    records(unknown)
    # Reusing a session's id.
    again = launch(agent, "x", {"value": "false"})
    assert again.status_code == 400 and "already exists" in again.text
    assert wait_call(agent, "x").json()["wait_container"]["exit_status"] == 0
    # Input: the first record must name the container; framing; sizes; non-session containers.
    first_not_id = input_call(agent, [stdin_record(b"x")])
    assert first_not_id.status_code == 400 and "CONTAINER_ID" in first_not_id.text
    assert input_call(agent, [b"abc\n"]).status_code == 400
    assert input_call(agent, [b"99999999\n"]).status_code == 413
    plain = input_call(agent, [recordio.encode(json.dumps({"type": "ATTACH_CONTAINER_INPUT",
                                                           "attach_container_input": {
                                                               "type": "CONTAINER_ID", "container_id": {
                                                                   "value": agent["container"]}}}).encode())])
    assert plain.status_code == 400 and "attachable stdin" in plain.text
    assert input_call(agent, [container_id_record(agent, "never-launched")]).status_code == 404


def test_a_second_input_connection_is_refused(agent):
    session_id = "two-" + uuid.uuid4().hex
    answer = launch(agent, session_id, {"value": "cat"})
    assert answer.status_code == 200
    release = threading.Event()

    def first_connection():
        yield container_id_record(agent, session_id)
        yield stdin_record(b"one\n")
        release.wait(30)
        yield stdin_record(b"")

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("first", input_call_from(agent, first_connection())))
    thread.start()
    decoder = recordio.Decoder()
    seen = b""
    chunks = answer.iter_content(None)   # kept: a dropped iterator closes the connection, ending the session
    while b"one\n" not in seen:   # "one" echoed: the first connection is attached
        for record in decoder.feed(next(chunks)):
            doc = json.loads(record)
            if doc["type"] == "DATA":
                seen += base64.b64decode(doc["data"]["data"])
    second = input_call(agent, [container_id_record(agent, session_id), stdin_record(b"two\n")])
    assert second.status_code == 409 and "Multiple input connections are not allowed" in second.text, second.text
    release.set()
    thread.join(60)
    assert result["first"].status_code == 200
    answer.close()
    assert wait_call(agent, session_id).json()["wait_container"]["exit_status"] == 0


def test_kill_and_wait_of_a_nested_container(agent):
    session_id = "kill-" + uuid.uuid4().hex
    answer = launch(agent, session_id, {"value": "exec sleep 302"})
    assert answer.status_code == 200
    wait_for(lambda: any(p.info["cmdline"] == ["sleep", "302"] for p in psutil.process_iter(["cmdline"])),
             timeout=30, message="the session's process")
    listed = requests.post(agent["url"], json={"type": "GET_CONTAINERS", "get_containers": {"show_nested": True}},
                           timeout=30).json()["get_containers"]["containers"]
    assert nested(agent, session_id) in [c["container_id"] for c in listed]
    plain = requests.post(agent["url"], json={"type": "GET_CONTAINERS"}, timeout=30).json()
    assert all("parent" not in c["container_id"] for c in plain["get_containers"]["containers"])
    killed = requests.post(agent["url"], json={"type": "KILL_CONTAINER", "kill_container": {
        "container_id": nested(agent, session_id), "signal": 15}}, timeout=30)
    assert killed.status_code == 200, killed.text
    records(answer)   # the stream ends with the process
    waited = requests.post(agent["url"], json={"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
        "container_id": nested(agent, session_id)}}, timeout=30)
    assert waited.json() == {"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {"exit_status": 15}}
    again = requests.post(agent["url"], json={"type": "KILL_CONTAINER", "kill_container": {
        "container_id": nested(agent, session_id)}}, timeout=30)
    assert again.status_code == 404


def test_a_session_ends_with_its_parent_container(agent):
    framework = agent["framework"]
    task_id = framework.scheduler.submit("sleep 603")
    framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
    containers = requests.post(agent["url"], json={"type": "GET_CONTAINERS"}, timeout=30).json()
    (parent,) = [c["container_id"]["value"] for c in containers["get_containers"]["containers"]
                 if c["executor_id"]["value"] == task_id]
    own = dict(agent, container=parent)
    answer = launch(own, "orphan", {"value": "exec sleep 304"})
    assert answer.status_code == 200
    wait_for(lambda: any(p.info["cmdline"] == ["sleep", "304"] for p in psutil.process_iter(["cmdline"])),
             timeout=30, message="the session's process")
    framework.driver.killTask(pb.TaskID(value=task_id))
    framework.scheduler.wait_state(task_id, pb.TASK_KILLED)
    records(answer)   # ends: the session was killed with its parent
    assert wait_call(own, "orphan").json()["wait_container"]["exit_status"] == 9


def test_a_container_without_namespaces_and_the_session_user_rules(tmp_path):
    """posix isolation: the session shares the host's PID namespace, as its task does.
    With --acls a session may run as another user the ACLs allow, never as root."""
    # No principal (no authentication here) may run a session as daemon.
    acls = {"permissive": True, "launch_nested_container_sessions": [
        {"principals": {"type": "NONE"}, "users": {"values": ["daemon"]}}]}
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(
        master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
        resources="cpus:1;mem:512;disk:512", registration_backoff_factor=0.2, acls=json.dumps(acls),
        isolation="posix/cpu,posix/mem")).start()
    framework = RunningFramework(f"127.0.0.1:{master.http_port}", info=pb.FrameworkInfo(name="posix", user=USER))
    framework.__enter__()
    try:
        task_id = framework.scheduler.submit("sleep 600")
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        base = f"http://127.0.0.1:{slave.http_port}"
        executor = requests.get(base + "/state", timeout=10).json()["frameworks"][0]["executors"][0]
        own = {"url": base + "/api/v1", "container": executor["container"]}
        ios = records(launch(own, "host", {"value": "cat /proc/1/comm; id -u; pwd"}))
        lines = output(ios, v1_agent.ProcessIO.Data.STDOUT).decode().splitlines()
        assert lines == [open("/proc/1/comm").read().strip(), str(pwd.getpwnam(USER).pw_uid), executor["directory"]]
        as_daemon = launch(own, "daemon", {"value": "true", "user": "daemon"})
        assert as_daemon.status_code == 403 and "launch_nested_container_sessions" in as_daemon.text
        as_root = launch(own, "root", {"value": "true", "user": "root"})
        assert as_root.status_code == 403 and "root" in as_root.text
        for refused in ("daemon", "root"):
            assert wait_call(own, refused).status_code == 404   # nothing was launched
    finally:
        framework.__exit__(None, None, None)
        slave.stop()
        master.stop()


def test_exec_on_a_secure_cluster(cluster_factory):
    """`offerd local --secure`: https slaves, authentication and ACLs; the CLI gets
    in with OFFERD_CONFIG's principal and CA, as the other tools do."""
    from tests.conftest import client_env

    cluster = cluster_factory(slaves=1, secure=True, slave_args=["--isolation=namespaces/pid,filesystem/linux"])
    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs()) as framework:
        task_id = framework.scheduler.submit("sleep 600")
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        done = subprocess.run([sys.executable, "-m", "offerd", "task", "exec", task_id, "--", "sh", "-c",
                               "cat /proc/1/cmdline; exit 4"], cwd=ROOT, env=client_env(cluster),
                              capture_output=True, timeout=60)
        assert done.returncode == 4, done.stderr
        assert b"offerd-init" in done.stdout
        anonymous = {k: v for k, v in client_env(cluster).items() if k != "OFFERD_CONFIG"}
        refused = subprocess.run([sys.executable, "-m", "offerd", "task", "exec", "--master",
                                  f"https://{cluster.master}", task_id, "--", "true"], cwd=ROOT, env=anonymous,
                                 capture_output=True, timeout=60)
        assert refused.returncode == 1 and refused.stderr


def test_streams_are_capped_and_the_slave_keeps_serving(agent):
    from offerd.slave.container_sessions import MAX_STREAMS

    def free_slots():
        probe = launch(agent, "probe-" + uuid.uuid4().hex, {"value": "true"})
        try:
            return probe.status_code == 200
        finally:
            probe.close()

    wait_for(free_slots, timeout=30, message="the other tests' streams to be released")
    streams = [launch(agent, f"cap-{i}-" + uuid.uuid4().hex, {"value": "exec sleep 306"}) for i in range(MAX_STREAMS)]
    try:
        assert all(s.status_code == 200 for s in streams)
        beyond = launch(agent, "beyond", {"value": "true"})
        assert beyond.status_code == 503 and "streaming container calls" in beyond.text
        assert wait_call(agent, "beyond").status_code == 404   # nothing was launched
        assert requests.get(agent["url"][:-len("/api/v1")] + "/state", timeout=10).status_code == 200
        assert requests.post(agent["url"], json={"type": "GET_HEALTH"}, timeout=10).status_code == 200
    finally:
        for stream in streams:
            stream.close()
    wait_for(free_slots, timeout=30, message="closed streams to give their slots back")
    wait_for(lambda: not any(p.info["cmdline"] == ["sleep", "306"] for p in psutil.process_iter(["cmdline"])),
             timeout=30, message="the closed streams' sessions to be destroyed")


def test_an_input_body_beyond_the_limit_is_413(agent):
    from offerd.common.http import MAX_REQUEST_BODY

    session_id = "big-" + uuid.uuid4().hex
    answer = launch(agent, session_id, {"value": "cat >/dev/null"})
    assert answer.status_code == 200
    chunk = stdin_record(b"x" * (512 * 1024))
    body = [container_id_record(agent, session_id)] + [chunk] * (MAX_REQUEST_BODY // len(chunk) + 2)
    refused = input_call(agent, body)
    assert refused.status_code == 413, refused.text
    answer.close()
