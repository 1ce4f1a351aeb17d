"""Who may call the Marathon API, and who may change things.

The shared guard (offerd.common.http_auth) runs before every request, with or
without credentials: it refuses cross-site browser requests that change
something. With ``--http_credentials`` it also demands HTTP Basic on every
endpoint but ``/ping`` (a load balancer's probe); a read is then open to any
authenticated principal, a change (POST, PUT, PATCH, DELETE) only to the
``--http_operator_principals`` (every authenticated principal when that flag is
unset), as Marathon's read-only vs. operator split.

Marathon answers with one realm, so the guard's per-class realms are folded
into ``Basic realm="marathon"`` and its errors into Marathon's
``{"message": ...}`` body.

``GET /v2/whoami`` (offerd's own) tells the UI who the caller is and whether it
may change things, so the page hides what would be refused anyway.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, jsonify, request

from offerd.common.http_auth import READ_METHODS, HttpAuth, install

from frameworks.marathon_like.api.common import core

REALM = "marathon"
PUBLIC_PATHS = frozenset({"/ping"})

bp = Blueprint("auth", __name__)


class AuthConfigError(ValueError):
    """HTTP security flags that do not fit together; the message says what to change."""


def check_config(config) -> None:
    """Refuse operator lists that could never match, before anything listens."""
    operators = config.http_operator_principals
    if operators is None:
        return
    if not config.http_credentials:
        raise AuthConfigError("--http_operator_principals needs --http_credentials (the principals and their secrets)")
    unknown = sorted(set(operators) - set(config.http_credentials))
    if unknown:
        raise AuthConfigError(f"--http_operator_principals names {', '.join(unknown)}, not in --http_credentials: "
                              "add them to the credentials file or fix the names")


def may_operate(config, principal: str | None) -> bool:
    if not config.http_credentials:
        return True   # no HTTP authentication: nobody is told apart, as before
    if principal is None:
        return False
    operators = config.http_operator_principals
    return operators is None or principal in operators


def _error(message: str, status: int):
    if status == 401:
        reason = message.split(" (HTTP Basic", 1)[0].replace("Unauthorized: ", "")
        message = f"Not Authenticated! {reason}: send HTTP Basic credentials (realm {REALM})"
    response = jsonify({"message": message})
    response.status_code = status
    return response


def install_guard(app: Flask, config) -> None:
    """Guard `app`; call before any other before_request hook (the leader proxy)."""
    required = bool(config.http_credentials)
    auth = HttpAuth(config.http_credentials or None, readonly=required, readwrite=required,
                    realm_prefix=REALM, public_paths=PUBLIC_PATHS)
    install(app, auth, _error)

    @app.before_request
    def operators_only():
        if request.method in READ_METHODS or request.path in PUBLIC_PATHS:
            return None
        if may_operate(config, g.principal):
            return None
        return _error(f"Not Authorized to perform this action! Principal '{g.principal}' may only read: "
                      "changes need a principal listed in --http_operator_principals", 403)

    @app.after_request
    def one_realm(response):
        if response.status_code == 401 and "WWW-Authenticate" in response.headers:
            response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
        return response


@bp.get("/v2/whoami")
def whoami():
    config = core().config
    principal = g.get("principal")
    return jsonify({"principal": principal, "authenticated": principal is not None,
                    "authenticationRequired": bool(config.http_credentials),
                    "operator": may_operate(config, principal)})
