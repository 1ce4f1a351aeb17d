"""Non-leaders answer by forwarding to the leader.

Every API call is proxied as is; `/v2/events` gets a redirect instead (a stream
through a proxy would hold a thread per subscriber). The page at /ui/ and /ping
are served locally. With no leader known the request waits briefly, then gets
503 "Could not determine the current leader".
"""

from __future__ import annotations

import logging
import time

import requests
from flask import Response, redirect, request

from frameworks.marathon_like.errors import MarathonError

log = logging.getLogger(__name__)

LOCAL = ("/ui/", "/ping")
# Authorization: the leader checks the caller again (the standby's check only spares it work).
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "Authorization")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Location", "Marathon-Deployment-Id", "X-Marathon-Leader")
WAIT_FOR_LEADER = 3.0

_session = requests.Session()


class NoLeader(MarathonError):
    def __init__(self):
        super().__init__("Could not determine the current leader", 503)


def _leader(core) -> str | None:
    """The leader's address once it is known and not us."""
    own = f"{core.config.hostname}:{core.config.http_port}"
    deadline = time.monotonic() + WAIT_FOR_LEADER
    while True:
        if core.leading:
            return None
        leader = core.leader_address()
        if leader and leader != own:
            return leader
        if time.monotonic() > deadline:
            raise NoLeader()
        time.sleep(0.05)


def proxy_to_leader(core):
    """A response from the leader, or None when this instance should answer itself."""
    if core.leading or request.path.startswith(LOCAL) or request.path == "/ui":
        return None
    leader = _leader(core)
    if leader is None:
        return None
    scheme = "https" if core.config.ssl_cert_file else "http"   # every instance serves alike
    target = f"{scheme}://{leader}{request.full_path if request.query_string else request.path}"
    if request.path.startswith("/v2/events"):
        return redirect(target, 307)
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_REQUEST_HEADERS}
    headers["Via"] = f"1.1 {core.config.hostname}:{core.config.http_port}"
    try:
        answer = _session.request(request.method, target, data=request.get_data(), headers=headers,
                                  timeout=(5, 30), allow_redirects=False,
                                  verify=core.config.ssl_ca_file or True)
    except requests.RequestException as exc:
        log.warning("proxying %s %s to the leader %s failed: %s", request.method, request.path, leader, exc)
        raise MarathonError(f"Could not reach the current leader {leader}", 502) from None
    response = Response(answer.content, status=answer.status_code)
    for name in FORWARDED_RESPONSE_HEADERS:
        if name in answer.headers:
            response.headers[name] = answer.headers[name]
    return response
