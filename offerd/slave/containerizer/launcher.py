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
- a PID namespace: the launcher thread unshares CLONE_NEWPID for its own
  children (`ThreadInPidNamespace`), spawns util-linux `unshare --mount-proc`
  (with `--ipc`, `--setuid/--setgid` as needed), which is PID 1 of the new
  namespace, mounts its /proc and execs the command, and setns()es back;
  `--ipc` alone is `unshare --ipc` without the PID namespace.

Setting a hostname (namespaces/uts), mounting the sandbox (filesystem/linux),
bringing up a network namespace's loopback, or switching user without a PID
namespace need code between fork and exec: those launches go to the resident
launch helper (`LaunchHelper`, helper.py), a small process that forks from its
own image and writes the failing step to a close-on-exec pipe so the launch
error says what failed ("mounting the sandbox at /mnt/mesos/sandbox: Permission
denied"). `make_preexec` is the same in-process, kept for a slave without the
helper.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import pwd
import select
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass

from offerd.slave.containerizer.isolator import LaunchPlan
from offerd.slave.containerizer.processes import read_exit_status

log = logging.getLogger(__name__)

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
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

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


_home_fds: dict[str, int] = {}
_home_fds_lock = threading.Lock()


def _go_home(home: str) -> None:
    """Back into the slave's own cgroup of one hierarchy. Its `tasks` file is opened
    once and kept (writing 0 moves the writing thread, whichever it is), which saves
    an open and a close per hierarchy per launch."""
    fd = _home_fds.get(home)
    if fd is None:
        with _home_fds_lock:
            fd = _home_fds.get(home)
            if fd is None:
                fd = _home_fds[home] = os.open(os.path.join(home, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")


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
            _go_home(home)   # failing here is a bug worth a traceback
        self.joined.clear()


_own_pid_ns: int | None = None


class ThreadInPidNamespace:
    """`with ThreadInPidNamespace():` the next child of the calling *thread* is PID 1
    of a new PID namespace (unshare(CLONE_NEWPID) changes the namespace of the
    caller's children, per thread), and the thread is back to its own on the way
    out (setns). The child is spawned with vfork: no fork of the slave, no
    `unshare --fork` process in between."""

    def __enter__(self):
        global _own_pid_ns
        if _own_pid_ns is None:
            _own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _unshare(CLONE_NEWPID)
        except OSError as exc:
            raise LaunchError(f"creating a PID namespace failed: {exc.strerror}") from None
        return self

    def __exit__(self, *exc) -> None:
        if _libc.setns(_own_pid_ns, CLONE_NEWPID) != 0:   # failing here is a bug worth a traceback
            err = ctypes.get_errno()
            raise OSError(err, f"returning to the slave's PID namespace: {os.strerror(err)}")


def wrap_argv(argv: list[str], executable: str | None, plan: LaunchPlan, user: User | None,
              in_preexec: bool, joined: bool = False, thread_pid_ns: bool = False) -> list[str]:
    """The argv to exec. Without a preexec (the fast path: the slave is forked
    with vfork, which costs nothing however large the slave is) a shell joins
    the cgroups, reporting a failure on its stdin (a pipe), and execs `unshare`
    for the namespaces, which execs the command."""
    command = argv
    flags = [] if in_preexec else [f for bit, f in ((CLONE_NEWIPC, "--ipc"), (CLONE_NEWUTS, "--uts"),
                                                    (CLONE_NEWNS, "--mount")) if plan.clone_flags & bit]
    if plan.pid_namespace:
        # In a thread's PID namespace (ThreadInPidNamespace) `unshare` is PID 1 already and
        # only mounts its /proc before exec'ing the command; otherwise it makes the namespace.
        flags += ["--mount-proc"] if thread_pid_ns else ["--pid", "--fork", "--kill-child", "--mount-proc"]
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


# -- the resident launch helper (helper.py) ------------------------------------------

HELPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")


def use_helper(plan: LaunchPlan, user: User | None) -> bool:
    """Whether the launch goes through the resident helper: whatever needs code
    between fork and exec (a hostname, the sandbox mount, a user switch without a
    PID namespace, bringing up a network namespace's loopback). Everything else
    stays on the slave's own vfork path."""
    return needs_preexec(plan, user) or bool(plan.clone_flags & CLONE_NEWNET)


class HelperChild:
    """A container the helper forked: Popen's `pid` and `wait()`, the exit status
    reported by the helper (the slave is not its parent)."""

    def __init__(self, pid: int, directory: str):
        self.pid = pid
        self.directory = directory
        self.returncode: int | None = None
        self._done = threading.Event()

    def finish(self, returncode: int | None) -> None:
        self.returncode = returncode
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        # Called once the process has exited (its pidfd fired): the report follows at once,
        # unless the helper died, then the exit status file is all there is.
        if not self._done.wait(10.0 if timeout is None else timeout):
            return read_exit_status(self.directory)
        if self.returncode is None:
            return read_exit_status(self.directory)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


class LaunchHelper:
    """The slave's end of the resident launch helper (see helper.py). Started on
    first use; `spawn` may be called from any thread."""

    def __init__(self, python: str = sys.executable):
        self._python = python
        self._lock = threading.Lock()          # one request on the wire at a time
        self._state = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._next_id = 0
        self._pending: dict[int, dict] = {}    # id -> {"event", "answer", "directory"}
        self._children: dict[int, HelperChild] = {}
        self._closed = False

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [self._python, "-S", HELPER_SCRIPT, str(child.fileno())], pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        finally:
            child.close()
        self._sock = parent
        threading.Thread(target=self._read, args=(parent,), name="slave-launch-helper", daemon=True).start()
        log.info("started the launch helper (pid %d)", self._proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def spawn(self, request: dict, directory: str, timeout: float = 30.0) -> HelperChild:
        with self._lock:
            if self._closed:
                raise LaunchError("the slave is stopping")
            if self._sock is None:
                self._start()
            with self._state:
                self._next_id += 1
                request_id = request["id"] = self._next_id
                waiter = self._pending[request_id] = {"event": threading.Event(), "answer": None,
                                                      "directory": directory}
            try:
                self._sock.send(json.dumps(request).encode())
            except OSError as exc:
                with self._state:
                    self._pending.pop(request_id, None)
                self._reset()
                raise LaunchError(f"the launch helper is gone ({exc.strerror or exc})") from None
        if not waiter["event"].wait(timeout):
            with self._state:
                self._pending.pop(request_id, None)
            raise LaunchError(f"the launch helper did not answer within {timeout:.0f}s")
        answer = waiter["answer"]
        if answer is None:
            raise LaunchError("the launch helper died")
        if "error" in answer:
            raise LaunchError(answer["error"])
        return waiter["child"]

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._state:
                if "exit" in message:
                    child = self._children.pop(message["exit"], None)
                    if child is not None:
                        child.finish(message["returncode"])
                    continue
                waiter = self._pending.pop(message["id"], None)
                if waiter is None:
                    continue
                if "pid" in message:
                    waiter["child"] = self._children[message["pid"]] = HelperChild(message["pid"],
                                                                                   waiter["directory"])
                waiter["answer"] = message
                waiter["event"].set()
        # EOF: the helper is gone. Its children (reparented to init) report through their
        # exit status files; waiting launches fail; the next launch starts a new helper.
        with self._state:
            for waiter in self._pending.values():
                waiter["event"].set()
            self._pending.clear()
            for child in self._children.values():
                child.finish(None)
            self._children.clear()
        if not self._closed:
            log.warning("the launch helper exited; a new one starts with the next launch")
            with self._lock:
                if self._sock is sock:
                    self._reset()

    def _reset(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._proc is not None:
            try:
                self._proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """The slave stops: the helper exits, leaving whatever it started running
        (the slave killed what had to die)."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._reset()


def helper_request(argv: list[str], executable: str | None, plan: LaunchPlan, user: User | None,
                   directory: str, environment: dict[str, str]) -> dict:
    """What the helper needs to start a container (see helper.py)."""
    return {
        "argv": argv, "executable": executable, "env": environment, "cwd": directory,
        "stdout": os.path.join(directory, "stdout"), "stderr": os.path.join(directory, "stderr"),
        "cgroup_procs": list(plan.cgroup_procs), "clone_flags": plan.clone_flags,
        "pid_namespace": plan.pid_namespace, "hostname": plan.hostname,
        "sandbox": directory, "sandbox_mount": plan.sandbox_mount,
        "user": [user.uid, user.gid, list(user.groups), user.name] if _switching(user) else None,
    }


def catches(pid: int, signum: int) -> bool:
    """Whether `pid` handles or ignores `signum` (/proc SigCgt, SigIgn). The init
    of a PID namespace gets from outside only the signals it handles."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            masks = {key: int(value, 16) for key, _, value in (line.partition(":\t") for line in handle)
                     if key in ("SigCgt", "SigIgn")}
    except (OSError, ValueError):
        return False
    bit = 1 << (signum - 1)
    return bool((masks.get("SigCgt", 0) | masks.get("SigIgn", 0)) & bit)
