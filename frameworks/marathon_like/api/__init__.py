"""The Marathon v2 REST API: a Flask app factory, one blueprint per resource.

Views parse (schemas.py), call the core, and shape JSON; one error handler
turns every refusal into Marathon's body.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from frameworks.marathon_like.errors import MarathonError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class CollapseSlashes:
    """WSGI middleware: `/v2/apps//foo` is `/v2/apps/foo`, never a redirect."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = re.sub(r"/{2,}", "/", path)
        return self.app(environ, start_response)


def create_app(core, config: dict | None = None) -> Flask:
    app = Flask("marathon_like")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, JSON_SORT_KEYS=False)
    app.config.update(config or {})
    app.json.sort_keys = False
    app.json.compact = True
    app.url_map.strict_slashes = False
    app.extensions["marathon_core"] = core

    from frameworks.marathon_like.api import apps, auth, deployments, events, groups, queue, system, tasks, ui

    for module in (apps, tasks, deployments, queue, groups, system, events, ui, auth):
        app.register_blueprint(module.bp)

    # Before the leader proxy: a standby checks who calls before it forwards anything.
    auth.install_guard(app, core.config)

    from frameworks.marathon_like.api.proxy import proxy_to_leader

    @app.before_request
    def leader_only():
        return proxy_to_leader(core)

    @app.errorhandler(MarathonError)
    def marathon_error(exc: MarathonError):
        response = jsonify(exc.body())
        response.status_code = exc.status
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {404: "URI not found", 405: "Method not allowed",
                    413: "Request entity too large"}
        response = jsonify({"message": messages.get(exc.code, exc.description or exc.name)})
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = jsonify({"message": f"{type(exc).__name__}: {exc}"})
        response.status_code = 500
        return response

    @app.after_request
    def leader_header(response):
        leader = core.leader_address()
        if leader:
            scheme = "https" if core.config.ssl_cert_file else "http"
            response.headers.setdefault("X-Marathon-Leader", f"{scheme}://{leader}")
        return response

    app.wsgi_app = CollapseSlashes(app.wsgi_app)
    return app
