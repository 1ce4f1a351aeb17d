"""The launcher: how a container's process enters its cgroups and namespaces.

A task costs one process launch, never a Python interpreter and
never a fork of the slave's heap: Python's subprocess uses vfork unless a
preexec_fn is given, and fork()ing a slave of some hundred MB costs tens of ms.
So nothing runs in Python between fork and exec. Whatever a container needs
set up is done by `offerd-init` (offerd-init.c, built by init_binary.py), a
small static C program the slave starts with posix_spawn (vfork semantics) as
the container's first process, with stdout, stderr and a report pipe wired:

- it creates the container's cgroups, writes their limits and joins them
  (v1: its `tasks` files; v2: `cgroup.procs`), so nothing of the task ever
  runs outside them;
- it makes the mount, UTS, IPC and network namespaces, mounts the PID
  namespace's own /proc, binds the sandbox, sets the hostname, brings up the
  loopback device;
- it forks the task, which switches user and execs the command, and stays as
  its parent: it reaps orphans (as PID 1), writes the task's exit status into
  the sandbox for a restarted slave (checkpointing), and exits with it;
- it closes every other fd it inherited and enters the sandbox;
- a step that fails is reported on the report pipe, read here, as one
  line saying what failed ("joining cgroup /sys/fs/cgroup/memory/offerd/c1:
  Permission denied"), which becomes the task's launch error.

The PID namespace is the one thing init cannot make for itself without one more
fork: the launcher thread calls unshare(CLONE_NEWPID), which applies to the
*thread's* next child, spawns init (PID 1 of the new namespace), and setns()es
back (`ThreadInPidNamespace`).

A container with nothing to set up (posix isolation, a framework that does not
checkpoint, no user switch) execs its command directly (Popen, for its cwd).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import pwd
import select
import signal
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass

from offerd.slave.containerizer import init_binary
from offerd.slave.containerizer.isolator import LaunchPlan

# <sched.h>; os.unshare and os.CLONE_* only exist from Python 3.12.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

REPORT_TIMEOUT = 30.0   # seconds for init to have the task exec'd


class LaunchError(Exception):
    """The container could not be started; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def resolve_user(name: str) -> User:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LaunchError(f"user '{name}' does not exist on this slave") from None
    return User(name, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(name, entry.pw_gid)), entry.pw_dir)


def switching(user: User | None) -> bool:
    return user is not None and user.uid != os.geteuid()


_own_pid_ns: int | None = None


class ThreadInPidNamespace:
    """`with ThreadInPidNamespace():` the next child of the calling *thread* is PID 1
    of a new PID namespace (unshare(CLONE_NEWPID) changes the namespace of the
    caller's children, per thread), and the thread is back in its own on the way
    out (setns). The child is spawned with vfork: no fork of the slave."""

    def __enter__(self):
        global _own_pid_ns
        if _own_pid_ns is None:
            _own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        if _libc.unshare(CLONE_NEWPID) != 0:
            raise LaunchError(f"creating a PID namespace failed: {os.strerror(ctypes.get_errno())}")
        return self

    def __exit__(self, *exc) -> None:
        if _libc.setns(_own_pid_ns, CLONE_NEWPID) != 0:   # failing here is a bug worth a traceback
            err = ctypes.get_errno()
            raise OSError(err, f"returning to the slave's PID namespace: {os.strerror(err)}")


def needs_init(plan: LaunchPlan, user: User | None, status_file: str | None) -> bool:
    """Whether anything must happen between the slave's fork and the task's exec."""
    return bool(plan.cgroup_dirs or plan.cgroup_joins or plan.clone_flags or plan.pid_namespace
                or plan.sandbox_mount or plan.hostname or plan.enter_pid or switching(user) or status_file)


def init_argv(argv: list[str], executable: str | None, plan: LaunchPlan, user: User | None,
              sandbox: str, status_file: str | None, report_fd: int) -> list[str]:
    """offerd-init's command line for this container (see offerd-init.c)."""
    out = [init_binary.path()]
    for directory in plan.cgroup_dirs:
        out += ["--mkdir", directory]
    for path, value in plan.cgroup_writes:
        out += ["--write", path, str(value)]
    for path in plan.cgroup_joins:
        out += ["--join", path]
    if plan.pid_namespace:
        out.append("--mount-proc")
    if plan.sandbox_mount:
        out += ["--bind", sandbox, plan.sandbox_mount]
    if plan.hostname:
        out += ["--hostname", plan.hostname]
    if plan.clone_flags & CLONE_NEWIPC:
        out.append("--ipc")
    if plan.clone_flags & CLONE_NEWNET:
        out.append("--net")
    if plan.enter_pid:
        out += ["--enter", str(plan.enter_pid)]
    if switching(user):
        out += ["--user", str(user.uid), str(user.gid), ",".join(map(str, user.groups)), user.name]
    if executable:
        out += ["--exec", executable]
    if status_file:
        out += ["--status-file", status_file]
    return out + ["--chdir", sandbox, "--report-fd", str(report_fd), "--", *argv]


class InitProcess:
    """A container's init, started with posix_spawn: what the containerizer uses of
    a Popen (pid, wait, kill, returncode)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:
                return self.returncode   # reaped elsewhere: nothing more to learn
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


@dataclass
class Launched:
    proc: subprocess.Popen | InitProcess
    via_init: bool   # its exit status is init's: shell style, 128+N for signal N


REPORT_FD = 3   # where init finds the report pipe
# O_NOFOLLOW: a fetched archive may have put a link at stdout/stderr; the slave never writes through one.
_OUTPUT = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW


def spawn(argv: list[str], executable: str | None, plan: LaunchPlan, user: User | None, sandbox: str,
          environment: dict[str, str], status_file: str | None = None, stdout: str | None = None,
          stderr: str | None = None, timeout: float = REPORT_TIMEOUT) -> Launched:
    """Start a container's first process (offerd-init, or the command itself when
    nothing needs setting up) in `sandbox`, with stdout and stderr going to the
    given files (default: the sandbox's stdout and stderr). Raises LaunchError
    saying what failed. Safe from any thread."""
    stdout = stdout or os.path.join(sandbox, "stdout")
    stderr = stderr or os.path.join(sandbox, "stderr")
    if not needs_init(plan, user, status_file):
        with open(os.open(stdout, _OUTPUT, 0o644), "wb") as out, open(os.open(stderr, _OUTPUT, 0o644), "wb") as err:
            proc = subprocess.Popen(argv, executable=executable, cwd=sandbox, env=environment,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True)
        return Launched(proc, via_init=False)
    try:
        command = init_argv(argv, executable, plan, user, sandbox, status_file, report_fd=REPORT_FD)
    except init_binary.InitBuildError as exc:
        raise LaunchError(str(exc)) from None
    # posix_spawn, not Popen: half the slave's CPU per launch. Init closes every other
    # fd itself and chdirs into the sandbox; the spawn only wires stdio and the report
    # pipe (dup2 clears close-on-exec on the copy alone, so no other launch inherits it).
    opened: list[int] = []
    proc = None
    try:
        opened.append(out := os.open(stdout, _OUTPUT, 0o644))
        opened.append(err := os.open(stderr, _OUTPUT, 0o644))
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        opened += [read_fd, write_fd]
        if write_fd == REPORT_FD:
            # dup2 onto itself would leave close-on-exec set on some C libraries.
            opened.append(moved := fcntl.fcntl(write_fd, fcntl.F_DUPFD_CLOEXEC, REPORT_FD + 1))
            os.close(write_fd)
            opened.remove(write_fd)
            write_fd = moved
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2), (os.POSIX_SPAWN_DUP2, write_fd, REPORT_FD)]
        with ThreadInPidNamespace() if plan.pid_namespace else nullcontext():
            pid = os.posix_spawn(command[0], command, environment, file_actions=actions, setsid=True,
                                 setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
        proc = InitProcess(pid)
        for fd in (out, err, write_fd):
            os.close(fd)
            opened.remove(fd)
        failure = _read_report(read_fd, timeout)
    except OSError as exc:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise LaunchError(f"starting the container's init: {exc.strerror or exc}") from None
    finally:
        for fd in opened:
            os.close(fd)
    if failure is None:
        proc.kill()
        proc.wait()
        raise LaunchError(f"the container's init did not start the command within {timeout:.0f}s")
    if failure:
        proc.wait()
        raise LaunchError(failure)
    return Launched(proc, via_init=True)


# What Python ignores for itself (as Popen's restore_signals puts back for a child).
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))


def _read_report(read_fd: int, timeout: float) -> str | None:
    """What init reported before closing the pipe ('' once the task exec'd), or
    None if it did neither in time."""
    chunks = []
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    deadline = timeout * 1000
    while True:
        if not poller.poll(deadline):
            return None
        chunk = os.read(read_fd, 4096)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace").strip()
        chunks.append(chunk)
