"""The isolator contract and the launcher's pieces, without a slave.

Hooks every isolator must honour run against every isolator this machine can
build (the posix ones always; the cgroups and namespace ones as root)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from offerd.slave.containerizer import cgroups, launcher
from offerd.slave.containerizer.isolator import Container, Isolator, IsolatorError, LaunchPlan
from offerd.slave.containerizer.namespaces import create_isolators
from offerd.slave.flags import make_flags

HIERARCHIES = cgroups.detect()
CAN_ISOLATE = os.geteuid() == 0 and HIERARCHIES is not None and \
    {"cpu", "memory", "pids"} <= set(HIERARCHIES.mounts)
NAMES = ["posix/cpu", "namespaces/pid", "namespaces/uts", "namespaces/ipc", "filesystem/linux",
         "cgroups/cpu", "cgroups/mem", "cgroups/pids"]


@pytest.fixture(params=NAMES)
def isolator(request):
    if request.param != "posix/cpu" and not CAN_ISOLATE:
        pytest.skip("needs root and the cpu, memory and pids cgroup controllers")
    flags = make_flags(master="127.0.0.1:5050", cgroups_root=f"offerd-unit-{uuid.uuid4().hex[:8]}")
    built = [i for i in create_isolators(request.param, flags) if request.param in i.names]
    yield built[0]
    if hasattr(built[0], "remove_root"):
        built[0].remove_root()


def test_every_hook_has_a_default():
    base = Isolator()
    box = Container("c", "/tmp")
    assert base.prepare(box) is None and base.watch(box) == [] and base.check(box) is None
    assert base.usage(box) == {} and base.pids(box) == []
    base.recover([], []), base.isolate(box, 1), base.update(box), base.cleanup(box)


def test_cleanup_tolerates_unknown_containers(isolator):
    isolator.cleanup(Container(f"never-{uuid.uuid4().hex}", "/tmp"))
    isolator.recover([], [f"never-{uuid.uuid4().hex}"])


def test_prepare_then_cleanup_leaves_nothing(isolator, tmp_path):
    box = Container(f"c-{uuid.uuid4().hex[:8]}", str(tmp_path), cpus=0.5, mem_mb=64)
    plan = isolator.prepare(box) or LaunchPlan()
    for procs in plan.cgroup_procs:
        assert os.path.exists(procs)
    assert isinstance(isolator.usage(box), dict)
    isolator.cleanup(box)
    for procs in plan.cgroup_procs:
        assert not os.path.exists(os.path.dirname(procs))


def test_cgroup_v2_is_detected_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")
    detected = cgroups.detect(str(mounts))
    assert detected is not None and detected.version == 2
    mounts.write_text("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                      "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    detected = cgroups.detect(str(mounts))
    assert detected.version == 1 and detected.mounts == {
        "memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    with pytest.raises(IsolatorError, match="'pids' is not available"):
        detected.root("pids")


def test_a_refused_cgroup_join_is_reported_by_the_launch_shell():
    plan = LaunchPlan(cgroup_procs=["/nonexistent/offerd/c1/cgroup.procs"])
    argv = launcher.wrap_argv(["true"], None, plan, None, in_preexec=False)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    proc = subprocess.Popen(argv, stdin=write_fd)
    os.close(write_fd)
    assert launcher.wait_for_join(read_fd).strip() == "joining cgroup /nonexistent/offerd/c1 failed"
    os.close(read_fd)
    assert proc.wait() == 127


def test_unknown_users_are_refused_by_name():
    with pytest.raises(launcher.LaunchError, match="user 'no-such-user-x' does not exist on this slave"):
        launcher.resolve_user("no-such-user-x")


def test_a_pid_namespace_runs_the_command_behind_unshare():
    plan = LaunchPlan(pid_namespace=True)
    argv = launcher.wrap_argv(["sleep", "1"], None, plan, None, in_preexec=False)
    assert argv[0].endswith("unshare") and "--pid" in argv and "--mount-proc" in argv
    assert argv[-3:] == ["--", "sleep", "1"]


def test_isolation_that_needs_root_is_refused_clearly_without_it(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(IsolatorError, match="need root"):
        create_isolators("cgroups/mem", make_flags(master="127.0.0.1:5050"))


def test_catches_reads_the_signal_masks():
    import signal

    proc = subprocess.Popen(["sh", "-c", "trap : TERM; sleep 30 & wait"])
    plain = subprocess.Popen(["sleep", "30"])
    try:
        import time

        deadline = time.monotonic() + 5
        while not launcher.catches(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert launcher.catches(proc.pid, signal.SIGTERM)
        assert not launcher.catches(plain.pid, signal.SIGTERM)
        assert not launcher.catches(2**22 + 12345, signal.SIGTERM)   # no such process
    finally:
        for p in (proc, plain):
            p.kill()
            p.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")
def test_a_threads_pid_namespace_makes_the_next_child_pid_1_and_is_left_after():
    with launcher.ThreadInPidNamespace():
        inner = subprocess.run([launcher.UNSHARE, "--mount-proc", "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"],
                               capture_output=True, text=True, check=True)
    pid, processes = inner.stdout.split()
    assert pid == "1" and int(processes) <= 3   # sh, ls, grep: a /proc of its own namespace
    after = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    assert after.stdout.strip() != "1"          # the thread is back in the slave's namespace


@pytest.fixture
def helper():
    h = launcher.LaunchHelper()
    yield h
    h.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_the_launch_helper_starts_a_namespaced_container_and_reports_its_exit(helper, tmp_path):
    plan = LaunchPlan(clone_flags=launcher.CLONE_NEWUTS, hostname="in-the-box", pid_namespace=True)
    request = launcher.helper_request(["sh", "-c", "hostname; echo $$; exit 3"], None, plan, None, str(tmp_path),
                                      {"PATH": os.environ["PATH"]})
    child = helper.spawn(request, str(tmp_path))
    assert child.wait(10) == 3
    assert (tmp_path / "stdout").read_text().split() == ["in-the-box", "1"]
    assert helper.pid is not None and subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() \
        != "in-the-box"


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_the_launch_helper_says_which_step_failed(helper, tmp_path):
    plan = LaunchPlan(clone_flags=launcher.CLONE_NEWUTS, hostname="x",
                      cgroup_procs=[str(tmp_path / "no-such-cgroup" / "cgroup.procs")])
    request = launcher.helper_request(["true"], None, plan, None, str(tmp_path), {"PATH": os.environ["PATH"]})
    with pytest.raises(launcher.LaunchError, match="joining cgroup .*no-such-cgroup: No such file"):
        helper.spawn(request, str(tmp_path))
    request = launcher.helper_request(["/no/such/program"], None, LaunchPlan(hostname="x"), None, str(tmp_path),
                                      {"PATH": os.environ["PATH"]})
    with pytest.raises(launcher.LaunchError, match="executing /no/such/program: No such file"):
        helper.spawn(request, str(tmp_path))
    # The helper lives on for the next launch.
    ok = helper.spawn(launcher.helper_request(["true"], None, LaunchPlan(hostname="x", clone_flags=launcher.CLONE_NEWUTS),
                                              None, str(tmp_path), {"PATH": os.environ["PATH"]}), str(tmp_path))
    assert ok.wait(10) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_a_new_helper_starts_after_one_dies(helper, tmp_path):
    import signal
    import time

    plan = LaunchPlan(clone_flags=launcher.CLONE_NEWUTS, hostname="x")
    request = lambda: launcher.helper_request(["true"], None, plan, None, str(tmp_path),  # noqa: E731
                                              {"PATH": os.environ["PATH"]})
    assert helper.spawn(request(), str(tmp_path)).wait(10) == 0
    first = helper.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while helper.pid == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert helper.spawn(request(), str(tmp_path)).wait(10) == 0
    assert helper.pid not in (None, first)
