"""Health checks: Marathon-level ones run here, Mesos-level ones are mapped onto the task.

HTTP, HTTPS and TCP checks are Marathon-level: they run on a small thread pool
outside the core lock, from this host, and their results are applied under it.
COMMAND, MESOS_HTTP, MESOS_HTTPS and MESOS_TCP checks become the task's
`TaskInfo.health_check` (`to_mesos`): the slave runs them next to the task (a
COMMAND inside the task's container, as the task's user), reports each change
as `TaskStatus.healthy` (`on_mesos_status` keeps it as the instance's health)
and kills a task that fails too many in a row; the engine then replaces it.
No user command ever runs on this host.
"""

from __future__ import annotations

import http.client
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

from offerd.proto import offerd_pb2 as pb

from frameworks.marathon_like import ids
from frameworks.marathon_like.model import HealthResult, checked_health, mesos_check

log = logging.getLogger(__name__)

# Marathon's maxConsecutiveFailures 0 means "never kill"; Mesos kills at N failures,
# so 0 becomes a count no task reaches (Mesos' own advice for leaving it to the scheduler).
NEVER = 2**32 - 1


def to_mesos(check: dict, ports: list[int]) -> pb.HealthCheck:
    """A Mesos-level Marathon check as the HealthCheck the slave runs (ports: the
    task's host ports, which portIndex points into)."""
    out = pb.HealthCheck(
        delay_seconds=float(check.get("delaySeconds", 15)), interval_seconds=float(check["intervalSeconds"]),
        timeout_seconds=float(check["timeoutSeconds"]), grace_period_seconds=float(check["gracePeriodSeconds"]),
        consecutive_failures=int(check["maxConsecutiveFailures"]) or NEVER)
    protocol = check["protocol"]
    if protocol == "COMMAND":
        out.type = pb.HealthCheck.COMMAND
        out.command.value = (check.get("command") or {}).get("value") or ""
        out.command.shell = True
        return out
    port = check.get("port")
    if port is None:
        index = check.get("portIndex", 0)
        port = ports[index] if index < len(ports) else 0
    if protocol in ("MESOS_HTTP", "MESOS_HTTPS"):
        out.type = pb.HealthCheck.HTTP
        out.http.scheme = "https" if protocol == "MESOS_HTTPS" else "http"
        out.http.port = port
        out.http.path = check.get("path") or "/"
    else:
        out.type = pb.HealthCheck.TCP
        out.tcp.port = port
    return out


def on_mesos_status(core, inst, app: dict | None, status: pb.TaskStatus) -> bool:
    """Take the slave's `healthy` into the instance's health (under the core lock).
    True when the update is the end of a task the slave killed for failing its check."""
    if not status.HasField("healthy") or app is None or mesos_check(app) is None:
        return False
    state = pb.TaskState.Name(status.state)
    if state != "TASK_RUNNING":
        return state == "TASK_KILLED" and not status.healthy and not inst.killing
    now = ids.now()
    result = inst.mesos_health or HealthResult()
    inst.mesos_health = result
    was = result.alive if result.checked else None
    result.checked = True
    if status.healthy:
        result.alive, result.consecutive_failures = True, 0
        result.last_success = now
        result.first_success = result.first_success or now
    else:
        result.alive = False
        result.consecutive_failures += 1
        result.last_failure, result.last_failure_cause = now, status.message or "unhealthy"
        core.events.publish("failed_health_check_event", appId=inst.app_id, taskId=inst.task_id,
                            healthCheck=mesos_check(app))
    if was != result.alive:
        inst.mesos_healthy = result.alive
        core.storage.save_instance(inst.to_record())
        core.events.publish("health_status_changed_event", appId=inst.app_id, instanceId=inst.task_id,
                            version=inst.version, alive=result.alive)
        core.events.publish("instance_health_changed_event", instanceId=inst.task_id, runSpecId=inst.app_id,
                            runSpecVersion=inst.version, healthy=result.alive)
    return False


def run_check(check: dict, host: str, port: int | None) -> str | None:
    """One Marathon-level check (HTTP, HTTPS, TCP): None when healthy, else the failure's cause."""
    timeout = max(0.1, float(check.get("timeoutSeconds", 20)))
    protocol = check["protocol"]
    try:
        if protocol in ("HTTP", "HTTPS"):
            cls = http.client.HTTPSConnection if protocol == "HTTPS" else http.client.HTTPConnection
            conn = cls(host, port, timeout=timeout)
            try:
                conn.request("GET", check.get("path") or "/")
                status = conn.getresponse().status
            finally:
                conn.close()
            if 100 <= status < 200 and check.get("ignoreHttp1xx"):
                return None
            return None if 200 <= status < 400 else f"HTTP status {status}"
        if protocol == "TCP":
            with socket.create_connection((host, port), timeout=timeout):
                return None
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"protocol {protocol} is not checked by Marathon"


def run_readiness(check: dict, host: str, port: int | None) -> dict:
    """One readiness probe: {"ready", "lastResponse"}."""
    timeout = max(0.1, float(check.get("timeoutSeconds", 10)))
    cls = http.client.HTTPSConnection if check.get("protocol") == "HTTPS" else http.client.HTTPConnection
    try:
        conn = cls(host, port, timeout=timeout)
        try:
            conn.request("GET", check.get("path") or "/")
            answer = conn.getresponse()
            body = answer.read(64 * 1024).decode("utf-8", "replace")
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return {"ready": False, "lastResponse": None, "cause": f"{type(exc).__name__}: {exc}"}
    response = {"status": answer.status, "contentType": answer.getheader("Content-Type", ""),
                "body": body if check.get("preserveLastResponse") else ""}
    return {"ready": answer.status in check.get("httpStatusCodesForReady", [200]), "lastResponse": response}


class HealthChecker:
    def __init__(self, core, workers: int = 8):
        self.core = core
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="marathon-health")
        self.due: dict[tuple[str, int], float] = {}
        self.inflight: set[tuple[str, int]] = set()

    def poll(self) -> None:
        """Start every check that is due (called by the ticker)."""
        now = ids.now()
        jobs, readiness_jobs = [], []
        with self.core.lock:
            for inst in list(self.core.instances.values()):
                app = self.core.apps.get(inst.app_id)
                if app is None or not inst.running or inst.killing:
                    continue
                checks = checked_health(app)
                while len(inst.health) < len(checks):
                    inst.health.append(HealthResult())
                for index, check in enumerate(checks):
                    key = (inst.task_id, index)
                    if key in self.inflight or self.due.get(key, 0) > now:
                        continue
                    self.due[key] = now + float(check["intervalSeconds"])
                    self.inflight.add(key)
                    port = check.get("port")
                    if port is None:
                        index_ = check.get("portIndex", 0)
                        port = inst.ports[index_] if index_ < len(inst.ports) else None
                    jobs.append((key, inst, check, port))
                readiness = app.get("readinessChecks") or []
                key = (inst.task_id, "readiness")
                if readiness and not inst.readiness_ok and key not in self.inflight and self.due.get(key, 0) <= now:
                    check = readiness[0]
                    self.due[key] = now + float(check["intervalSeconds"])
                    self.inflight.add(key)
                    names = [p.get("name") for p in app["portDefinitions"]]
                    index_ = names.index(check["portName"]) if check["portName"] in names else len(inst.ports)
                    port = inst.ports[index_] if index_ < len(inst.ports) else None
                    readiness_jobs.append((key, inst, check, port))
            live = set(self.core.instances)
            for key in [k for k in self.due if k[0] not in live]:
                self.due.pop(key, None)
        for key, inst, check, port in jobs:
            future = self.pool.submit(run_check, check, inst.host, port)
            future.add_done_callback(lambda f, key=key, inst=inst, check=check: self._done(key, inst, check, f))
        for key, inst, check, port in readiness_jobs:
            future = self.pool.submit(run_readiness, check, inst.host, port)
            future.add_done_callback(lambda f, key=key, inst=inst, check=check: self._ready(key, inst, check, f))

    def _ready(self, key, inst, check, future) -> None:
        try:
            result = future.result()
        except Exception as exc:  # a checker bug reads as not ready, never a crash
            result = {"ready": False, "lastResponse": None, "cause": f"{type(exc).__name__}: {exc}"}
        with self.core.lock:
            self.inflight.discard(key)
            if inst.task_id not in self.core.instances or inst.killing:
                return
            inst.readiness = {"name": check["name"], "taskId": inst.task_id, "ready": result["ready"],
                              "lastResponse": result["lastResponse"]}
            if result["ready"]:
                inst.readiness_ok = True
                self.core.storage.save_instance(inst.to_record())
                self.core.converge(inst.app_id)
                self.core.progress_deployments()

    def _done(self, key, inst, check, future) -> None:
        try:
            cause = future.result()
        except Exception as exc:  # a checker bug reads as a failed check, never a crash
            cause = f"{type(exc).__name__}: {exc}"
        with self.core.lock:
            self.inflight.discard(key)
            self.apply(inst, key[1], check, cause)

    def apply(self, inst, index: int, check: dict, cause: str | None) -> None:
        core = self.core
        if inst.task_id not in core.instances or inst.killing or index >= len(inst.health):
            return
        app = core.apps.get(inst.app_id)
        now = ids.now()
        result = inst.health[index]
        was = result.alive if result.checked else None
        result.checked = True
        if cause is None:
            result.alive, result.consecutive_failures = True, 0
            result.last_success = now
            result.first_success = result.first_success or now
        else:
            in_grace = result.first_success is None and now < (inst.started_at or now) + check["gracePeriodSeconds"]
            result.last_failure, result.last_failure_cause = now, cause
            if in_grace:
                return
            result.alive = False
            result.consecutive_failures += 1
            core.events.publish("failed_health_check_event", appId=inst.app_id, taskId=inst.task_id,
                                healthCheck=check)
        if was != result.alive:
            core.events.publish("health_status_changed_event", appId=inst.app_id, instanceId=inst.task_id,
                                version=inst.version, alive=result.alive)
            core.events.publish("instance_health_changed_event", instanceId=inst.task_id, runSpecId=inst.app_id,
                                runSpecVersion=inst.version, healthy=result.alive)
        limit = check["maxConsecutiveFailures"]
        if cause is not None and limit > 0 and result.consecutive_failures >= limit and app is not None:
            core.events.publish("unhealthy_instance_kill_event", appId=inst.app_id, taskId=inst.task_id,
                                instanceId=inst.task_id, version=inst.version, reason=cause, host=inst.host,
                                slaveId=inst.slave_id)
            # Health kills count as failures: the replacement comes under backoff.
            core.record_failure(app, inst, "TASK_KILLED", f"unhealthy: {cause}")
            core.kill(inst, f"failed {result.consecutive_failures} health checks")
        core.converge(inst.app_id)
        core.progress_deployments()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
