"""Health checks of command tasks, run by a real slave on real tasks (Mesos' rules).

Against the fake master (tests/fakes/master_for_slaves.py), which sees every
status update and acknowledges each one. The checks' own effects (a file each
attempt appends to) say how many attempts ran, so no test depends on timing.
The tests with namespaces, cgroups or another user need root, and skip saying so; the
last ones go through a real master (LocalCluster) and the SDK.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from offerd.common.health_checks import validate_health_check
from offerd.proto import offerd_pb2 as pb
from tests import builders
from tests.builders import RunningFramework
from tests.fakes.master_for_slaves import HIERARCHIES, IS_ROOT, read_when, run_task, sandbox, task
from tests.support import free_port, wait_for

Check = pb.HealthCheck
Reason = pb.TaskStatus
UPDATED = Reason.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
POSIX = "posix/cpu,posix/mem"
IN_CONTAINER = ("cgroups/cpu,cgroups/mem,namespaces/pid,namespaces/uts,namespaces/ipc,namespaces/net,"
                "filesystem/linux")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="namespaces, cgroups and other users need root")
needs_cgroups = pytest.mark.skipif(
    not IS_ROOT or HIERARCHIES is None or not {"cpu", "memory"} <= set(HIERARCHIES.mounts),
    reason="needs root and the cpu and memory cgroup controllers")


def command_check(command: str, **options) -> pb.HealthCheck:
    check = Check(type=Check.COMMAND, command=pb.CommandInfo(value=command))
    return _timing(check, **options)


def _timing(check: pb.HealthCheck, delay=0.0, interval=0.1, timeout=10.0, failures=3, grace=0.0):
    check.delay_seconds, check.interval_seconds, check.timeout_seconds = delay, interval, timeout
    check.consecutive_failures, check.grace_period_seconds = failures, grace
    return check


def checked_task(task_id: str, command: str, check: pb.HealthCheck, **kwargs) -> pb.TaskInfo:
    info = task(task_id, command, **kwargs)
    info.health_check.CopyFrom(check)
    return info


def updates(master, task_id: str) -> list[pb.TaskStatus]:
    """The task's updates in arrival order, resends removed."""
    seen, out = set(), []
    for call in master.updates(task_id):
        status = call.update.status
        if status.uuid not in seen:
            seen.add(status.uuid)
            out.append(status)
    return out


def health(master, task_id: str) -> list[tuple[str, bool | None]]:
    """(state, healthy) of each update; healthy is None when the update does not say."""
    return [(pb.TaskState.Name(s.state), s.healthy if s.HasField("healthy") else None)
            for s in updates(master, task_id)]


def latest(master, task_id: str) -> tuple[str, bool | None] | None:
    seen = health(master, task_id)
    return seen[-1] if seen else None


def attempts(slave, task_id: str) -> int:
    """How many times the check ran (each attempt appends a line to `attempts`)."""
    try:
        with open(os.path.join(sandbox(slave, task_id), "attempts")) as handle:
            return len(handle.read().splitlines())
    except FileNotFoundError:
        return 0


# -- COMMAND ---------------------------------------------------------------------------

def test_a_healthy_task_reports_healthy_once(master, container_slave):
    slave = container_slave(POSIX)
    master.send(slave.slave_id, run_task(checked_task("ok", "sleep 30", command_check("echo . >> attempts"))))
    wait_for(lambda: attempts(slave, "ok") >= 4, 20)
    # Mesos' built-in executors: the first success is sent, later ones are not.
    healthy = [s for s in updates(master, "ok") if s.HasField("healthy")]
    assert [(s.state, s.healthy, s.reason) for s in healthy] == [(pb.TASK_RUNNING, True, UPDATED)]


def test_failing_checks_kill_the_task_after_consecutive_failures(master, container_slave):
    slave = container_slave(POSIX)
    master.send(slave.slave_id, run_task(checked_task(
        "sick", "sleep 30", command_check("echo . >> attempts; exit 3", failures=3))))
    status = master.wait_terminal("sick", 20)
    assert status.state == pb.TASK_KILLED and status.HasField("healthy") and not status.healthy
    assert "3 consecutive failed health checks" in status.message
    assert health(master, "sick") == [("TASK_STARTING", None), ("TASK_RUNNING", None), ("TASK_RUNNING", False),
                                      ("TASK_RUNNING", False), ("TASK_RUNNING", False), ("TASK_KILLED", False)]
    unhealthy = [s for s in updates(master, "sick") if s.state == pb.TASK_RUNNING and s.HasField("healthy")]
    assert all(s.reason == UPDATED and "Command returned status 3" in s.message for s in unhealthy)


def test_failures_in_the_grace_period_are_ignored_until_the_first_success(master, container_slave):
    slave = container_slave(POSIX)
    # Attempts 1-3 fail (ignored: grace), 4-5 pass, 6 and later fail: counted although the grace
    # period has not run out, since it ends with the first success.
    script = 'echo . >> attempts; n=$(wc -l < attempts); [ "$n" -ge 4 ] && [ "$n" -lt 6 ]'
    master.send(slave.slave_id, run_task(checked_task(
        "late", "sleep 30", command_check(script, failures=2, grace=600))))
    status = master.wait_terminal("late", 20)
    assert status.state == pb.TASK_KILLED and not status.healthy
    assert health(master, "late")[2:] == [("TASK_RUNNING", True), ("TASK_RUNNING", False),
                                          ("TASK_RUNNING", False), ("TASK_KILLED", False)]
    assert attempts(slave, "late") == 7


def test_a_check_that_outlives_its_timeout_fails(master, container_slave):
    slave = container_slave(POSIX)
    master.send(slave.slave_id, run_task(checked_task(
        "slow", "sleep 30", command_check("echo . >> attempts; exec sleep 60", timeout=0.3, failures=1))))
    status = master.wait_terminal("slow", 20)
    assert status.state == pb.TASK_KILLED
    assert "Command has not returned after 0.3s" in status.message


@needs_root
@needs_cgroups
def test_command_check_runs_inside_the_task_container_as_its_user(master, container_slave):
    slave = container_slave(IN_CONTAINER)
    # The task and its check each write what they see: user, hostname, namespaces, cgroups,
    # environment. The check writes through the sandbox's mount point, which exists only in
    # the task's mount namespace.
    # Written aside and renamed into place, so a reader never sees half of one.
    def seen(name: str) -> str:
        return ('{ id -u; hostname; readlink /proc/self/ns/mnt /proc/self/ns/pid /proc/self/ns/net '
                '/proc/self/ns/uts /proc/self/ns/ipc; grep -v "^0::/$" /proc/self/cgroup | sort; '
                f'echo "$TASK_VAR"; }} > /mnt/mesos/sandbox/{name}.part && '
                f'mv /mnt/mesos/sandbox/{name}.part /mnt/mesos/sandbox/{name}')
    check = command_check(seen("check.txt") + "; echo \"$CHECK_VAR\" > /mnt/mesos/sandbox/check-var.txt")
    check.command.environment.variables.add(name="CHECK_VAR", value="check's own")
    info = checked_task("boxed", seen("task.txt") + "; exec sleep 30", check)
    info.command.user = "nobody"
    info.command.environment.variables.add(name="TASK_VAR", value="the task's")
    master.send(slave.slave_id, run_task(info))
    master.wait_state("boxed", pb.TASK_RUNNING)
    wait_for(lambda: any(s.HasField("healthy") for s in updates(master, "boxed")), 20)
    directory = sandbox(slave, "boxed")
    task_view = read_when(os.path.join(directory, "task.txt")).splitlines()
    check_view = read_when(os.path.join(directory, "check.txt")).splitlines()
    assert check_view == task_view
    assert task_view[0] == "65534" and task_view[-1] == "the task's"
    host_namespaces = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("mnt", "pid", "net", "uts", "ipc")]
    assert not set(task_view[2:7]) & set(host_namespaces)
    assert task_view[1] != socket.gethostname()
    assert read_when(os.path.join(directory, "check-var.txt")).strip() == "check's own"
    assert health(master, "boxed")[-1] == ("TASK_RUNNING", True)


# -- HTTP and TCP ------------------------------------------------------------------------

def http_server(port: int) -> str:
    return f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1"


def http_check(port: int, path: str = "/", **options) -> pb.HealthCheck:
    check = Check(type=Check.HTTP, http=Check.HTTPCheckInfo(scheme="http", port=port, path=path))
    return _timing(check, **options)


@pytest.mark.parametrize("isolation", [POSIX, pytest.param("namespaces/net", marks=needs_root)],
                         ids=["host-network", "own-network-namespace"])
def test_http_check_reaches_the_server_the_task_runs(master, container_slave, isolation):
    # With namespaces/net the server listens on the loopback of the task's own network
    # namespace: only a check made from inside that namespace can reach it.
    slave = container_slave(isolation)
    port = free_port()
    master.send(slave.slave_id, run_task(checked_task("web", http_server(port), http_check(port, grace=30))))
    wait_for(lambda: latest(master, "web") == ("TASK_RUNNING", True), 30)


def test_http_check_fails_on_an_error_status(master, container_slave):
    slave = container_slave(POSIX)
    port = free_port()
    master.send(slave.slave_id, run_task(checked_task(
        "web404", http_server(port), http_check(port, "/no-such-page", failures=1000))))
    # Refused connections come first, until the server listens; then its 404s.
    unhealthy = wait_for(lambda: [s for s in updates(master, "web404") if s.HasField("healthy") and
                                  "Unexpected HTTP response code: 404" in s.message], 30)
    assert not unhealthy[0].healthy and unhealthy[0].reason == UPDATED
    assert all(not s.healthy for s in updates(master, "web404") if s.HasField("healthy"))


def tcp_check(port: int, **options) -> pb.HealthCheck:
    return _timing(Check(type=Check.TCP, tcp=Check.TCPCheckInfo(port=port)), **options)


def test_tcp_check_is_healthy_while_the_task_listens(master, container_slave):
    slave = container_slave(POSIX)
    port = free_port()
    server = (f"exec {sys.executable} -c \"import socket,time; s=socket.socket(); "
              f"s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)\"")
    master.send(slave.slave_id, run_task(checked_task("tcp", server, tcp_check(port, grace=30))))
    wait_for(lambda: latest(master, "tcp") == ("TASK_RUNNING", True), 30)


def test_tcp_check_to_a_closed_port_kills_the_task(master, container_slave):
    slave = container_slave(POSIX)
    master.send(slave.slave_id, run_task(checked_task("deaf", "sleep 30", tcp_check(free_port(), failures=2))))
    status = master.wait_terminal("deaf", 20)
    assert status.state == pb.TASK_KILLED and not status.healthy
    assert "ConnectionRefusedError" in status.message


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("check, expected", [
    (Check(type=Check.COMMAND), "Expecting 'command' to be set for COMMAND health check"),
    (Check(type=Check.HTTP, http=Check.HTTPCheckInfo(path="/")), "HTTP health check needs a 'port'"),
    (Check(type=Check.HTTP, http=Check.HTTPCheckInfo(port=80, path="health")), "must start with '/'"),
    (Check(type=Check.HTTP, http=Check.HTTPCheckInfo(port=80, scheme="ftp")), "Unsupported HTTP health check"),
    (Check(type=Check.TCP), "Expecting 'tcp' to be set"),
    (Check(type=Check.TCP, tcp=Check.TCPCheckInfo(port=80), interval_seconds=-1),
     "Expecting 'interval_seconds' to be non-negative"),
    (Check(command=pb.CommandInfo(value="true")), "'UNKNOWN' is not a valid health check type"),
])
def test_an_invalid_check_is_a_task_error_before_launch(master, container_slave, check, expected):
    assert expected in validate_health_check(check)
    slave = container_slave(POSIX)
    master.send(slave.slave_id, run_task(checked_task("bad", "touch launched; sleep 30", check)))
    status = master.wait_terminal("bad")
    assert status.state == pb.TASK_ERROR and status.reason == Reason.REASON_TASK_INVALID
    assert expected in status.message
    executors = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", "F1", "executors")
    assert not os.path.exists(os.path.join(executors, "bad"))


# -- through a real master -----------------------------------------------------------------

def test_the_master_refuses_an_invalid_health_check(cluster_factory):
    cluster = cluster_factory(slaves=1)
    with RunningFramework(cluster.master) as fw:
        task_id = fw.scheduler.submit("sleep 30", health_check=Check(type=Check.TCP))
        status = fw.scheduler.wait_state(task_id, [pb.TASK_ERROR, pb.TASK_RUNNING, pb.TASK_FAILED])
    assert status.state == pb.TASK_ERROR and status.reason == Reason.REASON_TASK_INVALID
    assert status.source == Reason.SOURCE_MASTER
    assert "Task's health check is invalid: Expecting 'tcp' to be set" in status.message


def test_checks_go_on_after_a_slave_restart(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=1, slave_args=["--recover=reconnect"])
    sick = tmp_path / "sick"
    with RunningFramework(cluster.master, info=builders.framework_info(checkpoint=True)) as fw:
        task_id = fw.scheduler.submit("sleep 600", health_check=command_check(f"test ! -e {sick}", interval=0.2,
                                                                                failures=2))
        wait_for(lambda: any(s.HasField("healthy") and s.healthy for s in fw.scheduler.updates[task_id]), 30)
        cluster.kill_slave(0)
        cluster.start_slave(0)
        # Only the restarted slave can see the check fail: it adopted the task and checks it.
        sick.touch()
        status = fw.scheduler.wait_state(task_id, [pb.TASK_KILLED, pb.TASK_FAILED, pb.TASK_LOST], timeout=60)
    assert status.state == pb.TASK_KILLED and status.HasField("healthy") and not status.healthy
