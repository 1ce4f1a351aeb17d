"""Who is calling an HTTP endpoint, and whether a browser was tricked into it.

One guard for every Flask app of offerd (master, slave, Marathon), installed
with :func:`install`. Before each request it:

1. refuses a state-changing request (any method but GET, HEAD, OPTIONS) that a
   browser sends on behalf of another site: an ``Origin`` that is not this
   server, or ``Sec-Fetch-Site: cross-site``. A cross-site form post (which a
   browser would send with its cached Basic credentials) never reaches a view;
   curl and other non-browser clients send neither header and are unaffected.
2. reads ``Authorization: Basic`` against the credentials. Wrong credentials
   are refused (401) wherever they are sent; missing ones only where the
   request's class needs them: ``readonly`` for reads, ``readwrite`` for
   writes, as Mesos' ``--authenticate_http_readonly`` / ``_readwrite``.
3. leaves the proven principal in ``flask.g.principal`` (None when none was
   proven) for the views' authorization checks (offerd.common.acls).
4. refuses (415) a state-changing request whose body is not of a type its
   endpoint takes: JSON unless the view says otherwise with
   offerd.common.http_hygiene.accepts. A form or text/plain body is never read
   as a JSON document.

The 401 carries ``WWW-Authenticate: Basic realm="<prefix>-readonly"`` (or
``-readwrite``), so a browser shows its login prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from flask import Flask, g, make_response, request

from offerd.common.credentials import basic_auth_principal
from offerd.common.http_hygiene import JSON, accepted_types, body_type_refusal

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class HttpAuth:
    """The HTTP authentication settings of one server."""

    credentials: dict[str, str] | None = field(default=None, repr=False)
    readonly: bool = False
    readwrite: bool = False
    realm_prefix: str = "offerd"
    # Paths anyone may reach (health checks, load balancers' probes).
    public_paths: frozenset[str] = frozenset()
    # Paths whose POSTs only read (e.g. Mesos' /api/v1 GET_* calls are decided by the view).
    is_write: Callable[[str, str], bool] | None = None
    # The body types of views that do not declare theirs (http_hygiene.accepts).
    body_types: tuple[str, ...] = (JSON,)

    def __post_init__(self):
        if (self.readonly or self.readwrite) and not self.credentials:
            raise ValueError("HTTP authentication needs credentials (a --credentials file)")

    @property
    def enabled(self) -> bool:
        return bool(self.credentials)


def _same_origin(origin: str, host: str | None) -> bool:
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[": no browser sends it, so it names no origin of ours
        return False
    return bool(netloc) and host is not None and netloc.lower() == host.lower()


def cross_site_reason(method: str, headers) -> str | None:
    """Why a request looks like a cross-site forgery, or None."""
    if method in READ_METHODS:
        return None
    if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site)"
    origin = headers.get("Origin")
    if origin and origin != "null" and not _same_origin(origin, headers.get("Host")):
        return f"cross-site request refused: Origin {origin} is not this server"
    if origin == "null":
        return "cross-site request refused: Origin null"
    return None


def install(app: Flask, auth: HttpAuth, error: Callable[[str, int], object]) -> None:
    """Guard every request of `app`; `error(message, status)` builds the refusal
    in the app's own error shape."""

    @app.before_request
    def _guard():
        g.principal = None
        reason = cross_site_reason(request.method, request.headers)
        if reason is not None:
            return error(reason, 403)
        if request.path in auth.public_paths:
            return _body_type_refusal(app, auth, error)
        write = (auth.is_write(request.method, request.path) if auth.is_write is not None
                 else request.method not in READ_METHODS)
        header = request.headers.get("Authorization")
        if auth.enabled and header:
            principal = basic_auth_principal(header, auth.credentials)
            if principal is None:
                return _challenge(auth, write, "wrong principal or secret", error)
            g.principal = principal
        elif auth.readwrite if write else auth.readonly:
            return _challenge(auth, write, "authentication required", error)
        return _body_type_refusal(app, auth, error)


def _body_type_refusal(app: Flask, auth: HttpAuth, error):
    """415 when the body is not of a type the matched view takes. Unrouted
    requests (404, 405) are left to Flask's own answer."""
    view = app.view_functions.get(request.endpoint) if request.url_rule is not None else None
    if view is None:
        return None
    reason = body_type_refusal(request.method, request.path, request.headers, request.mimetype,
                               accepted_types(view, auth.body_types))
    return None if reason is None else error(reason, 415)


def _challenge(auth: HttpAuth, write: bool, what: str, error):
    realm = f"{auth.realm_prefix}-{'readwrite' if write else 'readonly'}"
    response = error(f"Unauthorized: {what} (HTTP Basic, realm {realm})", 401)
    response = _as_response(response)
    response.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return response


def _as_response(value):
    if isinstance(value, tuple):
        return make_response(*value)
    return make_response(value)
