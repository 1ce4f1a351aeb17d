"""The launcher: how a container's process enters its cgroups and namespaces.

A task costs one process launch (DESIGN.md §7), never a Python interpreter, and
not a fork of the slave's heap either: Python's subprocess uses vfork unless a
preexec_fn is given, and fork()ing a slave of some hundred MB costs tens of ms.
So the fast path has no preexec_fn:

- cgroups, v1: the launcher *thread* joins the container's cgroups (a v1
  `tasks` file takes a thread id), spawns (the child inherits the spawning
  thread's cgroups), and goes back to the slave's own (`ThreadInCgroups`);
- cgroups, v2 (a thread cannot leave its process's cgroup): a one-line shell
  writes 0 to each cgroup.procs and execs the rest; a refused write is
  reported on its stdin, a pipe the slave reads until the shell has exec'd;
- namespaces: util-linux `unshare` (`--ipc`, and for a PID namespace `--pid
  --fork --mount-proc --kill-child`, dropping to the task's user with
  `--setuid/--setgid`): the command is PID 1 of a new PID namespace with a
  fresh /proc, and killing `unshare` kills the namespace.

Setting a hostname (namespaces/uts), mounting the sandbox (filesystem/linux) or
switching user without a PID namespace need code between fork and exec:
`make_preexec` does those (and joins cgroups, unshares) in the child, writing
the failing step to a close-on-exec pipe so the launch error says what failed
("mounting the sandbox at /mnt/mesos/sandbox: Permission denied").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import select
import shlex
import shutil
import socket
from dataclasses import dataclass

from offerd.slave.containerizer.isolator import LaunchPlan

# <sched.h>; os.unshare and os.CLONE_* only exist from Python 3.12.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


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


def _mount(source: bytes | None, target: bytes, flags: int) -> None:
    if _libc.mount(source, target, None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _switching(user: User | None) -> bool:
    return user is not None and user.uid != os.geteuid()


def needs_preexec(plan: LaunchPlan, user: User | None) -> bool:
    """Whether the child must run Python between fork and exec. Only setting a
    hostname, mounting the sandbox, or switching user without a PID namespace
    need it: everything else the exec'd programs do (see `wrap_argv`)."""
    return bool(plan.hostname or plan.sandbox_mount or (_switching(user) and not plan.pid_namespace))


def can_join_from_thread(plan: LaunchPlan) -> bool:
    """cgroup v1 lets one thread change cgroups: the launcher thread can join the
    container's cgroups, spawn (the child inherits them), and go back home."""
    return bool(plan.cgroup_procs) and all(home for home in plan.cgroup_homes) and \
        len(plan.cgroup_homes) == len(plan.cgroup_procs)


def _write_tid(tasks_file: str) -> None:
    fd = os.open(tasks_file, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")   # 0: the writing thread
    finally:
        os.close(fd)


class ThreadInCgroups:
    """`with ThreadInCgroups(plan):` the calling thread is in the container's
    cgroups, and back in the slave's own on the way out."""

    def __init__(self, plan: LaunchPlan):
        self.plan = plan
        self.joined: list[str] = []

    def __enter__(self):
        for procs, home in zip(self.plan.cgroup_procs, self.plan.cgroup_homes):
            directory = os.path.dirname(procs)
            try:
                _write_tid(os.path.join(directory, "tasks"))
            except OSError as exc:
                self.__exit__(None, None, None)
                raise LaunchError(f"joining cgroup {directory} failed: {exc.strerror}") from None
            self.joined.append(home)
        return self

    def __exit__(self, *exc) -> None:
        for home in self.joined:
            _write_tid(os.path.join(home, "tasks"))   # failing here is a bug worth a traceback
        self.joined.clear()


def wrap_argv(argv: list[str], executable: str | None, plan: LaunchPlan, user: User | None,
              in_preexec: bool, joined: bool = False) -> list[str]:
    """The argv to exec. Without a preexec (the fast path: the slave is forked
    with vfork, which costs nothing however large the slave is) a shell joins
    the cgroups, reporting a failure on its stdin (a pipe), and execs `unshare`
    for the namespaces, which execs the command."""
    command = argv
    flags = [] if in_preexec else [f for bit, f in ((CLONE_NEWIPC, "--ipc"), (CLONE_NEWUTS, "--uts"),
                                                    (CLONE_NEWNS, "--mount")) if plan.clone_flags & bit]
    if plan.pid_namespace:
        flags += ["--pid", "--fork", "--kill-child", "--mount-proc"]
        if _switching(user):
            flags += ["--setgid", str(user.gid), "--setuid", str(user.uid)]
    if flags:
        command = [UNSHARE, *flags, "--", executable or argv[0], *argv[1:]]
    if in_preexec or joined or not plan.cgroup_procs:
        return command
    joins = "".join(
        f"{{ echo 0 > {shlex.quote(path)}; }} 2>/dev/null || "
        f"{{ echo {shlex.quote('joining cgroup ' + os.path.dirname(path) + ' failed')} >&0; exit 127; }}; "
        for path in plan.cgroup_procs)
    if command is argv and executable:
        command = [executable, *argv[1:]]
    return ["/bin/sh", "-c", joins + 'exec 0</dev/null; exec "$@"', "offerd-launcher", *command]


def wait_for_join(read_fd: int, timeout: float = 10.0) -> str:
    """After a fast-path launch: '' once the shell has exec'd (the pipe closed),
    else what it reported."""
    ready, _, _ = select.select([read_fd], [], [], timeout)
    if not ready:
        return f"the launcher did not start within {timeout:.0f}s"
    return read_error(read_fd)


def make_preexec(plan: LaunchPlan, directory: str, user: User | None, error_fd: int):
    """The function the child runs between fork and exec. Everything it needs is
    computed here, in the parent: the child only makes system calls."""
    procs = [path.encode() for path in plan.cgroup_procs]
    flags = plan.clone_flags
    hostname = plan.hostname
    sandbox = directory.encode()
    mount_at = plan.sandbox_mount.encode() if plan.sandbox_mount else None
    switch = user if user is not None and not plan.pid_namespace and user.uid != os.geteuid() else None

    def preexec() -> None:
        step = "starting"
        try:
            for path in procs:
                step = f"joining cgroup {path.decode()}"
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            if flags:
                step = "creating namespaces"
                _unshare(flags)
            if mount_at is not None:
                step = "making mounts private"
                _mount(None, b"/", MS_REC | MS_PRIVATE)
                step = f"mounting the sandbox at {mount_at.decode()}"
                _mount(sandbox, mount_at, MS_BIND | MS_REC)
            if hostname:
                step = "setting the hostname"
                socket.sethostname(hostname)
            if switch is not None:
                step = f"switching to user {switch.name}"
                os.setgroups(list(switch.groups))
                os.setgid(switch.gid)
                os.setuid(switch.uid)
        except BaseException as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            try:
                os.write(error_fd, f"{step}: {detail}".encode())
            except OSError:
                pass
            raise

    return preexec


def read_error(read_fd: int) -> str:
    try:
        return os.read(read_fd, 4096).decode("utf-8", "replace")
    except OSError:
        return ""
