"""How each container ended, for the v1 WAIT_CONTAINER call.

The slave's books forget a container's Termination once its executor is
handled; WAIT_CONTAINER needs it, possibly on an HTTP thread that has been
waiting for minutes. `ContainerWaits.watch(containerizer)` puts a thin layer in
front of the containerizer that notes every container's end (on the actor
thread, where the containerizer reports it) before passing it on, and lets any
thread block until a given container has ended.
"""

from __future__ import annotations

import collections
import threading

from offerd.slave.containerizer.base import Termination

# Ended containers remembered for a late WAIT_CONTAINER (Mesos forgets them at
# once; answering a client that asks a moment too late is kinder).
MAX_REMEMBERED = 1000
# Each waiting call holds one of the slave's few HTTP worker threads (8) until its
# container ends: beyond this many, a wait is refused so /state, /files and the
# other calls keep being served.
MAX_WAITERS = 4


class TooManyWaiters(Exception):
    """Every WAIT_CONTAINER slot is taken."""


class ContainerWaits:
    def __init__(self):
        self._ended: collections.OrderedDict[str, Termination] = collections.OrderedDict()
        self._changed = threading.Condition()
        self._waiting = 0
        self.closed = False
        # Called with (container_id, termination) on the actor thread as each container
        # ends (container sessions end with their parent container).
        self.listeners: list = []

    def ended(self, container_id: str, termination: Termination) -> None:
        with self._changed:
            self._ended[container_id] = termination
            self._ended.move_to_end(container_id)
            while len(self._ended) > MAX_REMEMBERED:
                self._ended.popitem(last=False)
            self._changed.notify_all()
        for listener in self.listeners:
            listener(container_id, termination)

    def termination(self, container_id: str) -> Termination | None:
        with self._changed:
            return self._ended.get(container_id)

    def wait(self, container_id: str, timeout: float | None = None) -> Termination | None:
        """The container's Termination once it has ended; None when the slave
        stops first (or `timeout` passes)."""
        with self._changed:
            if container_id not in self._ended and not self.closed:
                if self._waiting >= MAX_WAITERS:
                    raise TooManyWaiters(f"{MAX_WAITERS} WAIT_CONTAINER calls are already waiting on this slave; "
                                         "retry when one has ended")
                self._waiting += 1
                try:
                    self._changed.wait_for(lambda: container_id in self._ended or self.closed, timeout)
                finally:
                    self._waiting -= 1
            return self._ended.get(container_id)

    def close(self) -> None:
        """The slave is stopping: release every waiter."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def watch(self, containerizer) -> "_Watched":
        return _Watched(containerizer, self)


class _Watched:
    """The containerizer, with each container's end noted first."""

    def __init__(self, inner, waits: ContainerWaits):
        self._inner = inner
        self._waits = waits

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _noting(self, container_id: str, on_exited):
        def exited(termination: Termination) -> None:
            self._waits.ended(container_id, termination)
            on_exited(termination)
        return exited

    def launch(self, spec, on_started, on_exited) -> None:
        self._inner.launch(spec, on_started, self._noting(spec.container_id, on_exited))

    def recover(self, container_id, directory, cpus, mem_mb, on_exited):
        return self._inner.recover(container_id, directory, cpus, mem_mb, self._noting(container_id, on_exited))

    def close(self) -> None:
        self._waits.close()
        self._inner.close()
