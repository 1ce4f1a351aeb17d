"""The read-only view HTTP serves: built on the actor thread, then immutable.

`build` walks the records once and returns plain dicts in Mesos' JSON shapes
(`/master/state`); HTTP threads only read them. The master rebuilds a
snapshot only when a request comes and something changed since the last one.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from google.protobuf import json_format

from offerd import __version__
from offerd.common.attributes import attributes_to_json
from offerd.common.resources import Resources
from offerd.master.state import Framework, Offer, Slave, Task, state_name
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master


def message_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _labels(labels) -> list[dict]:
    return [{"key": label.key, "value": label.value} for label in labels.labels] if labels else []


def status_json(status: tuple) -> dict:
    """(state, timestamp[, healthy]) as Mesos' /state shows a task status."""
    out = {"state": state_name(status[0]), "timestamp": status[1]}
    if len(status) > 2:
        out["healthy"] = status[2]
    return out


def task_json(task: Task, role: str | None = None, cache: dict | None = None) -> dict:
    """A task's JSON; with `cache`, reused while the task's state and statuses stay
    the same (snapshot documents are never mutated, so sharing is safe)."""
    if cache is not None:
        key = id(task)
        hit = cache.get(key)
        marker = (task.state, len(task.statuses), role)
        if hit is not None and hit[0] is task and hit[1] == marker:
            cache["_next"][key] = hit
            return hit[2]
        out = task_json(task, role)
        cache["_next"][key] = (task, marker, out)
        return out
    out = {
        "id": task.task_id,
        "name": task.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id,
        "slave_id": task.slave_id,
        "state": state_name(task.state),
        "resources": task.resources.to_json(),
        "statuses": [status_json(status) for status in task.statuses],
    }
    if role is not None:
        out["role"] = role
    if task.user:  # the task's own user (Mesos' Task.user); else its framework's applies
        out["user"] = task.user
    if task.labels is not None:
        out["labels"] = _labels(task.labels)
    return out


def offer_json(offer: Offer) -> dict:
    return {
        "id": offer.offer_id,
        "framework_id": offer.framework_id,
        "slave_id": offer.slave_id,
        "allocation_info": {"role": offer.role},
        "resources": offer.resources.to_json(),
    }


def _total_json(items) -> dict:
    # One pass over possibly thousands of tasks' resources, not a chain of additions.
    return Resources.sum_of(items).to_json()


def framework_json(framework: Framework, executors: list[dict], cache: dict | None = None) -> dict:
    info = framework.info
    used = [t.resources for t in framework.tasks.values() if not t.recovered]
    used.extend(ex["_resources"] for ex in executors)
    offered = [o.resources for o in framework.offers.values()]
    role = framework.roles[0] if framework.roles else "*"
    out = {
        "id": framework.framework_id,
        "name": info.name,
        "user": info.user,
        "hostname": info.hostname,
        "webui_url": info.webui_url,
        "principal": info.principal,
        "role": role,
        "roles": list(framework.roles),
        "active": framework.active,
        "connected": framework.connected,
        "recovered": framework.recovered,
        "checkpoint": info.checkpoint,
        "failover_timeout": info.failover_timeout,
        "capabilities": [pb.FrameworkInfo.Capability.Type.Name(c.type)
                         for c in info.capabilities if c.type in pb.FrameworkInfo.Capability.Type.values()],
        "registered_time": framework.registered_time,
        "resources": _total_json(used + offered),
        "used_resources": _total_json(used),
        "offered_resources": _total_json(offered),
        "tasks": [task_json(t, role, cache) for t in framework.tasks.values()],
        "unreachable_tasks": [task_json(t, role, cache) for t in framework.unreachable_tasks.values()],
        "completed_tasks": [task_json(t, role, cache) for t in framework.completed_tasks.values()],
        "offers": [offer_json(o) for o in framework.offers.values()],
        "executors": [{k: v for k, v in ex.items() if k != "_resources"} for ex in executors],
        "labels": _labels(info.labels) if info.HasField("labels") else [],
    }
    if framework.reregistered_time is not None:
        out["reregistered_time"] = framework.reregistered_time
    if framework.unregistered_time is not None:
        out["unregistered_time"] = framework.unregistered_time
    return out


def slave_json(slave: Slave) -> dict:
    total = slave.total
    used = [t.resources for t in slave.tasks.values() if not t.recovered]
    used.extend(ex.resources for exs in slave.executors.values() for ex in exs.values())
    offered = [o.resources for o in slave.offers.values()]
    out = {
        "id": slave.slave_id,
        "pid": slave.pid,
        "hostname": slave.hostname,
        "port": slave.info.port,
        "resources": total.to_json(),
        "used_resources": _total_json(used),
        "offered_resources": _total_json(offered),
        "reserved_resources": {role: total.reserved(role).to_json()
                               for role in sorted(total.roles()) if role != "*"},
        "unreserved_resources": total.unreserved().to_json(),
        "attributes": attributes_to_json(slave.info.attributes),
        "active": slave.active,
        "deactivated": not slave.active,
        "connected": slave.connected,
        "registered_time": slave.registered_time,
        "version": slave.version,
        "capabilities": [],
    }
    if slave.reregistered_time is not None:
        out["reregistered_time"] = slave.reregistered_time
    if slave.principal is not None:
        out["principal"] = slave.principal  # the one it proved; its id is bound to it
    return out


def _executors_by_framework(master: Master) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for slave in master.state.slaves.values():
        for framework_id, executors in slave.executors.items():
            for executor_id, executor in executors.items():
                entry = {
                    "executor_id": executor_id,
                    "name": executor.info.name,
                    "source": executor.info.source,
                    "slave_id": slave.slave_id,
                    "framework_id": framework_id,
                    "resources": executor.resources.to_json(),
                    "_resources": executor.resources,
                }
                user = executor_user(executor.info)
                if user:  # the executor's own user; else its framework's applies
                    entry["user"] = user
                out.setdefault(framework_id, []).append(entry)
    return out


def executor_user(info: pb.ExecutorInfo) -> str | None:
    """CommandInfo.user of an executor, the user it runs as when it names one."""
    if info.HasField("command") and info.command.HasField("user") and info.command.user:
        return info.command.user
    return None


def build(master: Master) -> Snapshot:
    """Runs on the actor thread."""
    started = time.perf_counter()
    state = master.state
    executors = _executors_by_framework(master)
    info = master.master_info
    # Task JSON kept from the previous build; entries of tasks gone are dropped.
    cache = getattr(master, "_snapshot_task_cache", None) or {"_next": {}}
    cache["_next"] = {}
    data: dict[str, Any] = {
        "version": __version__,
        "git_sha": "",
        "git_branch": "",
        "git_tag": "",
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "start_time": master.start_time,
        "elected_time": master.start_time,
        "id": info.id,
        "pid": info.pid,
        "hostname": info.hostname,
        "capabilities": [],
        "activated_slaves": sum(1 for s in state.slaves.values() if s.active),
        "deactivated_slaves": sum(1 for s in state.slaves.values() if not s.active),
        "unreachable_slaves": len(state.unreachable_slaves),
        "leader": info.pid,
        "leader_info": message_json(info),
        "flags": master.flags_json(),
        "slaves": [slave_json(s) for s in state.slaves.values()],
        "recovered_slaves": [],
        "frameworks": [framework_json(f, executors.get(f.framework_id, []), cache)
                       for f in state.frameworks.values()],
        "completed_frameworks": [framework_json(f, [], cache) for f in state.completed_frameworks.values()],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    }
    if master.flags.cluster:
        data["cluster"] = master.flags.cluster
    # Why each framework is (not) getting offers; shape in offerd/allocator/README.md.
    explain = getattr(master.allocator, "explain", None)
    if explain is not None:
        reasons = explain()["frameworks"]
        for entry in data["frameworks"]:
            entry["allocator"] = reasons.get(entry["id"], {})
    master._snapshot_task_cache = {"_next": {}, **cache["_next"]}
    snapshot = Snapshot(data)
    snapshot.build_seconds = time.perf_counter() - started
    return snapshot


try:  # ten times faster on a 4 MB state document; the GIL is held either way
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover
    def _dumps(document) -> bytes:
        return json.dumps(document).encode()


def _add_scalars(into: dict, resources: dict) -> dict:
    for name in ("cpus", "mem", "disk", "gpus"):
        into[name] = into.get(name, 0.0) + (resources.get(name) or 0.0)
    return into


class Derived:
    """Values made once per key from one immutable state, then shared by every caller."""

    MAX_DERIVED = 256

    def __init__(self):
        self._lock = threading.Lock()
        self._derived: dict = {}

    def derived(self, key, make: Callable[[], Any]) -> Any:
        """`make()` once per `key` while this state is current: however often a
        principal polls, its filtered copy is cut (and encoded) once per change."""
        with self._lock:
            hit = self._derived.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                if len(self._derived) < self.MAX_DERIVED:
                    hit = self._derived.setdefault(key, hit)
        return hit


class Snapshot(Derived):
    """One immutable state document and the views cut from it."""

    def __init__(self, state: dict):
        super().__init__()
        self.state = state
        self._encoded: bytes | None = None
        self.build_seconds = 0.0  # time the actor spent building it (http_api's reuse)
        self._summary: dict | None = None

    def state_json(self) -> bytes:
        # Encoded once per snapshot however many clients poll it.
        with self._lock:
            if self._encoded is None:
                self._encoded = _dumps(self.state)
            return self._encoded

    def frameworks(self, framework_id: str | None = None) -> dict:
        def pick(items):
            return [f for f in items if framework_id is None or f["id"] == framework_id]
        return {
            "frameworks": pick(self.state["frameworks"]),
            "completed_frameworks": pick(self.state["completed_frameworks"]),
            "unregistered_frameworks": [],
        }

    def slaves(self, slave_id: str | None = None) -> dict:
        return {
            "slaves": [s for s in self.state["slaves"] if slave_id is None or s["id"] == slave_id],
            "recovered_slaves": [],
        }

    def tasks(self, framework_id=None, task_id=None) -> list[dict]:
        out = []
        for group in ("frameworks", "completed_frameworks"):
            for framework in self.state[group]:
                if framework_id is not None and framework["id"] != framework_id:
                    continue
                for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                    out.extend(t for t in framework[key] if task_id is None or t["id"] == task_id)
        return out

    def roles(self) -> dict:
        """/master/roles: per role, what its frameworks hold and are offered.

        Weights and quota come from the allocator's part of the state when it
        publishes them (``weights``, ``quota``); until then every weight is 1.
        """
        weights = dict(self.state.get("weights") or {})
        quotas = dict(self.state.get("quota") or {})
        for framework in self.state["frameworks"]:  # the allocator's account, when it gives one
            for name, entry in ((framework.get("allocator") or {}).get("roles") or {}).items():
                weights.setdefault(name, entry.get("weight", 1.0))
                if entry.get("quota"):
                    quotas.setdefault(name, entry["quota"])
        roles: dict[str, dict] = {}

        def role(name: str) -> dict:
            if name not in roles:
                roles[name] = {"name": name, "weight": weights.get(name, 1.0), "frameworks": [],
                               "_allocated": {}, "_offered": {}}
            return roles[name]

        for framework in self.state["frameworks"]:
            for name in framework["roles"] or [framework["role"]]:
                role(name)["frameworks"].append(framework["id"])
            for task in framework["tasks"]:
                entry = role(task.get("role") or framework["role"])
                _add_scalars(entry["_allocated"], task["resources"])
            for offer in framework["offers"]:
                entry = role(offer["allocation_info"]["role"])
                _add_scalars(entry["_offered"], offer["resources"])
        for name in weights:
            role(name)
        out = []
        for name in sorted(roles):
            entry = roles[name]
            allocated, offered = entry.pop("_allocated"), entry.pop("_offered")
            quota = quotas.get(name) or {}
            entry.update({
                "allocated": allocated,
                "offered": offered,
                "reserved": {},
                "resources": _add_scalars(dict(allocated), offered),
                "quota": {"role": name, "guarantee": quota.get("guarantee") or {},
                          "limit": quota.get("limit") or {}, "consumed": dict(allocated)},
            })
            out.append(entry)
        return {"roles": out}

    def summary(self) -> dict:
        """/master/state-summary: counts instead of task lists (once per snapshot)."""
        with self._lock:
            if self._summary is None:
                self._summary = self._build_summary()
            return self._summary

    def _build_summary(self) -> dict:
        def counts(tasks):
            out: dict[str, int] = {name: 0 for name in pb.TaskState.keys()}
            for task in tasks:
                out[task["state"]] += 1
            return out

        frameworks, slaves = [], []
        slave_tasks: dict[str, list] = {}
        slave_frameworks: dict[str, set] = {}
        for framework in self.state["frameworks"]:
            tasks = framework["tasks"] + framework["completed_tasks"]
            entry = {k: framework[k] for k in ("id", "name", "active", "connected", "roles",
                                               "used_resources", "offered_resources")}
            entry.update(counts(tasks))
            entry["slave_ids"] = sorted({t["slave_id"] for t in framework["tasks"]})
            frameworks.append(entry)
            for task in tasks:
                slave_tasks.setdefault(task["slave_id"], []).append(task)
                slave_frameworks.setdefault(task["slave_id"], set()).add(framework["id"])
        for slave in self.state["slaves"]:
            entry = dict(slave)
            entry.update(counts(slave_tasks.get(slave["id"], [])))
            entry["framework_ids"] = sorted(slave_frameworks.get(slave["id"], set()))
            slaves.append(entry)
        return {"hostname": self.state["hostname"], "cluster": self.state.get("cluster", ""),
                "slaves": slaves, "frameworks": frameworks}
