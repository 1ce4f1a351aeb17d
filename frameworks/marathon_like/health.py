"""Marathon-level health checks: HTTP, TCP and COMMAND.

Checks run on a small thread pool outside the core lock; results are applied
under it. COMMAND checks run on this host with the task's environment (Marathon
has the agent run them; offerd's local clusters share the host).
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from frameworks.marathon_like import ids
from frameworks.marathon_like.matcher import task_env
from frameworks.marathon_like.model import HealthResult, checked_health

log = logging.getLogger(__name__)


def run_check(check: dict, host: str, port: int | None, env: dict) -> str | None:
    """None when healthy, else the failure's cause."""
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
        if protocol == "COMMAND":
            result = subprocess.run(check["command"]["value"], shell=True, env={**os.environ, **env},
                                    timeout=timeout, capture_output=True)
            return None if result.returncode == 0 else f"command exited with {result.returncode}"
    except (OSError, subprocess.TimeoutExpired, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"unsupported protocol {protocol}"


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
                    if port is None and check["protocol"] != "COMMAND":
                        index_ = check.get("portIndex", 0)
                        port = inst.ports[index_] if index_ < len(inst.ports) else None
                    env = task_env(app, inst.task_id, inst.host, inst.ports)
                    jobs.append((key, inst, app, check, port, env))
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
        for key, inst, app, check, port, env in jobs:
            future = self.pool.submit(run_check, check, inst.host, port, env)
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
