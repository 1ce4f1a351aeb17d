"""The one-thread-owns-the-state model of every offerd daemon.

An :class:`Actor` runs a ZeroMQ poller, timers and message handlers on a single
thread. Domain state belongs to that thread alone, so it needs no locks. Other
threads (the HTTP server, process reapers, fetchers) never touch that state:
they post callables into the actor's mailbox with :meth:`Actor.call_soon`, which
wakes the poller through an eventfd.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable

import zmq

log = logging.getLogger(__name__)


class Timer:
    """A handle to a scheduled callback; :meth:`cancel` is idempotent."""

    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn: Callable, args: tuple):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Actor:
    """An event loop owning sockets, timers and a thread-safe mailbox."""

    def __init__(self, name: str, context: zmq.Context | None = None):
        self.name = name
        self.context = context or zmq.Context.instance()
        self._poller = zmq.Poller()
        self._socket_handlers: dict[Any, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        self._mailbox: collections.deque = collections.deque()
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poller.register(self._wakeup, zmq.POLLIN)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], None]] = []
        self._after_turn: list[Callable[[], None]] = []
        self.stopped = threading.Event()

    # -- used from the actor thread -------------------------------------------

    def add_socket(self, socket, on_readable: Callable[[], None]) -> None:
        self._socket_handlers[socket] = on_readable
        self._poller.register(socket, zmq.POLLIN)

    def remove_socket(self, socket) -> None:
        if self._socket_handlers.pop(socket, None) is not None:
            self._poller.unregister(socket)

    def call_later(self, delay: float, fn: Callable, *args) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), fn, args)
        heapq.heappush(self._timers, (timer.when, next(self._timer_seq), timer))
        return timer

    def call_every(self, interval: float, fn: Callable, *args) -> Timer:
        """Run `fn` every `interval` seconds until the returned handle is cancelled."""
        handle = Timer(0.0, fn, args)

        def tick():
            if handle.cancelled:
                return
            fn(*args)
            if not handle.cancelled:
                self.call_later(interval, tick)

        self.call_later(interval, tick)
        return handle

    def after_each_turn(self, fn: Callable[[], None]) -> None:
        """Run `fn` at the end of every loop turn, once the sockets, mailbox and
        timers of that turn are handled: a point where no handler is half done
        (the master checks its accounting there when asked to)."""
        self._after_turn.append(fn)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Register cleanup to run on the actor thread when the loop ends."""
        self._closers.append(fn)

    def in_actor_thread(self) -> bool:
        return self._thread is threading.current_thread() or self._thread is None

    # -- used from any thread -------------------------------------------------

    def call_soon(self, fn: Callable, *args) -> None:
        """Post `fn(*args)` to run on the actor thread. Safe from any thread."""
        self._mailbox.append((fn, args))
        try:
            os.eventfd_write(self._wakeup, 1)
        except OSError:  # closed during shutdown: nothing will run it anyway
            pass

    def call(self, fn: Callable, *args, timeout: float = 10.0) -> Any:
        """Run `fn(*args)` on the actor thread and wait for its result."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        done = threading.Event()
        box: dict[str, Any] = {}

        def run():
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed back to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        self.call_soon(run)
        if not done.wait(timeout):
            raise TimeoutError(f"{self.name}: no answer from the actor thread in {timeout}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def stop(self) -> None:
        self._stopping = True
        self.call_soon(lambda: None)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the loop -------------------------------------------------------------

    def run(self) -> None:
        if self._thread is None:
            self._thread = threading.current_thread()
        try:
            while not self._stopping:
                self._loop_once()
        finally:
            for closer in reversed(self._closers):
                self._guard(closer)
            os.close(self._wakeup)
            self.stopped.set()

    def _loop_once(self) -> None:
        timeout_ms = self._next_timeout_ms()
        try:
            ready = self._poller.poll(timeout_ms)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EINTR:
                return
            raise
        for sock, _ in ready:
            if sock == self._wakeup:
                try:
                    os.eventfd_read(self._wakeup)
                except BlockingIOError:
                    pass
                continue
            handler = self._socket_handlers.get(sock)
            if handler is not None:
                self._guard(handler)
        self._drain_mailbox()
        self._run_due_timers()
        for fn in self._after_turn:
            self._guard(fn)

    def _next_timeout_ms(self) -> int | None:
        if self._mailbox:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0, int((self._timers[0][0] - time.monotonic()) * 1000) + 1)

    def _drain_mailbox(self) -> None:
        # Only what is queued now: work posted by the handlers runs next turn,
        # so a busy producer cannot starve the sockets.
        for _ in range(len(self._mailbox)):
            fn, args = self._mailbox.popleft()
            self._guard(fn, *args)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                self._guard(timer.fn, *timer.args)

    def _guard(self, fn: Callable, *args) -> None:
        # A bug in one handler must not take the daemon down: log and go on.
        try:
            fn(*args)
        except Exception:
            log.exception("%s: unhandled error in %r", self.name, fn)
