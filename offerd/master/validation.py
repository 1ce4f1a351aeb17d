"""Pure checks of what schedulers and slaves send (Habit 4: propose, verify, commit).

Each ``validate_*`` function looks at a message and the live records it is
checked against and returns an error text, or None when all is well. Nothing
here changes state; the handlers apply a call only after it passed. The texts
go back to the sender verbatim, so they name the offending id and the rule.
"""

from __future__ import annotations

import math
from typing import Collection, Mapping

from offerd.common import resources
from offerd.common.health_checks import validate_health_check
from offerd.common.resources import ResourceError, Resources
from offerd.master.state import ExecutorRecord, Framework, Offer, Slave
from offerd.proto import offerd_pb2 as pb

DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0
UUID_BYTES = 16


def validate_id(value: str, what: str) -> str | None:
    """Mesos' rules for framework-chosen ids (task, executor): they name directories."""
    if not value:
        return f"{what} must not be empty"
    if value in (".", ".."):
        return f"{what} '{value}' is not allowed"
    for ch in value:
        if ch == "/" or not ch.isprintable() or ch.isspace():
            return f"{what} '{value}' contains an invalid character {ch!r}"
    return None


def validate_role(role: str) -> str | None:
    try:
        # The resources module owns the role grammar (it also names reservations).
        resources.validate_role(role)
    except ResourceError as exc:
        return str(exc)
    return None


def framework_roles(info: pb.FrameworkInfo) -> tuple[str, ...]:
    """The roles a framework subscribes with: `roles`, else the old single `role`."""
    return tuple(info.roles) if len(info.roles) else (info.role,)


def validate_framework_info(info: pb.FrameworkInfo) -> str | None:
    if not info.name:
        return "FrameworkInfo.name is required"
    if len(info.roles) and info.HasField("role"):
        return "FrameworkInfo.role must not be set together with FrameworkInfo.roles"
    roles = framework_roles(info)
    if len(set(roles)) != len(roles):
        return f"FrameworkInfo.roles has duplicates: {list(roles)}"
    for role in roles:
        error = validate_role(role)
        if error:
            return f"invalid role in FrameworkInfo: {error}"
    timeout = info.failover_timeout
    if math.isnan(timeout) or timeout < 0 or math.isinf(timeout):
        return f"FrameworkInfo.failover_timeout must be a finite number of seconds >= 0, not {timeout}"
    if info.HasField("id"):
        error = validate_id(info.id.value, "FrameworkID")
        if error:
            return error
    return None


# -- identity and authorization --------------------------------------------------------
#
# The principal a peer *proved* on its connection is what authorization is
# about; a principal only *claimed* in FrameworkInfo counts for binding a
# framework id when authentication is off (as Mesos), never for the ACLs: an
# unproven request is "any principal" to them.


def validate_framework_principal(claimed: str | None, proven: str | None, required: bool) -> str | None:
    """FrameworkInfo.principal against what the connection proved (Mesos' rule)."""
    if proven is None:
        if required:
            return ("Framework is not authenticated: this master requires schedulers to authenticate "
                    "(--authenticate_frameworks); give the scheduler a credential, a principal and secret "
                    "listed in the master's --credentials")
        return None
    if claimed is not None and claimed != proven:
        return (f"Framework principal '{claimed}' does not match authenticated principal '{proven}': "
                f"set FrameworkInfo.principal to '{proven}' or authenticate as '{claimed}'")
    return None


def validate_framework_owner(framework_id: str, bound: str | None, bound_proven: bool, recovered: bool,
                             identity: str | None, proven: bool) -> str | None:
    """May a subscriber with `identity` take framework `framework_id` over?

    `bound` is the principal the framework is bound to; `bound_proven` whether
    that was proven. A framework known only from a slave's report with no
    principal has no identity to protect. The text never names the bound
    principal: the subscriber may be the impostor.
    """
    if bound is None and recovered:
        return None
    if bound == identity and (proven or not bound_proven):
        return None
    return (f"Framework {framework_id} is bound to a principal this connection has not proven; changing "
            "framework's principal is not allowed. Subscribe with the credential it was registered with, "
            "or without a framework id to register a new framework")


def validate_framework_user(user: str, root_submissions: bool) -> str | None:
    """Mesos' --root_submissions for the user a framework's tasks run as."""
    if root_submissions:
        return None
    if user == "root":
        return ("User 'root' is not allowed to run frameworks without --root_submissions set: "
                "set FrameworkInfo.user to an unprivileged user")
    if not user:
        return ("FrameworkInfo.user is required with --root_submissions=false: without it tasks run as the "
                "slave's own user, which may be root")
    return None


def task_user(task: pb.TaskInfo, framework_user: str) -> str:
    """The user a task runs as, as the slave picks it: the command's user, else
    the framework's (an empty user counts as unset)."""
    if task.HasField("command"):
        return task.command.user or framework_user
    return task.executor.command.user or framework_user


def validate_task_user(user: str, principal: str | None, authorizer, root_submissions: bool) -> str | None:
    """`run_tasks` (object: the user) and --root_submissions for one task."""
    if not root_submissions:
        if user == "root":
            return ("Not authorized to launch task as user 'root': this master runs with "
                    "--root_submissions=false; set CommandInfo.user or FrameworkInfo.user to an unprivileged user")
        if not user:
            return ("Not authorized to launch task without a user: with --root_submissions=false a task needs "
                    "CommandInfo.user or FrameworkInfo.user (else it runs as the slave's own user, maybe root)")
    refusal = authorizer.check(principal, "run_tasks", user)
    if refusal is not None:
        return f"Not authorized to launch task as user '{user}': {refusal}"
    return None


def validate_slave_info(info: pb.SlaveInfo) -> str | None:
    if not info.hostname:
        return "SlaveInfo.hostname is required"
    if not 0 < info.port < 65536:
        return f"SlaveInfo.port {info.port} is not a valid port"
    try:
        Resources.from_protos(info.resources)
    except ResourceError as exc:
        return f"SlaveInfo has invalid resources: {exc}"
    return None


def validate_offers(
    offer_ids: list[str],
    framework_id: str,
    offers: Mapping[str, Offer],
    slaves: Mapping[str, Slave],
) -> str | None:
    """All offers outstanding, this framework's, on one registered slave, of one role."""
    if not offer_ids:
        return "No offers specified"
    seen: set[str] = set()
    first: Offer | None = None
    for offer_id in offer_ids:
        if offer_id in seen:
            return f"Offer {offer_id} appears more than once in the call"
        seen.add(offer_id)
        offer = offers.get(offer_id)
        if offer is None:
            return f"Offer {offer_id} is no longer valid (unknown, rescinded or already used)"
        if offer.framework_id != framework_id:
            return f"Offer {offer_id} belongs to another framework, not {framework_id}"
        if first is None:
            first = offer
        elif offer.slave_id != first.slave_id:
            return (f"Aggregated offers must belong to one slave: offer {first.offer_id} is on "
                    f"{first.slave_id} and offer {offer_id} on {offer.slave_id}")
        elif offer.role != first.role:
            return (f"Aggregated offers must be allocated to one role: offer {first.offer_id} is for "
                    f"role '{first.role}' and offer {offer_id} for role '{offer.role}'")
    slave = slaves.get(first.slave_id)
    if slave is None or not slave.connected:
        return f"Offer {first.offer_id} is on slave {first.slave_id}, which is no longer connected"
    return None


def _executor_signature(info: pb.ExecutorInfo) -> bytes:
    # Two ExecutorInfos name the same executor when they agree on everything
    # but the framework id the master fills in.
    copy = pb.ExecutorInfo()
    copy.CopyFrom(info)
    copy.ClearField("framework_id")
    return copy.SerializeToString(deterministic=True)


def validate_task(
    task: pb.TaskInfo,
    *,
    slave_id: str,
    framework: Framework,
    launched_ids: Collection[str],
    executors: Mapping[str, ExecutorRecord],
    new_executors: Mapping[str, pb.ExecutorInfo],
) -> str | None:
    """Everything about a TaskInfo but its resources (see `validate_task_resources`).

    `launched_ids` are the task ids earlier in the same call; `executors` this
    framework's executors on the slave; `new_executors` those the same call
    starts.
    """
    task_id = task.task_id.value
    error = validate_id(task_id, "Task ID")
    if error:
        return error
    if task_id in launched_ids or framework.knows_task_id(task_id):
        return f"Task has duplicate ID: {task_id}"
    if task.HasField("slave_id") and task.slave_id.value and task.slave_id.value != slave_id:
        return f"Task uses invalid slave {task.slave_id.value}; the offer is on {slave_id}"
    if task.HasField("command") == task.HasField("executor"):
        return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
    if task.HasField("command"):
        if task.command.shell and not task.command.HasField("value"):
            return "Task's shell command (CommandInfo.value) is not set"
    else:
        executor = task.executor
        executor_id = executor.executor_id.value
        error = validate_id(executor_id, "Executor ID")
        if error:
            return error
        if executor.HasField("framework_id") and executor.framework_id.value != framework.framework_id:
            return (f"ExecutorInfo has invalid FrameworkID {executor.framework_id.value}; "
                    f"expected {framework.framework_id}")
        if not executor.HasField("command"):
            return f"ExecutorInfo of executor '{executor_id}' has no command"
        known = executors.get(executor_id)
        known_info = known.info if known is not None else new_executors.get(executor_id)
        if known_info is not None and _executor_signature(known_info) != _executor_signature(executor):
            return f"ExecutorInfo is not compatible with the ExecutorInfo of the existing executor '{executor_id}'"
    if task.HasField("kill_policy") and task.kill_policy.grace_period.nanoseconds < 0:
        return "Task's kill policy has a negative grace period"
    if task.HasField("health_check"):
        error = validate_health_check(task.health_check)
        if error:
            return f"Task's health check is invalid: {error}"
    return None


def task_resources(task: pb.TaskInfo, new_executor: bool) -> tuple[Resources, Resources]:
    """The task's and (when it starts one) its executor's resources.

    Raises ResourceError for negative, NaN, non-numeric or ill-formed resources.
    """
    resources = Resources.from_protos(task.resources)
    executor = Resources.EMPTY
    if new_executor and task.HasField("executor"):
        executor = Resources.from_protos(task.executor.resources)
    return resources, executor


def check_task_resources(task: pb.TaskInfo, new_executor: bool) -> tuple[str | None, Resources, Resources]:
    """`task_resources` with its failure as an error text (parses once)."""
    try:
        resources, executor = task_resources(task, new_executor)
    except ResourceError as exc:
        return f"Task uses invalid resources: {exc}", Resources.EMPTY, Resources.EMPTY
    if resources.is_empty() and executor.is_empty():
        return "Task and its executor use no resources", resources, executor
    return None, resources, executor


def validate_task_resources(task: pb.TaskInfo, new_executor: bool) -> str | None:
    return check_task_resources(task, new_executor)[0]


def validate_fit(needed: Resources, available: Resources) -> str | None:
    if available.contains(needed):
        return None
    return f"Task uses more resources ({needed}) than available in the offers ({available})"


def refuse_seconds(filters: pb.Filters | None) -> float:
    """The decline filter of a call, with Mesos' default and bounds."""
    if filters is None:
        return DEFAULT_REFUSE_SECONDS
    seconds = filters.refuse_seconds
    if math.isnan(seconds) or seconds < 0:
        return DEFAULT_REFUSE_SECONDS
    return min(seconds, MAX_REFUSE_SECONDS)


def validate_acknowledge(ack: pb.Call.Acknowledge, slaves: Mapping[str, Slave]) -> str | None:
    if len(ack.uuid) != UUID_BYTES:
        return f"uuid must be {UUID_BYTES} bytes, got {len(ack.uuid)}"
    if not ack.task_id.value:
        return "task_id is required"
    slave = slaves.get(ack.slave_id.value)
    if slave is None:
        return f"slave {ack.slave_id.value or '(none)'} is not registered"
    if not slave.connected:
        return f"slave {ack.slave_id.value} is disconnected"
    return None
