"""The master's operator event stream: v1 ``SUBSCRIBE`` on ``POST /api/v1``.

Mesos' operator API (mesos.apache.org/documentation/latest/operator-http-api/,
"SUBSCRIBE"): the answer is a chunked stream of RecordIO records of
``mesos.v1.master.Event``: first SUBSCRIBED with the whole GET_STATE and
``heartbeat_interval_seconds``, then TASK_ADDED, TASK_UPDATED, AGENT_ADDED,
AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and
HEARTBEAT, in the order the master changed things.

The master's modules call the ``task_added``, ``task_updated``, ... methods of
:class:`OperatorEvents` on the actor thread where they change a record. With
nobody subscribed they return at once; otherwise the v1 event is built and
serialized once and queued on every subscriber allowed to see it (the ACLs
that cut GET_STATE: ``view_frameworks``, ``view_tasks``). The queue of each
subscriber is a bounded :class:`~offerd.master.scheduler_stream.EventStream`
drained by the HTTP worker that answered the SUBSCRIBE: a subscriber that stops
reading is dropped, never waited for.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from offerd.common import mesos_json, recordio
from offerd.common.mesos_v1 import to_v1
from offerd.master import http_authz, operator_api_state
from offerd.master.scheduler_stream import PROTOBUF, EventStream
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master
    from offerd.master.state import Framework, Slave, Task

log = logging.getLogger(__name__)

Event = v1_master.Event
# Each subscriber holds an HTTP worker thread for as long as it reads; the
# master's HTTP server gets this many threads on top of its own (Master.start).
MAX_SUBSCRIBERS = 16
MAX_QUEUED_EVENTS = 10_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
# What the record stream is made of, by the request's Accept.
RECORDIO = "application/recordio"


class SubscriberStream(EventStream):
    """One subscriber's queue of serialized ``mesos.v1.master.Event`` messages."""

    def __init__(self, stream_id: str, media: str, principal: str | None):
        super().__init__(stream_id, media, MAX_QUEUED_EVENTS, MAX_QUEUED_BYTES)
        self.principal = principal
        # The subscriber's ACL answers (None: no ACLs, everything is visible).
        self.can: Callable[[str, str | None], bool] | None = None

    def encode(self, payload: bytes) -> bytes:
        if self.media == PROTOBUF:
            return recordio.encode(payload)
        return recordio.encode(mesos_json.dumps(Event.FromString(payload)).encode())


class OperatorEvents:
    """The subscribers of one master and what they are sent; actor thread only."""

    def __init__(self, master: Master):
        self.master = master
        self._subscribers: dict[str, SubscriberStream] = {}

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def __len__(self) -> int:
        return len(self._subscribers)

    # -- subscribing (actor thread, called from the HTTP view) --------------------------

    def subscribe(self, stream: SubscriberStream) -> tuple[int, str | bytes]:
        """(200, the serialized SUBSCRIBED event) and the stream joins, or
        (status, why) it is refused."""
        master = self.master
        if not master.leadership.is_leader:
            return 503, "Not the leading master"
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            return 503, (f"Service Unavailable: this master serves {MAX_SUBSCRIBERS} operator event "
                         "subscribers at most; retry later")
        authz = master.authorizer
        rest_state = None
        if authz is not None and authz.configured:
            stream.can = http_authz.Decisions(authz, stream.principal)
            rest_state = http_authz.filter_state(master._current_snapshot().state, stream.can)
        everything = operator_api_state.build(master)
        state = operator_api_state.Visible(everything, rest_state).get_state()
        event = Event(type=Event.SUBSCRIBED)
        event.subscribed.get_state.CopyFrom(state)
        event.subscribed.heartbeat_interval_seconds = master.heartbeat_interval
        self._subscribers[stream.stream_id] = stream
        # As Mesos, a first HEARTBEAT right after SUBSCRIBED: the client knows the stream works.
        stream.push(_HEARTBEAT)
        log.info("operator event subscriber %s (principal %s) joined; %d subscribed", stream.stream_id,
                 stream.principal, len(self._subscribers))
        return 200, event.SerializeToString()

    def unsubscribe(self, stream_id: str, why: str) -> None:
        stream = self._subscribers.pop(stream_id, None)
        if stream is not None:
            stream.close()
            log.info("operator event subscriber %s left: %s", stream_id, why)

    def close_all(self) -> None:
        for stream_id in list(self._subscribers):
            self.unsubscribe(stream_id, "the master stopped leading")

    # -- publishing --------------------------------------------------------------------

    def publish(self, event: Event, visible: Callable[[Callable], bool] | None = None) -> None:
        """Queue `event` on every subscriber; `visible(can)` says whether a
        subscriber with these ACL answers may see it (None: everyone may)."""
        payload = event.SerializeToString()
        self._push_each(lambda can: payload if visible is None or can is None or visible(can) else None)

    def _push_each(self, payload_for: Callable[[Callable | None], bytes | None]) -> None:
        """Queue on every subscriber what `payload_for(its ACL answers)` gives it (None: nothing)."""
        for stream_id, stream in list(self._subscribers.items()):
            payload = payload_for(stream.can)
            if payload is not None and not stream.push(payload):
                self._subscribers.pop(stream_id, None)

    def heartbeat(self, stall_timeout: float) -> None:
        """HEARTBEAT to everyone; a subscriber whose oldest event waited past
        `stall_timeout` does not read and is dropped."""
        if not self._subscribers:
            return
        now = time.monotonic()
        for stream_id, stream in list(self._subscribers.items()):
            if stream.stalled_for(now) > stall_timeout:
                log.warning("operator event subscriber %s read nothing for %.0fs; dropping it",
                            stream_id, stall_timeout)
                self.unsubscribe(stream_id, "it does not read")
        for stream_id, stream in list(self._subscribers.items()):
            if not stream.push(_HEARTBEAT):
                self._subscribers.pop(stream_id, None)

    # -- the changes ---------------------------------------------------------------------

    def task_added(self, task: Task) -> None:
        if not self._subscribers:
            return
        framework = self._framework_of(task.framework_id)
        event = Event(type=Event.TASK_ADDED)
        event.task_added.task.CopyFrom(operator_api_state._task(task, _role(framework)))
        self.publish(event, _task_visible(framework, task))

    def task_updated(self, task: Task, status: pb.TaskStatus | None = None) -> None:
        """`status`: the update that changed the task (None: the master changed it
        without one, e.g. killing the tasks of a removed framework)."""
        if not self._subscribers:
            return
        framework = self._framework_of(task.framework_id)
        event = Event(type=Event.TASK_UPDATED)
        body = event.task_updated
        body.framework_id.value = task.framework_id
        if status is not None:
            converted, _ = to_v1(status, v1.TaskStatus)
            body.status.CopyFrom(converted)
        else:
            body.status.state = task.state
            body.status.source = v1.TaskStatus.SOURCE_MASTER
            body.status.timestamp = time.time()
        body.status.task_id.value = task.task_id
        body.status.agent_id.value = task.slave_id
        if task.executor_id:
            body.status.executor_id.value = task.executor_id
        body.state = task.state
        self.publish(event, _task_visible(framework, task))

    def agent_added(self, slave: Slave) -> None:
        if not self._subscribers:
            return
        entry = operator_api_state.AgentEntry(slave)
        shared = _agent_added(entry.message)
        # As GET_AGENTS: resources reserved for a role the subscriber may not view are cut.
        self._push_each(lambda can: shared if can is None or not entry.hidden_roles(can)
                        else _agent_added(entry.seen_by(can)))

    def agent_removed(self, slave_id: str) -> None:
        if not self._subscribers:
            return
        event = Event(type=Event.AGENT_REMOVED)
        event.agent_removed.agent_id.value = slave_id
        self.publish(event)

    def framework_added(self, framework: Framework) -> None:
        self._framework_event(Event.FRAMEWORK_ADDED, "framework_added", framework)

    def framework_updated(self, framework: Framework) -> None:
        self._framework_event(Event.FRAMEWORK_UPDATED, "framework_updated", framework)

    def framework_removed(self, framework: Framework) -> None:
        if not self._subscribers:
            return
        event = Event(type=Event.FRAMEWORK_REMOVED)
        info, _ = to_v1(framework.info, v1.FrameworkInfo)
        info.id.value = framework.framework_id
        event.framework_removed.framework_info.CopyFrom(info)
        self.publish(event, _framework_visible(framework))

    def _framework_event(self, kind: int, field: str, framework: Framework) -> None:
        if not self._subscribers:
            return
        state = self.master.state
        hostnames = {s.slave_id: s.hostname for s in state.slaves.values()}
        executors = [ex.resources for slave in state.slaves.values()
                     for ex in slave.executors.get(framework.framework_id, {}).values()]
        event = Event(type=kind)
        getattr(event, field).framework.CopyFrom(operator_api_state._framework(framework, hostnames, executors))
        self.publish(event, _framework_visible(framework))

    def _framework_of(self, framework_id: str) -> Framework | None:
        state = self.master.state
        return state.frameworks.get(framework_id) or state.completed_frameworks.get(framework_id)


_HEARTBEAT = Event(type=Event.HEARTBEAT).SerializeToString()


def _agent_added(agent) -> bytes:
    event = Event(type=Event.AGENT_ADDED)
    event.agent_added.agent.CopyFrom(agent)
    return event.SerializeToString()


def _role(framework: Framework | None) -> str:
    return framework.roles[0] if framework is not None and framework.roles else "*"


def _framework_visible(framework: Framework) -> Callable:
    user = framework.info.user or None
    return lambda can: can("view_frameworks", user)


def _task_visible(framework: Framework | None, task: Task) -> Callable:
    # As GET_STATE: a task is seen with its framework, by the user it runs as.
    user = framework.info.user or None if framework is not None else None
    return lambda can: can("view_frameworks", user) and can("view_tasks", task.user or user)
