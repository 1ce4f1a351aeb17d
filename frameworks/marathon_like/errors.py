"""The one error root of the Marathon-like framework and its wire bodies.

Everything the API refuses is raised as a :class:`MarathonError`; the single
Flask error handler in ``api`` turns it into Marathon's JSON body.
"""

from __future__ import annotations


class MarathonError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None, **extra):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra = extra

    def body(self) -> dict:
        return {"message": self.message, **self.extra}


class InvalidJson(MarathonError):
    """Malformed JSON (400) or wrong types (422 with details)."""

    def __init__(self, details):
        super().__init__("Invalid JSON", 400 if isinstance(details, str) else 422, details=details)


class NotValid(MarathonError):
    status = 422

    def __init__(self, details: list[dict]):
        super().__init__("Object is not valid", details=details)


class NotFound(MarathonError):
    status = 404


class Conflict(MarathonError):
    status = 409


class BadRequest(MarathonError):
    status = 400


class AppLocked(Conflict):
    def __init__(self, deployment_ids):
        ids = sorted(deployment_ids)
        super().__init__(
            "App is locked by one or more deployments. Override with the option '?force=true'. "
            f"View details at '/v2/deployments/{ids[0]}'.",
            deployments=[{"id": d} for d in ids],
        )


def app_not_found(app_id: str) -> NotFound:
    return NotFound(f"App '{app_id}' does not exist")


def group_not_found(group_id: str) -> NotFound:
    return NotFound(f"Group '{group_id}' does not exist")


def task_not_found(task_id: str) -> NotFound:
    return NotFound(f"Task '{task_id}' does not exist")


def details_from_tree(tree, prefix: str = "") -> list[dict]:
    """Flatten marshmallow's nested error dict into Marathon's ``[{path, errors}]``.

    Array indices become ``(i)`` on the previous segment: ``/a(0)/b``.
    """
    out: list[dict] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, sub in node.items():
                if isinstance(key, int):
                    walk(sub, f"{path}({key})")
                elif key == "_schema":
                    walk(sub, path)
                else:
                    walk(sub, f"{path}/{key}")
        elif isinstance(node, list) and node and all(isinstance(x, str) for x in node):
            out.append({"path": path or "/", "errors": list(node)})
        elif isinstance(node, list):
            for sub in node:
                walk(sub, path)
        else:
            out.append({"path": path or "/", "errors": [str(node)]})

    walk(tree, prefix)
    return out
