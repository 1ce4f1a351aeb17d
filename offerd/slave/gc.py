"""Sandbox garbage collection (Mesos' --gc_delay and --gc_disk_headroom).

A sandbox is scheduled for removal when its executor is retired (its container
exited and its tasks' terminal updates were acknowledged). It is removed once
older than the allowed age, which shrinks as the work_dir's disk fills:

    max age = gc_delay x max(0, 1 - gc_disk_headroom - disk use)

checked every --disk_watch_interval and when each scheduled sandbox would
expire. Removal (rmtree) runs on its own thread, never the actor's.

The schedule lives in memory, so at start the slave rescans its work dir
(`rescan`): every run directory ``slaves/*/frameworks/*/executors/*/runs/*``
that no live or recovered container uses is scheduled again, aged from the
directory's modification time as Mesos does, so a sandbox retired before a
restart still goes when it is due, not a whole --gc_delay later (or never).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import time

log = logging.getLogger(__name__)


def disk_usage_fraction(path: str) -> float:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0.0
    return usage.used / usage.total if usage.total else 0.0


def _subdirectories(path: str):
    """The real subdirectories of `path` (never through a symlink: a task can plant one)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield entry
        except OSError:
            continue


def run_directories(work_dir: str):
    """(path, mtime) of every sandbox: ``work_dir/slaves/*/frameworks/*/executors/*/runs/*``."""
    for slave in _subdirectories(os.path.join(work_dir, "slaves")):
        for framework in _subdirectories(os.path.join(slave.path, "frameworks")):
            for executor in _subdirectories(os.path.join(framework.path, "executors")):
                for run in _subdirectories(os.path.join(executor.path, "runs")):
                    try:
                        yield run.path, run.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue  # removed meanwhile


class SandboxGC:
    def __init__(self, actor, work_dir: str, delay: float, headroom: float, interval: float,
                 disk_usage=disk_usage_fraction, clock=time.time):
        self.actor = actor
        self.work_dir = work_dir
        self.delay = delay
        self.headroom = headroom
        self._disk_usage = disk_usage
        self._clock = clock
        self._scheduled: dict[str, float] = {}   # path -> when it was scheduled
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slave-gc")
        self.removals_succeeded = 0
        self.removals_failed = 0
        self.max_allowed_age = delay
        self._timer = actor.call_every(interval, self.prune) if interval > 0 else None

    def allowed_age(self) -> float:
        usage = self._disk_usage(self.work_dir)
        self.max_allowed_age = self.delay * max(0.0, 1.0 - self.headroom - usage)
        return self.max_allowed_age

    def schedule(self, path: str, since: float | None = None) -> None:
        """Remove `path` once it is older than the allowed age (on the actor thread);
        its age counts from `since` (a wall-clock time), by default now."""
        if not path or path in self._scheduled:
            return
        since = self._clock() if since is None else since
        self._scheduled[path] = since
        remaining = self.allowed_age() - (self._clock() - since)
        self.actor.call_later(max(0.0, remaining) + 0.01, self.prune)

    def rescan(self, in_use: set[str]) -> int:
        """Schedule every run directory under the work dir that is not in `in_use`
        (the sandboxes of live or recovered containers), aged from its mtime.
        Scans on the calling thread; schedules on the actor's. Returns how many."""
        kept = {os.path.realpath(p) for p in in_use if p}
        found = [(path, mtime) for path, mtime in run_directories(self.work_dir)
                 if os.path.realpath(path) not in kept]
        if found:
            log.info("scheduling %d sandbox(es) left from earlier runs for removal", len(found))
            self.actor.call_soon(self._schedule_all, found)
        return len(found)

    def _schedule_all(self, found: list[tuple[str, float]]) -> None:
        for path, mtime in found:
            self.schedule(path, since=mtime)

    def prune(self) -> None:
        age = self.allowed_age()
        now = self._clock()
        due = [path for path, since in self._scheduled.items() if now - since >= age]
        for path in due:
            del self._scheduled[path]
            self._pool.submit(self._remove, path)

    def _remove(self, path: str) -> None:
        try:
            shutil.rmtree(path)
            ok = True
        except FileNotFoundError:
            ok = True
        except OSError as exc:
            log.warning("cannot remove sandbox %s: %s", path, exc)
            ok = False
        self.actor.call_soon(self._removed, path, ok)

    def _removed(self, path: str, ok: bool) -> None:
        if ok:
            self.removals_succeeded += 1
            log.debug("removed sandbox %s", path)
        else:
            self.removals_failed += 1

    def pending(self) -> int:
        return len(self._scheduled)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=False)
