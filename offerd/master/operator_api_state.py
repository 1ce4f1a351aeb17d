"""The cluster state in Mesos' v1 operator shapes (GET_STATE, GET_AGENTS,
GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS, GET_ROLES).

`build` runs on the actor thread and walks the same records as the REST
``/master/state`` snapshot (offerd/master/snapshot.py), but keeps what the v1
messages carry and the REST JSON flattens: every Resource with its role and
allocation, FrameworkInfo, AgentInfo and ExecutorInfo as the master holds them.
It is built at most once per state of the master and shared by every caller. The actor
only copies what changed (tasks, slave infos); messages, JSON and protobuf
encodings are made on HTTP threads on first use and kept while their record is
unchanged (offerd/master/operator_state_cache.py).

ACLs are not decided here a second time: with ``--acls`` the caller's view is
cut down to the frameworks, tasks and executors present in the REST view of the
same snapshot as offerd.master.http_authz filters it for that principal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

from offerd.common.mesos_json import to_json
from offerd.common.mesos_v1 import to_v1
from offerd.common.resources import Resources
from offerd.master import http_authz
from offerd.master import operator_state_cache as fast
from offerd.master.http_common import master, principal, snapshot
from offerd.master.snapshot import Derived
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1
from offerd.proto import offerd_pb2 as offerd_pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master
    from offerd.master.state import Framework, Offer, Slave, Task

Response = v1_master.Response


@dataclass
class V1State:
    """Every entry of the v1 answers, before any ACL cut; lists of v1 messages."""

    agents: list = field(default_factory=list)  # AgentEntry
    recovered_agents: list = field(default_factory=list)  # AgentEntry
    # (framework_id, message) so an ACL cut can keep the visible ones.
    frameworks: list = field(default_factory=list)
    completed_frameworks: list = field(default_factory=list)
    executors: list = field(default_factory=list)
    tasks: list = field(default_factory=list)
    unreachable_tasks: list = field(default_factory=list)
    completed_tasks: list = field(default_factory=list)


def time_info(seconds: float | None) -> v1.TimeInfo | None:
    return None if seconds is None else v1.TimeInfo(nanoseconds=int(seconds * 1e9))


def v1_resources(resources: Resources, allocated_to: str | None = None) -> list[v1.Resource]:
    """offerd Resources as v1 Resource messages; allocated ones name their role
    in ``allocation_info`` as Mesos does for what frameworks hold or are offered."""
    # Converted once per distinct value and role; the constructors that take them copy them.
    return list(fast.resource_messages(resources, allocated_to))


def _sum(many) -> Resources:
    return Resources.sum_of(many)


class AgentInfoEntry:
    """A slave's info as a v1 AgentInfo message and its JSON, shared by every build
    while the info is the same. The actor only copies the info's encoding; both are
    made on first use (on an HTTP thread), each at most once, and never changed."""

    __slots__ = ("slave_id", "raw", "_message", "_json")

    def __init__(self, slave_id: str, raw: bytes):
        self.slave_id = slave_id
        self.raw = raw
        self._message = self._json = None

    def _parts(self):
        # The info without its resources, converted; its resources converted once per
        # distinct list (all slaves of a cluster often offer the same).
        info = offerd_pb.SlaveInfo.FromString(self.raw)
        key = tuple(r.SerializeToString() for r in info.resources)
        del info.resources[:]
        message, _ = to_v1(info, v1.AgentInfo)
        message.id.value = self.slave_id
        resources = _info_resources.get(key)
        if resources is None:
            messages = [to_v1(offerd_pb.Resource.FromString(r), v1.Resource)[0] for r in key]
            resources = (messages, [to_json(m) for m in messages])
            if len(_info_resources) >= 10000:
                _info_resources.clear()
            _info_resources[key] = resources
        return message, resources

    @property
    def message(self) -> v1.AgentInfo:
        if self._message is None:
            message, (resources, _) = self._parts()
            message.resources.extend(resources)
            self._message = message
        return self._message

    def json(self) -> dict:
        """``to_json(self.message)``: the info's JSON with the kept resources' JSON put in
        its place (fields in number order; unset defaults come last either way)."""
        if self._json is None:
            message, (_, resources) = self._parts()
            out = to_json(message)
            if resources:
                number = v1.AgentInfo.DESCRIPTOR.fields_by_name["resources"].number
                fields = v1.AgentInfo.DESCRIPTOR.fields_by_name
                items, placed = [], False
                for key, value in out.items():
                    if not placed and fields[key].number > number:
                        items.append(("resources", resources))
                        placed = True
                    items.append((key, value))
                if not placed:
                    items.append(("resources", resources))
                out = dict(items)
            self._json = out
        return self._json


_agent_infos: dict = {}
_info_resources: dict = {}


def _agent_info(slave: Slave) -> AgentInfoEntry:
    # Keyed by content: the master updates a slave's info in place when it reregisters.
    key = (slave.slave_id, slave.info.SerializeToString(deterministic=True))
    entry = _agent_infos.get(key)
    if entry is None:
        if len(_agent_infos) >= 100000:
            _agent_infos.clear()
        entry = _agent_infos[key] = AgentInfoEntry(*key)
    return entry


class AgentEntry:
    """An agent as the v1 answers show it, from values the actor read (the Resources
    sums are new, immutable objects); its message and JSON are made on first use."""

    __slots__ = ("info", "active", "version", "pid", "registered_time", "reregistered_time",
                 "total", "allocated", "offered", "_message", "_json")

    def __init__(self, slave: Slave):
        self.info = _agent_info(slave)
        self.active = slave.active
        self.version = slave.version or ""
        self.pid = slave.pid
        self.registered_time = slave.registered_time
        self.reregistered_time = slave.reregistered_time
        used = [t.resources for t in slave.tasks.values() if not t.recovered]
        used.extend(ex.resources for exs in slave.executors.values() for ex in exs.values())
        self.total = slave.total
        self.allocated = _sum(used)
        self.offered = _sum(o.resources for o in slave.offers.values())
        self._message = self._json = None

    @property
    def message(self) -> Response.GetAgents.Agent:
        if self._message is None:
            agent = Response.GetAgents.Agent(
                agent_info=self.info.message, active=self.active, deactivated=not self.active,
                version=self.version, pid=self.pid,
                total_resources=v1_resources(self.total),
                allocated_resources=v1_resources(self.allocated),
                offered_resources=v1_resources(self.offered))
            agent.registered_time.CopyFrom(time_info(self.registered_time))
            if self.reregistered_time is not None:
                agent.reregistered_time.CopyFrom(time_info(self.reregistered_time))
            self._message = agent
        return self._message

    def json(self) -> dict:
        """``to_json(self.message)``, from the kept JSON of its parts (fields in number order)."""
        if self._json is None:
            out = {"agent_info": self.info.json(), "active": self.active, "version": self.version,
                   "pid": self.pid, "registered_time": {"nanoseconds": int(self.registered_time * 1e9)}}
            if self.reregistered_time is not None:
                out["reregistered_time"] = {"nanoseconds": int(self.reregistered_time * 1e9)}
            for name, resources in (("total_resources", self.total), ("allocated_resources", self.allocated),
                                    ("offered_resources", self.offered)):
                encoded = fast.resources_json(resources)
                if encoded:
                    out[name] = encoded
            out["deactivated"] = not self.active
            self._json = out
        return self._json

    def hidden_roles(self, can) -> list[str]:
        """The roles of this agent's reservations the caller may not ``view_roles``."""
        return [role for role in self.total.roles() if role != "*" and not can("view_roles", role)]

    def seen_by(self, can) -> Response.GetAgents.Agent:
        """The agent without the resources reserved for roles the caller may not
        view, as Mesos' approvers cut GET_AGENTS (None: everything is visible)."""
        hidden = self.hidden_roles(can) if can is not None else ()
        if not hidden:
            return self.message
        agent = Response.GetAgents.Agent()
        agent.CopyFrom(self.message)
        for name, resources in (("total_resources", self.total), ("allocated_resources", self.allocated),
                                ("offered_resources", self.offered)):
            for role in hidden:
                resources = resources - resources.reserved(role)
            del getattr(agent, name)[:]
            getattr(agent, name).extend(v1_resources(resources))
        return agent

    def json_seen_by(self, can) -> dict:
        if can is None or not self.hidden_roles(can):
            return self.json()
        return to_json(self.seen_by(can))


def _offer(offer: Offer, hostname: str) -> v1.Offer:
    message = v1.Offer(hostname=hostname, resources=v1_resources(offer.resources, offer.role))
    message.id.value = offer.offer_id
    message.framework_id.value = offer.framework_id
    message.agent_id.value = offer.slave_id
    message.allocation_info.role = offer.role
    return message


def _framework(framework: Framework, hostnames: dict[str, str], executors: list) -> Response.GetFrameworks.Framework:
    info, _ = to_v1(framework.info, v1.FrameworkInfo)
    info.id.value = framework.framework_id
    role = framework.roles[0] if framework.roles else "*"
    used = [t.resources for t in framework.tasks.values() if not t.recovered] + executors
    message = Response.GetFrameworks.Framework(
        framework_info=info, active=framework.active, connected=framework.connected,
        recovered=framework.recovered,
        offers=[_offer(o, hostnames.get(o.slave_id, "")) for o in framework.offers.values()],
        allocated_resources=v1_resources(_sum(used), role),
        offered_resources=[r for o in framework.offers.values() for r in v1_resources(o.resources, o.role)])
    for name in ("registered_time", "reregistered_time", "unregistered_time"):
        stamp = time_info(getattr(framework, name))
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def _task(task: Task, role: str) -> v1.Task:
    message = v1.Task(name=task.name, state=task.state, resources=v1_resources(task.resources, role))
    message.task_id.value = task.task_id
    message.framework_id.value = task.framework_id
    message.agent_id.value = task.slave_id
    if task.executor_id:
        message.executor_id.value = task.executor_id
    for status in task.statuses:
        entry = message.statuses.add(state=status[0], timestamp=status[1])
        entry.task_id.value = task.task_id
        entry.agent_id.value = task.slave_id
        if task.executor_id:
            entry.executor_id.value = task.executor_id
        if len(status) > 2 and status[2] is not None:
            entry.healthy = status[2]
    if task.status_update_state is not None:
        message.status_update_state = task.status_update_state
    if task.status_update_uuid:
        message.status_update_uuid = task.status_update_uuid
    if task.labels is not None:
        labels, _ = to_v1(task.labels, v1.Labels)
        message.labels.CopyFrom(labels)
    if task.user:
        message.user = task.user
    return message


class TaskEntry:
    """A task as the v1 answers show it, kept from one build to the next while the
    task is unchanged. The actor only copies the task's fields (a TaskView); its
    JSON, protobuf encoding and message are made on first use, on an HTTP thread,
    each at most once (two threads may both make one: the same value)."""

    __slots__ = ("view", "role", "_json", "_wire", "_message")

    def __init__(self, view: fast.TaskView, role: str):
        self.view = view
        self.role = role
        self._json = self._wire = self._message = None

    @property
    def message(self) -> v1.Task:
        if self._message is None:
            self._message = _task(self.view, self.role)
        return self._message

    def json(self) -> dict:
        if self._json is None:
            self._json = fast.task_json(self.view, self.role)
        return self._json

    def wire(self) -> bytes:
        """The v1 Task message's encoding."""
        if self._wire is None:
            self._wire = fast.task_wire(self.view, self.role)
        return self._wire


def _task_entry(task: Task, role: str, cache: dict, kept: dict) -> TaskEntry:
    key = id(task)
    marker = (task.state, len(task.statuses), role, task.status_update_state, task.status_update_uuid)
    hit = cache.get(key)
    if hit is not None and hit[0] is task and hit[1] == marker:
        kept[key] = hit
        return hit[2]
    entry = TaskEntry(fast.TaskView(task), role)
    kept[key] = (task, marker, entry)
    return entry


def build(serving: Master) -> V1State:
    """Runs on the actor thread."""
    state = serving.state
    out = V1State()
    cache = getattr(serving, "_v1_task_cache", None) or {}
    kept: dict = {}
    hostnames = {s.slave_id: s.hostname for s in state.slaves.values()}
    executor_resources: dict[str, list] = {}
    for slave in state.slaves.values():
        out.agents.append(AgentEntry(slave))
        for framework_id, executors in slave.executors.items():
            for executor_id, record in executors.items():
                info, _ = to_v1(record.info, v1.ExecutorInfo)
                info.executor_id.value = executor_id
                info.framework_id.value = framework_id
                entry = Response.GetExecutors.Executor(executor_info=info)
                entry.agent_id.value = slave.slave_id
                out.executors.append(((framework_id, executor_id), entry))
                executor_resources.setdefault(framework_id, []).append(record.resources)
    for group, target in ((state.frameworks, out.frameworks), (state.completed_frameworks, out.completed_frameworks)):
        for framework in group.values():
            extra = executor_resources.get(framework.framework_id, []) if target is out.frameworks else []
            target.append((framework.framework_id, _framework(framework, hostnames, extra)))
            role = framework.roles[0] if framework.roles else "*"
            for tasks, into in ((framework.tasks, out.tasks), (framework.unreachable_tasks, out.unreachable_tasks),
                                (framework.completed_tasks, out.completed_tasks)):
                for task in tasks.values():
                    into.append(((framework.framework_id, task.task_id), _task_entry(task, role, cache, kept)))
    serving._v1_task_cache = kept
    return out


# -- per caller ------------------------------------------------------------------------------


class Visible:
    """What the caller may see of a V1State (everything without ACLs)."""

    def __init__(self, everything: V1State, rest_state: dict | None, can=None):
        self.all = everything
        self._can = can  # the caller's ACL answers, for the agents' reserved resources
        self._frameworks = self._tasks = self._executors = None
        if rest_state is not None:  # the REST view of the same snapshot, cut by http_authz
            groups = [f for g in ("frameworks", "completed_frameworks") for f in rest_state[g]]
            self._frameworks = {f["id"] for f in groups}
            self._tasks = {(f["id"], t["id"]) for f in groups
                           for key in ("tasks", "unreachable_tasks", "completed_tasks") for t in f[key]}
            self._executors = {(f["id"], e["executor_id"]) for f in groups for e in f["executors"]}

    @staticmethod
    def _keep(entries, allowed) -> list:
        return [message for key, message in entries if allowed is None or key in allowed]

    def get_agents(self) -> Response.GetAgents:
        return Response.GetAgents(agents=[a.seen_by(self._can) for a in self.all.agents],
                                  recovered_agents=[a.message for a in self.all.recovered_agents])

    def get_frameworks(self) -> Response.GetFrameworks:
        return Response.GetFrameworks(
            frameworks=self._keep(self.all.frameworks, self._frameworks),
            completed_frameworks=self._keep(self.all.completed_frameworks, self._frameworks))

    def get_executors(self) -> Response.GetExecutors:
        return Response.GetExecutors(executors=self._keep(self.all.executors, self._executors))

    _TASK_LISTS = ("tasks", "unreachable_tasks", "completed_tasks")

    def get_tasks(self) -> Response.GetTasks:
        return Response.GetTasks(**{name: [entry.message for entry in self._keep(getattr(self.all, name), self._tasks)]
                                    for name in self._TASK_LISTS})

    def get_state(self) -> Response.GetState:
        return Response.GetState(get_tasks=self.get_tasks(), get_executors=self.get_executors(),
                                 get_frameworks=self.get_frameworks(), get_agents=self.get_agents())

    # The same answers in Mesos' JSON mapping, from each task's kept JSON: a state of
    # 10,000 tasks is not walked field by field again after every change.

    def get_tasks_json(self) -> dict:
        out = {}
        for name in self._TASK_LISTS:
            entries = self._keep(getattr(self.all, name), self._tasks)
            if entries:
                out[name] = [entry.json() for entry in entries]
        return out

    def get_state_json(self) -> dict:
        return {"get_tasks": self.get_tasks_json(), "get_executors": to_json(self.get_executors()),
                "get_frameworks": to_json(self.get_frameworks()), "get_agents": self.get_agents_json()}

    def get_agents_json(self) -> dict:
        out = {}
        if self.all.agents:
            out["agents"] = [entry.json_seen_by(self._can) for entry in self.all.agents]
        if self.all.recovered_agents:
            out["recovered_agents"] = [entry.json() for entry in self.all.recovered_agents]
        return out

    # The same answers in protobuf, from each task's kept encoding: a repeated field's
    # elements concatenated are its encoding, so the big list is not built as messages.

    # (list, field number) in number order, the order protobuf writes them in.
    _TASK_FIELDS = tuple(sorted(((name, Response.GetTasks.DESCRIPTOR.fields_by_name[name].number)
                                 for name in _TASK_LISTS), key=lambda pair: pair[1]))

    def get_tasks_wire(self) -> bytes:
        return b"".join(fast.field(number, entry.wire())
                        for name, number in self._TASK_FIELDS
                        for entry in self._keep(getattr(self.all, name), self._tasks))

    def get_state_wire(self) -> bytes:
        parts = (self.get_tasks_wire(), self.get_executors().SerializeToString(),
                 self.get_frameworks().SerializeToString(), self.get_agents().SerializeToString())
        return b"".join(fast.field(number, part) for number, part in enumerate(parts, 1))


def response_wire(name: str, body: bytes) -> bytes:
    """A master Response of type `name` whose `name.lower()` field is encoded `body`."""
    number = Response.DESCRIPTOR.fields_by_name[name.lower()].number
    return fast.varint_field(1, Response.Type.Value(name)) + fast.field(number, body)


class V1Snapshot(Derived):
    """The v1 state of one master version, and the answers made from it."""

    def __init__(self, everything: V1State, version: int):
        super().__init__()
        self.all = everything
        self.version = version
        self.visible = Visible(everything, None)
        self.build_seconds = 0.0


def _current(serving: Master) -> V1Snapshot:
    """Runs on the actor thread: rebuilt only when the master's state changed."""
    kept = getattr(serving, "_v1_snapshot", None)
    if kept is None or kept.version != serving.version:
        started = time.perf_counter()
        kept = V1Snapshot(build(serving), serving.version)
        kept.build_seconds = time.perf_counter() - started
        serving._v1_snapshot = kept
    return kept


def read_current(serving: Master) -> V1Snapshot:
    return serving.actor.call(_current, serving)


def answers() -> Derived:
    """Where answers are kept for reuse until the state changes. Without ACLs that
    is the v1 state alone, so a v1 call never waits for the REST /master/state
    document to be rebuilt; with ACLs, the REST snapshot whose cut decides what
    each principal sees. Both are bounded alike: once a build costs the actor
    much, its result is served for a while (offerd.master.http_api)."""
    if not http_authz.configured():
        return current_app.config["OFFERD_V1_SNAPSHOTS"].get(master())
    return snapshot()


def visible() -> Visible:
    """The v1 state as this caller may see it, cut once per principal and snapshot."""
    kept = answers()
    if isinstance(kept, V1Snapshot):
        return kept.visible
    serving = master()
    everything = kept.derived(("v1",), lambda: serving.actor.call(build, serving))
    rest = http_authz.visible(kept).state
    return kept.derived(("v1-visible", principal()), lambda: Visible(everything, rest, http_authz.decisions()))


def get_roles() -> Response.GetRoles:
    """GET_ROLES from the REST /master/roles document (weights, frameworks, and
    what each role's frameworks hold and are offered), as v1 Role messages."""
    document = http_authz.filter_roles(http_authz.visible(snapshot()).roles())
    roles = []
    for entry in document["roles"]:
        role = v1.Role(name=entry["name"], weight=float(entry["weight"]))
        for framework_id in entry["frameworks"]:
            role.frameworks.add(value=framework_id)
        for name, value in sorted(entry["resources"].items()):
            if value:
                resource = role.resources.add(name=name, type=v1.Value.SCALAR)
                resource.scalar.value = value
                resource.allocation_info.role = entry["name"]
        roles.append(role)
    return Response.GetRoles(roles=roles)
