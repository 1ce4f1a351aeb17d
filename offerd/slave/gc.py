"""Sandbox garbage collection (Mesos' --gc_delay and --gc_disk_headroom).

A sandbox is scheduled for removal when its executor is retired (its container
exited and its tasks' terminal updates were acknowledged). It is removed once
older than the allowed age, which shrinks as the work_dir's disk fills:

    max age = gc_delay x max(0, 1 - gc_disk_headroom - disk use)

checked every --disk_watch_interval and when each scheduled sandbox would
expire. Removal (rmtree) runs on its own thread, never the actor's.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import time

log = logging.getLogger(__name__)


def disk_usage_fraction(path: str) -> float:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0.0
    return usage.used / usage.total if usage.total else 0.0


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

    def schedule(self, path: str) -> None:
        """Remove `path` once it is older than the allowed age (on the actor thread)."""
        if not path or path in self._scheduled:
            return
        self._scheduled[path] = self._clock()
        self.actor.call_later(self.allowed_age() + 0.01, self.prune)

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
