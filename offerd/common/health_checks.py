"""What makes a TaskInfo's HealthCheck well formed (Mesos' rules and texts).

Shared by the master, which refuses a bad check with TASK_ERROR before the task
is sent anywhere, and the slave, which runs the checks and so guards them too.
"""

from __future__ import annotations

import math

from offerd.proto import offerd_pb2 as pb

Check = pb.HealthCheck
DURATIONS = ("delay_seconds", "grace_period_seconds", "interval_seconds", "timeout_seconds")
MAX_PORT = 65535


def validate_health_check(check: pb.HealthCheck) -> str | None:
    """Why `check` cannot be run, or None."""
    if check.type == Check.COMMAND:
        if not check.HasField("command"):
            return "Expecting 'command' to be set for COMMAND health check"
        command = check.command
        if command.shell and not command.value:
            return "Command health check must contain 'shell command'"
        if not command.shell and not command.value:
            return "Command health check must contain 'executable path'"
    elif check.type == Check.HTTP:
        if not check.HasField("http"):
            return "Expecting 'http' to be set for HTTP health check"
        http = check.http
        if http.HasField("scheme") and http.scheme not in ("http", "https"):
            return f"Unsupported HTTP health check scheme: '{http.scheme}'"
        if http.HasField("path") and not http.path.startswith("/"):
            return f"The path '{http.path}' of HTTP health check must start with '/'"
        error = _port(http, "HTTP")
        if error:
            return error
    elif check.type == Check.TCP:
        if not check.HasField("tcp"):
            return "Expecting 'tcp' to be set for TCP health check"
        error = _port(check.tcp, "TCP")
        if error:
            return error
    else:
        name = Check.Type.Name(check.type) if check.type in Check.Type.values() else str(check.type)
        return f"'{name}' is not a valid health check type"
    for name in DURATIONS:
        value = getattr(check, name)
        if check.HasField(name) and (math.isnan(value) or value < 0.0):
            return f"Expecting '{name}' to be non-negative"
        if math.isinf(value):
            return f"Expecting '{name}' to be finite"
    return None


def _port(info, kind: str) -> str | None:
    # Mesos' proto has the port required; proto2 optional here, so say it.
    if not info.HasField("port") or not 0 < info.port <= MAX_PORT:
        return f"{kind} health check needs a 'port' between 1 and {MAX_PORT} (the port the task listens on)"
    return None
