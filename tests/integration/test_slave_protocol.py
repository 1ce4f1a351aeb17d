"""A real Slave, real processes and sockets, against a protocol-level fake master
(see tests/fakes/master_for_slaves.py for why a fake master and not the real one)."""

import glob
import os
import subprocess
import time

import psutil
import pytest
import requests

from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.checkpoint import read_slave_info, slave_info_path
from offerd.slave.containerizer.posix import pid_directory
from tests.fakes.master_for_slaves import Call, Event, command_task, framework_info, kill_task, run_task, slave_flags
from tests.support import wait_for

KILLING = pb.FrameworkInfo.Capability.TASK_KILLING_STATE


def registered(slave):
    return wait_for(lambda: slave.slave_id, 10)


def sandbox_file(slave, task_id, name="stdout"):
    pattern = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", "F1",
                           "executors", task_id, "runs", "*", name)
    return wait_for(lambda: glob.glob(pattern), 5)[0]


def test_registers_with_its_info_and_checkpoints_the_id(master, start_slave):
    slave = start_slave()
    slave_id = registered(slave)
    info = master.wait_call(Call.REGISTER).register.slave_info
    assert (info.hostname, info.ip, info.port) == ("test-host", "127.0.0.1", slave.http_port)
    assert {r.name for r in info.resources} == {"cpus", "mem", "disk", "ports"}
    assert {a.name: a.text.value for a in info.attributes} == {"rack": "r1", "ssd": "true"}
    saved = wait_for(lambda: read_slave_info(slave.flags.work_dir))
    assert saved.id.value == slave_id and saved.hostname == "test-host"
    assert slave_info_path(slave.flags.work_dir).endswith("meta/slaves/latest/slave.info")


def test_command_task_updates_arrive_in_order_and_are_resent_until_acknowledged(master, start_slave):
    master.auto_ack = False
    slave = start_slave()
    slave_id = registered(slave)
    master.send(slave_id, run_task(command_task("echo", "echo hi")))

    expected = ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    for i, state in enumerate(expected):
        first = master.wait_state("echo", pb.TaskState.Value(state))
        # Unacknowledged, the update comes again (retry interval 0.3 s) and nothing overtakes it.
        wait_for(lambda: sum(c.update.status.uuid == first.uuid for c in master.updates("echo")) >= 2, 3)
        assert master.states("echo") == expected[: i + 1]
        resend = [c for c in master.updates("echo") if c.update.status.uuid == first.uuid][-1]
        if state == "TASK_STARTING":
            assert resend.update.latest_state == pb.TASK_FINISHED  # `echo` is long done
        master.acknowledge(slave_id, resend)
    assert master.states("echo") == expected
    with open(sandbox_file(slave, "echo")) as handle:
        assert handle.read() == "hi\n"
    assert os.listdir(pid_directory(slave.flags.work_dir)) == []  # nothing left to clean up
    # Once the terminal update is acknowledged there is nothing left to resend.
    count = len(master.updates("echo"))
    time.sleep(0.8)
    assert len(master.updates("echo")) == count


def test_failed_command_reports_its_exit_status(master, start_slave):
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("bad", "echo oops >&2; exit 3")))
    status = master.wait_terminal("bad")
    assert status.state == pb.TASK_FAILED
    # Mesos' words, then the task's last line on stderr: why it failed.
    assert status.message == "Command exited with status 3: oops"
    assert master.states("bad") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]


def test_command_that_cannot_start_fails_as_a_launch_failure(master, start_slave):
    slave_id = registered(start_slave())
    task = command_task("nope", "/nonexistent/program")
    task.command.shell = False
    master.send(slave_id, run_task(task))
    status = master.wait_terminal("nope")
    assert status.state == pb.TASK_FAILED
    assert status.reason == pb.TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
    assert "/nonexistent/program" in status.message


def test_task_sees_its_environment(master, start_slave):
    slave = start_slave()
    slave_id = registered(slave)
    task = command_task("env", 'echo "$MESOS_TASK_ID|$MESOS_FRAMEWORK_ID|$MESOS_SLAVE_ID|$OFFERD_TASK_ID|$GREETING|$PWD"')
    task.command.environment.variables.add(name="GREETING", value="hello")
    master.send(slave_id, run_task(task))
    assert master.wait_terminal("env").state == pb.TASK_FINISHED
    path = sandbox_file(slave, "env")
    with open(path) as handle:
        assert handle.read().strip() == f"env|F1|{slave_id}|env|hello|{os.path.dirname(path)}"


def test_kill_escalates_to_sigkill_after_the_grace_period(master, start_slave):
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("stubborn", "trap '' TERM; sleep 60", grace=1.0),
                                   framework_info(KILLING)))
    master.wait_state("stubborn", pb.TASK_RUNNING)
    time.sleep(0.2)  # let the shell install its trap
    started = time.monotonic()
    master.send(slave_id, kill_task("stubborn"))
    status = master.wait_terminal("stubborn", timeout=5)
    elapsed = time.monotonic() - started
    assert status.state == pb.TASK_KILLED
    assert "SIGKILL" in status.message
    assert 0.9 <= elapsed <= 2.5
    assert master.states("stubborn") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]


def test_kill_policy_of_the_kill_call_wins_and_sigterm_suffices_for_a_polite_task(master, start_slave):
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("polite", "sleep 60", grace=30.0)))
    master.wait_state("polite", pb.TASK_RUNNING)
    event = kill_task("polite")
    event.kill_task.kill_policy.grace_period.nanoseconds = 5 * 10**9
    master.send(slave_id, event)
    status = master.wait_terminal("polite", timeout=3)
    assert status.state == pb.TASK_KILLED and "SIGTERM" in status.message
    assert "TASK_KILLING" not in master.states("polite")  # the framework lacks the capability


def test_kill_of_an_unknown_task_reports_it_lost(master, start_slave):
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("known", "true")))
    master.wait_terminal("known")
    master.send(slave_id, kill_task("ghost"))
    status = master.wait_terminal("ghost")
    assert status.state == pb.TASK_LOST and status.reason == pb.TaskStatus.REASON_TASK_UNKNOWN
    # A task that ran here and ended is not unknown: killing it again changes nothing.
    count = len(master.updates("known"))
    master.send(slave_id, kill_task("known"))
    time.sleep(0.3)
    assert len(master.updates("known")) == count


def test_tasks_sent_before_registration_are_ignored(master, start_slave):
    master.auto_register = False
    slave = start_slave()
    register = master.wait_call(Call.REGISTER)
    peer = next(p for _, p, c in master.calls if c is register)
    master.peers["early"] = peer
    master.send("early", run_task(command_task("early", "true")))
    time.sleep(0.5)
    assert master.updates("early") == []
    slave_id = master.actor.call(master.register, peer)
    wait_for(lambda: slave.slave_id == slave_id)
    master.send(slave_id, run_task(command_task("late", "true")))
    assert master.wait_terminal("late").state == pb.TASK_FINISHED


def test_invalid_task_is_answered_with_task_error(master, start_slave):
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("../escape", "true")))
    status = master.wait_terminal("../escape")
    assert status.state == pb.TASK_ERROR and status.reason == pb.TaskStatus.REASON_TASK_INVALID
    negative = command_task("negative", "true")
    negative.resources[0].scalar.value = -1
    master.send(slave_id, run_task(negative))
    status = master.wait_terminal("negative")
    assert status.state == pb.TASK_ERROR and "invalid resources" in status.message and "negative" in status.message


def test_restarted_slave_reregisters_with_the_same_id(master, tmp_path):
    flags = slave_flags(master, tmp_path / "work")
    first = Slave(flags).start()
    try:
        slave_id = registered(first)
    finally:
        first.stop()
    second = Slave(slave_flags(master, tmp_path / "work")).start()
    try:
        rereg = master.wait_call(Call.REREGISTER)
        assert rereg.reregister.slave_info.id.value == slave_id
        assert rereg.slave_id.value == slave_id
        wait_for(lambda: second.slave_id == slave_id)
        assert len(master.received(Call.REGISTER)) == 1
    finally:
        second.stop()


def test_reconnect_reregisters_with_tasks_and_resends_pending_updates(master, start_slave):
    master.auto_ack = False
    slave_id = registered(start_slave())
    master.send(slave_id, run_task(command_task("long", "sleep 30")))
    starting = master.wait_state("long", pb.TASK_STARTING)
    master.restart_connection()
    rereg = master.wait_call(Call.REREGISTER, timeout=10).reregister
    assert rereg.slave_info.id.value == slave_id
    task = next(t for t in rereg.tasks if t.task_id.value == "long")
    assert task.state == pb.TASK_RUNNING
    assert task.status_update_state == pb.TASK_STARTING and task.status_update_uuid == starting.uuid
    assert [f.id.value for f in rereg.frameworks] == ["F1"]
    # The unacknowledged update is flushed to the new connection right after REREGISTERED.
    rereg_at = next(t for t, _, c in master.calls if c.type == Call.REREGISTER)
    wait_for(lambda: any(t > rereg_at and c.type == Call.UPDATE for t, _, c in master.calls), 3)


def test_master_shutdown_kills_everything_and_forgets_the_id(master, start_slave):
    slave = start_slave()
    slave_id = registered(slave)
    master.send(slave_id, run_task(command_task("victim", "echo $$ > pid; exec sleep 60")))
    master.wait_state("victim", pb.TASK_RUNNING)
    pid_file = sandbox_file(slave, "victim", "pid")
    pid = int(wait_for(lambda: open(pid_file).read().strip()))
    master.send(slave_id, Event(type=Event.SHUTDOWN, error=Event.Error(message="removed by the operator")))
    assert slave.wait(10)
    assert slave.shutdown_reason == "removed by the operator"
    assert read_slave_info(slave.flags.work_dir) is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_http_state_files_and_statistics(master, start_slave):
    slave = start_slave()
    slave_id = registered(slave)
    master.send(slave_id, run_task(command_task("web", "echo served; exec sleep 30")))
    master.wait_state("web", pb.TASK_RUNNING)
    base = f"http://127.0.0.1:{slave.http_port}"
    assert requests.get(f"{base}/health").status_code == 200

    state = requests.get(f"{base}/state").json()
    assert requests.get(f"{base}/slave(1)/state").json()["id"] == state["id"] == slave_id
    assert state["hostname"] == "test-host" and state["resources"]["cpus"] == 2
    assert state["attributes"] == {"rack": "r1", "ssd": "true"}
    executor = state["frameworks"][0]["executors"][0]
    assert executor["id"] == "web" and executor["tasks"][0]["state"] == "TASK_RUNNING"
    directory = executor["directory"]

    listing = requests.get(f"{base}/files/browse", params={"path": directory}).json()
    assert {os.path.basename(e["path"]) for e in listing} >= {"stdout", "stderr"}
    stdout = os.path.join(directory, "stdout")
    wait_for(lambda: requests.get(f"{base}/files/read", params={"path": stdout}).json()["data"] == "served\n")
    assert requests.get(f"{base}/files/read", params={"path": stdout, "offset": -1}).json() == \
        {"data": "", "offset": 7}
    assert requests.get(f"{base}/files/read", params={"path": stdout, "offset": 2, "length": 3}).json() == \
        {"data": "rve", "offset": 2}
    assert requests.get(f"{base}/files/download", params={"path": stdout}).content == b"served\n"
    assert requests.get(f"{base}/files/read", params={"path": "/etc/passwd"}).status_code == 403
    escape = os.path.join(directory, "..", "..", "..", "..", "..", "..", "..", "..", "..", "etc", "passwd")
    assert requests.get(f"{base}/files/read", params={"path": escape}).status_code == 403
    assert requests.get(f"{base}/files/read", params={"path": directory + "/missing"}).status_code == 404

    stats = requests.get(f"{base}/monitor/statistics").json()
    entry = next(s for s in stats if s["executor_id"] == "web")
    assert entry["framework_id"] == "F1"
    assert entry["statistics"]["processes"] >= 1 and entry["statistics"]["mem_rss_bytes"] > 0

    metrics = requests.get(f"{base}/metrics/snapshot").json()
    assert metrics["slave/registered"] == 1 and metrics["slave/tasks_running"] == 1
    assert metrics["slave/cpus_total"] == 2 and metrics["slave/cpus_used"] == 0.1
    assert metrics["slave/cpus_percent"] == 0.05 and metrics["slave/mem_total"] == 1024
    assert requests.get(f"{base}/flags").json()["flags"]["hostname"] == "test-host"

    master.send(slave_id, kill_task("web"))
    master.wait_terminal("web")
    state = wait_for(lambda: (s := requests.get(f"{base}/state").json())["completed_frameworks"] and s)
    assert state["frameworks"] == []
    completed = state["completed_frameworks"][0]["completed_executors"][0]["completed_tasks"][0]
    assert completed["id"] == "web" and completed["state"] == "TASK_KILLED"


def test_processes_a_killed_slave_left_behind_are_killed_at_the_next_start(master, start_slave, tmp_path):
    # What a container of a slave killed with SIGKILL looks like: a session leader
    # with a child, recorded in the pid directory, and nobody supervising them.
    orphan = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True)
    child = wait_for(lambda: psutil.Process(orphan.pid).children())[0]
    pids = pid_directory(str(tmp_path / "work"))
    os.makedirs(pids)
    with open(os.path.join(pids, "container-of-the-last-run"), "w") as handle:
        handle.write(f"{orphan.pid} {psutil.Process(orphan.pid).create_time()}")
    start_slave()
    assert orphan.wait(5) == -9
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)
    assert os.listdir(pids) == []
