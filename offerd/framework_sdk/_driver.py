"""The lifecycle both drivers share: status, join, and how callbacks are called.

The rules are those of Mesos' drivers (src/sched/sched.cpp, src/exec/exec.cpp),
because framework code depends on them:

- ``start`` works once; afterwards every method returns the current status and,
  unless the driver is running, does nothing.
- ``abort`` stops callbacks at once; ``stop`` ends the driver; ``stop`` after
  ``abort`` returns DRIVER_ABORTED.
- ``join`` returns when the driver is no longer running.
- A callback that raises aborts the driver (the bindings print the traceback
  and call ``abort``). ``error`` is called after the driver is aborted.

Callbacks run on a thread of their own, in the order events arrived, never on
the I/O thread: a callback that blocks (a slow database, a long computation)
delays only later callbacks, while heartbeats keep the connection alive. Had it
run on the I/O thread, a callback slower than the master's framework timeout
would look like a dead scheduler, and its tasks could be killed.

One difference: a callback that calls ``sys.exit`` cannot end the process from
the driver's thread, so the driver aborts and ``join`` (and so ``run``) re-raises
that SystemExit in the thread that waits, which ends a script the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from offerd.common.actor import Actor
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

NOT_STARTED = pb.DRIVER_NOT_STARTED
RUNNING = pb.DRIVER_RUNNING
ABORTED = pb.DRIVER_ABORTED
STOPPED = pb.DRIVER_STOPPED


class DriverBase:
    # How long stop()/join() wait for the driver thread to flush its last
    # messages (TEARDOWN, status updates) before returning.
    close_timeout = 5.0

    def __init__(self, kind: str):
        self._kind = kind
        self._cond = threading.Condition()
        self._status = NOT_STARTED
        self._actor: Actor | None = None
        self._pending_exit: SystemExit | None = None
        self._callbacks: queue.SimpleQueue = queue.SimpleQueue()
        self._callback_thread: threading.Thread | None = None
        # The `then` of the callback running now, so a stop() from inside the
        # callback can still let it happen first (Mesos acks before it stops).
        self._current_then: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------

    def join(self):
        with self._cond:
            # A timed wait keeps the waiting thread responsive to Ctrl-C.
            while self._status == RUNNING:
                self._cond.wait(0.5)
            status = self._status
        if status == STOPPED:
            self._wait_closed()
        exc, self._pending_exit = self._pending_exit, None
        if exc is not None:
            raise exc
        return status

    def run(self):
        status = self.start()
        return status if status != RUNNING else self.join()

    def abort(self):
        with self._cond:
            if self._status != RUNNING:
                return self._status
            self._set_status(ABORTED)
            return ABORTED

    # -- for the subclasses ---------------------------------------------------

    def _start_callbacks(self, actor: Actor) -> None:
        """Start the callback thread; it ends when `actor` closes."""
        self._callback_thread = threading.Thread(
            target=self._run_callbacks, name=f"{actor.name}-callbacks", daemon=True)
        self._callback_thread.start()
        actor.on_close(lambda: self._callbacks.put(None))

    def _run_callbacks(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            target, name, args, then, always = item
            if not always and self._status != RUNNING:
                continue  # stopped or aborted: Mesos delivers nothing more
            self._current_then = then
            completed = self._call_guarded(target, name, *args)
            then, self._current_then = self._current_then, None
            if completed and then is not None and self._actor is not None:
                self._actor.call_soon(then)

    def _set_status(self, status: int) -> None:
        """Change the status; the caller holds ``self._cond``."""
        self._status = status
        self._cond.notify_all()

    def _post(self, fn: Callable, *args):
        """Run `fn` on the driver thread if the driver is running."""
        with self._cond:
            if self._status != RUNNING:
                return self._status
            # Posting under the lock orders this call before any later stop().
            self._actor.call_soon(fn, *args)
            return RUNNING

    def _begin_stop(self, shutdown: Callable, *args):
        """Mark the driver stopped and post `shutdown`; returns what stop() returns."""
        with self._cond:
            if self._status not in (RUNNING, ABORTED):
                return self._status
            was_aborted = self._status == ABORTED
            self._set_status(STOPPED)
            if self._actor is None:
                # start() aborted before there was a thread (bad settings): nothing to close.
                return ABORTED if was_aborted else STOPPED
            if threading.current_thread() is self._callback_thread and self._current_then is not None:
                self._actor.call_soon(self._current_then)
                self._current_then = None
            self._actor.call_soon(shutdown, *args)
        self._wait_closed()
        return ABORTED if was_aborted else STOPPED

    def _wait_closed(self) -> None:
        actor = self._actor
        if actor is not None and not actor.in_actor_thread():
            actor.stopped.wait(self.close_timeout)

    def _invoke(self, target, name: str, *args, then: Callable[[], None] | None = None) -> None:
        """Queue a callback for the callback thread if the driver is running.

        `then` runs on the driver thread after the callback returned normally
        (e.g. the implicit acknowledgement of a status update).
        """
        if self._status != RUNNING:
            return
        self._callbacks.put((target, name, args, then, False))

    def _call_guarded(self, target, name: str, *args) -> bool:
        try:
            getattr(target, name)(self, *args)
            return True
        except SystemExit as exc:
            log.warning("%s.%s called sys.exit(%r): aborting the driver; join() re-raises it",
                        type(target).__name__, name, exc.code)
            self._pending_exit = exc
            self.abort()
        except Exception:
            log.exception("%s.%s raised: aborting the %s", type(target).__name__, name, self._kind)
            self.abort()
        return False

    def _fail(self, target, message: str) -> None:
        """Abort, then tell the callbacks why (Mesos calls error() on an aborted driver)."""
        with self._cond:
            if self._status != RUNNING:
                log.info("%s not running; ignoring error: %s", self._kind, message)
                return
            self._set_status(ABORTED)
        log.error("%s aborted: %s", self._kind, message)
        # Queued behind earlier callbacks, and delivered although aborted, as Mesos does.
        self._callbacks.put((target, "error", (message,), None, True))
