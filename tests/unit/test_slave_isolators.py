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
from tests.support import wait_for

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


def test_prepare_plans_what_the_launch_makes_and_cleanup_removes_it(isolator, tmp_path):
    box = Container(f"c-{uuid.uuid4().hex[:8]}", str(tmp_path), cpus=0.5, mem_mb=64)
    plan = isolator.prepare(box) or LaunchPlan()
    for directory in plan.cgroup_dirs:
        assert not os.path.exists(directory)   # planned, not made: offerd-init makes them
    launched = launcher.spawn(["sh", "-c", "cat /proc/self/cgroup"], None, plan, None, str(tmp_path),
                              {"PATH": os.environ["PATH"]})
    assert launched.proc.wait() == 0
    for path, value in plan.cgroup_writes:
        assert open(path).read().split()[0] == value, path
    joined = (tmp_path / "stdout").read_text().splitlines()   # the task's /proc/self/cgroup
    if plan.cgroup_dirs:
        assert any(line.endswith(f":/{isolator.cgroups_root}/{box.container_id}") for line in joined), joined
    assert isinstance(isolator.usage(box), dict)
    isolator.cleanup(box)
    for directory in plan.cgroup_dirs:
        assert not os.path.exists(directory)


@pytest.mark.skipif(not CAN_ISOLATE, reason="needs root and the cpu, memory and pids cgroup controllers")
def test_a_swap_limit_is_written_after_the_limit_and_resized_in_a_safe_order(tmp_path):
    flags = make_flags(master="127.0.0.1:5050", cgroups_root=f"offerd-unit-{uuid.uuid4().hex[:8]}",
                       cgroups_limit_swap=True)
    mem = next(i for i in create_isolators("cgroups/mem", flags) if "cgroups/mem" in i.names)
    if mem.swap_file is None:
        pytest.skip("this kernel does not account swap in memory cgroups")
    box = Container(f"c-{uuid.uuid4().hex[:8]}", str(tmp_path), mem_mb=64)
    plan = mem.prepare(box)
    names = [os.path.basename(path) for path, _ in plan.cgroup_writes]
    assert names.index("memory.limit_in_bytes") < names.index(mem.swap_file)
    try:
        assert launcher.spawn(["true"], None, plan, None, str(tmp_path), {"PATH": os.environ["PATH"]}).proc.wait() == 0
        directory = mem.path("memory", box)
        for mb in (128, 48):   # a raise moves memsw first, a cut the limit first: both must be accepted
            box.mem_mb = mb
            mem.update(box)
            for name in ("memory.limit_in_bytes", mem.swap_file):
                assert int(open(os.path.join(directory, name)).read()) == mb * 2**20
        box.mem_mb = 0
        mem.update(box)   # nothing to limit: nothing written, no error
    finally:
        mem.cleanup(box)
        mem.remove_root()


def test_cgroup_v2_is_detected_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")
    detected = cgroups.detect(mounts_file=str(mounts))
    assert detected is not None and detected.version == 2
    mounts.write_text("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                      "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    detected = cgroups.detect(mounts_file=str(mounts))
    assert detected.version == 1 and detected.mounts == {
        "memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    with pytest.raises(IsolatorError, match="'pids' is not available"):
        detected.root("pids")
    # --cgroups_hierarchy: a cgroup2 mount elsewhere (a hybrid machine's unified tree) is v2 there.
    detected = cgroups.detect("/sys/fs/cgroup/unified", mounts_file=str(mounts))
    assert detected.version == 2
    assert cgroups.detect("/elsewhere", mounts_file=str(mounts)) is None


def test_offerd_init_says_which_step_failed(tmp_path):
    env = {"PATH": os.environ["PATH"]}
    cases = [
        (LaunchPlan(cgroup_joins=[str(tmp_path / "no-such-cgroup" / "tasks")]),
         ["true"], f"joining cgroup {tmp_path}/no-such-cgroup: No such file or directory"),
        (LaunchPlan(cgroup_writes=[(str(tmp_path / "no-dir" / "memory.limit_in_bytes"), "100")]),
         ["true"], f"writing 100 to {tmp_path}/no-dir/memory.limit_in_bytes: No such file or directory"),
        (LaunchPlan(cgroup_dirs=[str(tmp_path / "a" / "b")]),
         ["true"], f"creating cgroup {tmp_path}/a/b: No such file or directory"),
        (LaunchPlan(), ["/no/such/program"], "executing /no/such/program: No such file or directory"),
    ]
    for plan, argv, message in cases:
        with pytest.raises(launcher.LaunchError) as raised:
            launcher.spawn(argv, None, plan, None, str(tmp_path), env, status_file=str(tmp_path / "status"))
        assert str(raised.value) == message


def test_offerd_init_runs_the_task_as_its_child_and_exits_with_its_status(tmp_path):
    env = {"PATH": os.environ["PATH"]}
    status = str(tmp_path / "status")
    launched = launcher.spawn(["sh", "-c", "echo $PPID; exit 3"], None, LaunchPlan(), None, str(tmp_path), env,
                              status_file=status)
    assert launched.via_init and launched.proc.wait() == 3
    assert int((tmp_path / "stdout").read_text()) == launched.proc.pid   # the task is init's child
    assert open(status).read().strip() == "3"
    killed = launcher.spawn(["sh", "-c", "kill -9 $$"], None, LaunchPlan(), None, str(tmp_path), env,
                            status_file=status)
    assert killed.proc.wait() == 128 + 9 and open(status).read().strip() == "137"
    # Nothing to set up: the command itself, no init.
    plain = launcher.spawn(["true"], None, LaunchPlan(), None, str(tmp_path), env)
    assert not plain.via_init and plain.proc.wait() == 0


@pytest.mark.parametrize("pid_namespace", [False, True], ids=["plain", "pid-namespace"])
def test_a_kill_during_set_up_means_the_task_never_starts(tmp_path, pid_namespace):
    """SIGTERM while init is still setting the container up (here: blocked writing a
    'limit' into a FIFO nobody reads) ends it as killed, 128+15, and the task never
    runs, also as a PID namespace's init, which drops signals it does not handle."""
    import signal
    import time

    if pid_namespace and os.geteuid() != 0:
        pytest.skip("PID namespaces need root")
    fifo = tmp_path / "limit"
    os.mkfifo(fifo)
    marker = tmp_path / "ran"
    plan = LaunchPlan(cgroup_writes=[(str(fifo), "1")], pid_namespace=pid_namespace)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    argv = launcher.init_argv(["touch", str(marker)], None, plan, None, str(tmp_path), None, write_fd)
    if pid_namespace:
        argv.remove("--mount-proc")   # the namespace alone: no /proc mount needed here
        with launcher.ThreadInPidNamespace():
            proc = subprocess.Popen(argv, pass_fds=(write_fd,))
    else:
        proc = subprocess.Popen(argv, pass_fds=(write_fd,))
    os.close(write_fd)
    def catches_term() -> bool:
        with open(f"/proc/{proc.pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))

    wait_for(catches_term, 5, interval=0.005)   # init has exec'd and set up its handlers
    time.sleep(0.05)   # and is blocked opening the FIFO
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 128 + signal.SIGTERM
    assert os.read(read_fd, 4096) == b""   # not reported as a launch failure
    os.close(read_fd)
    assert not marker.exists()


def test_offerd_init_is_built_per_source_version_and_a_missing_compiler_is_explained(tmp_path, monkeypatch):
    from offerd.slave.containerizer import init_binary

    monkeypatch.setenv("OFFERD_INIT_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(init_binary, "_built", None)
    built = init_binary.path()
    assert os.path.dirname(built) == str(tmp_path / "cache") and os.access(built, os.X_OK)
    assert subprocess.run([built, "--", "true"]).returncode == 0
    assert os.listdir(tmp_path / "cache") == [os.path.basename(built)]   # no temporary left behind

    monkeypatch.setenv("OFFERD_INIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(init_binary, "_built", None)
    monkeypatch.setattr(init_binary.shutil, "which", lambda name: None)
    with pytest.raises(init_binary.InitBuildError, match="needs a C compiler"):
        init_binary.path()


def test_a_task_under_init_inherits_no_fd_of_the_slave_and_default_signals(tmp_path):
    import signal

    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)   # as a careless library in the slave might leave one
    try:
        launched = launcher.spawn(["sh", "-c", "ls /proc/$$/fd; grep SigIgn /proc/$$/status; pwd"], None,
                                  LaunchPlan(), None, str(tmp_path), {"PATH": os.environ["PATH"]},
                                  status_file=str(tmp_path / "status"))
        assert launched.via_init and launched.proc.wait() == 0
    finally:
        os.close(leaked)
    *fds, ignored, cwd = (tmp_path / "stdout").read_text().split("\n")[:-1]
    assert sorted(map(int, fds)) == [0, 1, 2], fds
    assert not int(ignored.split()[1], 16) & (1 << (signal.SIGPIPE - 1))   # Python's SIG_IGN not passed on
    assert cwd == str(tmp_path)


def test_offerd_init_has_help():
    from offerd.slave.containerizer import init_binary

    shown = subprocess.run([init_binary.path(), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "usage: offerd-init" in shown.stdout
    wrong = subprocess.run([init_binary.path(), "--bogus", "--", "true"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown or incomplete option '--bogus'" in wrong.stderr


def test_unknown_users_are_refused_by_name():
    with pytest.raises(launcher.LaunchError, match="user 'no-such-user-x' does not exist on this slave"):
        launcher.resolve_user("no-such-user-x")


def test_init_argv_carries_the_plan_in_order(tmp_path):
    plan = LaunchPlan(cgroup_dirs=["/cg/a"], cgroup_writes=[("/cg/a/memory.limit_in_bytes", "64")],
                      cgroup_joins=["/cg/a/tasks"], pid_namespace=True, hostname="box",
                      clone_flags=launcher.CLONE_NEWUTS | launcher.CLONE_NEWIPC)
    argv = launcher.init_argv(["sleep", "1"], None, plan, None, str(tmp_path), None, report_fd=7)
    assert argv[1:] == ["--mkdir", "/cg/a", "--write", "/cg/a/memory.limit_in_bytes", "64", "--join", "/cg/a/tasks",
                        "--mount-proc", "--hostname", "box", "--ipc", "--chdir", str(tmp_path), "--report-fd", "7",
                        "--", "sleep", "1"]


def test_isolation_that_needs_root_is_refused_clearly_without_it(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(IsolatorError, match="need root"):
        create_isolators("cgroups/mem", make_flags(master="127.0.0.1:5050"))


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")
def test_a_threads_pid_namespace_makes_the_next_child_pid_1_and_is_left_after():
    with launcher.ThreadInPidNamespace():
        inner = subprocess.Popen(["sh", "-c", "echo $$"], stdout=subprocess.PIPE, text=True)
    assert inner.communicate()[0].strip() == "1"
    after = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    assert after.stdout.strip() != "1"          # the thread is back in the slave's namespace


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_offerd_init_makes_the_namespaces_with_their_own_proc_and_hostname(tmp_path):
    plan = LaunchPlan(clone_flags=launcher.CLONE_NEWUTS | launcher.CLONE_NEWIPC, hostname="in-the-box",
                      pid_namespace=True)
    launched = launcher.spawn(["sh", "-c", "hostname; echo $$; ls /proc | grep -c '^[0-9]'; exit 3"], None, plan,
                              None, str(tmp_path), {"PATH": os.environ["PATH"]})
    assert launched.proc.wait() == 3
    hostname, pid, processes = (tmp_path / "stdout").read_text().split()
    assert hostname == "in-the-box" and pid == "2"   # init is PID 1, the task its child
    assert int(processes) <= 4                        # init, sh, ls, grep: its own /proc
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() != "in-the-box"
    assert "/proc" in open("/proc/self/mounts").read()   # the host's /proc untouched
