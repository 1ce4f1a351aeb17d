"""Sandbox files and slave usage, proxied through the master.

Mesos' web UI fetched these straight from each agent on :5051, which breaks
whenever agents are not reachable from the operator's browser. Here the
browser (and the CLI) only ever talk to the master; the master finds the
slave's HTTP address in its SlaveInfo (the ``pid``'s ``host:port``) and
forwards the request.

The master only forwards paths inside a sandbox the slave reports (an
executor's ``directory`` in the slave's ``/state``); everything else is
refused here, before the slave is asked. All views are read-only.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from flask import Blueprint, Response, request

SLAVE_TIMEOUT = 5.0
# How long a slave's list of sandboxes is trusted before it is fetched again;
# a path not found in the cached list triggers one fresh fetch anyway.
SANDBOX_CACHE_SECONDS = 2.0

files = Blueprint("files", __name__)


class ProxyError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _text(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


@files.errorhandler(ProxyError)
def _proxy_error(exc: ProxyError):
    return _text(str(exc), exc.status)


def _snapshot_state() -> dict:
    from offerd.master.http_api import _snapshot  # the same reuse as the state views

    return _snapshot().state


def slave_address(slave: dict) -> str:
    """``host:port`` of a slave's HTTP server, from its pid ``slave(1)@host:port``."""
    pid = slave.get("pid") or ""
    if "@" in pid:
        return pid.split("@", 1)[1]
    return f"{slave['hostname']}:{slave['port']}"


def find_slave(slave_id: str | None) -> dict:
    if not slave_id:
        raise ProxyError("Expecting 'slave_id=value' in query", 400)
    for slave in _snapshot_state()["slaves"]:
        if slave["id"] == slave_id:
            return slave
    raise ProxyError(f"No slave with id {slave_id} is registered with this master", 404)


def _fetch(slave: dict, path: str, params: dict | None = None, raw: bool = False):
    url = f"http://{slave_address(slave)}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=SLAVE_TIMEOUT) as response:
            body = response.read()
            return (response.status, body, response.headers) if raw else json.loads(body)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise ProxyError(f"slave {slave['id']} answered {exc.code}: {detail}", exc.code) from None
    except (OSError, ValueError) as exc:
        raise ProxyError(f"cannot reach slave {slave['id']} at {slave_address(slave)}: {exc}", 502) from None


class _SandboxCache:
    """Per slave: the sandbox directories it reports, with their executors."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, list[dict]]] = {}

    def get(self, slave: dict, fresh: bool = False) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(slave["id"])
        if cached is not None and not fresh and now - cached[0] < SANDBOX_CACHE_SECONDS:
            return cached[1]
        sandboxes = sandboxes_of(_fetch(slave, "/state"))
        with self._lock:
            self._entries[slave["id"]] = (now, sandboxes)
        return sandboxes


def sandboxes_of(slave_state: dict) -> list[dict]:
    """Every executor of a slave's /state: directory, ids and the task ids it ran."""
    out = []
    for group in ("frameworks", "completed_frameworks"):
        for framework in slave_state.get(group) or []:
            for kind in ("executors", "completed_executors"):
                for executor in framework.get(kind) or []:
                    if not executor.get("directory"):
                        continue
                    tasks = [t["id"] for key in ("tasks", "queued_tasks", "completed_tasks")
                             for t in executor.get(key) or []]
                    out.append({"directory": executor["directory"], "framework_id": framework["id"],
                                "executor_id": executor["id"], "tasks": tasks,
                                "completed": kind == "completed_executors"})
    return out


_cache = _SandboxCache()


def _inside(path: str, directory: str) -> bool:
    directory = directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def confined_path(slave: dict) -> str:
    raw = request.args.get("path", "")
    if not raw:
        raise ProxyError("Expecting 'path=value' in query", 400)
    if not raw.startswith("/"):
        raise ProxyError(f"{raw}: expecting an absolute path inside a sandbox", 400)
    path = posixpath.normpath(raw)
    for fresh in (False, True):
        if any(_inside(path, s["directory"]) for s in _cache.get(slave, fresh)):
            return path
    raise ProxyError(f"{raw} is not inside a sandbox of slave {slave['id']}", 403)


@files.get("/files/browse")
@files.get("/files/browse.json")
def browse():
    slave = find_slave(request.args.get("slave_id"))
    path = confined_path(slave)
    return Response(json.dumps(_fetch(slave, "/files/browse", {"path": path})), mimetype="application/json")


@files.get("/files/read")
@files.get("/files/read.json")
def read():
    slave = find_slave(request.args.get("slave_id"))
    path = confined_path(slave)
    params = {"path": path}
    for name in ("offset", "length"):
        if request.args.get(name) not in (None, ""):
            params[name] = request.args[name]
    return Response(json.dumps(_fetch(slave, "/files/read", params)), mimetype="application/json")


@files.get("/files/download")
@files.get("/files/download.json")
def download():
    slave = find_slave(request.args.get("slave_id"))
    path = confined_path(slave)
    status, body, headers = _fetch(slave, "/files/download", {"path": path}, raw=True)
    out = Response(body, status=status, mimetype=headers.get("Content-Type", "application/octet-stream"))
    out.headers["Content-Disposition"] = headers.get(
        "Content-Disposition", f"attachment; filename={posixpath.basename(path)}")
    return out


@files.get("/master/sandbox")
def sandbox():
    """Where a task's sandbox is: ``{slave_id, framework_id, executor_id, directory}``."""
    task_id = request.args.get("task_id")
    if not task_id:
        raise ProxyError("Expecting 'task_id=value' in query", 400)
    framework_id = request.args.get("framework_id")
    state = _snapshot_state()
    found = None
    for group in ("frameworks", "completed_frameworks"):
        for framework in state[group]:
            if framework_id and framework["id"] != framework_id:
                continue
            for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                for task in framework[key]:
                    if task["id"] == task_id:
                        found = task
    if found is None:
        raise ProxyError(f"No task {task_id} is known to this master", 404)
    slave = find_slave(found["slave_id"])
    for fresh in (False, True):
        for box in _cache.get(slave, fresh):
            if box["framework_id"] == found["framework_id"] and task_id in box["tasks"]:
                return Response(json.dumps({
                    "slave_id": slave["id"], "framework_id": box["framework_id"],
                    "executor_id": box["executor_id"], "task_id": task_id,
                    "state": found["state"], "directory": box["directory"],
                }), mimetype="application/json")
    raise ProxyError(f"slave {slave['id']} reports no sandbox for task {task_id}", 404)


@files.get("/master/slaves/<slave_id>/state")
def slave_state(slave_id: str):
    return Response(json.dumps(_fetch(find_slave(slave_id), "/state")), mimetype="application/json")


@files.get("/master/slaves/<slave_id>/monitor/statistics")
def slave_statistics(slave_id: str):
    slave = find_slave(slave_id)
    usage = _fetch(slave, "/monitor/statistics")
    # A process hosting simulated slaves reports them all; keep this slave's.
    mine = [entry for entry in usage if entry.get("slave_id") in (None, slave_id)]
    return Response(json.dumps(mine), mimetype="application/json")
