"""Sandbox GC across a slave restart: a real master, a real slave process killed
with SIGKILL and started again on the same work_dir, a real SDK framework.

The GC schedule lives in the slave's memory; the restarted slave finds the
sandboxes retired before it went down by rescanning its work dir, and removes
them once --gc_delay after their modification time has passed, while the
sandbox of a container it recovered stays."""

from __future__ import annotations

import glob
import json
import os
import time
import urllib.request

import psutil

from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.support import wait_for


def sandboxes(work_dir: str, task_id: str) -> list[str]:
    # A command task's executor has the task's id.
    return glob.glob(os.path.join(work_dir, "slaves", "*", "frameworks", "*", "executors", task_id, "runs", "*"))


def slave_metrics(cluster) -> dict:
    url = f"http://{cluster.ip}:{cluster.slave_port(0)}/metrics/snapshot"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return {}


def kill_processes_running(marker: str) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if f"sleep {marker}" in " ".join(proc.info["cmdline"] or ()):
                proc.kill()
        except psutil.Error:
            continue


def test_a_sandbox_retired_before_a_restart_is_removed_and_a_recovered_one_kept(cluster_factory):
    # First run: a week's delay, nothing is removed before the restart (the disk may be full: no headroom).
    cluster = cluster_factory(slaves=1, slave_args=["--recover=reconnect", "--gc_delay=1weeks",
                                                    "--gc_disk_headroom=0"])
    work_dir = cluster.slave_work_dir(0)
    marker = f"{300 + time.time() % 1:.4f}"
    try:
        with RunningFramework(cluster.master, info=framework_info(checkpoint=True)) as fw:
            done = fw.scheduler.submit("echo done")
            fw.scheduler.wait_state(done, pb.TASK_FINISHED)
            running = fw.scheduler.submit(f"sleep {marker}")
            fw.scheduler.wait_state(running, pb.TASK_RUNNING)
            retired, = wait_for(lambda: sandboxes(work_dir, done), 10, message="the finished task's sandbox")
            recovered, = wait_for(lambda: sandboxes(work_dir, running), 10, message="the running task's sandbox")
            # The finished task's executor is retired: its sandbox waits in the (in-memory) GC schedule.
            wait_for(lambda: slave_metrics(cluster).get("gc/path_removals_pending") == 1, 15,
                     message="the finished task's sandbox to be scheduled for removal")

            cluster.kill_slave(0)
            cluster.slave_args = ["--recover=reconnect", "--gc_delay=2secs", "--gc_disk_headroom=0"]
            cluster.start_slave(0)
            wait_for(lambda: slave_metrics(cluster).get("gc/path_removals_succeeded") == 1, 30,
                     message="the restarted slave to remove the sandbox retired before the restart")
            assert not os.path.exists(retired)
            # The recovered container's sandbox stays, and its task still runs there.
            assert os.path.isdir(recovered)
            assert slave_metrics(cluster).get("gc/path_removals_pending") == 0
            assert fw.scheduler.last(running).state == pb.TASK_RUNNING

            # Once that task ends too, its sandbox goes after the (new, short) delay.
            fw.driver.killTask(pb.TaskID(value=running))
            fw.scheduler.wait_state(running, [pb.TASK_KILLED, pb.TASK_FAILED])
            wait_for(lambda: not os.path.exists(recovered), 30,
                     message="the recovered container's sandbox to be removed after its task ended")
    finally:
        kill_processes_running(marker)


def test_the_rescan_ages_sandboxes_by_mtime_and_never_follows_symlinks(tmp_path):
    """SandboxGC on a real actor thread and real directories: a sandbox whose mtime is older
    than --gc_delay goes at once, a fresh one waits, a live one and a symlink's target stay."""
    from offerd.common.actor import Actor
    from offerd.slave.gc import SandboxGC

    def runs(executor):
        return tmp_path / "slaves" / "S0" / "frameworks" / "F0" / "executors" / executor / "runs"

    old, fresh, live = runs("old") / "c1", runs("fresh") / "c2", runs("live") / "c3"
    outside = tmp_path / "outside"
    for directory in (old, fresh, live, outside):
        directory.mkdir(parents=True)
        (directory / "stdout").write_text("data")
    runs("planted").mkdir(parents=True)
    (runs("planted") / "c4").symlink_to(outside)  # a task may plant a symlink in its sandbox tree
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    actor = Actor("gc-test")
    gc = SandboxGC(actor, str(tmp_path), delay=3600.0, headroom=0.0, interval=0, disk_usage=lambda path: 0.0)
    actor.start()
    try:
        assert gc.rescan({str(live)}) == 2
        wait_for(lambda: not old.exists(), 10, message="the sandbox retired two hours ago to be removed")
        assert actor.call(gc.pending) == 1          # the fresh one: due in an hour
        assert fresh.is_dir() and live.is_dir()
        assert (outside / "stdout").read_text() == "data"
    finally:
        gc.close()
        actor.stop()
        actor.join(5)
