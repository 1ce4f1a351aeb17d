"""What a caller of the master's HTTP API may see and do, by Mesos' ACLs.

The HTTP guard (offerd.common.http_auth) proves who is calling and leaves the
principal in ``flask.g.principal`` (None: nobody was proven). The views ask
here before they act or answer:

* operator calls (teardown, quota, weights, MARK_AGENT_GONE, flags) are
  refused with 403 and the authorizer's text, which names the ACL and the
  principal, before anything changes;
* read views get a copy of the state without the frameworks, tasks and
  executors the principal may not view (``view_frameworks``, ``view_tasks``,
  ``view_executors``: object = the user they run as), cut once per principal
  and snapshot;
* the sandbox proxy asks ``access_sandboxes`` with the user of the executor
  or task whose sandbox a path names.

With no ``--acls`` (``authorizer.configured`` False) every question is
answered yes without looking, and read views serve the shared snapshot as is.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Response

from offerd.common.acls import Authorizer
from offerd.master.http_common import master, principal, text_response
from offerd.master.snapshot import Snapshot

_OPEN = Authorizer()

# What /master/whoami reports, for the web UI to show or hide operator actions.
OPERATOR_ACTIONS = ("teardown_frameworks", "update_quotas", "update_weights", "mark_agents_gone",
                    "access_sandboxes")


def authorizer() -> Authorizer:
    # A view-only stand-in for the master (tests, a standby's page) has none: allow all.
    return getattr(master(), "authorizer", None) or _OPEN


def configured() -> bool:
    return authorizer().configured


def refused(action: str, obj: str | None = None) -> Response | None:
    """A 403 naming the ACL when the caller may not `action` `obj`, else None."""
    authz = authorizer()
    if not authz.configured:
        return None
    reason = authz.check(principal(), action, obj)
    return text_response(reason, 403) if reason is not None else None


class Decisions:
    """The caller's answers, memoized: thousands of tasks run as a handful of users."""

    def __init__(self, authz: Authorizer, who: str | None):
        self._authz = authz
        self._who = who
        self._seen: dict[tuple[str, str | None], bool] = {}

    def __call__(self, action: str, obj: str | None) -> bool:
        key = (action, obj)
        answer = self._seen.get(key)
        if answer is None:
            answer = self._seen[key] = self._authz.allowed(self._who, action, obj)
        return answer


def decisions() -> Decisions:
    return Decisions(authorizer(), principal())


# -- read views ----------------------------------------------------------------------------


def visible(snapshot):
    """The snapshot as the caller may see it: the shared one when no ACLs are set,
    else a filtered copy cut once per principal for as long as the snapshot lives."""
    if not configured():
        return snapshot
    can = decisions()
    return snapshot.derived(("visible", principal()), lambda: Snapshot(filter_state(snapshot.state, can)))


def filter_state(state: dict, can: Callable[[str, str | None], bool]) -> dict:
    """A shallow copy of a /master/state document without what `can` refuses."""
    out = dict(state)
    for group in ("frameworks", "completed_frameworks"):
        out[group] = [kept for kept in (_framework(f, can) for f in state[group]) if kept is not None]
    if "flags" in out and not can("view_flags", None):
        del out["flags"]  # as Mesos: the flags are in /state only for those who may view them
    out["slaves"] = [_slave(s, can) for s in state["slaves"]]
    return out


def _framework(framework: dict, can) -> dict | None:
    user = framework.get("user")
    if not can("view_frameworks", user):
        return None
    out = dict(framework)
    for key in ("tasks", "unreachable_tasks", "completed_tasks"):
        out[key] = [t for t in framework[key] if can("view_tasks", t.get("user") or user)]
    out["executors"] = [e for e in framework["executors"] if can("view_executors", e.get("user") or user)]
    return out


def _slave(slave: dict, can) -> dict:
    reserved = slave.get("reserved_resources") or {}
    hidden = [role for role in reserved if not can("view_roles", role)]
    if not hidden:
        return slave
    out = dict(slave)
    out["reserved_resources"] = {role: r for role, r in reserved.items() if role not in hidden}
    return out


def filter_roles(document: dict) -> dict:
    """/master/roles without the roles the caller may not ``view_roles``."""
    if not configured():
        return document
    can = decisions()
    return {**document, "roles": [r for r in document["roles"] if can("view_roles", r["name"])]}


def filter_quota(document: dict) -> dict:
    """GET /quota: only the roles the caller may ``get_quotas``."""
    if not configured():
        return document
    can = decisions()
    return {**document, "infos": [i for i in document.get("infos", []) if can("get_quotas", i.get("role"))]}


def filter_weights(weights: list[dict]) -> list[dict]:
    """GET /weights: only the roles the caller may ``view_roles``."""
    if not configured():
        return weights
    can = decisions()
    return [w for w in weights if can("view_roles", w.get("role"))]


def filter_allocator(document: dict, state: dict) -> dict:
    """/master/allocator: frameworks by ``view_frameworks``, roles and weights by
    ``view_roles``, quota by ``get_quotas``."""
    if not configured():
        return document
    can = decisions()
    users = {f["id"]: f.get("user") for group in ("frameworks", "completed_frameworks") for f in state[group]}
    out = dict(document)
    if isinstance(document.get("frameworks"), dict):
        # A framework the snapshot does not know yet is hidden until it does.
        out["frameworks"] = {fid: entry for fid, entry in document["frameworks"].items()
                             if fid in users and can("view_frameworks", users[fid])}
    for key in ("roles", "weights"):
        if isinstance(document.get(key), dict):
            out[key] = {role: v for role, v in document[key].items() if can("view_roles", role)}
    if isinstance(document.get("quota"), list):
        out["quota"] = [q for q in document["quota"] if can("get_quotas", q.get("role"))]
    return out


def whoami() -> dict:
    """Who the caller is and which operator actions it may take (for the web UI)."""
    who = principal()
    authz = authorizer()
    flags = getattr(master(), "flags", None)
    # Without a proven principal a write is refused (401) before any ACL is read.
    anonymous_writes_refused = who is None and bool(getattr(flags, "authenticate_http_readwrite", False))
    return {
        "principal": who,
        "authenticated": who is not None,
        "permissions": {action: not anonymous_writes_refused and authz.allowed(who, action, None)
                        for action in OPERATOR_ACTIONS},
    }


# -- operator calls ------------------------------------------------------------------------


def teardown(framework_id: str) -> Response:
    """Tear a framework down if the caller may (``teardown_frameworks``, object =
    the framework's principal). Decided and done in one turn of the actor, so the
    framework checked is the framework removed."""
    serving = master()
    authz = authorizer()
    if not authz.configured:
        error = serving.teardown(framework_id)
        return text_response(error, 400) if error is not None else Response(b"", status=200)
    who = principal()

    def decide_and_do() -> tuple[int, str | None]:
        framework = serving.state.frameworks.get(framework_id)
        if framework is not None:
            reason = authz.check(who, "teardown_frameworks", framework.info.principal or None)
            if reason is not None:
                return 403, reason
        error = serving.teardown(framework_id)  # on the actor thread: runs inline
        return (400, error) if error is not None else (200, None)

    status, message = serving.actor.call(decide_and_do)
    return text_response(message, status) if message is not None else Response(b"", status=200)


def weights_refused(body: Any) -> Response | None:
    """PUT /weights is all or nothing: one role the caller may not ``update_weights``
    refuses the whole request before anything changes."""
    if not configured() or not isinstance(body, list):
        return None  # a malformed body is refused by the update itself, changing nothing
    for entry in body:
        if isinstance(entry, dict) and "role" in entry:
            if not isinstance(entry["role"], str):
                return text_response(f"Failed to parse update weights request: role {entry['role']!r} is not a string", 400)
            refusal = refused("update_weights", entry["role"])
            if refusal is not None:
                return refusal
    return None


# -- sandboxes and slave documents proxied through the master -----------------------------


class Owners:
    """Who runs what, from the master's state: the users ACLs are asked about."""

    def __init__(self, state: dict):
        self.frameworks: dict[str, dict] = {}
        self.executors: dict[tuple[str, str], str | None] = {}
        self.tasks: dict[tuple[str, str], str | None] = {}
        for group in ("frameworks", "completed_frameworks"):
            for framework in state[group]:
                fid = framework["id"]
                self.frameworks.setdefault(fid, framework)
                for executor in framework.get("executors") or []:
                    self.executors[(fid, executor["executor_id"])] = executor.get("user") or framework.get("user")
                for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                    for task in framework.get(key) or []:
                        self.tasks[(fid, task["id"])] = task.get("user") or framework.get("user")

    def framework_user(self, framework_id: str) -> str | None:
        framework = self.frameworks.get(framework_id)
        return framework.get("user") if framework is not None else None

    def executor_user(self, framework_id: str, executor_id: str) -> str | None:
        """The user an executor runs as; for a command executor (the master knows
        only its task, whose id it shares) the task's. None: not known."""
        key = (framework_id, executor_id)
        if key in self.executors:
            return self.executors[key]
        return self.tasks.get(key)

    def sandbox_users(self, box: dict) -> set[str] | None:
        """Every user a sandbox belongs to (its executor's and its tasks'); None when
        the master cannot tell whose it is."""
        fid = box["framework_id"]
        if fid not in self.frameworks:
            return None
        users = set()
        executor_user = self.executors.get((fid, box["executor_id"]))
        if executor_user is not None:
            users.add(executor_user)
        for task_id in box.get("tasks") or []:
            if (fid, task_id) in self.tasks:
                users.add(self.tasks[(fid, task_id)])
        if not users and (fid, box["executor_id"]) in self.tasks:  # a command executor
            users.add(self.tasks[(fid, box["executor_id"])])
        return users or None


def owners(snapshot) -> Owners:
    return snapshot.derived(("owners",), lambda: Owners(snapshot.state))


def sandbox_refusal(box: dict, snapshot, path: str) -> str | None:
    """Why the caller may not read `path` inside `box` (``access_sandboxes``, object
    = the user(s) the sandbox belongs to), or None. With ACLs set, a sandbox the
    master cannot attribute is refused."""
    if not configured():
        return None
    users = owners(snapshot).sandbox_users(box)
    if users is None:
        return (f"Not authorized by ACL 'access_sandboxes': cannot tell whose sandbox {path} is "
                f"(framework {box['framework_id']}, executor {box['executor_id']} unknown to this master), "
                "so access is refused")
    authz, who = authorizer(), principal()
    for user in sorted(users):
        reason = authz.check(who, "access_sandboxes", user)
        if reason is not None:
            return reason
    return None


def filter_slave_state(document: dict, snapshot) -> dict:
    """A slave's /state, proxied, without what the caller may not view by the
    master's ACLs (the slave may apply its own too). Entries of a shape no slave
    sends (not objects, ids or users that are not strings) are left out."""
    if not configured():
        return document
    can = decisions()
    who_runs = owners(snapshot)
    out = dict(document)
    if "flags" in out and not can("view_flags", None):
        del out["flags"]
    for group in ("frameworks", "completed_frameworks"):
        kept = []
        for framework in _objects(document.get(group)):
            fid = _string(framework.get("id"))
            user = _string(framework.get("user")) or who_runs.framework_user(fid)
            if not can("view_frameworks", user):
                continue
            framework = dict(framework)
            for kind in ("executors", "completed_executors"):
                framework[kind] = [_slave_executor(e, fid, user, who_runs, can)
                                   for e in _objects(framework.get(kind))
                                   if can("view_executors", _string(e.get("user"))
                                          or who_runs.executor_user(fid, _string(e.get("id"))) or user)]
            kept.append(framework)
        out[group] = kept
    return out


def _slave_executor(executor: dict, fid: str | None, fallback: str | None, who_runs: Owners, can) -> dict:
    out = dict(executor)
    for key in ("tasks", "queued_tasks", "completed_tasks"):
        out[key] = [t for t in _objects(executor.get(key))
                    if can("view_tasks", _string(t.get("user")) or who_runs.tasks.get((fid, _string(t.get("id"))))
                           or fallback)]
    return out


def _objects(value) -> list[dict]:
    """The JSON objects of a list in a slave's document (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _string(value) -> str | None:
    return value if isinstance(value, str) else None


def filter_statistics(entries: list, snapshot) -> list:
    """A slave's /monitor/statistics, proxied: only executors the caller may view;
    an executor the master cannot attribute is left out."""
    if not configured():
        return entries
    can = decisions()
    who_runs = owners(snapshot)
    kept = []
    for entry in entries:
        fid, eid = _string(entry.get("framework_id")), _string(entry.get("executor_id"))
        user = who_runs.executor_user(fid, eid) or who_runs.framework_user(fid)
        if user is not None and can("view_executors", user):
            kept.append(entry)
    return kept
