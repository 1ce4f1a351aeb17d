"""What the HTTP side shows of a slave, in Mesos' JSON shapes and key names.

Every function here runs on the actor thread (the HTTP server asks for it with
`actor.call`) and returns plain data that the HTTP thread may then serialize.
"""

from __future__ import annotations

import collections
import time

from offerd.common.attributes import attributes_to_json
from offerd.common.resources import ResourceError, Resources
from offerd.proto import offerd_pb2 as pb
from offerd.slave.registration import VERSION
from offerd.slave.status_updates import is_terminal
from offerd.slave.tasks import ExecutorRun, Framework, Task


def resources_json(protos) -> dict:
    try:
        return Resources.from_protos(protos).to_json()
    except ResourceError:
        return {}


def task_json(task: Task, slave_id: str) -> dict:
    info = task.info
    return {
        "id": task.id,
        "name": info.name,
        "framework_id": task.framework_id,
        "executor_id": "" if task.executor.is_command else task.executor.id,
        "slave_id": slave_id,
        "state": pb.TaskState.Name(task.state),
        "resources": task.resources.to_json(),
        "statuses": [_status_json(s) for s in task.statuses],
        "labels": [{"key": label.key, "value": label.value} for label in info.labels.labels],
    }


def _status_json(status: pb.TaskStatus) -> dict:
    out = {"state": pb.TaskState.Name(status.state), "timestamp": status.timestamp}
    if status.HasField("healthy"):   # as Mesos' /state: only when the update says
        out["healthy"] = status.healthy
    return out


def executor_json(executor: ExecutorRun, slave_id: str) -> dict:
    live = [task for task in executor.tasks.values() if not task.terminal]
    return {
        "id": executor.id,
        "name": executor.name,
        "source": executor.info.source if executor.info is not None else executor.id,
        "container": executor.container_id,
        "directory": executor.directory,
        "state": executor.state.value,
        "resources": (resources_json(executor.info.resources) if executor.info is not None else
                      Resources.sum_of(t.resources for t in executor.tasks.values()).to_json()),
        "tasks": [task_json(t, slave_id) for t in live if t.launched or executor.is_command],
        "queued_tasks": [task_json(t, slave_id) for t in live if not t.launched and not executor.is_command],
        "completed_tasks": [task_json(t, slave_id) for t in executor.tasks.values() if t.terminal]
        + [task_json(t, slave_id) for t in executor.completed_tasks],
    }


def framework_json(framework: Framework, slave_id: str) -> dict:
    info = framework.info
    return {
        "id": framework.id,
        "name": info.name,
        "user": info.user,
        "hostname": info.hostname,
        "role": info.role,
        "checkpoint": info.checkpoint,
        "failover_timeout": info.failover_timeout,
        "executors": [executor_json(e, slave_id) for e in framework.executors.values()],
        "completed_executors": [executor_json(e, slave_id) for e in framework.completed_executors],
    }


def slave_state(core, http_port: int, flags: dict | None = None, index: int = 1) -> dict:
    info = core.slave_info()
    slave_id = core.slave_id or ""
    master = core.master_info
    state = {
        "version": VERSION,
        "id": slave_id,
        "pid": f"slave({index})@{info.ip}:{http_port}",
        "hostname": info.hostname,
        "port": info.port,
        "start_time": core.start_time,
        "registered": core.registered,
        "resources": core.resources.to_json(),
        "attributes": attributes_to_json(info.attributes),
        "master_hostname": master.hostname if master is not None else "",
        "frameworks": [framework_json(f, slave_id) for f in core.frameworks.values()],
        "completed_frameworks": [framework_json(f, slave_id) for f in core.completed_frameworks],
    }
    if flags is not None:
        state["flags"] = flags
    return state


def usage_targets(core) -> list[dict]:
    """The live containers /monitor/statistics reports on."""
    targets = []
    for framework in core.frameworks.values():
        for executor in framework.executors.values():
            if executor.terminated:
                continue
            targets.append({
                "executor_id": executor.id,
                "executor_name": executor.name,
                "framework_id": framework.id,
                "source": executor.info.source if executor.info is not None else executor.id,
                "pid": executor.pid,
                "container_id": executor.container_id,
            })
    return targets


def metrics(core) -> dict:
    """Mesos' slave/* keys for what this slave has and has done."""
    states = collections.Counter()
    executors = 0
    for framework in core.frameworks.values():
        executors += sum(1 for e in framework.executors.values() if not e.terminated)
        for task in framework.tasks.values():
            states[task.state] += 1
    out = {
        "slave/registered": 1 if core.registered else 0,
        "slave/uptime_secs": max(0.0, time.time() - core.start_time),
        "slave/executors_running": executors,
        "slave/frameworks_active": len(core.frameworks),
        "slave/tasks_launched": core.stats["tasks_launched"],
        "slave/status_update_streams": len(core.updates),
        "slave/status_update_retries": core.updates.stats["retries"],
        "slave/invalid_executor_calls": core.stats["invalid_executor_calls"],
        "slave/invalid_master_events": core.stats["invalid_master_events"],
    }
    for state in (pb.TASK_STAGING, pb.TASK_STARTING, pb.TASK_RUNNING, pb.TASK_KILLING):
        out[f"slave/tasks_{pb.TaskState.Name(state)[5:].lower()}"] = states[state]
    out["slave/tasks_terminal_unacknowledged"] = sum(n for s, n in states.items() if is_terminal(s))
    out["slave/container_launch_errors"] = core.stats["container_launch_errors"]
    out["slave/recovery_errors"] = core.stats["recovery_errors"]
    out["slave/valid_status_updates"] = core.updates.stats["updates"]
    totals = core.resources.scalars()
    used = Resources.sum_of(task.resources for framework in core.frameworks.values()
                            for task in framework.tasks.values() if not task.terminal).scalars()
    for name in ("cpus", "mem", "disk"):
        total, in_use = totals.get(name, 0.0), used.get(name, 0.0)
        out[f"slave/{name}_total"] = total
        out[f"slave/{name}_used"] = in_use
        out[f"slave/{name}_percent"] = in_use / total if total else 0.0
    gc = getattr(core, "gc", None)
    if gc is not None:
        out["slave/executor_directory_max_allowed_age_secs"] = gc.max_allowed_age
        out["gc/path_removals_succeeded"] = gc.removals_succeeded
        out["gc/path_removals_failed"] = gc.removals_failed
        out["gc/path_removals_pending"] = gc.pending()
    out.update(core.client.stats.as_dict("slave/master_connection"))
    return out
