"""Sandbox files and slave usage, proxied through the master.

Mesos' web UI fetched these straight from each agent on :5051, which breaks
whenever agents are not reachable from the operator's browser. Here the
browser (and the CLI) only ever talk to the master; the master finds the
slave's HTTP address in its SlaveInfo (the ``pid``'s ``host:port``) and
forwards the request.

The master only forwards paths inside a sandbox the slave reports (an
executor's ``directory`` in the slave's ``/state``); everything else is
refused here, before the slave is asked. All views are read-only.

Security: with ``--acls`` a path is served only if the caller may
``access_sandboxes`` of the user that sandbox's executor or task runs as
(offerd.master.http_authz), and proxied slave documents are filtered like the
master's own. The caller's ``Authorization`` header is forwarded, so a slave
that authenticates and authorizes its own endpoints decides too; with
``--ssl_ca_file`` the master reaches slaves over https, verified with that CA.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import threading
import time
import urllib.parse

from flask import Blueprint, Response, current_app, request

from offerd.common import tls
from offerd.common.http import fetch
from offerd.master import http_authz
from offerd.master.http_common import master, snapshot, text_response

SLAVE_TIMEOUT = 5.0
# How long a slave's list of sandboxes is trusted before it is fetched again;
# a path not found in the cached list triggers one fresh fetch anyway.
SANDBOX_CACHE_SECONDS = 2.0
# Callers (Authorization headers) times slaves whose sandbox lists are kept.
SANDBOX_CACHE_ENTRIES = 1024

files = Blueprint("files", __name__)


class ProxyError(Exception):
    def __init__(self, message: str, status: int, challenge: str | None = None):
        super().__init__(message)
        self.status = status
        # A slave's WWW-Authenticate, passed on so a browser asks for credentials.
        self.challenge = challenge


@files.errorhandler(ProxyError)
def _proxy_error(exc: ProxyError):
    response = text_response(str(exc), exc.status)
    if exc.status == 401 and exc.challenge:
        response.headers["WWW-Authenticate"] = exc.challenge
    return response


def _snapshot_state() -> dict:
    return snapshot().state


def _visible_state() -> dict:
    """The master's state as the caller may see it (by the ACLs)."""
    return http_authz.visible(snapshot()).state


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


_NO_CONTEXT = object()


def _slave_tls():
    """The TLS context slaves are reached with: None (http) unless the master has
    --ssl_ca_file; built once per app."""
    context = current_app.config.get("OFFERD_SLAVE_TLS", _NO_CONTEXT)
    if context is _NO_CONTEXT:
        ca_file = getattr(getattr(master(), "flags", None), "ssl_ca_file", None)
        try:
            context = tls.client_context(ca_file) if ca_file else None
        except ValueError as exc:  # tls.TlsError names the file and the fix
            raise ProxyError(f"cannot reach slaves over https: {exc}", 500) from None
        current_app.config["OFFERD_SLAVE_TLS"] = context
    return context


def _caller_authorization(context) -> dict[str, str]:
    # Forwarded so a slave that authenticates its endpoints sees the same caller, but
    # only over https to a slave the CA vouches for: never a password in clear, nor
    # to whatever address a rogue slave registered with.
    header = request.headers.get("Authorization")
    return {"Authorization": header} if header and context is not None else {}


def _fetch(slave: dict, path: str, params: dict | None = None, raw: bool = False,
           post: tuple[bytes, dict[str, str]] | None = None):
    context = _slave_tls()
    url = f"{'https' if context is not None else 'http'}://{slave_address(slave)}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        body, headers = post if post is not None else (None, {})
        answer = fetch(url, ssl_context=context, headers={**_caller_authorization(context), **headers},
                       timeout=SLAVE_TIMEOUT, data=body)
    except OSError as exc:
        hint = " (is it serving https with a certificate --ssl_ca_file trusts?)" if context is not None else ""
        raise ProxyError(f"cannot reach slave {slave['id']} at {slave_address(slave)}: {exc}{hint}", 502) from None
    if answer.status >= 400:
        detail = answer.body.decode("utf-8", "replace").strip()
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise ProxyError(f"slave {slave['id']} answered {answer.status}: {detail}", answer.status,
                         answer.headers.get("WWW-Authenticate"))
    if raw:
        return answer.status, answer.body, answer.headers
    try:
        return answer.json()
    except ValueError as exc:
        raise ProxyError(f"slave {slave['id']} answered {path} with something that is not JSON: {exc}",
                         502) from None


def fetch_from_slave(slave: dict, path: str, params: dict | None = None):
    """A slave's JSON answer to `path` (the v1 operator API's file calls); ProxyError else."""
    return _fetch(slave, path, params)


def post_to_slave(slave: dict, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The body of a slave's answer to a POST (its v1 operator API); ProxyError else."""
    return _fetch(slave, path, raw=True, post=(body, headers))[1]


class _SandboxCache:
    """Per slave and caller: the sandbox directories the slave reports, with their
    executors (a slave that filters its /state may show callers different lists)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, bytes], tuple[float, list[dict]]] = {}

    def get(self, slave: dict, fresh: bool = False) -> list[dict]:
        now = time.monotonic()
        # The caller by a digest of its header: the cache holds no secret.
        key = (slave["id"], hashlib.sha256(request.headers.get("Authorization", "").encode()).digest())
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None and not fresh and now - cached[0] < SANDBOX_CACHE_SECONDS:
            return cached[1]
        sandboxes = sandboxes_of(_fetch(slave, "/state"))
        with self._lock:
            if len(self._entries) >= SANDBOX_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now, sandboxes)
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


def confined_path(slave: dict, raw: str | None = None) -> str:
    """The requested path (`raw`, else the ``path`` query parameter), normalized, if
    it is inside a sandbox of `slave` and the caller may access that sandbox;
    otherwise a ProxyError (403)."""
    raw = request.args.get("path", "") if raw is None else raw
    if not raw:
        raise ProxyError("Expecting 'path=value' in query", 400)
    if not raw.startswith("/") or "\0" in raw:
        raise ProxyError(f"{raw!r}: expecting an absolute path inside a sandbox", 400)
    path = posixpath.normpath(raw)
    for fresh in (False, True):
        boxes = [s for s in _cache.get(slave, fresh) if _inside(path, s["directory"])]
        if boxes:
            box = max(boxes, key=lambda s: len(s["directory"]))  # the innermost sandbox names it
            refusal = http_authz.sandbox_refusal(box, snapshot(), raw)
            if refusal is not None:
                raise ProxyError(refusal, 403)
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
    state = _visible_state()  # a task the caller may not view is not found
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
    document = _fetch(find_slave(slave_id), "/state")
    if not isinstance(document, dict):
        raise ProxyError(f"slave {slave_id} answered /state with something that is not a JSON object", 502)
    document = http_authz.filter_slave_state(document, snapshot())
    return Response(json.dumps(document), mimetype="application/json")


@files.get("/master/slaves/<slave_id>/monitor/statistics")
def slave_statistics(slave_id: str):
    slave = find_slave(slave_id)
    usage = _fetch(slave, "/monitor/statistics")
    # A process hosting simulated slaves reports them all; keep this slave's.
    if not isinstance(usage, list):
        raise ProxyError(f"slave {slave_id} answered /monitor/statistics with something that is not a list", 502)
    mine = [entry for entry in usage if isinstance(entry, dict) and entry.get("slave_id") in (None, slave_id)]
    return Response(json.dumps(http_authz.filter_statistics(mine, snapshot())), mimetype="application/json")
