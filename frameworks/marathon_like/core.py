"""The framework's state and the changes the API asks for.

One lock guards everything: API threads, the scheduler's callback thread and
the tick thread all take it. The desired state (apps) changes at once when the
API accepts a change; a :class:`Deployment` then tracks the convergence that
the engine (engine.py) drives on offers, status updates and ticks.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from dataclasses import dataclass, field

import orjson

from frameworks.marathon_like import deployments as plans
from frameworks.marathon_like import ids, validation
from frameworks.marathon_like.engine import Engine
from frameworks.marathon_like.errors import (AppLocked, BadRequest, Conflict, MarathonError, NotFound, NotValid,
                                             app_not_found, task_not_found)
from frameworks.marathon_like.events import EventBus
from frameworks.marathon_like.launch_queue import QueueEntry
from frameworks.marathon_like.model import Instance, app_json, with_defaults
from frameworks.marathon_like.storage import InMemoryStorage, Storage

log = logging.getLogger(__name__)


_NO_TASKS = {"tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0, "tasksUnhealthy": 0}


def encode(value) -> bytes:
    """Compact JSON bytes: orjson, or the standard library for what orjson refuses (huge ints)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class Config:
    master: str = ""
    hostname: str = "127.0.0.1"
    http_port: int = 8080
    framework_name: str = "marathon"
    mesos_role: str = "*"
    mesos_user: str = ""           # FrameworkInfo.user; empty: the user running this process
    decline_offer_duration: float = 120.0
    min_revive_offers_interval: float = 2.0
    max_instances_per_offer: int = 100
    reconciliation_interval: float = 600.0
    # While instances are unreachable, how often to ask the master about just those.
    unreachable_reconciliation_interval: float = 5.0
    # A kill still unanswered after this long is sent again, as Marathon's kill service does:
    # one sent while the driver was not connected (just elected, the master failing over)
    # would otherwise leave the instance "killing" for ever.
    kill_retry_timeout: float = 10.0
    failover_timeout: float = 7 * 86400.0   # Marathon's: a restart adopts the running tasks
    local_port_min: int = 10000
    local_port_max: int = 20000
    max_running_deployments: int = 100
    # A new instance of an app without health or readiness checks counts toward its deployment
    # step once it has been running this long: one that dies at once (a port in use, a bad
    # command) keeps the deployment open instead of finishing it while it shows TASK_RUNNING.
    deployment_settle_seconds: float = 2.0
    # /v2/events: streams open at once (each holds an HTTP worker thread; see
    # service.http_threads), and how far one may fall behind before it is dropped.
    max_event_streams: int = 8
    event_stream_max_outstanding_messages: int = 1024
    zk: str = ""
    zk_session_timeout: float = 10.0
    work_dir: str = ""             # the local store; empty keeps state in memory only
    # Security (see api/auth.py): who may call the API, who may change things, and how
    # this framework proves itself to the master.
    http_credentials: dict[str, str] | None = field(default=None, repr=False)  # principal -> secret
    http_operator_principals: frozenset[str] | None = None   # None: every authenticated principal
    mesos_authentication_principal: str = ""
    mesos_authentication_secret: str = field(default="", repr=False)
    master_public_key: str = ""    # z85 key or a path to NAME.key
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_ca_file: str = ""          # verifies an https master and an https leader (proxying)
    insecure: bool = False


class NullDriver:
    """What the core asks of the cluster; the SDK adapter implements it for real."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


class Core(Engine):
    def __init__(self, config: Config | None = None, storage: Storage | None = None, events: EventBus | None = None):
        self.config = config or Config()
        self.storage = storage or InMemoryStorage()
        self.events = events or EventBus()
        self.lock = threading.RLock()
        self.fatal = threading.Event()   # set when this process must end (the service exits)
        self.fatal_reason = ""
        # HA: whether this instance leads (always, without --zk), where the leader's API is,
        # and hooks the service installs ("abdicate").
        self.leading = True
        self.leader_address = lambda: f"{self.config.hostname}:{self.config.http_port}"
        self.extras: dict = {}
        self._reset()

    def _reset(self) -> None:
        """Empty in-memory state (then `_restore` fills it from storage)."""
        self.clock = ids.VersionClock()
        self.driver = NullDriver()
        self.apps: dict[str, dict] = {}
        self.instances: dict[str, Instance] = {}
        self.by_app: dict[str, dict[str, Instance]] = {}
        self.deployments: dict[str, plans.Deployment] = {}
        self.queue: dict[str, QueueEntry] = {}
        self.restarts: dict[str, plans.RollingRestart] = {}
        self.last_failure: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}      # group id -> stored settings (groups.py)
        self.framework_id: str | None = None
        self.connected = False
        self.counters: dict[str, int] = {}
        self._encoded: dict[str, tuple] = {}   # app id -> (cache key, AppInfo JSON bytes)
        self._service_ports: set[int] = set()
        Engine.__init__(self)
        self._restore()

    def reload(self) -> None:
        """Forget what is in memory and take up the stored state (a newly elected leader)."""
        with self.lock:
            self._reset()

    def _restore(self) -> None:
        """Take up the stored state: apps, their instances (adopted, not relaunched) and
        running deployments. Reconciliation at registration then corrects task states."""
        for app in self.storage.apps():
            self.apps[app["id"]] = app
            self._service_ports.update(p["port"] for p in app["portDefinitions"] if p.get("port"))
        for record in self.storage.instances():
            inst = Instance.from_record(record)
            self.instances[inst.task_id] = inst
            self.by_app.setdefault(inst.app_id, {})[inst.task_id] = inst
        for record in self.storage.deployments():
            deployment = plans.Deployment.from_record(record)
            self.deployments[deployment.id] = deployment
        self.last_failure.update({k: v for k, v in self.storage.failures().items() if k in self.apps})
        self.groups.update({g["id"]: g for g in self.storage.groups()})
        self.framework_id = self.storage.framework_id()
        versions = [ids.parse_timestamp(a["version"]) for a in self.apps.values()]
        versions += [ids.parse_timestamp(d.version) for d in self.deployments.values()]
        self.clock.advance_to(max([v for v in versions if v], default=0.0))
        if self.apps or self.instances:
            log.info("restored %d apps, %d instances and %d deployments from storage",
                     len(self.apps), len(self.instances), len(self.deployments))

    # -- reading ----------------------------------------------------------------

    def app(self, app_id: str) -> dict:
        app = self.apps.get(ids.canonical(app_id))
        if app is None:
            raise app_not_found(ids.canonical(app_id))
        return app

    def app_deployments(self, app_id: str) -> list[str]:
        return [d.id for d in self.deployments.values() if app_id in d.affected]

    def _counts(self, app: dict, tasks: list[Instance]) -> dict:
        return {"tasksStaged": sum(1 for i in tasks if i.state in ("TASK_STAGING", "TASK_STARTING")),
                "tasksRunning": sum(1 for i in tasks if i.running),
                "tasksHealthy": sum(1 for i in tasks if i.running and i.healthy(app)),
                "tasksUnhealthy": sum(1 for i in tasks if i.running and i.healthy(app) is False and i.results())}

    def app_info_encoded(self, app: dict) -> bytes:
        """The AppInfo of GET /v2/apps without extra embeds, as JSON bytes.

        Encoding 1,000 full app documents per request is what made the list slow; an
        app's bytes change only with its version, its counts or its deployments, which
        are the cache key (counting is cheap, building and encoding are not)."""
        known = self.by_app.get(app["id"])
        if known:
            counts = self._counts(app, [i for i in known.values() if i.state != "TASK_KILLED"])
        else:
            counts = _NO_TASKS
        deployments = self.app_deployments(app["id"]) if self.deployments else []
        key = (id(app), app["version"], tuple(counts.values()), tuple(deployments))
        cached = self._encoded.get(app["id"])
        if cached is not None and cached[0] == key:
            return cached[1]
        out = app_json(app)
        out.update(counts)
        out["deployments"] = [{"id": d} for d in deployments]
        data = encode(out)
        self._encoded[app["id"]] = (key, data)
        return data

    def app_info(self, app: dict, embed: set[str]) -> dict:
        out = app_json(app)
        tasks = [i for i in self.by_app.get(app["id"], {}).values() if i.state not in ("TASK_KILLED",)]
        out.update(self._counts(app, tasks))
        out["deployments"] = [{"id": d} for d in self.app_deployments(app["id"])]
        if "tasks" in embed:
            out["tasks"] = [i.to_json(app) for i in tasks]
        if "lastTaskFailure" in embed and app["id"] in self.last_failure:
            out["lastTaskFailure"] = self.last_failure[app["id"]]
        if "taskStats" in embed:
            out["taskStats"] = {}
        if "readiness" in embed:
            out["readinessCheckResults"] = [i.readiness for i in tasks if i.readiness and not i.readiness_ok]
        return out

    def tasks_of(self, app_id: str) -> list[Instance]:
        return [i for i in self.by_app.get(app_id, {}).values() if i.state not in ("TASK_KILLED",)]

    def find_task(self, task_id: str) -> Instance:
        inst = self.instances.get(task_id)
        if inst is None:
            raise task_not_found(task_id)
        return inst

    # -- changing apps ------------------------------------------------------------

    def _new_app(self, raw: dict, base: dict | None, path_id: str | None = None) -> dict:
        """A full, validated app from a body (merged over `base` for partial updates)."""
        merged = {**(copy.deepcopy(base) if base else {}), **raw}
        if path_id is not None:
            merged["id"] = path_id
        if "ports" in raw and "portDefinitions" in raw and validation.same_ports(raw):
            merged.pop("ports")   # a GET document sent back: the definitions carry names and labels
        elif "ports" in raw:
            merged.pop("portDefinitions", None)
        if "id" not in merged:
            raise NotValid([{"path": "/id", "errors": ["error.path.missing"]}])
        raw_id = merged["id"]
        details = []
        if ids.path_errors(raw_id):
            details.append({"path": "/id", "errors": ids.path_errors(raw_id)})
        merged["id"] = ids.canonical(raw_id)
        app = with_defaults({k: v for k, v in merged.items() if k != "version"})
        details += [d for d in validation.validate_app(app, raw, self.config.mesos_role) if d["path"] != "/id"]
        if details:
            raise NotValid(details)
        app["dependencies"] = [ids.canonical(d, ids.parent_of(app["id"])) for d in app["dependencies"]]
        return app

    def _assign_service_ports(self, app: dict, old: dict | None) -> None:
        old_ports = [p["port"] for p in (old or {}).get("portDefinitions", [])]
        for index, definition in enumerate(app["portDefinitions"]):
            if definition.get("port", 0):
                continue
            if index < len(old_ports) and old_ports[index]:
                definition["port"] = old_ports[index]
                continue
            port = self.config.local_port_min
            while port in self._service_ports and port < self.config.local_port_max:
                port += 1
            definition["port"] = port
            self._service_ports.add(port)

    def _stamp(self, app: dict, old: dict | None, version: str) -> None:
        app["version"] = version
        if old and not plans.config_changed(old, app):
            info = dict(old.get("versionInfo") or {})
            info["lastScalingAt"] = version
        else:
            info = {"lastScalingAt": version, "lastConfigChangeAt": version}
        app["versionInfo"] = info

    def _check_locks(self, app_ids, force: bool) -> None:
        blocking = {d.id for d in self.deployments.values() for a in app_ids if a in d.affected}
        if blocking and not force:
            raise AppLocked(blocking)
        for deployment_id in blocking:
            self._cancel(self.deployments[deployment_id], "cancelled by a forced change")
        if not blocking and len(self.deployments) >= self.config.max_running_deployments:
            raise MarathonError(f"Max number ({self.config.max_running_deployments}) of running deployments "
                                "is achieved. Wait for existing deployments to complete or cancel them.", 403)

    def _deploy(self, original: dict, target: dict, version: str, restart=frozenset()) -> plans.Deployment:
        """Commit the target apps and start tracking their deployment."""
        for app_id, app in target.items():
            if app is None:
                self.apps.pop(app_id, None)
                self._encoded.pop(app_id, None)
                self.storage.delete_app(app_id)
                self.events.publish("app_terminated_event", appId=app_id)
            else:
                if original.get(app_id) and app["versionInfo"]["lastConfigChangeAt"] != \
                        original[app_id]["versionInfo"]["lastConfigChangeAt"]:
                    self.queue_entry(app_id).backoff.reset()  # a new version launches at once
                self.apps[app_id] = app
                self.storage.save_app(app)
        deployment = plans.build_plan(original, target, set(restart), version)
        self.deployments[deployment.id] = deployment
        self.storage.save_deployment(deployment.to_record())
        self.bump("deployments_started")
        self.converge_all()
        self.progress_deployments()
        return deployment

    def create_app(self, raw: dict, force: bool = False) -> tuple[dict, plans.Deployment]:
        with self.lock:
            if validation.validate_version_only(raw):
                raise NotValid(validation.validate_version_only(raw))
            app = self._new_app(raw, None)
            if app["id"] in self.apps:
                raise Conflict(f"An app with id [{app['id']}] already exists.")
            if app["id"] in self._group_ids():
                raise Conflict(f"A group with id [{app['id']}] already exists.")
            self._check_locks([app["id"]], force)
            self._assign_service_ports(app, None)
            version = self.clock.next()
            self._stamp(app, None, version)
            deployment = self._deploy({app["id"]: None}, {app["id"]: app}, version)
            return app, deployment

    def update_app(self, app_id: str, raw: dict, partial: bool = True, force: bool = False,
                   create: bool = True) -> tuple[plans.Deployment, bool]:
        """PUT/PATCH one app. Returns the deployment and whether it was created."""
        with self.lock:
            app_id = ids.canonical(app_id)
            if ids.path_errors(app_id):
                raise NotValid([{"path": "/id", "errors": ids.path_errors(app_id)}])
            old = self.apps.get(app_id)
            if old is None and not create:
                raise app_not_found(app_id)
            bad = validation.validate_version_only(raw)
            if bad:
                raise NotValid(bad)
            if "version" in raw:
                return self.rollback_app(app_id, raw["version"], force), False
            app = self._new_app(raw, old if partial else None, app_id)
            self._check_locks([app_id], force)
            self._assign_service_ports(app, old)
            version = self.clock.next()
            self._stamp(app, old, version)
            return self._deploy({app_id: old}, {app_id: app}, version), old is None

    def rollback_app(self, app_id: str, version: str, force: bool) -> plans.Deployment:
        old = self.app(app_id)
        stored = self.storage.app_version(app_id, version)
        if stored is None:
            raise NotFound(f"Version '{version}' of app '{app_id}' does not exist")
        self._check_locks([app_id], force)
        new_version = self.clock.next()
        app = copy.deepcopy(stored)
        self._stamp(app, old, new_version)
        return self._deploy({app_id: old}, {app_id: app}, new_version)

    def delete_app(self, app_id: str, force: bool = True) -> plans.Deployment:
        with self.lock:
            old = self.app(app_id)
            self._check_locks([old["id"]], force)
            return self._deploy({old["id"]: old}, {old["id"]: None}, self.clock.next())

    def restart_app(self, app_id: str, force: bool = False) -> plans.Deployment:
        with self.lock:
            old = self.app(app_id)
            self._check_locks([old["id"]], force)
            version = self.clock.next()
            app = copy.deepcopy(old)
            app["version"] = version
            app["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": version}
            return self._deploy({app["id"]: old}, {app["id"]: app}, version, restart={app["id"]})

    def scale_app(self, app_id: str, delta: int, force: bool) -> plans.Deployment:
        old = self.app(app_id)
        app = copy.deepcopy(old)
        app["instances"] = max(0, old["instances"] + delta)
        self._check_locks([app_id], force)
        version = self.clock.next()
        self._stamp(app, old, version)
        return self._deploy({app_id: old}, {app_id: app}, version)

    def kill_tasks(self, tasks: list[Instance], scale: bool, wipe: bool, force: bool):
        """Kill tasks; with `scale` also lower their apps' instances (a deployment)."""
        with self.lock:
            if scale and wipe:
                raise BadRequest("You cannot use scale and wipe at the same time.")
            if not scale:
                for inst in tasks:
                    self.kill(inst, "killed by request")
                self.converge_all()
                return [i.to_json() for i in tasks]
            deployment = None
            by_app: dict[str, list[Instance]] = {}
            for inst in tasks:
                by_app.setdefault(inst.app_id, []).append(inst)
            for app_id, victims in by_app.items():
                for inst in victims:
                    inst.sentenced = True
                deployment = self.scale_app(app_id, -len([i for i in victims if i.active]), force)
            if deployment is None:
                deployment = plans.build_plan({}, {}, version=self.clock.next())
            return deployment

    # -- deployments ----------------------------------------------------------------

    def _cancel(self, deployment: plans.Deployment, reason: str) -> None:
        self.deployments.pop(deployment.id, None)
        self.storage.delete_deployment(deployment.id)
        for app_id in deployment.affected:
            self.restarts.pop(app_id, None)
        self.events.publish("deployment_failed", id=deployment.id, reason=reason,
                            plan=deployment.plan_json(self.group_json_of))

    def cancel_deployment(self, deployment_id: str, force: bool):
        with self.lock:
            deployment = self.deployments.get(deployment_id)
            if deployment is None:
                raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
            self._cancel(deployment, "cancelled")
            if force:
                self.converge_all()
                return None
            # Roll back: the apps as they were, deployed by force.
            original = {a: self.apps.get(a) for a in deployment.affected}
            target = {}
            version = self.clock.next()
            for app_id in deployment.affected:
                before = deployment.original.get(app_id)
                if before is None:
                    target[app_id] = None
                else:
                    app = copy.deepcopy(before)
                    app["version"] = version
                    target[app_id] = app
            return self._deploy(original, target, version)

    # -- queue --------------------------------------------------------------------------

    def queue_entry(self, app_id: str) -> QueueEntry:
        entry = self.queue.get(app_id)
        if entry is None:
            entry = self.queue[app_id] = QueueEntry(app_id, since=ids.now())
        return entry

    def reset_delay(self, app_id: str) -> None:
        with self.lock:
            app_id = ids.canonical(app_id)
            entry = self.queue.get(app_id)
            if app_id not in self.apps or entry is None or (entry.count <= 0 and entry.backoff.time_left(ids.now()) <= 0):
                raise NotFound(f"Application {app_id} not found in tasks queue.")
            entry.backoff.reset()
            self.revive_soon()

    # -- groups (derived from app ids) ------------------------------------------------

    def _group_ids(self) -> set[str]:
        out = {g for g in self.groups if g != "/"}
        for app_id in self.apps:
            parent = ids.parent_of(app_id)
            while parent != "/":
                out.add(parent)
                parent = ids.parent_of(parent)
        return out

    def group_json_of(self, apps: dict, group_id: str = "/", embed_apps=True, groups: dict | None = None) -> dict:
        """The group tree: groups are the parents of app ids plus those with stored settings
        (empty groups, dependencies) in `groups` (default: this core's)."""
        apps = {k: v for k, v in apps.items() if v}
        groups = self.groups if groups is None else groups
        prefix = group_id.rstrip("/") + "/"
        children = {prefix + a[len(prefix):].split("/")[0] for a in apps
                    if a.startswith(prefix) and "/" in a[len(prefix):]}
        children |= {prefix + g[len(prefix):].split("/")[0] for g in groups if g.startswith(prefix) and g != group_id}
        direct = [apps[a] for a in sorted(apps) if ids.parent_of(a) == group_id]
        meta = groups.get(group_id) or {}
        versions = [a["version"] for a in apps.values() if a["id"].startswith(prefix)]
        versions += [g["version"] for k, g in groups.items() if (k == group_id or k.startswith(prefix)) and g.get("version")]
        return {"id": group_id, "apps": [app_json(a) for a in direct] if embed_apps else [],
                "groups": [self.group_json_of(apps, c, embed_apps, groups) for c in sorted(children)],
                "pods": [], "dependencies": list(meta.get("dependencies") or []),
                "version": max(versions, default=ids.timestamp(0))}

    def bump(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by
