"""Real processes without isolation (Mesos' posix launcher with posix/cpu,mem).

A container is a process group: the command runs as the leader of a new session
in its sandbox, with stdout and stderr going to files there. Killing a
container signals the whole group, so a shell's children die with it.

Nothing here blocks the actor thread: fork/exec happens on a small thread pool
(launching is the slave's hot path) and one reaper thread waits for every exit
through pidfds, reporting back with `actor.call_soon`.

Running containers are not recovered across a slave restart. So that a slave
killed outright (SIGKILL, OOM) leaves nothing running that nobody supervises,
each live container's session id is recorded under `work_dir/meta/pids/`, and
the next start kills whatever is left in those sessions (`cleanup_orphans`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import select
import signal
import subprocess
import threading
import time

import psutil

from offerd.common.actor import Actor
from offerd.slave.containerizer.base import Containerizer, LaunchSpec, OnExited, OnStarted, Termination

log = logging.getLogger(__name__)

LAUNCH_THREADS = 4


def command_argv(command) -> tuple[list[str], str | None]:
    """argv and executable for a CommandInfo, as Mesos reads it."""
    if command.shell:
        return ["/bin/sh", "-c", command.value], None
    argv = list(command.arguments) or [command.value]
    return argv, command.value or None


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


class Reaper:
    """One thread waiting for the exit of every watched process (via pidfds)."""

    def __init__(self, on_exit):
        self._on_exit = on_exit
        self._epoll = select.epoll()
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakeup, select.EPOLLIN)
        self._watched: dict[int, tuple[str, subprocess.Popen]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="slave-reaper", daemon=True)
        self._thread.start()

    def watch(self, key: str, proc: subprocess.Popen) -> None:
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            # No pidfd support: a waiting thread per process does the same job.
            threading.Thread(target=self._reap, args=(key, proc), name="slave-waiter", daemon=True).start()
            return
        with self._lock:
            self._watched[fd] = (key, proc)
        self._epoll.register(fd, select.EPOLLIN)

    def _run(self) -> None:
        while not self._closed:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wakeup:
                    continue
                with self._lock:
                    key, proc = self._watched.pop(fd)
                self._epoll.unregister(fd)
                os.close(fd)
                self._reap(key, proc)

    def _reap(self, key: str, proc: subprocess.Popen) -> None:
        returncode = proc.wait()
        # Whatever the leader left behind in its group goes with it.
        _signal_group(proc.pid, signal.SIGKILL)
        self._on_exit(key, returncode)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread, killing and reaping whatever is still watched."""
        self._closed = True
        os.eventfd_write(self._wakeup, 1)
        self._thread.join(timeout)
        with self._lock:
            left = list(self._watched.items())
            self._watched.clear()
        for fd, (_, proc) in left:
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process %d did not die after SIGKILL", proc.pid)
            os.close(fd)
        self._epoll.close()
        os.close(self._wakeup)


class _Container:
    __slots__ = ("spec", "on_started", "on_exited", "proc", "term_sent", "kill_at", "kill_timer")

    def __init__(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited):
        self.spec = spec
        self.on_started = on_started
        self.on_exited = on_exited
        self.proc: subprocess.Popen | None = None
        self.term_sent = False
        self.kill_at: float | None = None   # monotonic deadline for SIGKILL
        self.kill_timer = None


def pid_directory(work_dir: str) -> str:
    return os.path.join(work_dir, "meta", "pids")


def cleanup_orphans(work_dir: str) -> int:
    """Kill what containers of an earlier run of this slave left running; returns
    how many processes were killed."""
    directory = pid_directory(work_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    sessions: dict[int, float] = {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                pid, started = handle.read().split()
            sessions[int(pid)] = float(started)
        except (OSError, ValueError):
            log.warning("ignoring unreadable pid file %s", path)
        os.remove(path)
    killed = 0
    for proc in psutil.process_iter(["create_time"]) if sessions else ():
        try:
            started = sessions.get(os.getsid(proc.pid))
            # Created no earlier than its session's leader: not an unrelated reuse of the id.
            if started is not None and proc.info["create_time"] >= started - 1:
                proc.kill()
                killed += 1
        except (OSError, psutil.Error):
            continue
    if killed:
        log.warning("killed %d process(es) left running by a previous run of this slave", killed)
    return killed


class PosixContainerizer(Containerizer):
    def __init__(self, actor: Actor, work_dir: str, launch_threads: int = LAUNCH_THREADS):
        self.actor = actor
        self._pid_dir = pid_directory(work_dir)
        os.makedirs(self._pid_dir, exist_ok=True)
        self._containers: dict[str, _Container] = {}   # actor thread only
        self._pool = concurrent.futures.ThreadPoolExecutor(launch_threads, thread_name_prefix="slave-launcher")
        self._reaper = Reaper(self._reaped)
        self._closing = False

    def launch(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited) -> None:
        self._containers[spec.container_id] = _Container(spec, on_started, on_exited)
        self._pool.submit(self._spawn, spec)

    def kill(self, container_id: str, grace: float) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        deadline = time.monotonic() + max(0.0, grace)
        if container.kill_at is not None and container.kill_at <= deadline:
            return
        container.kill_at = deadline
        if container.proc is not None:
            self._enforce_kill(container)

    def destroy_all(self) -> None:
        for container in self._containers.values():
            container.kill_at = time.monotonic()
            if container.proc is not None:
                self._enforce_kill(container)

    def close(self) -> None:
        self._closing = True
        self._pool.shutdown(wait=True)
        self._reaper.close()

    # -- launcher threads ---------------------------------------------------------

    def _spawn(self, spec: LaunchSpec) -> None:
        try:
            argv, executable = command_argv(spec.command)
            os.makedirs(spec.directory, exist_ok=True)
            with open(os.path.join(spec.directory, "stdout"), "wb") as out, \
                    open(os.path.join(spec.directory, "stderr"), "wb") as err:
                proc = subprocess.Popen(
                    argv, executable=executable, cwd=spec.directory, env=spec.environment,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, close_fds=True,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.actor.call_soon(self._exited, spec.container_id, None, f"Failed to launch container: {exc}")
            return
        self._record_pid(spec.container_id, proc.pid)
        # Posted before the reaper can post the exit, so on_started always comes first.
        self.actor.call_soon(self._started, spec.container_id, proc)
        self._reaper.watch(spec.container_id, proc)
        if self._closing:
            _signal_group(proc.pid, signal.SIGKILL)

    def _record_pid(self, container_id: str, pid: int) -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            started = time.time()  # gone already: the record is removed when it is reaped
        with open(os.path.join(self._pid_dir, container_id), "w") as handle:
            handle.write(f"{pid} {started}")

    def _reaped(self, container_id: str, returncode: int) -> None:
        """On the reaper thread: the container's group is dead, forget it on disk too."""
        try:
            os.remove(os.path.join(self._pid_dir, container_id))
        except FileNotFoundError:
            log.debug("no pid file for container %s", container_id)
        self.actor.call_soon(self._exited, container_id, returncode)

    # -- actor thread ----------------------------------------------------------------

    def _started(self, container_id: str, proc: subprocess.Popen) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        container.proc = proc
        container.on_started(proc.pid)
        if container.kill_at is not None:
            self._enforce_kill(container)

    def _enforce_kill(self, container: _Container) -> None:
        pid = container.proc.pid
        if container.kill_timer is not None:
            container.kill_timer.cancel()
            container.kill_timer = None
        delay = container.kill_at - time.monotonic()
        if delay <= 0:
            _signal_group(pid, signal.SIGKILL)
            return
        if not container.term_sent:
            container.term_sent = True
            _signal_group(pid, signal.SIGTERM)
        container.kill_timer = self.actor.call_later(delay, _signal_group, pid, signal.SIGKILL)

    def _exited(self, container_id: str, returncode: int | None, launch_error: str | None = None) -> None:
        container = self._containers.pop(container_id, None)
        if container is None:
            return
        if container.kill_timer is not None:
            container.kill_timer.cancel()
        container.on_exited(Termination(returncode=returncode, launch_error=launch_error))


def process_statistics(pid: int | None) -> dict:
    """Usage of a container's process tree, in Mesos' /monitor/statistics keys
    (all zero for a container without a process, e.g. a simulated one)."""
    stats = {"timestamp": time.time(), "processes": 0, "threads": 0,
             "cpus_user_time_secs": 0.0, "cpus_system_time_secs": 0.0, "mem_rss_bytes": 0}
    if not pid:
        return stats
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return stats
    for proc in procs:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                stats["cpus_user_time_secs"] += times.user + times.children_user
                stats["cpus_system_time_secs"] += times.system + times.children_system
                stats["mem_rss_bytes"] += proc.memory_info().rss
                stats["threads"] += proc.num_threads()
                stats["processes"] += 1
        except psutil.Error:
            continue
    return stats
