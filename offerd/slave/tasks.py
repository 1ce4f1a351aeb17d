"""The slave's books: frameworks, their executors, and the executors' tasks.

A command task (TaskInfo.command) gets an executor record of its own, with the
task's id as executor id and no ExecutorInfo, because the slave itself plays
Mesos' command executor for it. A custom executor (TaskInfo.executor) is one
process per (framework, executor id) running any number of tasks.

Lifetimes: a task stays on its executor until the acknowledgement of its
terminal update; an executor stays until its container has exited and its
tasks are gone; a framework stays while it has executors. Then each moves to a
bounded "completed" list kept for /state.
"""

from __future__ import annotations

import collections
import enum

from offerd.common.resources import Resources
from offerd.proto import offerd_pb2 as pb
from offerd.slave.status_updates import TERMINAL_STATES

# Mesos' in-memory caps for what /state shows of the past.
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_FRAMEWORKS = 50
DEFAULT_KILL_GRACE = 3.0  # Mesos' default KillPolicy grace period


def seconds(duration: pb.DurationInfo) -> float:
    return duration.nanoseconds / 1e9


def scalar(resources, name: str) -> float:
    """The total of scalar resource `name` in a list of Resource protos (over all
    roles). The slave accepts only tasks whose resources convert (validate_task)."""
    return Resources.from_protos(resources).scalar(name)


def valid_id(value: str) -> bool:
    """Ids become directory names in the sandbox path: refuse what escapes it."""
    return bool(value) and value not in (".", "..") and "/" not in value and "\0" not in value


def has_capability(info: pb.FrameworkInfo, capability: int) -> bool:
    return any(c.type == capability for c in info.capabilities)


class ExecutorRunState(enum.Enum):
    LAUNCHING = "LAUNCHING"      # container requested, not started yet
    REGISTERING = "REGISTERING"  # custom executor started, not subscribed yet
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"  # told to stop, or being killed
    TERMINATED = "TERMINATED"    # its container exited


class Task:
    __slots__ = ("info", "framework_id", "executor", "state", "statuses", "launched",
                 "kill_requested", "failure_reason", "_resources")

    def __init__(self, info: pb.TaskInfo, framework_id: str, executor: "ExecutorRun"):
        self.info = info
        self.framework_id = framework_id
        self.executor = executor
        self.state = pb.TASK_STAGING
        self.statuses: list[pb.TaskStatus] = []
        self.launched = False         # custom executors: LAUNCH sent to the executor
        self.kill_requested = False
        self.failure_reason = None    # set when the slave kills it for a reason of its own
        self._resources: Resources | None = None

    @property
    def id(self) -> str:
        return self.info.task_id.value

    @property
    def resources(self) -> Resources:
        """The task's resources, converted from its TaskInfo once."""
        if self._resources is None:
            self._resources = Resources.from_protos(self.info.resources)
        return self._resources

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def kill_grace(self, policy: pb.KillPolicy | None = None) -> float:
        """The grace period: the KILL call's policy, else the task's, else 3 s."""
        for source in (policy, self.info.kill_policy if self.info.HasField("kill_policy") else None):
            if source is not None and source.HasField("grace_period"):
                return max(0.0, seconds(source.grace_period))
        return DEFAULT_KILL_GRACE


class ExecutorRun:
    __slots__ = ("id", "framework", "info", "container_id", "directory", "state", "tasks",
                 "completed_tasks", "pid", "peer", "timer", "shutdown_requested", "termination_reason")

    def __init__(self, executor_id: str, framework: "Framework", info: pb.ExecutorInfo | None,
                 container_id: str, directory: str):
        self.id = executor_id
        self.framework = framework
        self.info = info              # None: a command task the slave supervises itself
        self.container_id = container_id
        self.directory = directory
        self.state = ExecutorRunState.LAUNCHING
        self.tasks: dict[str, Task] = {}
        self.completed_tasks: collections.deque[Task] = collections.deque(maxlen=MAX_COMPLETED_TASKS_PER_EXECUTOR)
        self.pid: int | None = None
        self.peer: bytes | None = None   # ZeroMQ identity of a subscribed custom executor
        self.timer = None                # registration timeout or shutdown grace
        self.shutdown_requested = False
        self.termination_reason = None

    @property
    def is_command(self) -> bool:
        return self.info is None

    @property
    def terminated(self) -> bool:
        return self.state is ExecutorRunState.TERMINATED

    @property
    def name(self) -> str:
        if self.info is not None:
            return self.info.name or self.id
        task = next(iter(self.tasks.values()), None)
        return f"Command Executor (Task: {self.id})" + (f" (Command: {task.info.command.value[:60]})" if task else "")


class Framework:
    __slots__ = ("info", "id", "executors", "tasks", "completed_executors", "terminating")

    def __init__(self, info: pb.FrameworkInfo):
        self.info = info
        self.id = info.id.value
        self.executors: dict[str, ExecutorRun] = {}
        self.tasks: dict[str, Task] = {}   # every live task of every executor, by task id
        self.completed_executors: collections.deque[ExecutorRun] = collections.deque(
            maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK)
        self.terminating = False

    def completed(self, task_id: str) -> bool:
        """Whether `task_id` ran here and its terminal update was acknowledged."""
        executors = (*self.executors.values(), *self.completed_executors)
        return any(task.id == task_id for executor in executors for task in executor.completed_tasks)

    def capable(self, capability: int) -> bool:
        return has_capability(self.info, capability)

    def dropped_state(self) -> int:
        """What a task that never ran becomes: TASK_DROPPED for partition-aware frameworks."""
        if self.capable(pb.FrameworkInfo.Capability.PARTITION_AWARE):
            return pb.TASK_DROPPED
        return pb.TASK_LOST
