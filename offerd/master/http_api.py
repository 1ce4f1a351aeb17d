"""The master's HTTP API (Flask app factory), in Mesos' paths and JSON shapes.

Views never touch the actor's records. Read-only views read the immutable
snapshot the actor hands out; the one mutating view here (teardown) posts a
command to the actor and waits for its answer (quota and weights are in
http_allocator.py, standby redirects and MARK_AGENT_GONE in http_leader.py).
Errors are plain text, as Mesos sends them. With ``--acls`` every view asks
offerd.master.http_authz what the caller (``flask.g.principal``) may see or do.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, redirect, request, send_from_directory

from offerd import __version__
from offerd.common import lenient_paths
from offerd.common.http_hygiene import FORM, accepts
from offerd.master import (http_allocator, http_authz, http_files, http_maintenance, openapi, operator_api_state,
                           prometheus, scheduler_http)
from offerd.master.http_common import (MasterView, invalidate_snapshots, json_response, master, snapshot,
                                       text_response)
from offerd.master.metrics import system_metrics


class _SnapshotReuse:
    """Bounds the actor's time spent building snapshots on a large cluster.

    A snapshot is rebuilt on the actor thread when something changed. While
    building takes little (small clusters, tests) every read is fresh; once a
    build costs the actor more than BUILD_BUDGET, its result is served for up to
    REUSE_FACTOR times its cost (at most MAX_AGE), so however many browsers
    poll, the actor spends at most about 1/REUSE_FACTOR of its time on them.
    """

    BUILD_BUDGET = 0.02
    REUSE_FACTOR = 20
    MAX_AGE = 2.0  # the web UI's poll period

    def __init__(self, read: Callable[["MasterView"], Any]):
        self._read = read  # the actor's current state, with the seconds it took in `build_seconds`
        self._lock = threading.Lock()
        self._snapshot = None
        self._until = 0.0

    def get(self, master: "MasterView"):
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now < self._until:
                return self._snapshot
        snapshot = self._read(master)
        cost = getattr(snapshot, "build_seconds", 0.0)
        with self._lock:
            if snapshot is not self._snapshot:
                self._snapshot = snapshot
                reuse = min(self.MAX_AGE, cost * self.REUSE_FACTOR) if cost > self.BUILD_BUDGET else 0.0
                self._until = time.monotonic() + reuse
        return snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._until = 0.0


def _visible():
    """The state as this caller may see it (the shared snapshot when no ACLs)."""
    return http_authz.visible(snapshot())


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = int(raw)  # ValueError -> 400 by the handler below
    if value < 0:
        raise ValueError(f"'{name}' must not be negative")
    return value


reads = Blueprint("reads", __name__)


@reads.get("/master/info")
def info():
    return json_response(master().info_json())


@reads.get("/master/state")
@reads.get("/master/state.json")
@reads.get("/state")
@reads.get("/state.json")
def state():
    return json_response(encoded=_visible().state_json())


@reads.get("/master/state-summary")
@reads.get("/state-summary")
def state_summary():
    return json_response(_visible().summary())


@reads.get("/master/frameworks")
@reads.get("/frameworks")
def frameworks():
    return json_response(_visible().frameworks(request.args.get("framework_id")))


@reads.get("/master/slaves")
@reads.get("/slaves")
def slaves():
    return json_response(_visible().slaves(request.args.get("slave_id")))


@reads.get("/master/tasks")
@reads.get("/tasks")
def tasks():
    try:
        # Mesos parses `limit` as an int and uses it as a size_t, so a negative one
        # means every task: the Mesos CLI's `task list` asks for limit=-1.
        limit = int(request.args.get("limit", 100))
        offset = _int_arg("offset", 0)
    except ValueError as exc:
        return text_response(f"Failed to parse query parameters: {exc}", 400)
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        return text_response(f"Failed to parse query parameters: 'order' must be asc or desc, not {order!r}", 400)
    found = _visible().tasks(request.args.get("framework_id"), request.args.get("task_id"))
    wanted_state = request.args.get("state")
    if wanted_state:  # an offerd extension: TASK_RUNNING or running
        wanted_state = wanted_state.upper()
        wanted_state = wanted_state if wanted_state.startswith("TASK_") else "TASK_" + wanted_state
        found = [t for t in found if t["state"] == wanted_state]
    found.sort(key=lambda t: t["statuses"][0]["timestamp"] if t["statuses"] else 0.0, reverse=order == "desc")
    return json_response({"tasks": found[offset:offset + limit] if limit >= 0 else found[offset:]})


@reads.get("/master/roles")
@reads.get("/roles")
def roles():
    return json_response(http_authz.filter_roles(_visible().roles()))


@reads.get("/health")
@reads.get("/master/health")
def health():
    return Response(b"", status=200)


@reads.get("/version")
def version():
    return json_response({"version": __version__, "build_date": "", "build_time": 0, "build_user": "",
                  "git_sha": "", "git_branch": "", "git_tag": ""})


@reads.get("/master/redirect")
def redirect_to_leader():
    return redirect(master().redirect_url(), code=307)


@reads.get("/master/flags")
@reads.get("/flags")
def flags():
    refusal = http_authz.refused("view_flags")
    if refusal is not None:
        return refusal
    return json_response({"flags": master().flags_json()})


@reads.get("/master/whoami")
def whoami():
    """Who the caller is and which operator actions it may take (offerd's own, for the web UI)."""
    return json_response(http_authz.whoami())


class _MetricsReuse:
    """The same bound for /metrics/snapshot, which sums every task's resources on
    the actor: a read that cost the actor more than BUILD_BUDGET is reused for up
    to REUSE_FACTOR times that cost."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict | None = None
        self._until = 0.0

    def get(self, master: "MasterView") -> dict:
        now = time.monotonic()
        with self._lock:
            if self._values is not None and now < self._until:
                return self._values
        values = master.read_metrics()
        cost = time.monotonic() - now
        with self._lock:
            self._values = values
            reuse = _SnapshotReuse
            self._until = time.monotonic() + (min(1.0, cost * reuse.REUSE_FACTOR)
                                              if cost > reuse.BUILD_BUDGET else 0.0)
        return values


def _all_metrics() -> dict:
    values = dict(current_app.config["OFFERD_METRICS"].get(master()))
    values.update(system_metrics())  # psutil here, on the HTTP thread
    return values


@reads.get("/metrics/snapshot")
def metrics():
    return json_response(_all_metrics())


@reads.get("/metrics")
def metrics_prometheus():
    return Response(prometheus.render(_all_metrics()), mimetype=None,
                    content_type=prometheus.CONTENT_TYPE_LATEST)


operator = Blueprint("operator", __name__)


@operator.post("/master/teardown")
@operator.post("/teardown")
@accepts(FORM)  # as Mesos: curl -d frameworkId=... (JSON elsewhere)
def teardown():
    framework_id = request.form.get("frameworkId") or request.values.get("frameworkId")
    if not framework_id:
        return text_response("Missing 'frameworkId' query parameter in the request body", 400)
    response = http_authz.teardown(framework_id)
    invalidate_snapshots()
    return response


webui = Blueprint("webui", __name__)

DEFAULT_WEBUI_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "webui"))


@webui.get("/")
def index():
    return send_from_directory(current_app.config["OFFERD_WEBUI_DIR"], "index.html", max_age=0)


@webui.get("/static/<path:name>")
def static_file(name):
    # send_from_directory refuses paths that escape the directory.
    return send_from_directory(current_app.config["OFFERD_WEBUI_DIR"], name, max_age=0)


def create_app(master: MasterView, webui_dir: str | None = None) -> Flask:
    app = Flask("offerd.master", static_folder=None)
    app.config["OFFERD_MASTER"] = master
    app.config["OFFERD_SNAPSHOTS"] = _SnapshotReuse(lambda serving: serving.read_snapshot())
    app.config["OFFERD_V1_SNAPSHOTS"] = _SnapshotReuse(operator_api_state.read_current)
    app.config["OFFERD_METRICS"] = _MetricsReuse()
    app.config["OFFERD_WEBUI_DIR"] = webui_dir or DEFAULT_WEBUI_DIR
    app.register_blueprint(reads)
    app.register_blueprint(http_files.files)
    app.register_blueprint(operator)
    app.register_blueprint(webui)
    app.add_url_rule("/openapi.json", "openapi", openapi.serve)  # public: no secrets in it
    http_allocator.register(app)
    http_maintenance.register(app)
    scheduler_http.register(app)

    @app.errorhandler(404)
    def not_found(_):
        return text_response(f"No endpoint {request.path}", 404)

    @app.errorhandler(405)
    def not_allowed(_):
        return text_response(f"Expecting a different method for {request.path}", 405)

    @app.errorhandler(TimeoutError)
    def busy(exc):
        return text_response(f"Master is busy: {exc}", 503)

    return lenient_paths.install(app)
