"""Request parsing shared by the blueprints: lenient JSON, query booleans, embeds."""

from __future__ import annotations

import json

from flask import current_app, jsonify, request

from frameworks.marathon_like.errors import BadRequest, InvalidJson


def core():
    return current_app.extensions["marathon_core"]


def qbool(name: str, default: bool = False) -> bool:
    """Query booleans in any case (`True`, `true`, `TRUE`), as JAX-RS parses them."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "false"):
        return value == "true"
    raise BadRequest(f"Invalid boolean value '{raw}' for query parameter '{name}'")


def body(default=None):
    """The JSON body; an empty body (even with a JSON content type) is `default`.

    Only a body declared as JSON gets here: the HTTP guard (offerd.common.http_auth)
    refuses any other type with 415, as Marathon's ``@Consumes(application/json)``
    does. A form or text/plain body is what a cross-site page can post without
    the browser asking first, so it is never read as an app definition."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {} if default is None else default
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(str(exc)) from None


EMBED_PREFIXES = ("group.apps.", "apps.", "app.")


def embeds(always=()) -> set[str]:
    out = set(always)
    for value in request.args.getlist("embed"):
        for prefix in EMBED_PREFIXES:
            if value.startswith(prefix):
                value = value[len(prefix):]
                break
        if value == "failures":
            out |= {"tasks", "lastTaskFailure", "deployments"}
        elif value in ("tasks", "counts", "deployments", "readiness", "lastTaskFailure", "taskStats"):
            out.add(value)
    return out


def deployment_result(deployment, status: int = 200, location: str | None = None):
    response = jsonify({"deploymentId": deployment.id, "version": deployment.version})
    response.status_code = status
    response.headers["Marathon-Deployment-Id"] = deployment.id
    if location:
        response.headers["Location"] = location
    return response
