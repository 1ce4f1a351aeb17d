"""REGISTER and REREGISTER: what the slave tells the master about itself.

A slave without an id registers; one with an id (checkpointed, or from an
earlier connection) reregisters with everything it runs, so that a new or
restarted master can rebuild its view of this slave's tasks. Either is retried
with Mesos' randomized doubling backoff until the master answers.
"""

from __future__ import annotations

import logging

from offerd.common.resources import Resources
from offerd.common.transport import Backoff
from offerd.proto import offerd_pb2 as pb
from offerd.slave.status_updates import StatusUpdateManager
from offerd.slave.tasks import Framework, Task

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MAX_REGISTRATION_BACKOFF = 60.0
# Reconnecting the link is cheap (a ZooKeeper read and a TCP connect), and a slave that sleeps
# through the moment its network comes back stays unreachable for the whole step: keep the
# steps short. Registration itself still backs off up to a minute, as Mesos does, but starts
# over at once on every new connection.
MAX_RECONNECT_BACKOFF = 1.0


def reconnect_backoff() -> Backoff:
    """The slave's link-level backoff for its master connection: 0.1 s doubling to 1 s."""
    return Backoff(base=0.1, cap=MAX_RECONNECT_BACKOFF)


def build_slave_info(hostname: str, ip: str, port: int, resources: Resources,
                     attributes: list[pb.Attribute]) -> pb.SlaveInfo:
    info = pb.SlaveInfo(hostname=hostname, port=port, ip=ip)
    info.resources.extend(resources.to_protos())
    info.attributes.extend(attributes)
    return info


def task_proto(task: Task, slave_id: str, updates: StatusUpdateManager) -> pb.Task:
    info = task.info
    proto = pb.Task(name=info.name, task_id=info.task_id, state=task.state, resources=info.resources)
    proto.framework_id.value = task.framework_id
    proto.slave_id.value = slave_id
    if not task.executor.is_command:
        proto.executor_id.value = task.executor.id
    if info.HasField("labels"):
        proto.labels.CopyFrom(info.labels)
    if task.statuses:
        proto.statuses.append(task.statuses[-1])
    head = updates.head(task.framework_id, task.id)
    if head is not None:
        proto.status_update_state = head.state
        proto.status_update_uuid = head.uuid
    return proto


def reregister_call(info: pb.SlaveInfo, frameworks: dict[str, Framework],
                    updates: StatusUpdateManager) -> pb.SlaveCall:
    call = pb.SlaveCall(type=pb.SlaveCall.REREGISTER, slave_id=info.id)
    rereg = call.reregister
    rereg.slave_info.CopyFrom(info)
    rereg.version = VERSION
    for framework in frameworks.values():
        rereg.frameworks.append(framework.info)
        for executor in framework.executors.values():
            if not executor.is_command and not executor.terminated:
                rereg.executors.add(framework_id=framework.info.id, executor_info=executor.info)
            for task in executor.tasks.values():
                rereg.tasks.append(task_proto(task, info.id.value, updates))
    return call


def register_call(info: pb.SlaveInfo) -> pb.SlaveCall:
    call = pb.SlaveCall(type=pb.SlaveCall.REGISTER)
    call.register.slave_info.CopyFrom(info)
    call.register.version = VERSION
    return call


class RegistrationLoop:
    """Sends REGISTER/REREGISTER on each new connection until the master answers."""

    def __init__(self, core, backoff_factor: float):
        self.core = core
        self.backoff = Backoff(base=max(backoff_factor, 0.01), cap=MAX_REGISTRATION_BACKOFF)
        self._timer = None

    def connected(self) -> None:
        self.stop()
        self.backoff.reset()
        self._attempt()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _attempt(self) -> None:
        self._timer = None
        core = self.core
        if core.registered or not core.client.connected:
            return
        info = core.slave_info()
        if core.slave_id:
            log.info("%s: reregistering with the master as %s", core.name, core.slave_id)
            core.client.send(reregister_call(info, core.frameworks, core.updates))
        else:
            log.info("%s: registering with the master", core.name)
            core.client.send(register_call(info))
        self._timer = core.actor.call_later(self.backoff.next_delay(), self._attempt)
