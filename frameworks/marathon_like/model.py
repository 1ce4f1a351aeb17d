"""Apps, instances and their JSON shapes.

An app is kept as a plain dict in Marathon's JSON shape with every default
filled in, so the API can return it as is; an :class:`Instance` is one task.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from frameworks.marathon_like import ids

APP_DEFAULTS = {
    "cmd": None, "args": None, "user": None, "env": {}, "instances": 1, "cpus": 1.0, "mem": 128.0,
    "disk": 0.0, "gpus": 0, "executor": "", "constraints": [], "uris": [], "fetch": [], "storeUrls": [],
    "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300, "container": None,
    "healthChecks": [], "readinessChecks": [], "dependencies": [],
    "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
    "labels": {}, "acceptedResourceRoles": None, "ipAddress": None, "residency": None, "secrets": {},
    "taskKillGracePeriodSeconds": None, "requirePorts": False, "killSelection": "YOUNGEST_FIRST",
    "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
    "networks": [{"mode": "host"}],
}
HEALTH_DEFAULTS = {
    "protocol": "HTTP", "gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20,
    "maxConsecutiveFailures": 3, "delaySeconds": 15, "ignoreHttp1xx": False,
}
READINESS_DEFAULTS = {
    "name": "readinessCheck", "protocol": "HTTP", "path": "/", "portName": "http-api", "intervalSeconds": 30,
    "timeoutSeconds": 10, "httpStatusCodesForReady": [200], "preserveLastResponse": False,
}
READ_ONLY = ("version", "versionInfo", "tasks", "tasksRunning", "tasksStaged", "tasksHealthy",
             "tasksUnhealthy", "deployments", "lastTaskFailure", "taskStats", "readinessCheckResults")
# Fields whose change is only a scale (lastScalingAt), not a config change.
SCALE_FIELDS = {"instances"}


def with_defaults(app: dict) -> dict:
    """A full app definition from a validated (possibly sparse) one."""
    out = {"id": app.get("id"), **copy.deepcopy(APP_DEFAULTS)}
    for key, value in app.items():
        if key in READ_ONLY and key != "version":
            continue
        out[key] = copy.deepcopy(value)
    for key in ("env", "labels", "secrets"):
        if out.get(key) is None:
            out[key] = {}
    for key in ("constraints", "uris", "fetch", "storeUrls", "healthChecks", "dependencies"):
        if out.get(key) is None:
            out[key] = []
    if isinstance(out.get("unreachableStrategy"), dict):
        out["unreachableStrategy"] = {**APP_DEFAULTS["unreachableStrategy"], **out["unreachableStrategy"]}
    elif out.get("unreachableStrategy") is None:
        out["unreachableStrategy"] = dict(APP_DEFAULTS["unreachableStrategy"])
    strategy = {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    strategy.update(out.get("upgradeStrategy") or {})
    out["upgradeStrategy"] = strategy
    if "ports" in out:
        # The deprecated `ports` list becomes portDefinitions, as Marathon does.
        out["portDefinitions"] = [{"port": p, "protocol": "tcp", "labels": {}} for p in out.pop("ports")]
    if out.get("portDefinitions") is None:
        out["portDefinitions"] = [{"port": 0, "protocol": "tcp", "name": "default", "labels": {}}]
    out["portDefinitions"] = [{"protocol": "tcp", "labels": {}, **p} for p in out["portDefinitions"]]
    checks = []
    for check in out["healthChecks"]:
        full = {**HEALTH_DEFAULTS, **check}
        if full["protocol"] in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
            full.setdefault("path", "/")
        if "port" not in full and full["protocol"] != "COMMAND":
            full.setdefault("portIndex", 0)
        checks.append(full)
    out["healthChecks"] = checks
    out["readinessChecks"] = [{**READINESS_DEFAULTS, **r} if isinstance(r, dict) else r
                              for r in out.get("readinessChecks") or []]
    for number in ("cpus", "mem", "disk"):
        out[number] = float(out[number])
    return out


def app_json(app: dict) -> dict:
    """The App JSON (service ports in `ports` too, as Marathon 1.4 shows them)."""
    out = {k: v for k, v in app.items() if not k.startswith("_")}
    out["ports"] = [p["port"] for p in app["portDefinitions"]]
    return out


@dataclass
class HealthResult:
    alive: bool = False
    consecutive_failures: int = 0
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str | None = None
    checked: bool = False

    def to_json(self, instance_id: str) -> dict:
        ts = lambda t: ids.timestamp(t) if t else None  # noqa: E731
        return {"alive": self.alive, "consecutiveFailures": self.consecutive_failures,
                "firstSuccess": ts(self.first_success), "lastFailure": ts(self.last_failure),
                "lastSuccess": ts(self.last_success), "lastFailureCause": self.last_failure_cause,
                "instanceId": instance_id, "taskId": instance_id}


@dataclass
class Instance:
    """One task of an app, as this framework knows it."""

    task_id: str
    app_id: str
    version: str
    slave_id: str = ""
    host: str = ""
    ports: list[int] = field(default_factory=list)
    service_ports: list[int] = field(default_factory=list)
    state: str = "TASK_STAGING"
    staged_at: float = 0.0
    started_at: float | None = None
    killing: bool = False          # a kill was sent
    kill_sent_at: float = 0.0      # when it was last sent (kills are retried until answered)
    sentenced: bool = False        # chosen to go with a scale-down
    health: list[HealthResult] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    config_version: str = ""
    unreachable_since: float | None = None
    inactive: bool = False         # unreachable past inactiveAfterSeconds: replaced, not counted
    readiness_ok: bool = False     # passed the app's readiness check once (then never checked again)
    readiness: dict | None = None  # the last readinessCheckResult while not ready
    # The app's Mesos-level check, as the slave reports it (TaskStatus.healthy).
    mesos_health: HealthResult | None = None
    # Kept across a restart: the slave reports health only when it changes.
    mesos_healthy: bool | None = None

    RECORDED = ("task_id", "app_id", "version", "slave_id", "host", "ports", "service_ports", "state",
                "staged_at", "started_at", "attributes", "config_version", "unreachable_since",
                "readiness_ok", "mesos_healthy")

    def to_record(self) -> dict:
        """What storage keeps; Marathon-level health results and kill marks are rebuilt after a restart."""
        return {name: getattr(self, name) for name in self.RECORDED}

    @classmethod
    def from_record(cls, record: dict) -> "Instance":
        inst = cls(**{name: record[name] for name in cls.RECORDED if name in record})
        if inst.mesos_healthy is not None:
            inst.mesos_health = HealthResult(alive=inst.mesos_healthy, checked=True)
        return inst

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL and not self.killing and not self.inactive

    @property
    def running(self) -> bool:
        return self.state == "TASK_RUNNING"

    def healthy(self, app: dict) -> bool | None:
        """True/False for apps with health checks (Marathon- or Mesos-level), None when there are none."""
        marathon, mesos = checked_health(app), mesos_check(app)
        if not marathon and mesos is None:
            return None
        if marathon and not (self.health and all(h.alive for h in self.health)):
            return False
        return mesos is None or (self.mesos_health is not None and self.mesos_health.alive)

    def results(self) -> list[HealthResult]:
        """The health results known so far (Marathon's checks, then the Mesos check)."""
        out = [h for h in self.health if h.checked]
        return out + [self.mesos_health] if self.mesos_health is not None else out

    def ready(self, app: dict) -> bool:
        """Counts toward capacity: running, and healthy if the app has checks."""
        return self.running and not self.killing and self.healthy(app) is not False and \
            (self.readiness_ok or not app.get("readinessChecks"))

    def condition_rank(self) -> int:
        return {"TASK_UNREACHABLE": 0, "TASK_STAGING": 1, "TASK_STARTING": 2}.get(self.state, 3)

    def to_json(self, app: dict | None = None) -> dict:
        service = list(self.service_ports)
        if len(service) < len(self.ports):
            service += [0] * (len(self.ports) - len(service))
        return {
            "id": self.task_id, "appId": self.app_id, "host": self.host, "ports": list(self.ports),
            "servicePorts": service, "slaveId": self.slave_id, "state": self.state,
            "stagedAt": ids.timestamp(self.staged_at),
            "startedAt": ids.timestamp(self.started_at) if self.started_at else None,
            "version": self.version, "ipAddresses": [{"ipAddress": self.host, "protocol": "IPv4"}] if self.host else [],
            "healthCheckResults": [h.to_json(self.task_id) for h in self.results()],
            "localVolumes": [],
        }


TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
            "TASK_GONE", "TASK_GONE_BY_OPERATOR"}
FAILURES = {"TASK_FAILED", "TASK_FINISHED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE"}
# Marathon-level checks run here; the others become the task's HealthCheck and the
# slave runs them (COMMAND included: user commands never run on this host).
MARATHON_CHECKS = {"HTTP", "HTTPS", "TCP"}
MESOS_CHECKS = {"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"}


def checked_health(app: dict) -> list[dict]:
    """The checks this framework runs itself."""
    return [h for h in app.get("healthChecks") or [] if h.get("protocol") in MARATHON_CHECKS]


def mesos_check(app: dict) -> dict | None:
    """The app's Mesos-level check (validation allows at most one), or None."""
    return next((h for h in app.get("healthChecks") or [] if h.get("protocol") in MESOS_CHECKS), None)
