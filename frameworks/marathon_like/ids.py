"""Marathon's path ids, timestamps and task ids."""

from __future__ import annotations

import datetime as _dt
import re
import time
import uuid

SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$")
SEGMENT_TEXT = SEGMENT.pattern
RESERVED_LAST = {"restart", "tasks", "versions", ".", ".."}


def canonical(path: str, parent: str = "/") -> str:
    """Make `path` absolute against `parent` and resolve `.`/`..` (`foo` -> `/foo`)."""
    path = (path or "").strip()
    base = [] if path.startswith("/") else [s for s in parent.split("/") if s]
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if base:
                base.pop()
            continue
        base.append(segment)
    return "/" + "/".join(base)


def path_errors(raw: str) -> list[str]:
    """Why `raw` is not a valid app id (empty list when it is)."""
    segments = [s for s in (raw or "").split("/") if s]
    if not segments:
        return ["Path must contain at least one path element"]
    for segment in segments:
        if segment not in (".", "..") and not SEGMENT.match(segment):
            return [f"must fully match regular expression '{SEGMENT_TEXT}'"]
    if segments[-1] in RESERVED_LAST:
        return [f"must not end with '{segments[-1]}'"]
    return []


def parent_of(app_id: str) -> str:
    head = app_id.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def now() -> float:
    return time.time()


def timestamp(seconds: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z suffix."""
    moment = _dt.datetime.fromtimestamp(now() if seconds is None else seconds, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float | None:
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


class VersionClock:
    """Versions are timestamps; two changes in the same millisecond still differ."""

    def __init__(self):
        self._last = 0.0

    def next(self) -> str:
        moment = max(now(), self._last + 0.001)
        self._last = moment
        return timestamp(moment)

    def advance_to(self, seconds: float) -> None:
        """Never hand out a version older than one already stored (a restart, a clock step)."""
        self._last = max(self._last, seconds)


def new_task_id(app_id: str) -> str:
    return f"{app_id.strip('/').replace('/', '_')}.{uuid.uuid4()}"


def app_id_of_task(task_id: str) -> str | None:
    """Work out the app from a task id (legacy and 1.5+ forms)."""
    head, dot, rest = task_id.partition(".")
    if not dot or not head or not rest:
        return None
    return "/" + head.replace("_", "/")


def new_deployment_id() -> str:
    return str(uuid.uuid4())
