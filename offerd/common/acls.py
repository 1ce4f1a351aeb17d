"""Authorization: Mesos' ACLs and its local authorizer, as one function.

Every decision is ``(principal, action, object) -> allowed?``. The rules come
from ``--acls`` (a JSON document or a file holding it), in Mesos' format::

    {
      "permissive": false,
      "register_frameworks": [
        {"principals": {"values": ["marathon"]}, "roles": {"values": ["web", "eng/*"]}}
      ],
      "run_tasks": [
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
      ]
    }

A rule's subject and object are each ``{"values": [...]}``, ``{"type": "ANY"}``
or ``{"type": "NONE"}``. Rules are read in order and the first one whose subject
and object both *match* decides: it allows unless either side is ``NONE`` (a
``NONE`` side matches everything and allows nothing). When no rule matches,
``permissive`` decides (true by default, as in Mesos). A request without a
principal (authentication off) is "any principal": only ``ANY`` and ``NONE``
subjects match it. A role value ``eng/*`` matches every role below ``eng``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

# Action -> the name of its object field, as in Mesos' acls.proto.
ACTIONS: dict[str, str] = {
    "register_frameworks": "roles",
    "run_tasks": "users",
    "teardown_frameworks": "framework_principals",
    "reserve_resources": "roles",
    "unreserve_resources": "reserver_principals",
    "create_volumes": "roles",
    "destroy_volumes": "creator_principals",
    "resize_volume": "roles",
    "get_quotas": "roles",
    "update_quotas": "roles",
    "view_roles": "roles",
    "update_weights": "roles",
    "get_endpoints": "paths",
    "view_frameworks": "users",
    "view_tasks": "users",
    "view_executors": "users",
    "access_sandboxes": "users",
    "access_mesos_logs": "logs",
    "register_agents": "agents",
    "update_maintenance_schedules": "machines",
    "get_maintenance_schedules": "machines",
    "start_maintenances": "machines",
    "stop_maintenances": "machines",
    "get_maintenance_statuses": "machines",
    "mark_agents_gone": "agents",
    "drain_agents": "agents",
    "deactivate_agents": "agents",
    "reactivate_agents": "agents",
    "view_flags": "flags",
    "set_log_level": "level",
    # The slave's v1 container calls (an executor's container; object: its user).
    "view_containers": "users",
    "wait_standalone_containers": "users",
    "kill_standalone_containers": "users",
    # Sessions in an executor's container (object: the user the session runs as).
    "launch_nested_container_sessions": "users",
    "attach_containers_input": "users",
    "attach_containers_output": "users",
    "wait_nested_containers": "users",
    "kill_nested_containers": "users",
}

# Older Mesos names that mean the same action.
ALIASES = {"set_quotas": "update_quotas", "remove_quotas": "update_quotas", "shutdown_frameworks": "teardown_frameworks",
           # Mesos' authorization action names (UPDATE_MAINTENANCE_SCHEDULE, ...), singular.
           "update_maintenance_schedule": "update_maintenance_schedules",
           "get_maintenance_schedule": "get_maintenance_schedules",
           "start_maintenance": "start_maintenances", "stop_maintenance": "stop_maintenances",
           "get_maintenance_status": "get_maintenance_statuses"}

ANY = "ANY"
NONE = "NONE"
SOME = "SOME"


class ACLError(ValueError):
    """An ``--acls`` value that cannot be used; the message names the rule."""


@dataclass(frozen=True)
class Entity:
    kind: str  # ANY, NONE or SOME
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.kind if self.kind != SOME else "[" + ", ".join(self.values) + "]"


@dataclass(frozen=True)
class Rule:
    action: str
    index: int
    principals: Entity
    objects: Entity


def _entity(raw, where: str) -> Entity:
    if raw is None:
        return Entity(ANY)
    if not isinstance(raw, dict):
        raise ACLError(f"{where}: expected {{\"values\": [...]}} or {{\"type\": \"ANY\"|\"NONE\"}}")
    if "values" in raw:
        values = raw["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ACLError(f"{where}: 'values' must be a list of strings")
        return Entity(SOME, tuple(values))
    kind = str(raw.get("type", ANY)).upper()
    if kind not in (ANY, NONE):
        raise ACLError(f"{where}: type must be ANY or NONE, not {raw.get('type')!r}")
    return Entity(kind)


def _value_in(value: str, values: tuple[str, ...]) -> bool:
    for pattern in values:
        if pattern == value:
            return True
        if pattern.endswith("/*") and value.startswith(pattern[:-1]):
            return True
    return False


def _matches(request: str | None, acl: Entity) -> bool:
    """Whether a rule's side applies to the request (Mesos' `matches`)."""
    if acl.kind in (ANY, NONE):
        return True
    return request is not None and _value_in(request, acl.values)


def _allows(request: str | None, acl: Entity) -> bool:
    if acl.kind == NONE:
        return False
    if acl.kind == ANY:
        return True
    return request is not None and _value_in(request, acl.values)


class Authorizer:
    """Answers every authorization question of a daemon from one ACL document."""

    def __init__(self, rules: dict[str, list[Rule]] | None = None, permissive: bool = True,
                 configured: bool = False):
        self.rules = rules or {}
        self.permissive = permissive
        # False when no --acls was given: everything is allowed and nothing is said.
        self.configured = configured

    @classmethod
    def from_flag(cls, value: str | None) -> "Authorizer":
        """From ``--acls``: JSON text, a path, ``file:///path``, or None (allow all)."""
        if value is None or not str(value).strip():
            return cls()
        text = str(value).strip()
        if not text.startswith("{"):
            path = text[len("file://"):] if text.startswith("file://") else text
            if not os.path.isfile(path):
                raise ACLError(f"--acls: {path} is neither JSON nor a readable file")
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError) as exc:  # e.g. a file only root may read
                raise ACLError(f"--acls: cannot read {path}: {exc}") from None
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ACLError(f"--acls: invalid JSON: {exc}") from None
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document) -> "Authorizer":
        if not isinstance(document, dict):
            raise ACLError("--acls: expected a JSON object")
        permissive = document.get("permissive", True)
        if not isinstance(permissive, bool):
            raise ACLError("--acls: 'permissive' must be true or false")
        rules: dict[str, list[Rule]] = {}
        for key, entries in document.items():
            if key == "permissive":
                continue
            action = ALIASES.get(key, key)
            if action not in ACTIONS:
                raise ACLError(f"--acls: unknown action {key!r}; known actions: {', '.join(sorted(ACTIONS))}")
            if not isinstance(entries, list):
                raise ACLError(f"--acls: {key} must be a list of rules")
            object_field = ACTIONS[action]
            for index, entry in enumerate(entries):
                where = f"--acls: {key}[{index}]"
                if not isinstance(entry, dict):
                    raise ACLError(f"{where}: expected an object")
                extra = set(entry) - {"principals", object_field}
                if extra:
                    raise ACLError(f"{where}: unknown field(s) {', '.join(sorted(extra))}; "
                                   f"a {key} rule has 'principals' and '{object_field}'")
                rules.setdefault(action, []).append(Rule(
                    action, index, _entity(entry.get("principals"), f"{where}.principals"),
                    _entity(entry.get(object_field), f"{where}.{object_field}")))
        return cls(rules, permissive, configured=True)

    def check(self, principal: str | None, action: str, obj: str | None = None) -> str | None:
        """None when `principal` may do `action` on `obj`; otherwise why not.

        `obj` None means "any object" (e.g. viewing all flags); such a request is
        matched only by rules whose object side is ANY or NONE.
        """
        action = ALIASES.get(action, action)
        if action not in ACTIONS:
            raise KeyError(f"unknown ACL action {action!r}")
        for rule in self.rules.get(action, ()):
            if _matches(principal, rule.principals) and _matches(obj, rule.objects):
                if _allows(principal, rule.principals) and _allows(obj, rule.objects):
                    return None
                return self._refusal(principal, action, obj, f"rule {action}[{rule.index}]")
        if self.permissive:
            return None
        return self._refusal(principal, action, obj, "no rule matched and 'permissive' is false")

    def allowed(self, principal: str | None, action: str, obj: str | None = None) -> bool:
        return self.check(principal, action, obj) is None

    @staticmethod
    def _refusal(principal: str | None, action: str, obj: str | None, because: str) -> str:
        who = f"principal '{principal}'" if principal is not None else "an unauthenticated request"
        what = f" {ACTIONS[action]} '{obj}'" if obj is not None else ""
        return f"Not authorized by ACL '{action}': {who} may not {action.replace('_', ' ')}{what} ({because})"
