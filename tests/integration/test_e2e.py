"""End to end on a real local cluster: master and slaves as processes, real tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.builders import TERMINAL, RunningFramework, framework_info
from tests.conftest import OPEN_AND_SECURE, client_env
from tests.support import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_200_shell_tasks_finish_and_each_update_arrives_once(cluster):
    with RunningFramework(cluster.master) as fw:
        ids = [fw.scheduler.submit(f"echo task {i}") for i in range(200)]
        fw.scheduler.wait_for(lambda: fw.scheduler.terminal_count() == 200, timeout=120,
                              what="200 terminal updates")
        for task_id in ids:
            states = fw.scheduler.states(task_id)
            assert states[-1] == pb.TASK_FINISHED, (task_id, states)
            # Exactly once from the scheduler's point of view: no state repeats.
            assert len(states) == len(set(states)), (task_id, [pb.TaskState.Name(s) for s in states])
            assert states.count(pb.TASK_FINISHED) == 1
    state = cluster.state()
    finished = [t for f in state["frameworks"] + state["completed_frameworks"]
                for t in f.get("completed_tasks", []) + f.get("tasks", []) if t["state"] == "TASK_FINISHED"]
    assert len(finished) == 200


@OPEN_AND_SECURE
def test_failing_command_reports_its_exit_code(cluster):
    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs()) as fw:
        task_id = fw.scheduler.submit("echo oops >&2; exit 3")
        status = fw.scheduler.wait_state(task_id, TERMINAL)
        assert status.state == pb.TASK_FAILED
        assert "3" in status.message, status.message


@OPEN_AND_SECURE
def test_task_ignoring_sigterm_is_killed_after_grace_period(cluster):
    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs(), grace_seconds=1.0) as fw:
        task_id = fw.scheduler.submit("trap '' TERM; echo ready; while true; do sleep 0.1; done")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        # RUNNING can arrive before the shell has installed its trap: wait until
        # the task says so in its stdout, read through the master's sandbox proxy.
        wait_for(lambda: "ready" in _stdout(cluster, task_id), timeout=30, message="the task's trap")
        started = time.monotonic()
        fw.driver.killTask(pb.TaskID(value=task_id))
        status = fw.scheduler.wait_state(task_id, TERMINAL, timeout=30)
        elapsed = time.monotonic() - started
        assert status.state == pb.TASK_KILLED
        # It survived SIGTERM for the grace period, then SIGKILL ended it.
        assert elapsed >= 0.9, elapsed


def _stdout(cluster, task_id: str) -> str:
    """The task's stdout through the master's sandbox proxy (https and credentials when secure)."""
    try:
        box = get_json(cluster, f"{cluster.master_url}/master/sandbox?task_id={task_id}")
        query = urllib.parse.urlencode({"slave_id": box["slave_id"], "path": f"{box['directory']}/stdout",
                                        "offset": 0, "length": 4096})
        return get_json(cluster, f"{cluster.master_url}/files/read?{query}")["data"]
    except (OSError, KeyError):
        return ""


def get_json(cluster, url: str):
    with cluster.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@OPEN_AND_SECURE
def test_offerd_execute_exit_status(cluster):
    env = client_env(cluster)

    def execute(*args, timeout=120):
        return subprocess.run([sys.executable, "-m", "offerd", "execute", f"--master={cluster.master}", *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    ok = execute("--name=hello", "--command=echo hello")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "TASK_FINISHED" in ok.stdout
    bad = execute("--name=bad", "--command=exit 7")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "TASK_FAILED" in bad.stdout
    usage = execute("--command=true", "--resources=cpus:-1", timeout=60)
    assert usage.returncode == 2 and "cpus" in usage.stderr


def test_example_framework_prints_a_summary(cluster):
    run = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "shell_framework.py"),
                          "--master", cluster.master, "--tasks", "20", "--command", "true"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "20" in run.stdout


@pytest.mark.parametrize("partition_aware, expected, secure", [
    pytest.param(False, pb.TASK_LOST, False, id="lost"),
    pytest.param(True, pb.TASK_UNREACHABLE, False, id="unreachable"),
    # The restarted slave must prove its principal again and keep its id (bound to that principal).
    pytest.param(False, pb.TASK_LOST, True, id="lost-secure"),
])
def test_killed_slave_tasks_are_reported_and_slave_can_come_back(cluster_factory, partition_aware, expected, secure):
    cluster = cluster_factory(slaves=1, secure=secure,
                              master_args=["--slave_ping_timeout=0.5secs", "--max_slave_ping_timeouts=3"])
    info = framework_info(partition_aware=partition_aware)
    with RunningFramework(cluster.master, info=info, driver_kwargs=cluster.driver_kwargs()) as fw:
        task_id = fw.scheduler.submit("sleep 300")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        slave_id = fw.scheduler.task_slaves[task_id]
        cluster.kill_slave(0)
        status = fw.scheduler.wait_state(task_id, expected, timeout=30)
        assert status.reason == pb.TaskStatus.REASON_SLAVE_REMOVED
        fw.scheduler.wait_for(lambda: slave_id in fw.scheduler.lost_slaves, what="slaveLost")
        # Its resources are no longer offered.
        state = cluster.state()
        assert not any(s["id"] == slave_id and s.get("active", True) for s in state["slaves"])

        # Restarted with the same work dir, it comes back under the same id.
        cluster.start_slave(0)
        wait_for(lambda: any(s["id"] == slave_id and s.get("active") for s in cluster.state()["slaves"]),
                 timeout=30, message="the slave to reregister")
        if secure:
            # It proved its principal again, and its id is still bound to that principal.
            assert [s.get("principal") for s in cluster.state()["slaves"] if s["id"] == slave_id] == ["slave"]


@OPEN_AND_SECURE
def test_scheduler_failover_keeps_tasks_and_timeout_kills_them(cluster):
    info = framework_info(name="failover", failover_timeout=3.0)
    first = RunningFramework(cluster.master, info=info, driver_kwargs=cluster.driver_kwargs())
    first.__enter__()
    task_id = first.scheduler.submit("sleep 300")
    first.scheduler.wait_state(task_id, pb.TASK_RUNNING)
    framework_id = first.framework_id
    first.driver.stop(failover=True)
    first.driver.join()

    # A new scheduler instance with the same framework id keeps the task.
    info2 = framework_info(name="failover", failover_timeout=3.0)
    info2.id.value = framework_id
    second = RunningFramework(cluster.master, info=info2, driver_kwargs=cluster.driver_kwargs())
    second.driver.start()
    second.scheduler.wait_for(lambda: second.scheduler.framework_ids or second.scheduler.reregistrations,
                              what="resubscription")
    second.driver.reconcileTasks([pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=pb.TASK_RUNNING)])
    status = second.scheduler.wait_state(task_id, pb.TASK_RUNNING)
    assert status.state == pb.TASK_RUNNING

    # Disconnect again and stay away past failover_timeout: the task is killed.
    second.driver.stop(failover=True)
    second.driver.join()

    def task_killed():
        state = cluster.state()
        for fw in state.get("completed_frameworks", []):
            if fw["id"] == framework_id:
                return any(t["id"] == task_id and t["state"] == "TASK_KILLED"
                           for t in fw.get("completed_tasks", []) + fw.get("tasks", []))
        return False

    wait_for(task_killed, timeout=60, message="the framework to be removed and its task killed")
