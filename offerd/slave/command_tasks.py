"""Command tasks: the slave is their executor.

Mesos starts a command executor process per command task; here the slave
supervises the task's process itself, so a task costs one process launch and no
interpreter. The lifecycle it reports is the command executor's:
TASK_STARTING, TASK_RUNNING once the process runs, then TASK_FINISHED (exit 0),
TASK_FAILED (any other exit, the launch or fetch failing — REASON_CONTAINER_LAUNCH_FAILED —
or a limit hit, e.g. REASON_CONTAINER_LIMITATION_MEMORY) or, after a kill (TERM, then
KILL after the kill policy's grace), TASK_KILLED, preceded by TASK_KILLING for
frameworks with that capability.

A task's `health_check` is run by the slave too (health_checks.py): its
results reach the framework as TASK_RUNNING updates with `healthy` set, and a
task that fails too many checks in a row is killed and ends TASK_KILLED with
`healthy` false. An invalid check makes the task TASK_ERROR before launch.
"""

from __future__ import annotations

import functools
import logging
import uuid

from offerd.common.health_checks import validate_health_check
from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import LaunchSpec, Termination
from offerd.slave.health_checks import HealthChecks, Target
from offerd.slave.sandbox import last_stderr_line, sandbox_directory
from offerd.slave.tasks import ExecutorRun, ExecutorRunState, Framework, Task, scalar, seconds

log = logging.getLogger(__name__)

Reason = pb.TaskStatus
KILLING = pb.FrameworkInfo.Capability.TASK_KILLING_STATE


class CommandTasks:
    def __init__(self, core):
        self.core = core
        self.health = HealthChecks(core)
        self._targets: dict[int, Target] = {}   # id(task) -> where its health check runs

    def close(self) -> None:
        """The slave stops: no more health checks."""
        self.health.close()

    def run_task(self, framework: Framework, info: pb.TaskInfo) -> None:
        core = self.core
        task_id = info.task_id.value
        if task_id in framework.executors:
            core.refuse(framework.id, info, pb.TASK_ERROR, Reason.REASON_TASK_INVALID,
                        f"executor id {task_id!r} is in use on this slave; a command task's executor takes its task id")
            return
        if info.HasField("health_check"):
            error = validate_health_check(info.health_check)
            if error:
                core.refuse(framework.id, info, pb.TASK_ERROR, Reason.REASON_TASK_INVALID,
                            f"Task's health check is invalid: {error}")
                return
        container_id = str(uuid.uuid4())
        directory = sandbox_directory(core.work_dir, core.slave_id, framework.id, task_id, container_id)
        executor = ExecutorRun(task_id, framework, None, container_id, directory)
        task = Task(info, framework.id, executor)
        core.add_task(executor, task)
        if not core.containerizer.simulated:
            core.send_status(task, pb.TASK_STARTING)
        if info.HasField("max_completion_time"):
            executor.timer = core.actor.call_later(seconds(info.max_completion_time), self._out_of_time, task)
        environment = self._environment(task)
        spec = LaunchSpec(container_id, info.command, directory, environment,
                          cpus=scalar(info.resources, "cpus"), mem_mb=scalar(info.resources, "mem"),
                          user=info.command.user or framework.info.user or None, fetch=True,
                          checkpoint=framework.info.checkpoint)
        if info.HasField("health_check") and not core.containerizer.simulated:
            self._targets[id(task)] = self._target(task, environment)
        # Everything above is in place before launch(): a containerizer may call back from inside it.
        core.containerizer.launch(spec, functools.partial(self._started, task), functools.partial(self._exited, task))

    def _environment(self, task: Task) -> dict[str, str]:
        executor, core = task.executor, self.core
        return core.environment({
            "SANDBOX": executor.directory, "DIRECTORY": executor.directory, "TASK_ID": task.id,
            "FRAMEWORK_ID": task.framework_id, "EXECUTOR_ID": task.id, "SLAVE_ID": core.slave_id,
        }, task.info.command)

    def _target(self, task: Task, environment: dict[str, str]) -> Target:
        executor, info = task.executor, task.info
        return Target(executor.container_id, executor.directory, environment,
                      info.command.user or executor.framework.info.user or None, scalar(info.resources, "cpus"),
                      scalar(info.resources, "mem"), getattr(self.core.containerizer, "isolators", ()))

    def recovered(self, executor: ExecutorRun) -> None:
        """A restarted slave adopted this running command task: its health checks go on
        (as a Mesos command executor's do across an agent restart)."""
        for task in executor.tasks.values():
            if executor.pid is not None and task.state == pb.TASK_RUNNING and task.info.HasField("health_check"):
                target = self._target(task, self._environment(task))
                target.pid = executor.pid
                self.health.start(task, target)

    def kill(self, task: Task, policy: pb.KillPolicy | None) -> None:
        if task.terminal:
            return
        if not task.kill_requested:
            task.kill_requested = True
            if task.executor.framework.capable(KILLING):
                self.core.send_status(task, pb.TASK_KILLING)
        self.core.containerizer.kill(task.executor.container_id, task.kill_grace(policy))

    def _started(self, task: Task, pid: int | None) -> None:
        executor = task.executor
        executor.pid = pid
        executor.state = ExecutorRunState.RUNNING
        if not task.kill_requested and not task.terminal:
            self.core.send_status(task, pb.TASK_RUNNING)
            target = self._targets.pop(id(task), None)
            if target is not None and pid is not None:
                target.pid = pid
                self.health.start(task, target)

    def _out_of_time(self, task: Task) -> None:
        task.executor.timer = None
        if not task.terminal:
            log.info("task %s reached its max_completion_time; killing it", task.id)
            task.failure_reason = Reason.REASON_MAX_COMPLETION_TIME_REACHED
            self.kill(task, None)

    def recovered_exit(self, executor: ExecutorRun, termination: Termination) -> None:
        """A container adopted at recovery ended (or had ended while the slave was down)."""
        task = next(iter(executor.tasks.values()), None)
        if task is None:
            self.core.executor_terminated(executor)
            return
        self._exited(task, termination)

    def _exited(self, task: Task, termination: Termination) -> None:
        core = self.core
        executor = task.executor
        if executor.timer is not None:
            executor.timer.cancel()
            executor.timer = None
        self._targets.pop(id(task), None)
        unhealthy = self.health.killed_by_check(task)
        self.health.stop(task)
        if not task.terminal and not core.stopped:
            log.log(core.task_log_level, "%s: task %s of framework %s ended: %s", core.name, task.id,
                    task.framework_id, termination.message)
            if termination.launch_error is not None:
                core.stats["container_launch_errors"] += 1
                core.send_status(task, pb.TASK_FAILED, termination.message,
                                 Reason.REASON_CONTAINER_LAUNCH_FAILED, source=Reason.SOURCE_SLAVE)
            elif termination.limitation is not None:
                core.send_status(task, pb.TASK_FAILED, termination.limitation.message,
                                 termination.limitation.reason, source=Reason.SOURCE_SLAVE)
            elif task.failure_reason is not None:
                core.send_status(task, pb.TASK_FAILED, "Task reached its max_completion_time", task.failure_reason)
            elif task.kill_requested and unhealthy:
                # As Mesos' command executor: the last word on a task its checks killed is unhealthy.
                core.forward_status(task, pb.TaskStatus(task_id=task.info.task_id, state=pb.TASK_KILLED,
                                                        message=unhealthy, healthy=False,
                                                        source=Reason.SOURCE_EXECUTOR))
            elif task.kill_requested:
                core.send_status(task, pb.TASK_KILLED, termination.message)
            elif termination.succeeded:
                core.send_status(task, pb.TASK_FINISHED, termination.message)
            else:
                # Mesos says only "Command exited with status N"; the task's last word on
                # stderr usually says why (and reaches Marathon's lastTaskFailure).
                said = last_stderr_line(executor.directory) if executor.directory else None
                core.send_status(task, pb.TASK_FAILED,
                                 f"{termination.message}: {said}" if said else termination.message)
        core.executor_terminated(executor)
