"""Processes of containers: the reaper, the pid records.

`Reaper` is one thread waiting, through pidfds, for the exit of every watched
process (children, or containers adopted after a slave restart), and polling
the fds isolators watch (OOM events). A checkpointed container's init
(offerd-init) writes the task's exit status into the sandbox, so the status
survives the slave. Each live container's pid and start time are kept in
`work_dir/meta/pids/<container id>`: a restarted slave adopts or kills them.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time

import psutil

log = logging.getLogger(__name__)


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
        self._fd_watches: dict[int, object] = {}   # fd -> callback (OOM events)
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

    def watch_fd(self, fd: int, events: int, callback) -> None:
        """Call `callback()` (on this thread) whenever `fd` reports `events`."""
        with self._lock:
            self._fd_watches[fd] = callback
        self._epoll.register(fd, events)

    def unwatch_fd(self, fd: int) -> None:
        with self._lock:
            if self._fd_watches.pop(fd, None) is None:
                return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

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
                    callback = self._fd_watches.get(fd)
                    entry = self._watched.pop(fd, None) if callback is None else None
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("error in a container event callback")
                    continue
                if entry is None:
                    continue
                key, proc = entry
                self._epoll.unregister(fd)
                os.close(fd)
                self._reap(key, proc)

    def _reap(self, key: str, proc: subprocess.Popen) -> None:
        returncode = proc.wait()
        # Whatever the leader left behind in its group goes with it.
        _signal_group(proc.pid, signal.SIGKILL)
        self._on_exit(key, returncode)

    def close(self, timeout: float = 5.0, keep=frozenset()) -> None:
        """Stop the thread, killing and reaping whatever is still watched, except
        the processes whose key is in `keep`: those are left running."""
        self._closed = True
        os.eventfd_write(self._wakeup, 1)
        self._thread.join(timeout)
        with self._lock:
            left = list(self._watched.items())
            self._watched.clear()
        for fd, (key, proc) in left:
            if key in keep:
                os.close(fd)
                continue
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                returncode = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process %d did not die after SIGKILL", proc.pid)
                returncode = None
            os.close(fd)
            self._on_exit(key, returncode)   # so its isolation is cleaned up too
        self._epoll.close()
        os.close(self._wakeup)


EXIT_STATUS_FILE = ".offerd_exit_status"   # written by a checkpointed container's offerd-init


def _shell_status(status: int | None) -> int | None:
    """A shell's $? (128+N for a death by signal N) as a subprocess returncode."""
    if status is not None and status > 128:
        return -(status - 128)
    return status


def read_exit_status(directory: str, wait: float = 0.0) -> int | None:
    deadline = time.monotonic() + wait
    while True:
        try:
            # Never through a link, nor blocking on a FIFO, the task put there.
            fd = os.open(os.path.join(directory, EXIT_STATUS_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd) as handle:
                return int(handle.read(32).strip())
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)


def _read_pid_file(path: str) -> tuple[int | None, float]:
    try:
        with open(path) as handle:
            pid, started = handle.read().split()
        return int(pid), float(started)
    except (OSError, ValueError):
        return None, 0.0


def _same_process(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _Adopted:
    """A container process of an earlier run of the slave: not our child, so its
    exit status comes from the file its wrapper writes."""

    def __init__(self, pid: int, directory: str):
        self.pid = pid
        self.directory = directory

    def wait(self, timeout: float | None = None) -> int | None:
        return read_exit_status(self.directory, wait=0.5)


def pid_directory(work_dir: str) -> str:
    return os.path.join(work_dir, "meta", "pids")


def recorded_containers(work_dir: str) -> set[str]:
    """Ids of the containers an earlier run of this slave left a pid file for."""
    try:
        return {name for name in os.listdir(pid_directory(work_dir)) if not name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def cleanup_orphans(work_dir: str, keep: set[str] = frozenset()) -> int:
    """Kill what containers of an earlier run of this slave left running, except
    the recovered ones in `keep`; returns how many processes were killed."""
    directory = pid_directory(work_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    sessions: dict[int, float] = {}
    for name in names:
        if name in keep:
            continue
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
