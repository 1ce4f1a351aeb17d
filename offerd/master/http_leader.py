"""HTTP of a master that may not lead: standby redirects and the gone-slave call.

A standby serves read-only endpoints itself, but:

* ``/master/info`` answers with the *leader's* MasterInfo, so clients given any
  master's ``host:port`` find the leader (offerd/common/detector.py);
* ``/master/redirect`` is 307 to the leader (503 while none is known), on
  every master;
* ``/master/state`` names the leader in ``leader`` and ``leader_info``;
* every mutating request (POST, PUT, DELETE: teardown, quota, weights, the
  operator API) is 307 to the same path on the leader, 503 without one.

``POST /api/v1`` is Mesos' v1 operator API (offerd.master.operator_api; the
calls are listed in docs/v1-api.md). A standby redirects every call to the
leader, as Mesos does; among them ``MARK_AGENT_GONE``, which asserts a slave is
gone for good: its tasks become TASK_GONE_BY_OPERATOR and it may never come
back with that id (``--acls``: ``mark_agents_gone``, object: none).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flask import Flask, Response, redirect, request

from offerd.master import operator_api
from offerd.master.http_common import text_response

if TYPE_CHECKING:
    from offerd.master.daemon import Master

_STATE_PATHS = {"/master/state", "/master/state.json", "/state", "/state.json"}


def _leader_url(master: Master) -> str | None:
    url = master.redirect_url()
    return url.rstrip("/") if url else None


def install_http(app: Flask, master: Master) -> None:
    @app.before_request
    def _standby():
        if request.path == "/master/redirect":
            url = _leader_url(master)
            if url is None:
                return text_response("No leading master elected", 503)
            return redirect(url + "/", code=307)
        if master.leadership.is_leader:
            return None
        if request.path == "/master/info":
            info = master.leadership.leader_info()
            if info is None:
                return text_response("No leading master elected", 503)
            return Response(json.dumps(info), mimetype="application/json")
        if request.method in ("POST", "PUT", "DELETE", "PATCH"):
            url = _leader_url(master)
            if url is None:
                return text_response("No leading master elected", 503)
            query = request.query_string.decode()
            return redirect(url + request.path + (f"?{query}" if query else ""), code=307)
        return None

    @app.after_request
    def _name_the_leader(response: Response):
        if request.path not in _STATE_PATHS or master.leadership.is_leader or response.status_code != 200:
            return response
        info = master.leadership.leader_info()
        body = response.get_data(as_text=True)
        prefix = suffix = ""
        if response.mimetype == "application/javascript":  # ?jsonp=callback
            head, _, rest = body.partition("(")
            prefix, body, suffix = head + "(", rest[:rest.rfind(")")], rest[rest.rfind(")"):]
        state = json.loads(body)
        state["leader"] = info.get("pid", "") if info else ""
        state["leader_info"] = info or {}
        response.set_data(prefix + json.dumps(state) + suffix)
        return response

    app.add_url_rule("/api/v1", "operator_v1", operator_api.serve, methods=["POST"])
