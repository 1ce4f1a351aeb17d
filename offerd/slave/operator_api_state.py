"""The slave's books as Mesos' v1 agent messages (GET_STATE, GET_FRAMEWORKS,
GET_EXECUTORS, GET_TASKS, GET_AGENT, and what GET_CONTAINERS lists).

Everything here runs on the actor thread (offerd.slave.operator_api asks for it
with the view's `on_actor`) and returns finished protobuf messages, which the
HTTP thread then only serializes. The caller's ACLs come in as `allowed(action,
user)`: a framework, executor or task the caller may not view is left out, as
Mesos' agent does (object: the user it runs as, offerd.slave.owners).
"""

from __future__ import annotations

from typing import Callable

from offerd.common.mesos_v1 import to_v1
from offerd.proto import mesos_v1_agent_pb2 as v1_agent
from offerd.proto import mesos_v1_pb2 as v1
from offerd.slave.owners import executor_user, task_user
from offerd.slave.tasks import ExecutorRun, Framework, Task

Response = v1_agent.Response
Allowed = Callable[[str, str | None], bool]

# TaskInfo fields that a v1 Task carries under the same name.
_TASK_FIELDS = ("task_id", "resources", "labels", "health_check", "kill_policy", "discovery", "container",
                "check")
_SINGULAR_TASK_FIELDS = {name for name in _TASK_FIELDS
                         if name in v1.TaskInfo.DESCRIPTOR.fields_by_name and name in v1.Task.DESCRIPTOR.fields_by_name
                         and not v1.Task.DESCRIPTOR.fields_by_name[name].is_repeated}


def _everything(action: str, user: str | None) -> bool:
    return True


def framework_info(framework: Framework) -> v1.FrameworkInfo:
    info, _ = to_v1(framework.info, v1.FrameworkInfo)
    # Fields offerd's FrameworkInfo lacks cannot come across; those it has all do.
    return info


def executor_info(executor: ExecutorRun) -> v1.ExecutorInfo:
    """The ExecutorInfo; for a command task (which the slave runs itself) one in
    the shape of Mesos' command executor: the task's id, command and resources."""
    if executor.info is not None:
        info, _ = to_v1(executor.info, v1.ExecutorInfo)
        if not info.HasField("framework_id"):
            info.framework_id.value = executor.framework.id
        return info
    info = v1.ExecutorInfo(name=executor.name, source=executor.id)
    info.executor_id.value = executor.id
    info.framework_id.value = executor.framework.id
    task = next(iter(executor.tasks.values()), None) or next(iter(executor.completed_tasks), None)
    if task is not None:
        if task.info.HasField("command"):
            command, _ = to_v1(task.info.command, v1.CommandInfo)
            info.command.CopyFrom(command)
        for resource in task.info.resources:
            converted, _ = to_v1(resource, v1.Resource)
            info.resources.add().CopyFrom(converted)
    return info


def task_message(task: Task, slave_id: str) -> v1.Task:
    converted, _ = to_v1(task.info, v1.TaskInfo)
    out = v1.Task(name=task.info.name, state=task.state)
    for name in _TASK_FIELDS:
        if name in _SINGULAR_TASK_FIELDS and converted.HasField(name):
            getattr(out, name).CopyFrom(getattr(converted, name))
    out.resources.extend(converted.resources)
    out.framework_id.value = task.framework_id
    out.agent_id.value = slave_id
    if not task.executor.is_command:
        out.executor_id.value = task.executor.id
    for status in task.statuses:
        message, _ = to_v1(status, v1.TaskStatus)
        if not message.HasField("agent_id") and slave_id:
            message.agent_id.value = slave_id
        out.statuses.add().CopyFrom(message)
    if task.statuses:
        last = task.statuses[-1]
        out.status_update_state = last.state
        if last.uuid:
            out.status_update_uuid = last.uuid
    user = task.info.command.user if task.info.HasField("command") and task.info.command.user else ""
    if user:
        out.user = user
    return out


def _frameworks(core) -> list[tuple[Framework, bool]]:
    """(framework, completed?) for every framework the slave remembers."""
    return [(f, False) for f in core.frameworks.values()] + [(f, True) for f in core.completed_frameworks]


def get_frameworks(core, allowed: Allowed = _everything) -> Response.GetFrameworks:
    out = Response.GetFrameworks()
    for framework, completed in _frameworks(core):
        if not allowed("view_frameworks", framework.info.user or None):
            continue
        target = out.completed_frameworks if completed else out.frameworks
        target.add().framework_info.CopyFrom(framework_info(framework))
    return out


def _executor_visible(executor: ExecutorRun, framework: Framework, allowed: Allowed) -> bool:
    return allowed("view_frameworks", framework.info.user or None) and \
        allowed("view_executors", executor_user(executor, framework) or None)


def get_executors(core, allowed: Allowed = _everything) -> Response.GetExecutors:
    out = Response.GetExecutors()
    for framework, completed in _frameworks(core):
        live = [] if completed else [e for e in framework.executors.values() if not e.terminated]
        done = [e for e in framework.executors.values() if e.terminated] if not completed else \
            list(framework.executors.values())
        done += list(framework.completed_executors)
        for executors, target in ((live, out.executors), (done, out.completed_executors)):
            for executor in executors:
                if _executor_visible(executor, framework, allowed):
                    target.add().executor_info.CopyFrom(executor_info(executor))
    return out


def get_tasks(core, allowed: Allowed = _everything) -> Response.GetTasks:
    """Mesos' buckets: queued (waiting for its executor to register), launched
    (live), terminated (terminal, update not yet acknowledged), completed."""
    out = Response.GetTasks()
    slave_id = core.slave_id or ""
    for framework, _ in _frameworks(core):
        if not allowed("view_frameworks", framework.info.user or None):
            continue
        for executor in (*framework.executors.values(), *framework.completed_executors):
            owner = executor_user(executor, framework)

            def visible(task: Task) -> bool:
                return allowed("view_tasks", task_user(task, framework, owner) or None)

            for task in executor.tasks.values():
                if not visible(task):
                    continue
                if task.terminal:
                    bucket = out.terminated_tasks
                elif task.launched or executor.is_command:
                    bucket = out.launched_tasks
                else:
                    bucket = out.queued_tasks
                bucket.add().CopyFrom(task_message(task, slave_id))
            for task in executor.completed_tasks:
                if visible(task):
                    out.completed_tasks.add().CopyFrom(task_message(task, slave_id))
    return out


def get_state(core, allowed: Allowed = _everything) -> Response.GetState:
    out = Response.GetState()
    out.get_tasks.CopyFrom(get_tasks(core, allowed))
    out.get_executors.CopyFrom(get_executors(core, allowed))
    out.get_frameworks.CopyFrom(get_frameworks(core, allowed))
    return out


def get_agent(core) -> Response.GetAgent:
    info, _ = to_v1(core.slave_info(), v1.AgentInfo)
    if core.slave_id:
        info.id.value = core.slave_id
    out = Response.GetAgent()
    out.agent_info.CopyFrom(info)
    return out


def containers(core, allowed: Allowed = _everything) -> list[dict]:
    """The live executors' containers the caller may view (ACL view_containers,
    object: the executor's user): ids, name and pid, for GET_CONTAINERS to add
    statistics to off the actor thread."""
    out = []
    for framework in core.frameworks.values():
        for executor in framework.executors.values():
            if executor.terminated or not executor.container_id:
                continue
            if not allowed("view_containers", executor_user(executor, framework) or None):
                continue
            out.append({"framework_id": framework.id, "executor_id": executor.id,
                        "executor_name": executor.name, "container_id": executor.container_id,
                        "pid": executor.pid})
    return out


def find_container(core, container_id: str) -> dict | None:
    """The executor whose container this is (live or recently ended), with the
    user it runs as (the object of the kill/wait ACLs), or None."""
    for framework in (*core.frameworks.values(), *core.completed_frameworks):
        for executor in (*framework.executors.values(), *framework.completed_executors):
            if executor.container_id == container_id:
                return {"framework_id": framework.id, "executor_id": executor.id, "pid": executor.pid,
                        "terminated": executor.terminated, "user": executor_user(executor, framework)}
    return None
