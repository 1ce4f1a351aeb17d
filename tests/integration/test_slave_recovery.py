"""Slave restart with running tasks: a real master, a real slave process killed
with SIGKILL and started again on the same work_dir, a real SDK framework."""

from __future__ import annotations

import glob
import os
import signal
import sys
import time
import uuid

import psutil
import pytest

from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import cgroups
from offerd.slave.recovery import check_boot_id
from tests.builders import RunningFramework, command_task, framework_info
from tests.support import wait_for

TASKS = 20
MARKERS: list[str] = []   # the `sleep` arguments of this module's tasks, killed at teardown


def new_marker(base: int) -> str:
    marker = f"{base + time.time() % 1:.4f}"
    MARKERS.append(marker)
    return marker


def tasks_with(marker: str) -> dict[str, int]:
    """task id -> pid of the first process of each task running `sleep <marker>`.

    A task has several such processes (its shell, its `sleep`, offerd-init), and
    the later ones may not exist yet when this looks; the first (lowest pid) is
    there from the start and must survive a slave restart."""
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if f"sleep {marker}" in cmdline and "eval" not in cmdline:
                task_id = (proc.info["environ"] or {}).get("MESOS_TASK_ID")
                if task_id:
                    found[task_id] = min(found.get(task_id, proc.pid), proc.pid)
        except psutil.Error:
            continue
    return found


def start_tasks(fw, marker: str, count: int) -> list[str]:
    ids = [fw.scheduler.submit(f"sleep {marker}; echo done") for _ in range(count)]
    for task_id in ids:
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING, timeout=30)
    return ids


LINUX = "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid"
HIERARCHIES = cgroups.detect()
# Every namespace offerd-init makes (the tasks' parent, their PID namespace's init):
# it outlives the slave with its task, and the restarted slave adopts it.
NAMESPACES = "cgroups/cpu,cgroups/mem,namespaces/pid,namespaces/uts,namespaces/ipc,filesystem/linux"


@pytest.mark.parametrize("isolation, count", [("posix/cpu,posix/mem", TASKS), (LINUX, 5), (NAMESPACES, 5)])
def test_restarted_slave_keeps_its_running_tasks_and_their_updates_arrive(cluster_factory, isolation, count):
    if isolation != "posix/cpu,posix/mem" and (os.geteuid() != 0 or HIERARCHIES is None
                               or not {"cpu", "memory", "pids"} <= set(HIERARCHIES.mounts)):
        pytest.skip("needs root and the cpu, memory and pids cgroup controllers")
    root_name = f"offerd-test-{uuid.uuid4().hex[:8]}"
    cluster = cluster_factory(slaves=1, slave_args=["--recover=reconnect", f"--isolation={isolation}",
                                                     f"--cgroups_root={root_name}"])
    marker = new_marker(10)   # long enough to outlive the restart (under load too), then finish
    with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw:
        ids = start_tasks(fw, marker, count)
        before = wait_for(lambda: (found := tasks_with(marker)) and len(found) == count and found, 10,
                          message="every task's process")

        cluster.kill_slave(0)
        cluster.start_slave(0)
        # Nothing was restarted: the same processes are there, and no task ended.
        time.sleep(1.0)
        assert tasks_with(marker) == before
        for task_id in ids:
            assert pb.TASK_RUNNING in fw.scheduler.states(task_id)
            assert not any(s in fw.scheduler.states(task_id) for s in (pb.TASK_LOST, pb.TASK_FAILED,
                                                                         pb.TASK_KILLED))
        # Their later updates reach the scheduler through the restarted slave.
        for task_id in ids:
            status = fw.scheduler.wait_state(task_id, [pb.TASK_FINISHED, pb.TASK_FAILED, pb.TASK_LOST], timeout=30)
            assert status.state == pb.TASK_FINISHED, (task_id, status.message)
            assert fw.scheduler.states(task_id).count(pb.TASK_RUNNING) == 1
    if HIERARCHIES is not None:
        def left():
            return [p for m in set(HIERARCHIES.mounts.values()) for p in glob.glob(os.path.join(m, root_name, "*"))
                    if os.path.isdir(p)]
        wait_for(lambda: not left(), 5, message=f"every container's cgroup to be removed: {left()}")


def test_recover_cleanup_kills_and_reports_the_tasks(cluster_factory):
    cluster = cluster_factory(slaves=1)
    marker = new_marker(300)
    with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw:
        ids = start_tasks(fw, marker, 2)
        wait_for(lambda: len(tasks_with(marker)) == 2, 10, message="the tasks' processes")
        cluster.kill_slave(0)
        cluster.slave_args = ["--recover=cleanup"]
        cluster.start_slave(0)
        for task_id in ids:
            status = fw.scheduler.wait_state(task_id, [pb.TASK_KILLED, pb.TASK_FAILED, pb.TASK_LOST], timeout=30)
            assert status.state == pb.TASK_KILLED, status.message
        wait_for(lambda: not tasks_with(marker), 10, message="the tasks' processes to be gone")


def test_a_non_checkpointing_frameworks_tasks_do_not_survive_a_restart(cluster_factory):
    cluster = cluster_factory(slaves=1)
    marker = new_marker(400)
    with RunningFramework(cluster.master, info=framework_info(checkpoint=False)) as fw:
        start_tasks(fw, marker, 1)
        wait_for(lambda: len(tasks_with(marker)) == 1, 10, message="the task's process")
        cluster.kill_slave(0)
        cluster.start_slave(0)
        wait_for(lambda: not tasks_with(marker), 15, message="the orphaned task to be killed")


def test_a_new_boot_id_discards_the_checkpoint(tmp_path, monkeypatch):
    work_dir = str(tmp_path)
    os.makedirs(os.path.join(work_dir, "meta", "slaves", "latest"))
    with open(os.path.join(work_dir, "meta", "slaves", "latest", "slave.info"), "wb") as handle:
        handle.write(b"x")
    assert check_boot_id(work_dir)                      # first run: nothing to compare with
    assert os.path.exists(os.path.join(work_dir, "meta", "slaves"))
    monkeypatch.setattr("offerd.slave.recovery.current_boot_id", lambda: "another-boot")
    assert not check_boot_id(work_dir)
    assert not os.path.exists(os.path.join(work_dir, "meta", "slaves"))


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    # Whatever a failed test left running under one of its markers dies here.
    for marker in MARKERS:
        for pid in tasks_with(marker).values():
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    MARKERS.clear()


def test_a_custom_executor_survives_a_restart_and_its_updates_arrive(cluster_factory):
    """The executor process keeps running while the slave is down, resubscribes to
    the restarted slave (same executor port), and its tasks' updates get through."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "custom_executor"))
    from scheduler import executor_info  # the example's ExecutorInfo: examples/custom_executor/executor.py

    cluster = cluster_factory(slaves=1)
    marker = new_marker(10)
    with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw:
        scheduler = fw.scheduler
        launched = []

        def launch(driver, offers):
            for item in offers:
                if launched:
                    driver.declineOffer(item.id, pb.Filters(refuse_seconds=60))
                    continue
                tasks = []
                for i in range(2):
                    task = command_task(f"ex-{i}", item, "unused", "cpus:0.1;mem:32")
                    task.ClearField("command")
                    task.executor.CopyFrom(executor_info())
                    task.data = f"sleep {marker}".encode()
                    tasks.append(task)
                launched.extend(t.task_id.value for t in tasks)
                driver.launchTasks(item.id, tasks, pb.Filters(refuse_seconds=60))

        scheduler.resourceOffers = launch
        fw.driver.reviveOffers()
        scheduler.wait_for(lambda: launched, what="the launch")
        for task_id in launched:
            scheduler.wait_state(task_id, pb.TASK_RUNNING, timeout=30)
        def executors():
            return [p.pid for p in psutil.process_iter(["cmdline", "environ"])
                    if "executor.py" in " ".join(p.info["cmdline"] or ())
                    and (p.info["environ"] or {}).get("MESOS_FRAMEWORK_ID") == fw.framework_id]
        executor_pids = wait_for(executors, 10, message="the executor process")

        cluster.kill_slave(0)
        cluster.start_slave(0)
        for task_id in launched:
            status = scheduler.wait_state(task_id, [pb.TASK_FINISHED, pb.TASK_FAILED, pb.TASK_LOST], timeout=40)
            assert status.state == pb.TASK_FINISHED, (task_id, status.message)
        assert executors() == executor_pids   # the same executor process, not a new one


@pytest.mark.parametrize("isolation", ["posix/cpu,posix/mem", LINUX, NAMESPACES])
def test_sigterm_leaves_checkpointed_tasks_running_and_a_restart_reattaches_them(cluster_factory, isolation):
    """Mesos' stop semantics: a SIGTERMed slave (--recover=reconnect) exits leaving the
    tasks of checkpointing frameworks running; the restarted slave adopts them and
    their updates arrive. A non-checkpointing framework's task dies with the slave."""
    if isolation != "posix/cpu,posix/mem" and (os.geteuid() != 0 or HIERARCHIES is None
                                               or not {"cpu", "memory", "pids"} <= set(HIERARCHIES.mounts)):
        pytest.skip("needs root and the cpu, memory and pids cgroup controllers")
    root_name = f"offerd-test-{uuid.uuid4().hex[:8]}"
    cluster = cluster_factory(slaves=1, slave_args=["--recover=reconnect", f"--isolation={isolation}",
                                                     f"--cgroups_root={root_name}"])
    marker, other = new_marker(8), new_marker(500)
    with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw, \
            RunningFramework(cluster.master, info=framework_info(name="plain", checkpoint=False)) as plain:
        ids = start_tasks(fw, marker, 3)
        start_tasks(plain, other, 1)
        before = wait_for(lambda: (found := tasks_with(marker)) and len(found) == 3 and found, 10,
                          message="every task's process")
        wait_for(lambda: len(tasks_with(other)) == 1, 10, message="the plain framework's task")

        cluster.kill_slave(0, signal.SIGTERM)
        assert cluster.slave_procs[0].returncode == 0
        # The slave is gone, its checkpointed tasks are not; the plain one is.
        assert tasks_with(marker) == before
        assert all(psutil.pid_exists(pid) for pid in before.values())
        wait_for(lambda: not tasks_with(other), 10, message="the non-checkpointing task to be killed")

        cluster.start_slave(0)
        time.sleep(1.0)
        assert tasks_with(marker) == before
        for task_id in ids:
            status = fw.scheduler.wait_state(task_id, [pb.TASK_FINISHED, pb.TASK_FAILED, pb.TASK_LOST,
                                                       pb.TASK_KILLED], timeout=30)
            assert status.state == pb.TASK_FINISHED, (task_id, status.message)
            assert fw.scheduler.states(task_id).count(pb.TASK_RUNNING) == 1
    if HIERARCHIES is not None:
        def left():
            return [p for m in set(HIERARCHIES.mounts.values()) for p in glob.glob(os.path.join(m, root_name, "*"))
                    if os.path.isdir(p)]
        wait_for(lambda: not left(), 5, message=f"every container's cgroup to be removed: {left()}")


def test_sigusr1_shuts_the_slave_down_killing_everything_and_unregistering(cluster_factory):
    cluster = cluster_factory(slaves=1, slave_args=["--recover=reconnect"])
    marker = new_marker(600)
    with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw:
        ids = start_tasks(fw, marker, 2)
        wait_for(lambda: len(tasks_with(marker)) == 2, 10, message="the tasks' processes")
        work_dir = cluster.slave_work_dir(0)
        assert os.path.exists(os.path.join(work_dir, "meta", "slaves", "latest", "slave.info"))

        cluster.kill_slave(0, signal.SIGUSR1)
        assert cluster.slave_procs[0].returncode == 0
        assert not tasks_with(marker)
        # The master removed the slave at once (no agent timeout): the tasks are reported gone.
        for task_id in ids:
            status = fw.scheduler.wait_state(task_id, [pb.TASK_LOST, pb.TASK_GONE, pb.TASK_KILLED,
                                                       pb.TASK_FAILED], timeout=15)
            assert status.state != pb.TASK_RUNNING
        # It forgot its id: the next start registers as a new slave.
        assert not os.path.exists(os.path.join(work_dir, "meta", "slaves", "latest", "slave.info"))
