"""The examples and the Mesos-style porting framework, run as real processes
against the protocol-level fakes (tests/fakes/sdk_peers.py).

The doubles play a whole cluster in a few lines: the master answers every
launch with RUNNING and FINISHED and bounces framework messages straight back,
as an echoing executor would. Against a real master and slaves the same scripts
run in tests/integration/test_sdk_porting.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.fakes.sdk_peers import FakeMaster, FakeSlave
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
DATA = b"data with a \0 byte"


class ScriptedMaster(FakeMaster):
    """Offers two slaves' worth of resources; every task runs and finishes at once."""

    def __init__(self, cpus=4.0, mem=4096.0, update_data=b""):
        self.cpus, self.mem, self.update_data = cpus, mem, update_data
        self._offers = iter(range(1, 10_000))
        super().__init__()

    def offer(self, slave: str) -> pb.Offer:
        offer = pb.Offer(hostname=f"host-{slave}")
        offer.id.value = f"O{next(self._offers)}"
        offer.framework_id.value = "fake-master-0000"
        offer.slave_id.value = slave
        for name, value in (("cpus", self.cpus), ("mem", self.mem)):
            offer.resources.add(name=name, type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=value))
        return offer

    def handle(self, peer, call):
        super().handle(peer, call)
        if call.type == pb.Call.SUBSCRIBE:
            self.server.send(peer, pb.Event(type=pb.Event.OFFERS,
                                            offers=pb.Event.Offers(offers=[self.offer("S1"), self.offer("S2")])))
        elif call.type == pb.Call.ACCEPT:
            slave = None
            for operation in call.accept.operations:
                for task in operation.launch.task_infos:
                    slave = task.slave_id.value
                    for state in (pb.TASK_RUNNING, pb.TASK_FINISHED):
                        self.server.send(peer, self.update(task, state))
            if slave is not None:  # the slave has room again: offer it
                self.server.send(peer, pb.Event(type=pb.Event.OFFERS,
                                                offers=pb.Event.Offers(offers=[self.offer(slave)])))
        elif call.type == pb.Call.MESSAGE:
            echo = pb.Event(type=pb.Event.MESSAGE)
            echo.message.slave_id.CopyFrom(call.message.slave_id)
            echo.message.executor_id.CopyFrom(call.message.executor_id)
            echo.message.data = call.message.data
            self.server.send(peer, echo)

    def update(self, task, state):
        event = pb.Event(type=pb.Event.UPDATE)
        status = event.update.status
        status.task_id.CopyFrom(task.task_id)
        status.slave_id.CopyFrom(task.slave_id)
        status.state = state
        status.source = pb.TaskStatus.SOURCE_EXECUTOR
        status.uuid = os.urandom(16)
        status.data = self.update_data
        if task.HasField("executor"):
            status.executor_id.CopyFrom(task.executor.executor_id)
        return event


@pytest.fixture
def scripted_master(request):
    fake = ScriptedMaster(**getattr(request, "param", {}))
    yield fake
    fake.close()


def run(args, env=None, timeout=30):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("scripted_master", [{"update_data": DATA}], indirect=True)
@pytest.mark.parametrize("explicit", [False, True], ids=["implicit-acks", "explicit-acks"])
def test_the_porting_framework_runs_unchanged(scripted_master, explicit):
    env = {"MESOS_EXPLICIT_ACKNOWLEDGEMENTS": "1"} if explicit else {}
    result = run([ROOT / "tests/porting/porting_framework.py", scripted_master.master], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All tasks done, and all messages received, exiting" in result.stdout
    launched = [t for c in scripted_master.of_type(pb.Call.ACCEPT)
                for op in c.accept.operations for t in op.launch.task_infos]
    assert sorted(t.task_id.value for t in launched) == ["0", "1", "2", "3", "4"]
    assert len(scripted_master.of_type(pb.Call.ACKNOWLEDGE)) == 10
    assert [m.message.data for m in scripted_master.of_type(pb.Call.MESSAGE)] == [DATA] * 5
    assert len(scripted_master.of_type(pb.Call.TEARDOWN)) == 1


@pytest.mark.parametrize("scripted_master", [{"cpus": 2.0, "mem": 1024.0}], indirect=True)
def test_the_shell_framework_packs_tasks_into_offers(scripted_master):
    result = run([ROOT / "examples/shell_framework.py", "--master", scripted_master.master,
                  "--tasks", 7, "--cpus", 0.5, "--mem", 100, "--command", "true"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 finished, 0 failed, 0 not run, of 7 task(s)" in result.stdout
    per_accept = [len(c.accept.operations[0].launch.task_infos) for c in scripted_master.of_type(pb.Call.ACCEPT)]
    assert sum(per_accept) == 7 and max(per_accept) == 4  # 2 cpus / 0.5 per task
    assert scripted_master.of_type(pb.Call.SUPPRESS)


@pytest.mark.parametrize("scripted_master", [{"cpus": 1.0, "mem": 1024.0}], indirect=True)
def test_the_custom_executor_scheduler_accounts_for_its_executor(scripted_master):
    result = run([ROOT / "examples/custom_executor/scheduler.py", "--master", scripted_master.master,
                  "--tasks", 5, "--cpus", 0.25])
    assert result.returncode == 0, result.stdout + result.stderr
    first = scripted_master.of_type(pb.Call.ACCEPT)[0].accept.operations[0].launch.task_infos
    assert len(first) == 3  # 1 cpu - 0.1 for the executor leaves room for 3 tasks of 0.25
    command = first[0].executor.command.value
    assert sys.executable in command and command.endswith("executor.py")
    assert "2 of 2 executor(s) echoed the greeting" in result.stdout


@pytest.fixture
def slave():
    fake = FakeSlave()
    yield fake
    fake.close()


def start_executor(script, slave):
    return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env={**os.environ, **slave.environment()},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch(slave, task_id, data=b""):
    event = pb.ExecutorEvent(type=pb.ExecutorEvent.LAUNCH)
    event.launch.task.task_id.value = task_id
    event.launch.task.data = data
    slave.send(event)


def states(slave):
    return {(c.update.status.task_id.value, pb.TaskState.Name(c.update.status.state))
            for c in slave.of_type(pb.ExecutorCall.UPDATE)}


def wait_exit(process, timeout=10):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"executor did not exit:\n{output}")
    return process.returncode, output


def test_the_porting_executor_runs_unchanged(slave):
    process = start_executor(ROOT / "tests/porting/porting_executor.py", slave)
    try:
        slave.wait(pb.ExecutorCall.SUBSCRIBE, timeout=10)
        launch(slave, "0")
        launch(slave, "1")
        slave.wait(pb.ExecutorCall.UPDATE, 4, timeout=10)
        assert states(slave) == {("0", "TASK_RUNNING"), ("0", "TASK_FINISHED"),
                                 ("1", "TASK_RUNNING"), ("1", "TASK_FINISHED")}
        assert {c.update.status.data for c in slave.of_type(pb.ExecutorCall.UPDATE)} == {DATA}
        slave.send(pb.ExecutorEvent(type=pb.ExecutorEvent.MESSAGE, message=pb.ExecutorEvent.Message(data=DATA)))
        assert slave.wait(pb.ExecutorCall.MESSAGE).message.data == DATA
        slave.send(pb.ExecutorEvent(type=pb.ExecutorEvent.SHUTDOWN))
        code, output = wait_exit(process)
        assert code == 0, output
    finally:
        process.kill()
        process.wait()


def test_the_example_executor_runs_kills_and_echoes(slave):
    process = start_executor(ROOT / "examples/custom_executor/executor.py", slave)
    try:
        slave.wait(pb.ExecutorCall.SUBSCRIBE, timeout=10)
        launch(slave, "ok", b"true")
        launch(slave, "bad", b"exit 3")
        launch(slave, "long", b"sleep 30")
        wait_for(lambda: ("long", "TASK_RUNNING") in states(slave), 10, message="task long to run")
        kill = pb.ExecutorEvent(type=pb.ExecutorEvent.KILL)
        kill.kill.task_id.value = "long"
        slave.send(kill)
        slave.wait(pb.ExecutorCall.UPDATE, 6, timeout=10)
        assert {s for s in states(slave) if s[1] != "TASK_RUNNING"} == {
            ("ok", "TASK_FINISHED"), ("bad", "TASK_FAILED"), ("long", "TASK_KILLED")}

        slave.send(pb.ExecutorEvent(type=pb.ExecutorEvent.MESSAGE, message=pb.ExecutorEvent.Message(data=b"hi\0")))
        assert slave.wait(pb.ExecutorCall.MESSAGE).message.data == b"echo: hi\0"
        slave.send(pb.ExecutorEvent(type=pb.ExecutorEvent.SHUTDOWN))
        code, output = wait_exit(process)
        assert code == 0, output
    finally:
        process.kill()
        process.wait()
