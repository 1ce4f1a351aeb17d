"""Containers on real cgroups and namespaces (root), against the fake master
(tests/fakes/master_for_slaves.py: `master`, `container_slave`).

The contract tests run against every isolation that can run here: `posix`
(no isolation, usage only) and `linux` (cgroups/cpu,cgroups/mem,cgroups/pids,
namespaces/pid, namespaces/uts, namespaces/ipc, filesystem/linux). Each test
uses its own --cgroups_root, and its teardown checks (after the slave stopped)
that no cgroup of it is left behind, removing any that are, so a failing test
leaks nothing into the next.
"""

from __future__ import annotations

import http.server
import io
import os
import sys
import tarfile
import threading
import time

import psutil
import pytest
import requests

from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.containerizer import cgroups
from tests.fakes.master_for_slaves import (
    HIERARCHIES, IS_ROOT, kill_task, offerd_cgroups, read_when, run_task, sandbox, task,
)
from tests.support import wait_for

Reason = pb.TaskStatus
LINUX = "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/uts,namespaces/ipc,filesystem/linux"
ISOLATIONS = {"posix": "posix/cpu,posix/mem", "linux": LINUX}


def needs(*controllers):
    """Skip, saying why, unless root with these cgroup controllers."""
    if not IS_ROOT:
        return pytest.mark.skip(reason="needs root for cgroups and namespaces")
    missing = [c for c in controllers if HIERARCHIES is None or c not in HIERARCHIES.mounts]
    return pytest.mark.skipif(bool(missing), reason=f"this kernel lacks cgroup controller(s) {missing}")


linux_only = needs("cpu", "memory", "pids")


def statistics(slave: Slave, task_id: str) -> dict:
    entries = requests.get(f"http://127.0.0.1:{slave.http_port}/monitor/statistics", timeout=5).json()
    return next(e["statistics"] for e in entries if e["executor_id"] == task_id)


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


# -- contract tests: every isolation -------------------------------------------------

@pytest.fixture(params=sorted(ISOLATIONS))
def isolation(request):
    if request.param == "linux" and (not IS_ROOT or HIERARCHIES is None or
                                     not {"cpu", "memory", "pids"} <= set(HIERARCHIES.mounts)):
        pytest.skip("linux isolation needs root and the cpu, memory and pids cgroup controllers")
    return ISOLATIONS[request.param]


def test_task_runs_with_mesos_environment_and_finishes(master, container_slave, isolation):
    slave = container_slave(isolation)
    master.send(slave.slave_id, run_task(task("env", "env | grep -E '^(MESOS|OFFERD)_' | sort > env.txt")))
    status = master.wait_terminal("env")
    assert pb.TaskState.Name(status.state) == "TASK_FINISHED", status.message
    env = dict(line.split("=", 1) for line in open(os.path.join(sandbox(slave, "env"), "env.txt")).read().split())
    assert env["MESOS_TASK_ID"] == "env" and env["MESOS_FRAMEWORK_ID"] == "F1"
    assert env["MESOS_EXECUTOR_ID"] == "env" and env["MESOS_SLAVE_ID"] == slave.slave_id
    assert env["MESOS_DIRECTORY"] == sandbox(slave, "env") and env["OFFERD_TASK_ID"] == "env"
    expected_sandbox = "/mnt/mesos/sandbox" if "filesystem/linux" in isolation else sandbox(slave, "env")
    assert env["MESOS_SANDBOX"] == expected_sandbox


def test_killing_a_forking_task_leaves_no_process(master, container_slave, isolation):
    slave = container_slave(isolation)
    marker = f"{time.time() % 1000 + 1000:.4f}"   # a unique `sleep` argument to find them by
    master.send(slave.slave_id, run_task(task("forks", f"sleep {marker} & sleep {marker} & sleep {marker}; wait",
                                              grace=0.5)))
    master.wait_state("forks", pb.TASK_RUNNING)
    wait_for(lambda: len(processes_with(f"sleep {marker}")) >= 3, 5)
    master.send(slave.slave_id, kill_task("forks"))
    assert master.wait_terminal("forks").state == pb.TASK_KILLED
    wait_for(lambda: not processes_with(f"sleep {marker}"), 5)


def test_usage_statistics_have_mesos_keys(master, container_slave, isolation):
    slave = container_slave(isolation)
    master.send(slave.slave_id, run_task(task("busy", "sleep 30", cpus=0.5, mem=48)))
    master.wait_state("busy", pb.TASK_RUNNING)
    stats = wait_for(lambda: (s := statistics(slave, "busy"))["processes"] >= 1 and s, 5)
    for key in ("timestamp", "processes", "cpus_user_time_secs", "cpus_system_time_secs", "cpus_limit",
                "mem_rss_bytes", "mem_limit_bytes"):
        assert key in stats, key
    assert stats["cpus_limit"] == 0.5 and stats["mem_limit_bytes"] == 48 * 2**20
    master.send(slave.slave_id, kill_task("busy"))
    master.wait_terminal("busy")


def test_unknown_user_fails_the_launch_with_a_reason(master, container_slave, isolation):
    if not IS_ROOT:
        pytest.skip("--switch_user only switches users when the slave runs as root")
    slave = container_slave(isolation)
    info = task("who", "id -u")
    info.command.user = "no-such-user-here"
    master.send(slave.slave_id, run_task(info))
    status = master.wait_terminal("who")
    assert status.state == pb.TASK_FAILED and status.reason == Reason.REASON_CONTAINER_LAUNCH_FAILED
    assert "user 'no-such-user-here' does not exist" in status.message


def test_task_runs_as_its_user(master, container_slave, isolation):
    if not IS_ROOT:
        pytest.skip("--switch_user only switches users when the slave runs as root")
    slave = container_slave(isolation)
    info = task("nobody", "id -u > uid.txt")
    info.command.user = "nobody"
    master.send(slave.slave_id, run_task(info))
    assert master.wait_terminal("nobody").state == pb.TASK_FINISHED
    assert read_when(os.path.join(sandbox(slave, "nobody"), "uid.txt")).strip() == "65534"


def test_a_command_that_cannot_run_fails_the_launch(master, container_slave, isolation):
    slave = container_slave(isolation)
    info = task("missing", "/no/such/program")
    info.command.shell = False
    master.send(slave.slave_id, run_task(info))
    status = master.wait_terminal("missing")
    assert status.state == pb.TASK_FAILED and status.reason == Reason.REASON_CONTAINER_LAUNCH_FAILED
    assert "the command '/no/such/program' does not exist" in status.message


class _Archive(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/bundle.tar.gz":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def archive_server():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"hello from the archive\n"
        member = tarfile.TarInfo("bundle/hello.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    _Archive.body = buffer.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetcher_extracts_an_archive_and_a_bad_uri_fails_the_task(master, container_slave, isolation,
                                                                   archive_server):
    slave = container_slave(isolation)
    good = task("fetched", "cat bundle/hello.txt")
    good.command.uris.add(value=f"{archive_server}/bundle.tar.gz")
    script = good.command.uris.add(value=f"{archive_server}/bundle.tar.gz", output_file="copy.tgz",
                                   extract=False)
    assert script.output_file == "copy.tgz"
    master.send(slave.slave_id, run_task(good))
    assert master.wait_terminal("fetched").state == pb.TASK_FINISHED
    directory = sandbox(slave, "fetched")
    assert open(os.path.join(directory, "stdout")).read() == "hello from the archive\n"
    assert os.path.exists(os.path.join(directory, "copy.tgz"))

    bad = task("unfetched", "true")
    bad.command.uris.add(value=f"{archive_server}/missing.tar.gz")
    master.send(slave.slave_id, run_task(bad))
    status = master.wait_terminal("unfetched")
    assert status.state == pb.TASK_FAILED and status.reason == Reason.REASON_CONTAINER_LAUNCH_FAILED
    assert "missing.tar.gz" in status.message and "Not Found" in status.message


def test_files_read_refuses_paths_outside_the_sandboxes(master, container_slave, isolation):
    slave = container_slave(isolation)
    master.send(slave.slave_id, run_task(task("files", "echo inside > in.txt; ln -s /etc escape")))
    assert master.wait_terminal("files").state == pb.TASK_FINISHED
    directory = sandbox(slave, "files")
    base = f"http://127.0.0.1:{slave.http_port}/files/read"
    assert requests.get(base, params={"path": f"{directory}/in.txt"}).json()["data"] == "inside\n"
    for outside in ("/etc/passwd", f"{directory}/../../../../../../../../etc/passwd",
                    f"{directory}/escape/passwd", "meta/slaves/latest/slave.info", "../"):
        assert requests.get(base, params={"path": outside}).status_code == 403, outside


# -- linux isolation only ------------------------------------------------------------

@linux_only
def test_memory_hog_fails_with_the_memory_limitation_and_others_keep_running(master, container_slave):
    slave = container_slave("cgroups/cpu,cgroups/mem,namespaces/pid")
    master.send(slave.slave_id, run_task(task("calm", "sleep 30", mem=32)))
    master.wait_state("calm", pb.TASK_RUNNING)
    hog = f"{sys.executable} -c 'import time; b = bytearray(200 * 2**20); time.sleep(30)'"
    master.send(slave.slave_id, run_task(task("hog", hog, mem=64)))
    status = master.wait_terminal("hog", timeout=20)
    assert status.state == pb.TASK_FAILED
    assert status.reason == Reason.REASON_CONTAINER_LIMITATION_MEMORY, status.message
    assert "Memory limit exceeded" in status.message and "Requested: 64MB" in status.message
    assert "Maximum Used: 6" in status.message   # usage at the 64 MB limit
    time.sleep(0.3)
    assert master.states("calm") == ["TASK_STARTING", "TASK_RUNNING"]
    assert requests.get(f"http://127.0.0.1:{slave.http_port}/health").status_code == 200
    master.send(slave.slave_id, kill_task("calm"))
    assert master.wait_terminal("calm").state == pb.TASK_KILLED


@linux_only
def test_pid_and_uts_namespaces(master, container_slave):
    slave = container_slave("cgroups/pids,namespaces/pid,namespaces/uts,namespaces/ipc")
    master.send(slave.slave_id, run_task(task("ns", "ps -eo pid=,comm= > ps.txt; hostname > host.txt")))
    assert master.wait_terminal("ns").state == pb.TASK_FINISHED
    directory = sandbox(slave, "ns")
    seen = [line.split() for line in open(os.path.join(directory, "ps.txt")).read().splitlines()]
    pids = {int(pid) for pid, _ in seen}
    assert 1 in pids and len(seen) <= 3, seen          # init (PID 1), the shell and ps, nothing of the host
    hostname = open(os.path.join(directory, "host.txt")).read().strip()
    assert hostname and hostname != os.uname().nodename


@linux_only
def test_net_namespace_has_only_a_loopback_that_is_up(master, container_slave):
    slave = container_slave("namespaces/net,namespaces/pid")
    probe = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
             "socket.create_connection(s.getsockname(), timeout=2); print('loopback ok')")
    master.send(slave.slave_id, run_task(task("net", f"cat /proc/net/dev > dev.txt; {sys.executable} -c \"{probe}\" "
                                                     "> lo.txt")))
    assert master.wait_terminal("net").state == pb.TASK_FINISHED
    directory = sandbox(slave, "net")
    devices = {line.split(":")[0].strip() for line in open(os.path.join(directory, "dev.txt")).read().splitlines()
               if ":" in line}
    assert devices == {"lo"}, devices
    assert open(os.path.join(directory, "lo.txt")).read().strip() == "loopback ok"


@linux_only
def test_a_task_in_a_pid_namespace_dies_of_sigterm_as_anywhere_else(master, container_slave):
    """The task is not its namespace's PID 1 (offerd-init is), so SIGTERM reaches it
    with the usual semantics: a command without a handler dies at once, well before
    the grace period's SIGKILL."""
    slave = container_slave("namespaces/pid")
    master.send(slave.slave_id, run_task(task("init", "exec sleep 300", grace=30)))
    master.wait_state("init", pb.TASK_RUNNING)
    started = time.monotonic()
    master.send(slave.slave_id, kill_task("init"))
    assert master.wait_terminal("init").state == pb.TASK_KILLED
    assert time.monotonic() - started < 10


@linux_only
def test_cfs_quota_holds_a_busy_task_at_its_share(master, container_slave):
    slave = container_slave("cgroups/cpu,cgroups/mem", cgroups_enable_cfs=True)
    master.send(slave.slave_id, run_task(task("spin", "while :; do :; done", cpus=0.25)))
    master.wait_state("spin", pb.TASK_RUNNING)
    time.sleep(0.3)
    first, started = statistics(slave, "spin"), time.monotonic()
    time.sleep(2.0)
    second, elapsed = statistics(slave, "spin"), time.monotonic() - started
    used = (second["cpus_user_time_secs"] + second["cpus_system_time_secs"]
            - first["cpus_user_time_secs"] - first["cpus_system_time_secs"])
    assert 0.1 < used / elapsed < 0.4, f"{used:.2f}s of CPU in {elapsed:.2f}s"
    assert second["cpus_nr_throttled"] > 0 and second["cpus_limit"] == 0.25
    master.send(slave.slave_id, kill_task("spin"))
    master.wait_terminal("spin")


@linux_only
def test_a_process_that_left_the_group_dies_with_its_container(master, container_slave):
    slave = container_slave("cgroups/cpu,cgroups/mem,cgroups/pids")
    marker = f"{time.time() % 1000 + 2000:.4f}"
    master.send(slave.slave_id, run_task(task("escape", f"setsid sleep {marker} & sleep 60", grace=0)))
    master.wait_state("escape", pb.TASK_RUNNING)
    wait_for(lambda: processes_with(f"sleep {marker}"), 5)
    master.send(slave.slave_id, kill_task("escape"))
    assert master.wait_terminal("escape").state == pb.TASK_KILLED
    wait_for(lambda: not processes_with(f"sleep {marker}"), 5)


@linux_only
def test_sandbox_is_mounted_at_mesos_sandbox_in_a_private_mount_namespace(master, container_slave):
    slave = container_slave("filesystem/linux,namespaces/pid")
    master.send(slave.slave_id, run_task(task("fs", "echo hi > $MESOS_SANDBOX/out.txt; grep -c ' /proc ' "
                                                    "/proc/self/mounts > mounts.txt")))
    assert master.wait_terminal("fs").state == pb.TASK_FINISHED
    assert open(os.path.join(sandbox(slave, "fs"), "out.txt")).read() == "hi\n"
    # The container's mounts did not reach the host.
    assert "/mnt/mesos/sandbox" not in open("/proc/self/mounts").read()


@linux_only
def test_cgroups_are_made_under_the_cgroups_root_and_removed(master, container_slave):
    slave = container_slave("cgroups/cpu,cgroups/mem,cgroups/pids", cgroups_enable_cfs=True)
    root_name = slave.flags.cgroups_root
    master.send(slave.slave_id, run_task(task("cg", "sleep 30", cpus=0.5, mem=100)))
    master.wait_state("cg", pb.TASK_RUNNING)
    container = os.path.basename(sandbox(slave, "cg"))
    memory = os.path.join(HIERARCHIES.mounts["memory"], root_name, container)
    cpu = os.path.join(HIERARCHIES.mounts["cpu"], root_name, container)
    if HIERARCHIES.version == 1:
        assert int(open(os.path.join(memory, "memory.limit_in_bytes")).read()) == 100 * 2**20
        assert int(open(os.path.join(cpu, "cpu.shares")).read()) == 512
        assert int(open(os.path.join(cpu, "cpu.cfs_quota_us")).read()) == 50_000
    else:
        assert int(open(os.path.join(memory, "memory.max")).read()) == 100 * 2**20
        assert open(os.path.join(cpu, "cpu.max")).read().split() == ["50000", "100000"]
    pid = wait_for(lambda: slave.actor.call(lambda: slave.core.frameworks["F1"].executors["cg"].pid), 5)
    assert pid in cgroups.members(memory)
    master.send(slave.slave_id, kill_task("cg"))
    master.wait_terminal("cg")
    wait_for(lambda: offerd_cgroups(root_name) == [], 5)


# -- sandbox GC and the slave's HTTP keys ----------------------------------------------

@pytest.mark.parametrize("overrides", [{"gc_delay": 0.3}, {"gc_delay": "1weeks", "gc_disk_headroom": 1.0}],
                         ids=["after-gc_delay", "disk-full-headroom"])
def test_finished_sandboxes_are_garbage_collected(master, container_slave, overrides):
    slave = container_slave(**overrides)
    master.send(slave.slave_id, run_task(task("gc", "sleep 0.3")))
    directory = sandbox(slave, "gc")
    assert master.wait_terminal("gc").state == pb.TASK_FINISHED
    wait_for(lambda: not os.path.exists(directory), 5)
    metrics = requests.get(f"http://127.0.0.1:{slave.http_port}/metrics/snapshot", timeout=5).json()
    assert metrics["gc/path_removals_succeeded"] == 1
    if "gc_disk_headroom" in overrides:
        assert metrics["slave/executor_directory_max_allowed_age_secs"] == 0


def test_flags_and_metrics_have_the_slave_keys(master, container_slave):
    slave = container_slave(gc_delay="2days")
    base = f"http://127.0.0.1:{slave.http_port}"
    flags = requests.get(f"{base}/flags", timeout=5).json()["flags"]
    for name in ("isolation", "cgroups_root", "cgroups_enable_cfs", "switch_user", "recover", "gc_delay",
                 "fetcher_cache_dir"):
        assert name in flags, name
    assert flags["recover"] == "reconnect" and flags["switch_user"] == "true"
    metrics = requests.get(f"{base}/metrics/snapshot", timeout=5).json()
    for key in ("slave/registered", "slave/uptime_secs", "slave/cpus_total", "slave/mem_used",
                "slave/tasks_running", "slave/container_launch_errors", "slave/recovery_errors",
                "slave/executor_directory_max_allowed_age_secs"):
        assert key in metrics, key
    assert metrics["slave/cpus_total"] == 2 and metrics["slave/registered"] == 1
