"""Whose is what on this slave: the user each framework, executor and task runs
as, which is the object of Mesos' view_* and access_sandboxes ACLs.

`owners` runs on the actor thread (the HTTP side asks for it with
`actor.call`) and returns plain data the HTTP threads may keep.
"""

from __future__ import annotations

from offerd.proto import offerd_pb2 as pb
from offerd.slave.tasks import ExecutorRun, Framework, Task


def _command_user(command: pb.CommandInfo | None) -> str | None:
    if command is not None and command.HasField("user") and command.user:
        return command.user
    return None


def executor_user(executor: ExecutorRun, framework: Framework) -> str:
    """ExecutorInfo.command.user; for a command task, its CommandInfo.user; else
    the framework's user."""
    if executor.info is not None and executor.info.HasField("command"):
        user = _command_user(executor.info.command)
        if user:
            return user
    if executor.is_command:
        for task in (*executor.tasks.values(), *executor.completed_tasks):
            user = task_user(task, framework, None)
            if user:
                return user
    return framework.info.user


def task_user(task: Task, framework: Framework, executor_owner: str | None) -> str:
    if task.info.HasField("command"):
        user = _command_user(task.info.command)
        if user:
            return user
    return executor_owner or framework.info.user


def owners(core) -> dict[str, dict]:
    """framework id -> {"user": str, "executors": {id: user}, "tasks": {id: user}}
    for every framework the slave still remembers (live and completed)."""
    out: dict[str, dict] = {}
    for framework in (*core.completed_frameworks, *core.frameworks.values()):
        entry = out.setdefault(framework.id, {"user": framework.info.user, "executors": {}, "tasks": {}})
        entry["user"] = framework.info.user
        for executor in (*framework.completed_executors, *framework.executors.values()):
            user = executor_user(executor, framework)
            entry["executors"][executor.id] = user
            for task in (*executor.completed_tasks, *executor.tasks.values()):
                entry["tasks"][task.id] = task_user(task, framework, user)
    return out
