"""Which body types an endpoint takes, checked before any view reads a body.

A browser lets any page post three body types to any site without asking the
site first: ``application/x-www-form-urlencoded``, ``multipart/form-data`` and
``text/plain``. An endpoint that reads a JSON document out of such a body
whatever its type can be driven by a page on another site. So every
state-changing request that carries a body must declare a type the endpoint
takes; anything else is refused with 415 and what to send instead.

Endpoints take JSON unless they say otherwise with :func:`accepts` (Mesos'
form-shaped endpoints such as ``/master/teardown`` take
``application/x-www-form-urlencoded``). Those are still safe from browsers:
the cross-site check in offerd.common.http_auth runs first.

A request without a body (or with an empty one) is left to the endpoint, as
before: ``POST /v2/apps/x/restart`` and ``DELETE /quota/dev`` have none.
"""

from __future__ import annotations

from typing import Callable

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
PROTOBUF = "application/x-protobuf"

_ATTRIBUTE = "offerd_accepted_body_types"
# What curl -d sends without -H; a JSON document sent that way is the common mistake.
_CURL_DEFAULT = FORM


def accepts(*types: str) -> Callable:
    """Declare the body types a view takes (instead of JSON only):
    ``@accepts(FORM)`` above or below its route decorator."""

    def mark(view):
        setattr(view, _ATTRIBUTE, tuple(types))
        return view
    return mark


def accepted_types(view, default: tuple[str, ...] = (JSON,)) -> tuple[str, ...]:
    return getattr(view, _ATTRIBUTE, default)


def has_body(headers) -> bool:
    """Whether the request carries a body (a length above 0, or chunked)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return True
    try:
        return int(headers.get("Content-Length") or 0) > 0
    except ValueError:
        return True  # a malformed length: judge the type as if a body came


def _matches(mimetype: str, accepted: str) -> bool:
    if mimetype == accepted:
        return True
    # application/vnd.foo+json is JSON too (Flask's request.is_json reads it so);
    # a browser cannot send it cross-site without asking first either.
    return accepted == JSON and mimetype.startswith("application/") and mimetype.endswith("+json")


def body_type_refusal(method: str, path: str, headers, mimetype: str,
                      accepted: tuple[str, ...]) -> str | None:
    """Why a request's body type is refused, or None. `mimetype` is the
    Content-Type without parameters (``charset=...`` is fine), lower case."""
    if method in ("GET", "HEAD", "OPTIONS") or not has_body(headers):
        return None
    if any(_matches(mimetype, kind) for kind in accepted):
        return None
    sent = f"a body of type {mimetype}" if mimetype else "a body without a Content-Type"
    takes = " or ".join(accepted)
    advice = f"send it with the header 'Content-Type: {accepted[0]}'"
    if accepted[0] != _CURL_DEFAULT and mimetype in (_CURL_DEFAULT, ""):
        advice += f" (with curl: -H 'Content-Type: {accepted[0]}'; curl -d alone sends {_CURL_DEFAULT})"
    return f"Unsupported Media Type: {method} {path} takes {takes}, not {sent}; {advice}"
