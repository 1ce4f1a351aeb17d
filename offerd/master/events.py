"""Builders for the messages the master sends (scheduler Events, SlaveEvents)."""

from __future__ import annotations

import time

from offerd.proto import offerd_pb2 as pb

Event = pb.Event
SlaveEvent = pb.SlaveEvent


def error(message: str) -> pb.Event:
    return Event(type=Event.ERROR, error=Event.Error(message=message))


def slave_error(message: str) -> pb.SlaveEvent:
    return SlaveEvent(type=SlaveEvent.ERROR, error=SlaveEvent.Error(message=message))


def master_status(
    task_id: str,
    state: int,
    reason: int,
    message: str,
    slave_id: str | None = None,
    executor_id: str | None = None,
    unreachable_time: float | None = None,
) -> pb.TaskStatus:
    """A status the master makes up itself: no uuid (nothing to acknowledge)."""
    status = pb.TaskStatus(
        state=state, reason=reason, message=message, source=pb.TaskStatus.SOURCE_MASTER,
        timestamp=time.time(),
    )
    status.task_id.value = task_id
    if slave_id:
        status.slave_id.value = slave_id
    if executor_id:
        status.executor_id.value = executor_id
    if unreachable_time is not None:
        status.unreachable_time.nanoseconds = int(unreachable_time * 1e9)
    return status


def update(status: pb.TaskStatus) -> pb.Event:
    event = Event(type=Event.UPDATE)
    event.update.status.CopyFrom(status)
    return event


def rescind(offer_id: str) -> pb.Event:
    event = Event(type=Event.RESCIND)
    event.rescind.offer_id.value = offer_id
    return event


def failure(slave_id: str, executor_id: str | None = None, status: int | None = None) -> pb.Event:
    event = Event(type=Event.FAILURE)
    event.failure.slave_id.value = slave_id
    if executor_id:
        event.failure.executor_id.value = executor_id
    if status is not None:
        event.failure.status = status
    return event


def kill_task(framework_id: str, task_id: str, kill_policy: pb.KillPolicy | None = None) -> pb.SlaveEvent:
    event = SlaveEvent(type=SlaveEvent.KILL_TASK)
    event.kill_task.framework_id.value = framework_id
    event.kill_task.task_id.value = task_id
    if kill_policy is not None:
        event.kill_task.kill_policy.CopyFrom(kill_policy)
    return event


def acknowledge(framework_id: str, task_id: str, uuid: bytes) -> pb.SlaveEvent:
    event = SlaveEvent(type=SlaveEvent.ACKNOWLEDGE)
    ack = event.acknowledge
    ack.framework_id.value = framework_id
    ack.task_id.value = task_id
    ack.uuid = uuid
    return event


def shutdown_framework(framework_id: str) -> pb.SlaveEvent:
    event = SlaveEvent(type=SlaveEvent.SHUTDOWN_FRAMEWORK)
    event.shutdown_framework.framework_id.value = framework_id
    return event
