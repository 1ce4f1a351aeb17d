"""The internal event bus behind ``/v2/events``.

Each open ``/v2/events`` stream holds one of the HTTP server's worker threads
for as long as it lasts, so the number of streams is capped (`open_stream`,
``--max_event_streams``): the API keeps threads to answer with however many
clients listen. A stream that falls more than its queue's size behind
(``--event_stream_max_outstanding_messages``) is dropped, as Marathon drops a
slow consumer, instead of buffering without bound."""

from __future__ import annotations

import queue
import threading

from frameworks.marathon_like import ids

KNOWN = {
    "api_post_event", "status_update_event", "instance_changed_event", "instance_health_changed_event",
    "unknown_instance_terminated_event", "health_status_changed_event", "failed_health_check_event",
    "add_health_check_event", "remove_health_check_event", "unhealthy_instance_kill_event",
    "deployment_info", "deployment_step_success", "deployment_step_failure", "deployment_success",
    "deployment_failed", "group_change_success", "group_change_failed", "app_terminated_event",
    "event_stream_attached", "event_stream_detached", "scheduler_registered_event",
    "scheduler_reregistered_event", "scheduler_disconnected_event", "framework_message_event",
}


class TooManyStreams(Exception):
    """Every event stream slot is taken; the message says what to do."""


class Subscription:
    def __init__(self, bus: "EventBus", types: set[str], size: int, stream: bool = False):
        self.bus, self.types = bus, types
        self.queue: queue.Queue = queue.Queue(size)
        self.overflowed = False
        self.stream = stream   # holds one of the capped stream slots until closed
        self.closed = False

    def offer(self, event: dict) -> None:
        if self.types and event["eventType"] not in self.types:
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            # A slow consumer is disconnected rather than slowing everyone down.
            self.overflowed = True

    def get(self, timeout: float) -> dict | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Idempotent: both the stream's end and the server's close of the response call it."""
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self, queue_size: int = 1024):
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self.queue_size = queue_size
        self.published = 0
        self.streams = 0   # open /v2/events streams (each holds an HTTP worker thread)

    def subscribe(self, types=()) -> Subscription:
        sub = Subscription(self, set(types), self.queue_size)
        with self._lock:
            self._subs.append(sub)
        return sub

    def open_stream(self, types, max_streams: int, max_outstanding: int) -> Subscription:
        """A subscription for one ``/v2/events`` client, holding one of `max_streams`
        slots until closed; raises TooManyStreams when all are taken."""
        with self._lock:
            if self.streams >= max_streams:
                raise TooManyStreams(
                    f"too many event streams ({self.streams} open); close one, or raise --max_event_streams "
                    "(each stream holds one of the API's worker threads)")
            sub = Subscription(self, set(types), max(1, max_outstanding), stream=True)
            self.streams += 1
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.closed:
                return
            sub.closed = True
            if sub.stream:
                self.streams -= 1
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event_type: str, **fields) -> dict:
        assert event_type in KNOWN, event_type
        event = {"eventType": event_type, "timestamp": ids.timestamp(), **fields}
        self.published += 1
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(event)
        return event
