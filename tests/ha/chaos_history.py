"""The chaos test's full history and the checks run over it at the end.

`History` records, in arrival order, every status update each scheduler received
and every acknowledgement it sent, and Marathon's `status_update_event`s. The
check functions are pure: they take the history and what was observed at the end
of the run (the slaves' and the master's records, the processes still alive) and
return the violations they find, each with the evidence. tests/unit/test_chaos_history.py
feeds them synthetic histories with every kind of violation.

The rules, as Mesos states them:
- a task reaches exactly one terminal state, and nothing after it but resends of
  that state (TASK_UNREACHABLE is not terminal: a partition-aware framework may
  see TASK_UNREACHABLE, then TASK_RUNNING again when the slave comes back);
- no status update is lost: every update a slave generated, and the master's
  latest state of every task, reached the scheduler, and each was acknowledged
  (but a framework told TASK_LOST that is not partition-aware hears nothing more
  of the task; the master acknowledges the slave's later updates itself);
- a Marathon instance never runs twice: never two RUNNING tasks of one instance
  at once, and never more RUNNING tasks of an app than it has instances;
- a task reported terminal runs no more (after TASK_LOST to a framework that is
  not partition-aware, the slave kills it when it reregisters).
"""

from __future__ import annotations

import collections
import itertools
import re
import threading
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

TERMINAL = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
})
# Marathon 1.5+ task ids are "<app>.instance-<uuid>._app.<incarnation>"; older ones
# (and this project's Marathon) make one task per instance: the task id is the instance.
MARATHON = "marathon"   # the framework name Marathon's events are recorded under
_INCARNATION = re.compile(r"^(?P<instance>.+\.instance-[^.]+)\._app\.\d+$")


@dataclass(frozen=True)
class Update:
    seq: int
    framework: str
    task_id: str
    state: str
    slave_id: str = ""
    uuid: str = ""
    timestamp: float = 0.0
    source: str = ""
    reason: str = ""


@dataclass(frozen=True)
class MarathonEvent:
    seq: int
    app_id: str
    task_id: str
    state: str
    slave_id: str = ""


@dataclass(frozen=True)
class SlaveRecord:
    """One status a slave holds for a task: from its /state (`pending=False`) or a
    checkpointed update not yet acknowledged (`pending=True`)."""
    slave_id: str
    framework: str
    task_id: str
    state: str
    timestamp: float = 0.0
    pending: bool = False


@dataclass(frozen=True)
class Violation:
    kind: str
    task_id: str
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def instance_of(task_id: str) -> str:
    match = _INCARNATION.match(task_id)
    return match.group("instance") if match else task_id


class History:
    """Thread-safe: scheduler callback threads and the event-stream reader record into it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.updates: list[Update] = []
        self.acks: list[tuple[str, str, str]] = []   # (framework, task id, uuid)
        self.marathon: list[MarathonEvent] = []
        self.partition_aware: dict[str, bool] = {}

    def add_framework(self, framework: str, partition_aware: bool) -> None:
        with self._lock:
            self.partition_aware[framework] = partition_aware

    def record(self, framework: str, task_id: str, state: str, slave_id: str = "", uuid: str = "",
               timestamp: float = 0.0, source: str = "", reason: str = "") -> Update:
        with self._lock:
            update = Update(next(self._seq), framework, task_id, state, slave_id, uuid, timestamp, source, reason)
            self.updates.append(update)
            return update

    def acknowledge(self, framework: str, task_id: str, uuid: str) -> None:
        with self._lock:
            self.acks.append((framework, task_id, uuid))

    def record_marathon(self, app_id: str, task_id: str, state: str, slave_id: str = "") -> None:
        with self._lock:
            self.marathon.append(MarathonEvent(next(self._seq), app_id, task_id, state, slave_id))

    def by_task(self) -> dict[tuple[str, str], list[Update]]:
        with self._lock:
            out: dict[tuple[str, str], list[Update]] = collections.defaultdict(list)
            for update in self.updates:
                out[(update.framework, update.task_id)].append(update)
            return dict(out)


def check_terminal(history: History, expected: Mapping[str, Iterable[str]]) -> list[Violation]:
    """Exactly one terminal state per task, nothing but its resends after it.
    `expected`: framework -> the task ids that must have ended by now."""
    violations = []
    tasks = history.by_task()
    for (framework, task_id), updates in tasks.items():
        seen_terminal: str | None = None
        for update in updates:
            if seen_terminal is None:
                if update.state in TERMINAL:
                    seen_terminal = update.state
                continue
            if update.state not in TERMINAL:
                violations.append(Violation("revived_after_terminal", task_id, _trail(
                    updates, f"{update.state} after {seen_terminal}")))
                break
            if update.state != seen_terminal:
                # Told TASK_LOST, a framework that is not partition-aware has seen the
                # task's end: the slave's later word must not reach it (Mesos 1.1-1.4,
                # whose kill-on-reregistration semantics this project follows).
                lost_then = seen_terminal == "TASK_LOST" and not history.partition_aware.get(framework, False)
                violations.append(Violation("terminal_after_lost" if lost_then else "several_terminal_states",
                                            task_id, _trail(updates, f"{update.state} after {seen_terminal}")))
                break
    for framework, task_ids in expected.items():
        for task_id in task_ids:
            updates = tasks.get((framework, task_id), [])
            if not any(u.state in TERMINAL for u in updates):
                violations.append(Violation("no_terminal_state", task_id, _trail(updates, "never ended")))
    return violations


def check_acknowledged(history: History) -> list[Violation]:
    """Every update with a uuid was acknowledged, and only received updates were."""
    received = {(u.framework, u.task_id, u.uuid) for u in history.updates if u.uuid}
    acked = set(history.acks)
    violations = [Violation("acknowledged_unreceived", task_id, f"ack of update {uuid} that never arrived")
                  for (framework, task_id, uuid) in sorted(acked - received)]
    violations += [Violation("never_acknowledged", task_id, f"update {uuid} was received but never acknowledged")
                   for (framework, task_id, uuid) in sorted(received - acked)]
    return violations


def check_delivered(history: History, slave_records: Iterable[SlaveRecord],
                    master_states: Mapping[tuple[str, str], str]) -> list[Violation]:
    """No update lost: everything the slaves hold and the master's latest state of
    each task reached the task's scheduler."""
    tasks = history.by_task()
    # Told TASK_LOST, a framework that is not partition-aware hears nothing more of
    # the task: the master acknowledges the slave's later updates for it instead.
    told_lost = {key for key, updates in tasks.items()
                 if not history.partition_aware.get(key[0], False) and any(u.state == "TASK_LOST" for u in updates)}
    violations = []
    for record in slave_records:
        updates = tasks.get((record.framework, record.task_id), [])
        if (record.framework, record.task_id) in told_lost:
            if record.pending:
                violations.append(Violation("unacknowledged_at_slave", record.task_id, _trail(
                    updates, f"slave {record.slave_id} still holds {record.state} of a task reported lost")))
            continue
        delivered = any(u.state == record.state and (not record.timestamp or not u.timestamp
                                                     or abs(u.timestamp - record.timestamp) < 1e-3)
                        for u in updates)
        if record.pending and delivered:
            # Delivered, yet its slave still waits for the acknowledgement at the end.
            violations.append(Violation("unacknowledged_at_slave", record.task_id, _trail(
                updates, f"slave {record.slave_id} still holds {record.state} unacknowledged")))
        elif not delivered:
            violations.append(Violation("lost_update", record.task_id, _trail(
                updates, f"slave {record.slave_id} has {record.state} at {record.timestamp}"
                f"{' (pending)' if record.pending else ''}; the scheduler never got it")))
    for (framework, task_id), state in master_states.items():
        updates = tasks.get((framework, task_id), [])
        if not any(u.state == state for u in updates):
            violations.append(Violation("master_state_unseen", task_id, _trail(
                updates, f"the master says {state}; the scheduler never heard it")))
    return violations


def check_instances(history: History, instances: Mapping[str, int]) -> list[Violation]:
    """Marathon's event stream: never two RUNNING tasks of one instance at once,
    never more RUNNING tasks of an app than its instance count, never RUNNING
    after a terminal state. `instances`: app id -> its instance count."""
    violations = []
    running: dict[str, dict[str, str]] = collections.defaultdict(dict)   # app -> task -> instance
    ended: set[str] = set()
    for event in history.marathon:
        tasks = running[event.app_id]
        if event.state == "TASK_RUNNING":
            if event.task_id in ended:
                violations.append(Violation("revived_after_terminal", event.task_id,
                                            f"Marathon event #{event.seq}: RUNNING after a terminal state"))
                continue
            instance = instance_of(event.task_id)
            twins = [t for t, i in tasks.items() if i == instance and t != event.task_id]
            if twins:
                violations.append(Violation("instance_ran_twice", event.task_id,
                                            f"instance {instance} also running as {', '.join(twins)}"))
            tasks[event.task_id] = instance
            limit = instances.get(event.app_id)
            if limit is not None and len(tasks) > limit:
                violations.append(Violation("too_many_running", event.task_id,
                                            f"app {event.app_id}: {len(tasks)} running, {limit} instances: "
                                            f"{', '.join(sorted(tasks))}"))
        elif event.state in TERMINAL or event.state == "TASK_UNREACHABLE":
            tasks.pop(event.task_id, None)
            if event.state in TERMINAL:
                ended.add(event.task_id)
    return violations


def check_processes(history: History, live: Mapping[str, Iterable[int]]) -> list[Violation]:
    """A task reported terminal has no process left. `live`: task id -> pids still
    running it, looked at once every slave is back."""
    ends: dict[str, Update] = {}
    for update in history.updates:
        if update.state in TERMINAL and update.task_id not in ends:
            ends[update.task_id] = update
    for event in history.marathon:   # Marathon is not partition-aware: it hears TASK_LOST
        if event.state in TERMINAL and event.task_id not in ends:
            ends[event.task_id] = Update(event.seq, MARATHON, event.task_id, event.state, event.slave_id)
    violations = []
    for task_id, pids in live.items():
        pids = sorted(pids)
        end = ends.get(task_id)
        if not pids or end is None:
            continue
        if end.state == "TASK_LOST" and not history.partition_aware.get(end.framework, False):
            kind = "ran_after_lost"
        else:
            kind = "ran_after_terminal"
        violations.append(Violation(kind, task_id, f"reported {end.state} (update #{end.seq}, slave "
                                                   f"{end.slave_id or '?'}), still running as pids {pids}"))
    return violations


def summary(history: History, violations: list[Violation], **counts) -> dict:
    """The JSON summary the chaos test prints."""
    states = collections.Counter(u.state for u in history.updates)
    kinds = collections.Counter(v.kind for v in violations)
    return {
        **counts,
        "tasks": len(history.by_task()),
        "updates": len(history.updates),
        "acknowledgements": len(history.acks),
        "marathon_events": len(history.marathon),
        "states": dict(sorted(states.items())),
        "violations": dict(sorted(kinds.items())),
        "violation_details": [v.as_dict() for v in violations[:50]],
    }


def _trail(updates: list[Update], what: str) -> str:
    trail = " -> ".join(f"{u.state}#{u.seq}@{u.slave_id[-6:] or '?'}" for u in updates)
    return f"{what}; history: {trail or '(none)'}"
