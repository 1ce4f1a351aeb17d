"""The master's records of frameworks, slaves, tasks and offers.

Plain objects owned by the actor thread. Protobufs are kept only where the
master has to send them on (FrameworkInfo, SlaveInfo, ExecutorInfo); what is
looked up per message is held in dicts keyed by plain strings.
"""

from __future__ import annotations

import collections
from typing import Iterator

from offerd.common.actor import Timer
from offerd.common.resources import Resources
from offerd.common.task_states import TERMINAL_STATES, is_terminal  # noqa: F401 (re-exported)
from offerd.proto import offerd_pb2 as pb

TaskState = int


PARTITION_AWARE = pb.FrameworkInfo.Capability.PARTITION_AWARE


def state_name(state: TaskState) -> str:
    return pb.TaskState.Name(state)


class Task:
    """A task the master knows of, from launch (STAGING) until it is completed."""

    __slots__ = (
        "task_id", "framework_id", "slave_id", "executor_id", "name", "state", "resources",
        "statuses", "status_update_state", "status_update_uuid", "labels", "recovered",
        "pending_kill", "user",
    )

    def __init__(self, task_id: str, framework_id: str, slave_id: str, executor_id: str, name: str,
                 resources: Resources, state: TaskState = pb.TASK_STAGING, labels=None, user: str | None = None):
        self.task_id = task_id
        # The task's own user (its or its executor's CommandInfo.user), as Mesos' Task.user;
        # None: its framework's user applies. What view_tasks and access_sandboxes ask about.
        self.user = user
        self.framework_id = framework_id
        self.slave_id = slave_id
        self.executor_id = executor_id
        self.name = name
        self.state = state
        self.resources = resources
        # (state, timestamp[, healthy]) of every update seen: what /master/state shows.
        self.statuses: list[tuple[TaskState, float]] = []
        self.status_update_state: TaskState | None = None
        self.status_update_uuid: bytes | None = None
        self.labels = labels
        # True once the allocator got this task's resources back (terminal state).
        self.recovered = False
        # A KillPolicy (or True) to send when the slave is reachable again.
        self.pending_kill = None


class ExecutorRecord:
    __slots__ = ("info", "resources")

    def __init__(self, info: pb.ExecutorInfo, resources: Resources):
        self.info = info
        self.resources = resources


class Offer:
    __slots__ = ("offer_id", "framework_id", "slave_id", "role", "resources", "timer", "created")

    def __init__(self, offer_id: str, framework_id: str, slave_id: str, role: str,
                 resources: Resources, created: float):
        self.offer_id = offer_id
        self.framework_id = framework_id
        self.slave_id = slave_id
        self.role = role
        self.resources = resources
        self.timer: Timer | None = None
        self.created = created


class Framework:
    __slots__ = (
        "framework_id", "info", "roles", "partition_aware", "peer", "active", "connected",
        "recovered", "registered_time", "reregistered_time", "unregistered_time",
        "tasks", "completed_tasks", "unreachable_tasks", "offers", "failover_timer",
        "suppressed_roles", "max_completed", "authenticated",
    )

    def __init__(self, framework_id: str, info: pb.FrameworkInfo, roles: tuple[str, ...],
                 max_completed: int, now: float):
        self.framework_id = framework_id
        self.info = info
        self.roles = roles
        self.partition_aware = has_capability(info, PARTITION_AWARE)
        self.peer: bytes | None = None
        self.active = False
        self.connected = False
        # Known only from a reregistering slave; the scheduler has not subscribed.
        self.recovered = False
        self.registered_time = now
        self.reregistered_time: float | None = None
        self.unregistered_time: float | None = None
        self.tasks: dict[str, Task] = {}
        self.completed_tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self.unreachable_tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self.offers: dict[str, Offer] = {}
        self.failover_timer: Timer | None = None
        self.suppressed_roles: set[str] = set()
        self.max_completed = max_completed
        # True when info.principal was proven on the subscribing connection (not
        # just claimed): only a connection proving it again may take the framework over.
        self.authenticated = False

    @property
    def principal(self) -> str | None:
        """The principal the framework is bound to (None: none was given)."""
        return self.info.principal or None

    def update_info(self, info: pb.FrameworkInfo, roles: tuple[str, ...]) -> None:
        # Mesos ignores a new user or checkpoint flag on resubscription; the
        # principal cannot change (checked before) and is kept as bound.
        kept = pb.FrameworkInfo()
        kept.CopyFrom(info)
        kept.user = self.info.user
        kept.checkpoint = self.info.checkpoint
        kept.id.value = self.framework_id
        if self.info.principal:
            kept.principal = self.info.principal
        self.info = kept
        self.roles = roles
        self.partition_aware = has_capability(kept, PARTITION_AWARE)

    def add_completed(self, task: Task) -> None:
        self.completed_tasks[task.task_id] = task
        while len(self.completed_tasks) > self.max_completed:
            self.completed_tasks.popitem(last=False)

    def add_unreachable(self, task: Task) -> None:
        self.unreachable_tasks[task.task_id] = task
        while len(self.unreachable_tasks) > self.max_completed:
            self.unreachable_tasks.popitem(last=False)

    def knows_task_id(self, task_id: str) -> bool:
        return task_id in self.tasks or task_id in self.completed_tasks or task_id in self.unreachable_tasks


class Slave:
    __slots__ = (
        "slave_id", "info", "peer", "hostname", "pid", "total", "connected", "active",
        "registered_time", "reregistered_time", "version", "tasks", "executors", "offers",
        "lost_timer", "principal",
    )

    def __init__(self, slave_id: str, info: pb.SlaveInfo, total: Resources, peer: bytes | None,
                 version: str, now: float, principal: str | None = None):
        self.slave_id = slave_id
        # The principal the slave proved when it registered (None: it did not);
        # only a connection proving it may reregister under this id.
        self.principal = principal
        self.info = info
        self.peer = peer
        self.hostname = info.hostname
        self.pid = f"slave(1)@{info.ip or info.hostname}:{info.port}"
        self.total = total
        self.connected = True
        self.active = True
        self.registered_time = now
        self.reregistered_time: float | None = None
        self.version = version
        # (framework id, task id) -> Task
        self.tasks: dict[tuple[str, str], Task] = {}
        # framework id -> executor id -> ExecutorRecord
        self.executors: dict[str, dict[str, ExecutorRecord]] = {}
        self.offers: dict[str, Offer] = {}
        self.lost_timer: Timer | None = None

    def executor(self, framework_id: str, executor_id: str) -> ExecutorRecord | None:
        return self.executors.get(framework_id, {}).get(executor_id)

    def framework_ids(self) -> set[str]:
        return {fid for fid, _ in self.tasks} | set(self.executors)


class UnreachableSlave:
    """What the master remembers of a slave it marked unreachable."""

    __slots__ = ("slave_id", "info", "time", "principal")

    def __init__(self, slave_id: str, info: pb.SlaveInfo, time: float, principal: str | None = None):
        self.slave_id = slave_id
        self.info = info
        self.time = time
        self.principal = principal


class MasterState:
    """All mutable records; owned by the actor thread."""

    def __init__(self, max_completed_frameworks: int):
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: collections.OrderedDict[str, Framework] = collections.OrderedDict()
        self.slaves: dict[str, Slave] = {}
        self.unreachable_slaves: collections.OrderedDict[str, UnreachableSlave] = collections.OrderedDict()
        self.offers: dict[str, Offer] = {}
        # peer identity -> framework ids subscribed over it / slave id registered over it
        self.peer_frameworks: dict[bytes, set[str]] = {}
        self.peer_slaves: dict[bytes, str] = {}
        self.max_completed_frameworks = max_completed_frameworks
        # Current tasks per non-terminal state, and tasks that ever reached each
        # terminal state: Mesos' master/tasks_* gauges and counters.
        self.active_task_counts: collections.Counter[TaskState] = collections.Counter()
        self.terminal_task_counts: collections.Counter[TaskState] = collections.Counter()

    def add_completed_framework(self, framework: Framework) -> None:
        self.completed_frameworks[framework.framework_id] = framework
        while len(self.completed_frameworks) > self.max_completed_frameworks:
            self.completed_frameworks.popitem(last=False)

    def framework_for_peer(self, peer: bytes, framework_id: str) -> Framework | None:
        """The framework, if `peer` is the connection that subscribed it."""
        framework = self.frameworks.get(framework_id)
        if framework is None or framework.peer != peer:
            return None
        return framework

    def slave_for_peer(self, peer: bytes) -> Slave | None:
        slave_id = self.peer_slaves.get(peer)
        return self.slaves.get(slave_id) if slave_id is not None else None

    def set_task_state(self, task: Task, state: TaskState) -> None:
        old = task.state
        if old == state:
            return
        if old not in TERMINAL_STATES:
            self.active_task_counts[old] -= 1
        if state in TERMINAL_STATES:
            if old not in TERMINAL_STATES:
                self.terminal_task_counts[state] += 1
        else:
            self.active_task_counts[state] += 1
        task.state = state

    def count_new_task(self, task: Task) -> None:
        if task.state in TERMINAL_STATES:
            self.terminal_task_counts[task.state] += 1
        else:
            self.active_task_counts[task.state] += 1

    def forget_task_count(self, task: Task) -> None:
        """The task leaves the master while not terminal (e.g. unreachable)."""
        if task.state not in TERMINAL_STATES:
            self.active_task_counts[task.state] -= 1

    def all_tasks(self) -> Iterator[Task]:
        for framework in self.frameworks.values():
            yield from framework.tasks.values()


def copy_message(message):
    """A standalone copy. Records keep these: a sub-message would keep the
    whole call it came in (an ACCEPT, a REREGISTER) alive."""
    out = type(message)()
    out.CopyFrom(message)
    return out


def has_capability(info: pb.FrameworkInfo, capability: int) -> bool:
    return any(c.type == capability for c in info.capabilities)
