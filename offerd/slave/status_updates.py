"""The status update manager: at-least-once, in-order delivery of task status updates.

Each task has a stream. Only the update at the head of a stream is in flight; it
is sent again with exponential backoff (initial interval, doubling, capped) until
the scheduler's acknowledgement of exactly that uuid comes back through the
master, and only then is the next update of the stream sent. Every
SlaveCall UPDATE also carries the task's latest state, so the master can free a
task's resources as soon as the task ends even while earlier updates await
acknowledgement. While the slave is disconnected nothing is sent; on
(re)registration every stream's head is sent again at once.

The manager owns no thread and no clock of its own: `send` and `call_later` are
injected, which keeps it testable with a fake timer.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Callable

from offerd.common.ids import new_uuid
from offerd.common.task_states import TERMINAL_STATES, is_terminal  # noqa: F401 (re-exported)
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

class _Stream:
    __slots__ = ("framework_id", "task_id", "pending", "latest_state", "terminal",
                 "timer", "interval", "taken", "acked")

    def __init__(self, framework_id: str, task_id: str):
        self.framework_id = framework_id
        self.task_id = task_id
        self.pending: collections.deque[pb.TaskStatus] = collections.deque()
        self.latest_state: int | None = None
        self.terminal = False
        self.timer = None
        self.interval = 0.0
        self.taken: set[bytes] = set()
        self.acked: set[bytes] = set()


class StatusUpdateManager:
    def __init__(
        self,
        send: Callable[[pb.SlaveCall], object],
        call_later: Callable[..., object],
        retry_interval: float = 10.0,
        retry_max: float = 600.0,
        clock: Callable[[], float] = time.time,
    ):
        self._send = send
        self._call_later = call_later
        self.retry_interval = retry_interval
        self.retry_max = max(retry_max, retry_interval)
        self._clock = clock
        self.slave_id: str | None = None
        self.paused = True  # nothing goes out before the slave is registered
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.stats = collections.Counter()

    # -- taking updates -------------------------------------------------------

    def update(self, framework_id: str, status: pb.TaskStatus) -> bool:
        """Take `status` for delivery, filling in uuid, slave id, source and time.

        Returns False, and takes nothing, for a uuid this stream already took (an
        executor resending) or for anything after the stream's terminal update.
        """
        key = (framework_id, status.task_id.value)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(*key)
        elif status.uuid and status.uuid in stream.taken:
            self.stats["duplicate_updates"] += 1
            return False
        elif stream.terminal:
            self.stats["updates_after_terminal"] += 1
            log.warning("ignoring %s for task %s of framework %s: it already has a terminal update",
                        pb.TaskState.Name(status.state), key[1], framework_id)
            return False
        if not status.uuid:
            status.uuid = new_uuid()
        if self.slave_id and not status.slave_id.value:
            status.slave_id.value = self.slave_id
        if not status.HasField("source"):
            status.source = pb.TaskStatus.SOURCE_SLAVE
        if not status.HasField("timestamp"):
            status.timestamp = self._clock()
        stream.taken.add(status.uuid)
        stream.pending.append(status)
        stream.latest_state = status.state
        stream.terminal = status.state in TERMINAL_STATES
        self.stats["updates"] += 1
        if len(stream.pending) == 1 and not self.paused:
            self._send_head(stream, self.retry_interval)
        return True

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes) -> pb.TaskStatus | None:
        """Retire the in-flight update if `uuid` names it; returns it, else None.

        Duplicate acknowledgements and ones naming any other update are ignored:
        order is strict, so only the head can be acknowledged.
        """
        stream = self._streams.get((framework_id, task_id))
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            if stream is not None and uuid in stream.acked:
                self.stats["duplicate_acks"] += 1
            else:
                self.stats["unexpected_acks"] += 1
                log.debug("ignoring acknowledgement of an update not in flight for task %s of framework %s",
                          task_id, framework_id)
            return None
        head = stream.pending.popleft()
        stream.acked.add(uuid)
        self.stats["acks"] += 1
        self._cancel(stream)
        if stream.pending:
            if not self.paused:
                self._send_head(stream, self.retry_interval)
        elif stream.terminal:
            del self._streams[(framework_id, task_id)]
        return head

    # -- connection state -----------------------------------------------------

    def pause(self) -> None:
        """Stop sending (the master is unreachable); updates keep queueing."""
        self.paused = True
        for stream in self._streams.values():
            self._cancel(stream)

    def resume(self) -> None:
        """Send every stream's head again now: the new master may have none of them."""
        self.paused = False
        for stream in self._streams.values():
            if stream.pending:
                self._cancel(stream)
                self._send_head(stream, self.retry_interval)

    def cleanup(self, framework_id: str) -> None:
        """Forget a framework's streams: the master removed it, no ack will come."""
        for key in [key for key in self._streams if key[0] == framework_id]:
            self._cancel(self._streams.pop(key))

    # -- queries ----------------------------------------------------------------

    def head(self, framework_id: str, task_id: str) -> pb.TaskStatus | None:
        """The update in flight for a task, if any."""
        stream = self._streams.get((framework_id, task_id))
        return stream.pending[0] if stream is not None and stream.pending else None

    def pending(self, framework_id: str, task_id: str) -> list[pb.TaskStatus]:
        stream = self._streams.get((framework_id, task_id))
        return list(stream.pending) if stream is not None else []

    def __len__(self) -> int:
        return len(self._streams)

    # -- sending ------------------------------------------------------------------

    def _send_head(self, stream: _Stream, interval: float) -> None:
        status = stream.pending[0]
        call = pb.SlaveCall(type=pb.SlaveCall.UPDATE)
        if self.slave_id:
            call.slave_id.value = self.slave_id
            if not status.slave_id.value:
                status.slave_id.value = self.slave_id
        update = call.update
        update.framework_id.value = stream.framework_id
        update.status.CopyFrom(status)
        update.latest_state = stream.latest_state
        self._send(call)
        stream.interval = interval
        stream.timer = self._call_later(interval, self._retry, stream)

    def _retry(self, stream: _Stream) -> None:
        stream.timer = None
        if self.paused or not stream.pending:
            return
        self.stats["retries"] += 1
        log.debug("resending %s for task %s of framework %s (no acknowledgement after %.1fs)",
                  pb.TaskState.Name(stream.pending[0].state), stream.task_id, stream.framework_id, stream.interval)
        self._send_head(stream, min(stream.interval * 2, self.retry_max))

    @staticmethod
    def _cancel(stream: _Stream) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
