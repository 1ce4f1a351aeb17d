"""Counters the master keeps as it goes, and the /metrics/snapshot document.

Key names follow Mesos (docs/monitoring.md): ``master/messages_*`` per
message kind, ``master/tasks_*``, ``master/slaves_*``, ``master/frameworks_*``.
"""

from __future__ import annotations

import collections
import os
import time
from typing import TYPE_CHECKING

import psutil

from offerd.master.state import TERMINAL_STATES
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

CALL_COUNTERS = {
    pb.Call.SUBSCRIBE: "master/messages_register_framework",
    pb.Call.TEARDOWN: "master/messages_unregister_framework",
    pb.Call.ACCEPT: "master/messages_launch_tasks",
    pb.Call.DECLINE: "master/messages_decline_offers",
    pb.Call.REVIVE: "master/messages_revive_offers",
    pb.Call.SUPPRESS: "master/messages_suppress_offers",
    pb.Call.KILL: "master/messages_kill_task",
    pb.Call.SHUTDOWN: "master/messages_shutdown_executor",
    pb.Call.ACKNOWLEDGE: "master/messages_status_update_acknowledgement",
    pb.Call.RECONCILE: "master/messages_reconcile_tasks",
    pb.Call.MESSAGE: "master/messages_framework_to_executor",
    pb.Call.REQUEST: "master/messages_resource_request",
}

SLAVE_CALL_COUNTERS = {
    pb.SlaveCall.REGISTER: "master/messages_register_slave",
    pb.SlaveCall.REREGISTER: "master/messages_reregister_slave",
    pb.SlaveCall.UPDATE: "master/messages_status_update",
    pb.SlaveCall.EXECUTOR_MESSAGE: "master/messages_executor_to_framework",
    pb.SlaveCall.EXITED_EXECUTOR: "master/messages_exited_executor",
    pb.SlaveCall.UNREGISTER: "master/messages_unregister_slave",
}

# Always present in the snapshot, even at zero, so dashboards find them.
ZERO_COUNTERS = (
    *CALL_COUNTERS.values(), *SLAVE_CALL_COUNTERS.values(),
    "master/valid_status_updates", "master/invalid_status_updates",
    "master/valid_status_update_acknowledgements", "master/invalid_status_update_acknowledgements",
    "master/valid_framework_to_executor_messages", "master/invalid_framework_to_executor_messages",
    "master/valid_executor_to_framework_messages", "master/invalid_executor_to_framework_messages",
    "master/dropped_messages", "master/invalid_calls", "master/invalid_accepts", "master/invalid_tasks",
    "master/slave_registrations", "master/slave_reregistrations", "master/slave_removals",
    "master/slave_unreachable_completed", "master/frameworks_removed",
    # Refusals of identity and authorization: a dashboard alerts on any rise from 0.
    "master/unauthenticated_framework_subscriptions", "master/framework_principal_mismatches",
    "master/unauthorized_framework_subscriptions", "master/unauthenticated_slave_registrations",
    "master/unauthorized_slave_registrations", "master/slave_principal_mismatches",
    "master/unauthorized_tasks", "master/invalid_exited_executors",
    # Robustness (docs/protocol.md): handlers that failed (their books then repaired), launches
    # the slave's socket refused, and (with --check_invariants) accounting violations.
    "master/handler_failures", "master/dropped_launches", "master/invariant_violations",
)

TASK_GAUGE_STATES = {
    pb.TASK_STAGING: "staging", pb.TASK_STARTING: "starting", pb.TASK_RUNNING: "running",
    pb.TASK_KILLING: "killing",
}
TASK_COUNTER_STATES = {
    pb.TASK_FINISHED: "finished", pb.TASK_FAILED: "failed", pb.TASK_KILLED: "killed",
    pb.TASK_LOST: "lost", pb.TASK_ERROR: "error", pb.TASK_DROPPED: "dropped",
    pb.TASK_UNREACHABLE: "unreachable", pb.TASK_GONE: "gone",
    pb.TASK_GONE_BY_OPERATOR: "gone_by_operator",
}

_SOURCES = {v: k.lower() for k, v in pb.TaskStatus.Source.items()}
_REASONS = {v: k.lower() for k, v in pb.TaskStatus.Reason.items()}


class Metrics:
    def __init__(self):
        self.counters: collections.Counter[str] = collections.Counter()
        self.values: dict[str, float] = {}

    def inc(self, key: str, by: int = 1) -> None:
        self.counters[key] += by

    def set(self, key: str, value: float) -> None:
        self.values[key] = value

    def count_terminal(self, status: pb.TaskStatus) -> None:
        """Mesos' ``master/task_lost/source_master/reason_slave_removed`` counters."""
        if status.state in TERMINAL_STATES or status.state == pb.TASK_UNREACHABLE:
            state = pb.TaskState.Name(status.state).lower()
            source = _SOURCES.get(status.source, "unknown")
            reason = _REASONS.get(status.reason, "none") if status.HasField("reason") else "none"
            self.counters[f"master/{state}/{source}/{reason}"] += 1


def system_metrics() -> dict[str, float]:
    """Mesos' ``system/*`` keys; read on an HTTP thread, never on the actor."""
    memory = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    return {
        "system/cpus_total": os.cpu_count() or 1,
        "system/load_1min": load1,
        "system/load_5min": load5,
        "system/load_15min": load15,
        "system/mem_total_bytes": memory.total,
        "system/mem_free_bytes": memory.available,
    }


def snapshot(master: Master) -> dict[str, float]:
    """The whole /metrics/snapshot document; runs on the actor thread."""
    state = master.state
    out: dict[str, float] = {key: 0 for key in ZERO_COUNTERS}
    out.update(master.metrics.counters)
    out.update(master.metrics.values)
    out["master/uptime_secs"] = time.time() - master.start_time
    out["master/elected"] = 1 if master.leadership.is_leader else 0
    slaves = state.slaves.values()
    connected = sum(1 for s in slaves if s.connected)
    active = sum(1 for s in slaves if s.active)
    out["master/slaves_connected"] = connected
    out["master/slaves_disconnected"] = len(state.slaves) - connected
    out["master/slaves_active"] = active
    out["master/slaves_inactive"] = len(state.slaves) - active
    out["master/slaves_unreachable"] = len(state.unreachable_slaves)
    frameworks = state.frameworks.values()
    f_connected = sum(1 for f in frameworks if f.connected)
    f_active = sum(1 for f in frameworks if f.active)
    out["master/frameworks_connected"] = f_connected
    out["master/frameworks_disconnected"] = len(state.frameworks) - f_connected
    out["master/frameworks_active"] = f_active
    out["master/frameworks_inactive"] = len(state.frameworks) - f_active
    out["master/outstanding_offers"] = len(state.offers)
    for task_state, name in TASK_GAUGE_STATES.items():
        out[f"master/tasks_{name}"] = state.active_task_counts.get(task_state, 0)
    for task_state, name in TASK_COUNTER_STATES.items():
        out[f"master/tasks_{name}"] = state.terminal_task_counts.get(task_state, 0)
    total: dict[str, float] = {}
    for slave in slaves:
        for name, amount in slave.total.scalars().items():
            total[name] = total.get(name, 0.0) + amount
    used: dict[str, float] = {}
    for slave in slaves:
        for task in slave.tasks.values():
            if not task.recovered:
                for name, amount in task.resources.scalars().items():
                    used[name] = used.get(name, 0.0) + amount
        for executors in slave.executors.values():
            for executor in executors.values():
                for name, amount in executor.resources.scalars().items():
                    used[name] = used.get(name, 0.0) + amount
    for name in ("cpus", "mem", "disk", "gpus"):
        t, u = total.get(name, 0.0), used.get(name, 0.0)
        out[f"master/{name}_total"] = t
        out[f"master/{name}_used"] = u
        out[f"master/{name}_percent"] = u / t if t else 0.0
    for name in ("cpus", "mem", "disk", "gpus"):  # offerd offers no revocable resources
        for kind in ("total", "used", "percent"):
            out[f"master/{name}_revocable_{kind}"] = 0
    out["master/operator_event_stream_subscribers"] = 0
    out.update(master.server.stats.as_dict("master/transport"))
    # Received but not yet handled (bounded by --max_receive_queue_bytes), its peak, and
    # how often reading paused because the bound was reached.
    out["master/receive_queue_bytes"] = master.server.queued_bytes
    out["master/receive_queue_bytes_peak"] = master.server.peak_queued_bytes
    out["master/receive_queue_pauses"] = master.server.pauses
    for key, value in master.allocator.stats().items():
        out[f"allocator/{key}"] = value
    out.update(master.allocation_timer.snapshot())
    return out
