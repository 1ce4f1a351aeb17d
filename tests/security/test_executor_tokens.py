"""Executor impersonation: only the process a slave started, with the token it
was handed, may speak as that executor (Mesos' executor authentication).

A real Slave runs real executor processes (the raw executor of
tests/integration/test_slave_executors.py) against a protocol-level master
double; the attacker is this test process, which knows everything the slave
shows (framework, executor and container ids, the endpoint and its public key)
but not the token, or only another executor's token.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import urllib.request

import zmq
import zmq.utils.monitor

from offerd.common.transport import MAGIC, encode
from offerd.proto import offerd_pb2 as pb
from offerd.slave.recovery import TOKEN_FILE
from tests.fakes.master_for_slaves import FRAMEWORK_ID, command_task, framework_info, kill_task, run_task
from tests.integration.test_slave_executors import authenticate, encrypted_socket, executor_task, started
from tests.support import wait_for

CTX = zmq.Context.instance()
ExecutorCall = pb.ExecutorCall
TOKEN = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"


def executor_call(kind, executor_id="exec-1", **fields) -> ExecutorCall:
    return ExecutorCall(type=kind, framework_id=pb.FrameworkID(value=FRAMEWORK_ID),
                        executor_id=pb.ExecutorID(value=executor_id), **fields)


def forged_update(task_id: str, executor_id: str = "exec-1") -> ExecutorCall:
    status = pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=pb.TASK_FAILED, message="forged")
    return executor_call(ExecutorCall.UPDATE, executor_id, update=ExecutorCall.Update(status=status))


def ask(sock, call) -> pb.ExecutorEvent:
    """Send one call; the slave's answer (an ERROR when refused)."""
    sock.send_multipart(encode(call))
    assert sock.poll(10000), "the slave did not answer"
    frames = sock.recv_multipart()
    assert frames[0] == MAGIC and frames[1] == b"offerd.v1.ExecutorEvent", frames[:2]
    return pb.ExecutorEvent.FromString(frames[2])


def container_of(slave, executor_id: str) -> str:
    return slave.actor.call(lambda: slave.core.find_executor(FRAMEWORK_ID, executor_id).container_id)


def environment_of(pid: int) -> dict[str, str]:
    """A process's environment, as any process of the same user can read it."""
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [entry.split(b"=", 1) for entry in handle.read().split(b"\0") if b"=" in entry]
    return {key.decode(): value.decode() for key, value in pairs}


def running_executor(master, slave_id, tmp_path, task_id, executor_id, framework=None) -> int:
    """Launch `task_id` on a fresh executor; returns the executor's pid (its TASK_RUNNING data)."""
    task = executor_task(tmp_path, task_id, executor_id=executor_id)
    master.send(slave_id, run_task(task, framework))
    return int(master.wait_state(task_id, pb.TASK_RUNNING).data)


def assert_still_in_charge(master, slave_id, task_id):
    """The real executor still runs its task: a kill goes through it, and the
    master never heard anything the attacker sent."""
    master.send(slave_id, kill_task(task_id))
    assert master.wait_terminal(task_id).state == pb.TASK_KILLED
    assert master.states(task_id) == ["TASK_RUNNING", "TASK_KILLED"]
    assert all(c.update.status.message != "forged" for c in master.received(pb.SlaveCall.UPDATE))


def test_knowing_the_ids_without_the_token_gets_nothing(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    running_executor(master, slave_id, tmp_path, "real", "exec-1")
    endpoint, public_key = f"tcp://127.0.0.1:{slave.executor_port}", slave.executor_key[0]
    container_id = container_of(slave, "exec-1")

    sock = encrypted_socket(CTX, endpoint, public_key)
    guesser = encrypted_socket(CTX, endpoint, public_key)
    try:
        # An encrypted connection that never authenticated: refused before any lookup.
        for call in (executor_call(ExecutorCall.SUBSCRIBE), forged_update("real"),
                     executor_call(ExecutorCall.MESSAGE, message=ExecutorCall.Message(data=b"x"))):
            answer = ask(sock, call)
            assert answer.type == pb.ExecutorEvent.ERROR
            assert "has not authenticated" in answer.error.message and TOKEN in answer.error.message
        # The right principal with a guessed token: the proof fails, and the
        # connection stays unauthenticated.
        assert authenticate(guesser, container_id, "guessed-token") is False
        answer = ask(guesser, executor_call(ExecutorCall.SUBSCRIBE))
        assert answer.type == pb.ExecutorEvent.ERROR and "has not authenticated" in answer.error.message
    finally:
        sock.close()
        guesser.close()
    assert_still_in_charge(master, slave_id, "real")


def test_one_executors_token_cannot_act_as_another(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    pid_a = running_executor(master, slave_id, tmp_path, "task-a", "exec-a")
    running_executor(master, slave_id, tmp_path, "task-b", "exec-b")
    endpoint, public_key = f"tcp://127.0.0.1:{slave.executor_port}", slave.executor_key[0]
    stolen = environment_of(pid_a)
    container_a, token_a = stolen["MESOS_CONTAINER_ID"], stolen[TOKEN]
    container_b = container_of(slave, "exec-b")
    assert container_a == container_of(slave, "exec-a") and container_a != container_b

    claims_b = encrypted_socket(CTX, endpoint, public_key)
    proves_a = encrypted_socket(CTX, endpoint, public_key)
    try:
        # B's container id with A's token: the proof is checked against B's token.
        assert authenticate(claims_b, container_b, token_a) is False
        # Proven as A, speaking for B: each call names the executor it is about.
        assert authenticate(proves_a, container_a, token_a) is True
        for call in (executor_call(ExecutorCall.SUBSCRIBE, "exec-b"), forged_update("task-b", "exec-b"),
                     executor_call(ExecutorCall.MESSAGE, "exec-b", message=ExecutorCall.Message(data=b"x"))):
            answer = ask(proves_a, call)
            assert answer.type == pb.ExecutorEvent.ERROR
            assert "may only speak for itself" in answer.error.message
    finally:
        claims_b.close()
        proves_a.close()
    assert_still_in_charge(master, slave_id, "task-b")
    assert master.received(pb.SlaveCall.EXECUTOR_MESSAGE) == []


def test_a_plaintext_client_cannot_talk_to_the_executor_endpoint(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    running_executor(master, slave_id, tmp_path, "real", "exec-1")
    sock = CTX.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(f"tcp://127.0.0.1:{slave.executor_port}")
        sock.send_multipart(encode(executor_call(ExecutorCall.SUBSCRIBE)))
        sock.send_multipart(encode(forged_update("real")))
        events = []

        def handshake_refused():
            while monitor.poll(100):
                events.append(zmq.utils.monitor.recv_monitor_message(monitor)["event"])
            return zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in events
        wait_for(handshake_refused)
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
        assert sock.poll(0) == 0  # not a byte came back
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    assert_still_in_charge(master, slave_id, "real")


def test_the_token_is_not_shown_logged_or_inherited(master, start_slave, tmp_path, caplog, monkeypatch):
    # A slave that itself runs with a token in its environment must not pass it on.
    monkeypatch.setenv(TOKEN, "the-slaves-own-token")
    caplog.set_level(logging.DEBUG)
    slave, slave_id = started(master, start_slave)
    checkpointing = framework_info()
    checkpointing.checkpoint = True
    pid = running_executor(master, slave_id, tmp_path, "real", "exec-1", checkpointing)
    token = environment_of(pid)[TOKEN]
    assert token and token != "the-slaves-own-token"

    # Kept for a restarted slave, readable by the slave's user only.
    token_file = wait_for(lambda: [
        os.path.join(root, TOKEN_FILE) for root, _, files in os.walk(os.path.join(slave.flags.work_dir, "meta"))
        if TOKEN_FILE in files])[0]
    assert f"/executors/exec-1/runs/{container_of(slave, 'exec-1')}/" in token_file
    with open(token_file) as handle:
        assert handle.read() == token
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600

    # A command task's environment has no token at all.
    master.send(slave_id, run_task(command_task("cmd", f"env > {tmp_path}/cmd.env"), checkpointing))
    assert master.wait_terminal("cmd").state == pb.TASK_FINISHED
    command_env = (tmp_path / "cmd.env").read_text()
    assert TOKEN not in command_env and "MESOS_TASK_ID=cmd" in command_env

    with urllib.request.urlopen(f"http://127.0.0.1:{slave.http_port}/state", timeout=5) as response:
        state = response.read().decode()
    assert json.loads(state)["frameworks"] and token not in state
    assert token not in caplog.text
    # A checkpointing framework's executor outlives a stopped slave, by design: end it here.
    slave.shutdown()


SDK_EXECUTOR = r'''
import subprocess
from offerd.framework_sdk import Executor, MesosExecutorDriver
from offerd.proto import offerd_pb2 as pb

class Probe(Executor):
    def launchTask(self, driver, task):
        child = subprocess.run(["env"], capture_output=True, text=True).stdout
        inherited = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" in child
        driver.sendStatusUpdate(pb.TaskStatus(task_id=task.task_id, state=pb.TASK_FINISHED,
                                              data=b"inherited" if inherited else b"clean"))

MesosExecutorDriver(Probe()).run()
'''


def test_the_sdk_executor_authenticates_and_keeps_the_token_from_its_children(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    script = tmp_path / "sdk_executor.py"
    script.write_text(SDK_EXECUTOR)
    task = executor_task(tmp_path, "probe")
    task.executor.command.value = f"{sys.executable} {script}"
    master.send(slave_id, run_task(task))
    status = master.wait_terminal("probe")
    assert status.state == pb.TASK_FINISHED and status.source == pb.TaskStatus.SOURCE_EXECUTOR
    assert status.data == b"clean"
