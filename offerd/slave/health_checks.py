"""Health checks of command tasks, run by the slave as their executor (Mesos' way).

A command task's `TaskInfo.health_check` is run by the slave, since the slave is
the command executor here. The rules are Mesos' built-in executors':

- the first attempt starts `delay_seconds` after the task runs, the next one
  `interval_seconds` after each attempt ends; an attempt that takes longer than
  `timeout_seconds` (0: no limit) is a failure;
- failures within `grace_period_seconds` of the task's start are ignored until
  the first success;
- every counted failure is reported as a TASK_RUNNING update with `healthy`
  false, and the first success (at start, or after failures) with `healthy`
  true, each with reason REASON_TASK_HEALTH_CHECK_STATUS_UPDATED;
- after `consecutive_failures` failures in a row the task is killed (its kill
  policy's grace applies); it ends TASK_KILLED with `healthy` false.

Where an attempt runs:

- COMMAND: inside the task's container. A container's init (offerd-init) is
  started with --enter, so the check joins the task's mount, PID, network, UTS
  and IPC namespaces and its cgroups before it runs, as the task's user, in the
  sandbox, with the task's environment (plus the check's own variables). Its
  exit status 0 means healthy.
- HTTP: a GET of scheme://127.0.0.1:port/path from the task's network namespace
  (the slave's thread enters it just to make the socket). Status 200-399 is
  healthy; HTTPS certificates are not verified (as Mesos' curl -k).
- TCP: a connection to 127.0.0.1:port from the task's network namespace.

Attempts never run on the actor thread: a small thread pool runs them and
posts each result to the actor, which owns every checker's state and sends
the updates. Checking stops when the task ends or is killed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import http.client
import logging
import os
import signal
import socket
import ssl
import subprocess
import time

from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import launcher
from offerd.slave.containerizer.isolator import Container as Box
from offerd.slave.containerizer.isolator import LaunchPlan
from offerd.slave.containerizer.processes import command_argv

log = logging.getLogger(__name__)

Check = pb.HealthCheck
UPDATED = pb.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
POOL_THREADS = 8
NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")
CLONE_NEWNET = 0x40000000
MAX_CAUSE = 512   # characters of a failure's cause that reach the status message

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class Target:
    """What an attempt needs to know about the task's container. Built on the actor
    thread; read by pool threads."""

    __slots__ = ("container_id", "directory", "environment", "user", "pid", "cpus", "mem_mb", "isolators")

    def __init__(self, container_id: str, directory: str, environment: dict[str, str], user: str | None,
                 cpus: float, mem_mb: float, isolators=()):
        self.container_id = container_id
        self.isolators = tuple(isolators)   # the containerizer's, to learn the container's cgroups
        self.directory = directory
        self.environment = environment
        self.user = user
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.pid: int | None = None   # the container's first process, once it runs


class _Checker:
    """One task's checking (actor thread only)."""

    __slots__ = ("task", "check", "target", "started", "failures", "initializing", "timer", "stopped",
                 "killed", "cause")

    def __init__(self, task, target: Target):
        self.task = task
        self.check: pb.HealthCheck = task.info.health_check
        self.target = target
        self.started = time.monotonic()
        self.failures = 0
        self.initializing = True   # no success yet: the grace period applies
        self.timer = None
        self.stopped = False
        self.killed = False        # the checks killed the task
        self.cause: str | None = None


class HealthChecks:
    """The health checkers of one slave's command tasks."""

    def __init__(self, core):
        self.core = core
        self._checkers: dict[int, _Checker] = {}   # id(task) -> its checker
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- actor thread --------------------------------------------------------------

    def start(self, task, target: Target) -> None:
        """The task runs: start checking it (if it has a check)."""
        if not task.info.HasField("health_check") or id(task) in self._checkers:
            return
        checker = self._checkers[id(task)] = _Checker(task, target)
        log.info("%s: health checking task %s (%s) in %gs, then every %gs", self.core.name, task.id,
                 Check.Type.Name(checker.check.type), checker.check.delay_seconds, checker.check.interval_seconds)
        checker.timer = self.core.actor.call_later(max(0.0, checker.check.delay_seconds), self._due, checker)

    def stop(self, task) -> None:
        checker = self._checkers.pop(id(task), None)
        if checker is not None:
            self._halt(checker)

    def killed_by_check(self, task) -> str | None:
        """Why the checks killed `task` (None if they did not)."""
        checker = self._checkers.get(id(task))
        return checker.cause if checker is not None and checker.killed else None

    def close(self) -> None:
        for checker in self._checkers.values():
            self._halt(checker)
        self._checkers.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _halt(checker: _Checker) -> None:
        checker.stopped = True
        if checker.timer is not None:
            checker.timer.cancel()
            checker.timer = None

    def _due(self, checker: _Checker) -> None:
        checker.timer = None
        if checker.stopped:
            return
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="slave-health")
        try:
            future = self._pool.submit(attempt, checker.check, checker.target, self._switch_user())
        except RuntimeError:   # the pool is shut down: the slave is stopping
            return
        future.add_done_callback(lambda done: self.core.actor.call_soon(self._result, checker, _cause(done)))

    def _switch_user(self) -> bool:
        return bool(getattr(self.core.containerizer, "switch_user", False))

    def _result(self, checker: _Checker, cause: str | None) -> None:
        if checker.stopped:
            return
        check = checker.check
        if cause is None:
            if checker.initializing or checker.failures:
                self._send(checker, True, None)
            checker.initializing = False
            checker.failures = 0
        elif checker.initializing and check.grace_period_seconds > 0 and \
                time.monotonic() - checker.started <= check.grace_period_seconds:
            log.info("%s: ignoring a failed health check of task %s in its grace period: %s", self.core.name,
                     checker.task.id, cause)
        else:
            checker.failures += 1
            self.core.stats["health_check_failures"] += 1
            log.warning("%s: health check of task %s failed %d time(s) in a row: %s", self.core.name,
                        checker.task.id, checker.failures, cause)
            self._send(checker, False, cause)
            if checker.failures >= check.consecutive_failures:
                self._kill(checker, cause)
                return
        checker.timer = self.core.actor.call_later(max(0.0, check.interval_seconds), self._due, checker)

    def _send(self, checker: _Checker, healthy: bool, cause: str | None) -> None:
        task = checker.task
        if task.terminal or task.kill_requested or task.state != pb.TASK_RUNNING:
            return
        status = pb.TaskStatus(task_id=task.info.task_id, state=pb.TASK_RUNNING, healthy=healthy,
                               reason=UPDATED, source=pb.TaskStatus.SOURCE_EXECUTOR)
        if cause:
            status.message = f"Health check failed: {cause}"
        self.core.forward_status(task, status)

    def _kill(self, checker: _Checker, cause: str) -> None:
        task = checker.task
        self._halt(checker)
        if task.terminal or task.kill_requested:
            return
        checker.killed = True
        checker.cause = f"Task killed after {checker.failures} consecutive failed health checks: {cause}"
        log.warning("%s: killing task %s: %s", self.core.name, task.id, checker.cause)
        self.core.stats["health_check_kills"] += 1
        self.core.commands.kill(task, None)


def _cause(future: concurrent.futures.Future) -> str | None:
    try:
        cause = future.result()
    except concurrent.futures.CancelledError:
        return "cancelled: the slave is stopping"
    except Exception as exc:  # noqa: BLE001 (a checker bug reads as a failed check, never a crash)
        log.exception("health check attempt raised")
        cause = f"{type(exc).__name__}: {exc}"
    return cause if cause is None else cause[:MAX_CAUSE]


# -- pool threads -----------------------------------------------------------------------

def attempt(check: pb.HealthCheck, target: Target, switch_user: bool) -> str | None:
    """One attempt: None when healthy, else what failed."""
    timeout = check.timeout_seconds if check.timeout_seconds > 0 else None
    try:
        if check.type == Check.COMMAND:
            return _command(check.command, target, switch_user, timeout)
        if check.type == Check.HTTP:
            return _http(check.http, target.pid, timeout)
        if check.type == Check.TCP:
            with contextlib.closing(_socket(target.pid)) as sock:
                sock.settimeout(timeout)
                sock.connect(("127.0.0.1", check.tcp.port))
            return None
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"unsupported health check type {check.type}"


def _command(command: pb.CommandInfo, target: Target, switch_user: bool, timeout: float | None) -> str | None:
    if target.pid is None:
        return "the task's container has no process"
    plan = container_plan(target)
    if own_namespaces(target.pid):
        plan.enter_pid = target.pid
    environment = {**target.environment, **plan.environment}
    for variable in command.environment.variables:
        if variable.type != pb.Environment.Variable.SECRET:
            environment[variable.name] = variable.value
    argv, executable = command_argv(command)
    try:
        user = launcher.resolve_user(target.user) if (switch_user and target.user) else None
        launched = launcher.spawn(argv, executable, plan, user, target.directory, environment,
                                  stdout=os.devnull, stderr=os.devnull,
                                  timeout=timeout or launcher.REPORT_TIMEOUT)
    except launcher.LaunchError as exc:
        return f"the check command could not start: {exc}"
    proc = launched.proc
    try:
        returncode = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)   # not reaped yet, so the group id is still this check's
        proc.wait()
        return f"Command has not returned after {timeout:g}s; aborting"
    if returncode == 0:
        return None
    return f"Command returned {_describe(returncode, launched.via_init)}"


def container_plan(target: Target) -> LaunchPlan:
    """The cgroups to join and the environment the task's own launch had. Asking the
    isolators again is safe: prepare() only plans, it creates nothing."""
    plan = LaunchPlan()
    box = Box(target.container_id, target.directory, target.cpus, target.mem_mb, target.user, target.pid)
    for isolator in target.isolators:
        part = isolator.prepare(box)
        if part is not None:
            plan.cgroup_joins.extend(part.cgroup_joins)
            plan.environment.update(part.environment)
    return plan


def _describe(returncode: int | None, via_init: bool) -> str:
    if returncode is None:
        return "an unknown status"
    signum = -returncode if returncode < 0 else returncode - 128 if via_init and returncode > 128 else 0
    if signum:
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    return f"status {returncode}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def own_namespaces(pid: int) -> bool:
    """Whether process `pid` lives in any namespace of its own (one the slave does not share)."""
    for kind in NAMESPACES:
        try:
            if os.stat(f"/proc/{pid}/ns/{kind}").st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino:
                return True
        except OSError:
            return False
    return False


@contextlib.contextmanager
def _in_network_of(pid: int):
    """The calling thread in the network namespace of `pid`, and back on the way out
    (a network namespace is per thread; a socket keeps the one it was made in)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(theirs, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"entering the task's network namespace: {os.strerror(err)}")
        finally:
            os.close(theirs)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:   # a pool thread left elsewhere is a bug to see
                err = ctypes.get_errno()
                raise OSError(err, f"returning to the slave's network namespace: {os.strerror(err)}")
    finally:
        os.close(own)


def _socket(pid: int | None) -> socket.socket:
    """A TCP socket in the task's network (the slave's own when the task shares it)."""
    if pid is not None and _own_network(pid):
        with _in_network_of(pid):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _own_network(pid: int) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino


def _http(info: pb.HealthCheck.HTTPCheckInfo, pid: int | None, timeout: float | None) -> str | None:
    sock = _socket(pid)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", info.port))
        if (info.scheme or "http") == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        connection = http.client.HTTPConnection("127.0.0.1", info.port, timeout=timeout)
        connection.sock = sock
        connection.request("GET", info.path or "/")
        status = connection.getresponse().status
    finally:
        sock.close()
    if 200 <= status < 400:
        return None
    return f"Unexpected HTTP response code: {status}"
