"""What every view of the master's HTTP API shares: the master it serves, the
state snapshot, who is calling, and answers in Mesos' forms (errors as plain
text, documents as JSON or, for the web UI's polls, JSONP).

The app factory (offerd.master.http_api.create_app) puts the master and the
snapshot cache in the Flask config; the other http_* modules read them here,
so none of them imports another view module for them.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from flask import Response, current_app, g, request

_CALLBACK = re.compile(r"^[A-Za-z_$][\w$.]*$")


class MasterView(Protocol):
    """What the views need from the master; each call is safe from any thread."""

    def read_snapshot(self): ...
    def read_metrics(self) -> dict: ...
    def info_json(self) -> dict: ...
    def flags_json(self) -> dict: ...
    def teardown(self, framework_id: str) -> str | None: ...
    def redirect_url(self) -> str: ...
    # Read with getattr by http_authz: a view-only stand-in may lack them (no ACLs then).
    authorizer: Any  # offerd.common.acls.Authorizer
    credentials: dict[str, str] | None


def master() -> MasterView:
    return current_app.config["OFFERD_MASTER"]


def snapshot():
    """The whole state, shared by every caller: what the master knows."""
    return current_app.config["OFFERD_SNAPSHOTS"].get(master())


def invalidate_snapshots() -> None:
    """After an operator's change: the next read sees it, however recent the last build."""
    for key in ("OFFERD_SNAPSHOTS", "OFFERD_V1_SNAPSHOTS"):
        current_app.config[key].invalidate()


def principal() -> str | None:
    """The principal the HTTP guard proved for this request (None: nobody was proven)."""
    return g.get("principal")


def text_response(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def json_response(data: Any = None, encoded: bytes | None = None) -> Response:
    body = encoded if encoded is not None else json.dumps(data).encode()
    callback = request.args.get("jsonp")
    if callback:
        # The web UI polls with ?jsonp=; only a plain identifier is echoed back.
        if not _CALLBACK.match(callback):
            return text_response(f"invalid jsonp callback {callback!r}", 400)
        # A <script src=...?jsonp=> on another site's page is sent with the browser's
        # cached credentials and its answer runs there: JSONP would hand that site
        # whatever this principal may read.
        if principal() is not None or request.headers.get("Sec-Fetch-Site", "") == "cross-site":
            return text_response("JSONP is refused for authenticated or cross-site requests "
                                 "(another site's page could read the answer); request plain JSON instead", 403)
        return Response(callback.encode() + b"(" + body + b");", mimetype="application/javascript")
    return Response(body, mimetype="application/json")
