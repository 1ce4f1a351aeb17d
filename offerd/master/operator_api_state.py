"""The cluster state in Mesos' v1 operator shapes (GET_STATE, GET_AGENTS,
GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS, GET_ROLES).

`build` runs on the actor thread and walks the same records as the REST
``/master/state`` snapshot (offerd/master/snapshot.py), but keeps what the v1
messages carry and the REST JSON flattens: every Resource with its role and
allocation, FrameworkInfo, AgentInfo and ExecutorInfo as the master holds them.
It is built at most once per snapshot and shared by every caller.

ACLs are not decided here a second time: with ``--acls`` the caller's view is
cut down to the frameworks, tasks and executors present in the REST view of the
same snapshot as offerd.master.http_authz filters it for that principal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from offerd.common.mesos_json import to_json
from offerd.common.mesos_v1 import to_v1
from offerd.common.resources import Resources
from offerd.master import http_authz
from offerd.master.http_common import master, principal, snapshot
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import mesos_v1_pb2 as v1

if TYPE_CHECKING:
    from offerd.master.daemon import Master
    from offerd.master.state import Framework, Offer, Slave, Task

Response = v1_master.Response


@dataclass
class V1State:
    """Every entry of the v1 answers, before any ACL cut; lists of v1 messages."""

    agents: list = field(default_factory=list)
    recovered_agents: list = field(default_factory=list)
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
    out = []
    for proto in resources.to_protos():
        message, _ = to_v1(proto, v1.Resource)
        if allocated_to is not None:
            message.allocation_info.role = allocated_to
        out.append(message)
    return out


def _sum(many) -> Resources:
    return Resources.sum_of(many)


def _agent(slave: Slave) -> Response.GetAgents.Agent:
    info, _ = to_v1(slave.info, v1.AgentInfo)
    info.id.value = slave.slave_id
    used = [t.resources for t in slave.tasks.values() if not t.recovered]
    used.extend(ex.resources for exs in slave.executors.values() for ex in exs.values())
    agent = Response.GetAgents.Agent(
        agent_info=info, active=slave.active, deactivated=not slave.active,
        version=slave.version or "", pid=slave.pid,
        total_resources=v1_resources(slave.total),
        allocated_resources=v1_resources(_sum(used)),
        offered_resources=v1_resources(_sum(o.resources for o in slave.offers.values())))
    agent.registered_time.CopyFrom(time_info(slave.registered_time))
    if slave.reregistered_time is not None:
        agent.reregistered_time.CopyFrom(time_info(slave.reregistered_time))
    return agent


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
    """A task's v1 message, kept from one build to the next while the task is
    unchanged; its JSON is made on first use, on an HTTP thread, never on the actor."""

    __slots__ = ("message", "_json")

    def __init__(self, message: v1.Task):
        self.message = message
        self._json = None

    def json(self) -> dict:
        if self._json is None:
            self._json = to_json(self.message)   # two threads may both make it: same value
        return self._json


def _task_entry(task: Task, role: str, cache: dict, kept: dict) -> TaskEntry:
    key = id(task)
    marker = (task.state, len(task.statuses), role, task.status_update_state, task.status_update_uuid)
    hit = cache.get(key)
    if hit is not None and hit[0] is task and hit[1] == marker:
        kept[key] = hit
        return hit[2]
    entry = TaskEntry(_task(task, role))
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
        out.agents.append(_agent(slave))
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

    def __init__(self, everything: V1State, rest_state: dict | None):
        self.all = everything
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
        return Response.GetAgents(agents=self.all.agents, recovered_agents=self.all.recovered_agents)

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
                "get_frameworks": to_json(self.get_frameworks()), "get_agents": to_json(self.get_agents())}


def visible() -> Visible:
    """The v1 state as this caller may see it, cut once per principal and snapshot."""
    current = snapshot()
    serving = master()
    everything = current.derived(("v1",), lambda: serving.actor.call(build, serving))
    if not http_authz.configured():
        return current.derived(("v1-visible", None), lambda: Visible(everything, None))
    rest = http_authz.visible(current).state
    return current.derived(("v1-visible", principal()), lambda: Visible(everything, rest))


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
