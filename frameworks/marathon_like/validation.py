"""Semantic validation of app definitions: pure functions returning Marathon's
``[{"path", "errors"}]`` details (empty when valid)."""

from __future__ import annotations

import re

from frameworks.marathon_like import constraints, ids
from frameworks.marathon_like.model import MESOS_CHECKS

OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "MAX_PER", "UNLIKE", "IS")
_IS_VALUE = re.compile(r"^[a-zA-Z0-9_/.-]*$")
_ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Details:
    def __init__(self):
        self.items: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, []).append(message)

    def as_list(self) -> list[dict]:
        return [{"path": p, "errors": e} for p, e in self.items.items()]


def _between(d: _Details, path: str, value, low: float, high: float) -> None:
    if value is not None and not (low <= value <= high):
        d.add(path, f"got {value}, expected between {low} and {high}")


def _min(d: _Details, path: str, value, low) -> None:
    if value is not None and value < low:
        d.add(path, f"got {value}, expected {low} or more")


def validate_app(app: dict, raw: dict | None = None, framework_role: str = "*") -> list[dict]:
    """Rules for a full app (defaults applied). `raw` is the body as sent, for
    rules about what the client combined (ports + portDefinitions, ...);
    `framework_role` is the role this framework registered with (--mesos_role)."""
    d = _Details()
    raw = raw or {}
    for path, message in unsupported_errors(app, framework_role):
        d.add(path, message)
    errors = ids.path_errors(app.get("id", ""))
    if errors:
        d.add("/id", errors[0])
    cmd, args, container = app.get("cmd"), app.get("args"), app.get("container")
    if cmd is not None and args is not None:
        d.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
    elif cmd is None and args is None and not container:
        d.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
    if cmd is not None and not cmd.strip():
        d.add("/cmd", "must not be empty")
    for name in ("cpus", "mem", "disk", "gpus", "instances", "backoffSeconds", "maxLaunchDelaySeconds"):
        _min(d, f"/{name}", app.get(name), 0)
    _min(d, "/backoffFactor", app.get("backoffFactor"), 1.0)
    if app.get("labels", {}).get("MARATHON_SINGLE_INSTANCE_APP") == "true" and app.get("instances", 0) > 1:
        d.add("/instances", "got %d, expected 1 or less" % app["instances"])
    strategy = app.get("upgradeStrategy") or {}
    _between(d, "/upgradeStrategy/minimumHealthCapacity", strategy.get("minimumHealthCapacity"), 0.0, 1.0)
    _between(d, "/upgradeStrategy/maximumOverCapacity", strategy.get("maximumOverCapacity"), 0.0, 1.0)
    if "ports" in raw and "portDefinitions" in raw and not same_ports(raw):
        d.add("/", "cannot specify both ports and port definitions")
    ports = [p.get("port", 0) for p in app.get("portDefinitions", [])]
    nonzero = [p for p in ports if p]
    if len(nonzero) != len(set(nonzero)):
        d.add("/portDefinitions", "ports must be unique")
    names = [p["name"] for p in app.get("portDefinitions", []) if p.get("name")]
    if len(names) != len(set(names)):
        d.add("/portDefinitions", "Port names must be unique.")
    for i, port in enumerate(ports):
        if not 0 <= port <= 65535:
            d.add(f"/portDefinitions({i})/port", f"got {port}, expected between 0 and 65535")
    if app.get("requirePorts") and any(p == 0 for p in ports):
        d.add("/portDefinitions", "requirePorts needs non-zero ports")
    for i, constraint in enumerate(app.get("constraints", [])):
        for message in constraint_errors(constraint):
            d.add(f"/constraints({i})", message)
    mesos_checks = [c for c in app.get("healthChecks", []) if c.get("protocol") in MESOS_CHECKS]
    if len(mesos_checks) > 1:
        # A Mesos TaskInfo carries one HealthCheck.
        d.add("/healthChecks", "AppDefinition can contain at most one Mesos health check.")
    for i, check in enumerate(app.get("healthChecks", [])):
        index = check.get("portIndex")
        if "port" not in check and check.get("protocol") != "COMMAND" and index is not None \
                and not 0 <= index < len(ports):
            d.add(f"/healthChecks({i})",
                  "Health check port indices must address an element of the ports array or container port mappings.")
        if check.get("protocol") == "COMMAND" and not (check.get("command") or {}).get("value"):
            d.add(f"/healthChecks({i})/command", "command must be set for COMMAND health checks")
        for key in ("gracePeriodSeconds", "intervalSeconds", "timeoutSeconds", "maxConsecutiveFailures"):
            _min(d, f"/healthChecks({i})/{key}", check.get(key), 0)
    for key in app.get("env", {}):
        if not _ENV_NAME.match(key):
            d.add(f"/env/{key}", f"must fully match regular expression '{_ENV_NAME.pattern}'")
    roles = app.get("acceptedResourceRoles")
    if roles is not None and not roles:
        d.add("/acceptedResourceRoles", "must not be empty")
    if "uris" in raw and "fetch" in raw and raw["uris"] and raw["fetch"]:
        d.add("/", "AppDefinition must not contain both 'uris' and 'fetch'.")
    if app.get("killSelection") not in ("YOUNGEST_FIRST", "OLDEST_FIRST"):
        d.add("/killSelection", "error.unknown.enum.literal")
    for path, message in readiness_errors(app.get("readinessChecks") or [], names):
        d.add(path, message)
    for path, message in unreachable_errors(app.get("unreachableStrategy")):
        d.add(path, message)
    for i, dep in enumerate(app.get("dependencies", [])):
        if ids.path_errors(dep):
            d.add(f"/dependencies({i})", ids.path_errors(dep)[0])
    return d.as_list()


def same_ports(raw: dict) -> bool:
    """`ports` says what `portDefinitions` says (as a GET document shows both)."""
    definitions = raw.get("portDefinitions") or []
    return [p.get("port", 0) for p in definitions] == list(raw.get("ports") or [])


NOT_SUPPORTED = "not supported by offerd: "


def unsupported_errors(app: dict, framework_role: str = "*") -> list[tuple[str, str]]:
    """Fields of Marathon's app that offerd knows but cannot honour: refused with the
    reason instead of accepted and ignored. Their empty values (what GET shows) pass."""
    out = []

    def no(path, why):
        out.append((path, NOT_SUPPORTED + why))

    container = app.get("container") or {}
    if container.get("docker") or container.get("type") == "DOCKER":
        no("/container/docker", "tasks run `cmd` or `args` in offerd's own containers, not from container images")
    for key, why in (("volumes", "no volumes are mounted into tasks"),
                     ("portMappings", "tasks use host networking; give ports in portDefinitions"),
                     ("linuxInfo", "no per-task Linux capabilities or seccomp settings")):
        if container.get(key):
            no(f"/container/{key}", why)
    if app.get("executor") not in (None, "", "//cmd"):
        no("/executor", 'apps run under the command executor only ("" or "//cmd")')
    for key, why in (("executorResources", "apps run under the command executor only"),
                     ("resourceLimits", "a task is limited to the resources it asks for"),
                     ("check", "use healthChecks"),
                     ("storeUrls", "there is no artifact store; use fetch"),
                     ("ipAddress", "no IP-per-task networking; tasks use the host's network"),
                     ("residency", "no persistent volumes or resident tasks"),
                     ("secrets", "there is no secret store")):
        if app.get(key):
            no(f"/{key}", why)
    for name, value in (app.get("env") or {}).items():
        if isinstance(value, dict):
            no(f"/env/{name}", "there is no secret store; give the value itself")
    if app.get("tty"):
        no("/tty", "tasks have no terminal")
    for i, network in enumerate(app.get("networks") or []):
        if network.get("mode", "host") != "host":
            no(f"/networks({i})/mode", 'tasks use the host\'s network (mode "host")')
    for i, fetch in enumerate(app.get("fetch") or []):
        if fetch.get("destPath"):
            no(f"/fetch({i})/destPath", "fetched files keep their names in the sandbox")
    role = app.get("role")
    if role is not None and role != framework_role:
        no("/role", f"got {role!r}, but this Marathon runs every app in its role {framework_role!r} (--mesos_role)")
    return out


def group_errors(group: dict, path: str = "") -> list[dict]:
    """What a group body may not hold here: pods, enforceRole (nested groups included)."""
    d = _Details()

    def walk(node, base):
        if node.get("pods"):
            d.add(f"{base}/pods", NOT_SUPPORTED + "pods; define apps")
        if node.get("enforceRole"):
            d.add(f"{base}/enforceRole", NOT_SUPPORTED + "every app runs in this Marathon's role (--mesos_role)")
        for i, child in enumerate(node.get("groups") or []):
            if isinstance(child, dict):
                walk(child, f"{base}/groups({i})")
    walk(group, path)
    return d.as_list()


def readiness_errors(checks: list, port_names: list[str]) -> list[tuple[str, str]]:
    if len(checks) > 1:
        return [("/readinessChecks", "Only one readinessCheck is supported at the moment")]
    out = []
    for i, check in enumerate(checks):
        base = f"/readinessChecks({i})"
        if not isinstance(check, dict):
            out.append((base, "expected an object"))
            continue
        if check.get("protocol") not in ("HTTP", "HTTPS"):
            out.append((f"{base}/protocol", "error.unknown.enum.literal"))
        if check.get("portName") not in port_names:
            out.append((f"{base}/portName", "The readinessCheck must reference a port name defined in portDefinitions"))
        interval, timeout = check.get("intervalSeconds"), check.get("timeoutSeconds")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (interval, timeout))
        if not numbers or timeout < 0 or interval <= 0:
            out.append((base, "intervalSeconds and timeoutSeconds must be positive numbers"))
        elif timeout >= interval:
            out.append((f"{base}/timeoutSeconds", "timeoutSeconds must be smaller than intervalSeconds"))
        codes = check.get("httpStatusCodesForReady")
        if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and not isinstance(c, bool)
                                                                for c in codes):
            out.append((f"{base}/httpStatusCodesForReady", "must be a non-empty list of status codes"))
        if not isinstance(check.get("path"), str):
            out.append((f"{base}/path", "expected a string"))
    return out


def unreachable_errors(strategy) -> list[tuple[str, str]]:
    """`"disabled"`, or inactiveAfterSeconds ≥ 0 and expungeAfterSeconds ≥ inactiveAfterSeconds."""
    base = "/unreachableStrategy"
    if strategy == "disabled":
        return []
    if not isinstance(strategy, dict):
        return [(base, 'expected "disabled" or an object with inactiveAfterSeconds and expungeAfterSeconds')]
    out = []
    numbers = {}
    for key in ("inactiveAfterSeconds", "expungeAfterSeconds"):
        value = strategy.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append((f"{base}/{key}", "expected a number"))
        elif value < 0:
            out.append((f"{base}/{key}", f"got {value}, expected 0 or more"))
        else:
            numbers[key] = value
    if len(numbers) == 2 and numbers["expungeAfterSeconds"] < numbers["inactiveAfterSeconds"]:
        out.append((f"{base}/expungeAfterSeconds", "expungeAfterSeconds must be greater than inactiveAfterSeconds"))
    return out


def constraint_errors(constraint: list) -> list[str]:
    if not 2 <= len(constraint) <= 3:
        return ["Each constraint must have either 2 or 3 fields"]
    operator = constraint[1].upper()
    value = constraint[2] if len(constraint) == 3 else None
    if operator not in OPERATORS:
        return ["operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"]
    if operator == "UNIQUE" and value is not None:
        return ["UNIQUE does not accept a value"]
    if operator in ("LIKE", "UNLIKE"):
        if value is None:
            return [f"{operator} requires a value"]
        try:
            constraints.pattern(value)
        except constraints.PatternError as exc:
            return [f"{operator}: {exc}"]
    if operator == "MAX_PER" and (value is None or not value.isdigit()):
        return ["MAX_PER requires an integer value"]
    if operator == "GROUP_BY" and value is not None and not value.isdigit():
        return ["GROUP_BY requires an integer value or none"]
    if operator == "IS" and (value is None or not _IS_VALUE.match(value)):
        return ["IS requires a value matching ^[a-zA-Z0-9_/.-]*$"]
    return []


def validate_version_only(raw: dict) -> list[dict]:
    extra = set(raw) - {"id", "version"}
    if "version" in raw and extra:
        return [{"path": "/", "errors": ["The 'version' field may only be combined with the 'id' field."]}]
    return []
