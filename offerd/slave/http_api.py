"""The slave's HTTP API (Mesos' agent endpoints), as a Flask app factory.

Views never touch actor state: they ask a `view` object, which gets its data
computed on the actor thread (`actor.call`) and hands back plain dicts.
Reading files happens here, on the HTTP threads, confined to the sandboxes.

Who may see what (only when --acls is given; otherwise none of it runs):
``/files/*`` needs ``access_sandboxes`` for the user the sandbox's executor runs
as, ``/flags`` needs ``view_flags``, and ``/state`` and ``/monitor/statistics``
leave out the frameworks, executors and tasks the caller may not
``view_frameworks`` / ``view_executors`` / ``view_tasks`` (object: their user),
as Mesos' agent does. The caller is the principal HTTP authentication proved
(offerd.common.http_auth), or nobody.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Protocol

from flask import Flask, g, jsonify, request, send_file
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound

from offerd.common.acls import Authorizer
from offerd.common.credentials import load_credentials
from offerd.common.http_auth import HttpAuth, install

MAX_READ_BYTES = 16 * 1024 * 1024


class SlaveView(Protocol):
    work_dir: str

    def state(self, index: int | None) -> dict | None: ...

    def statistics(self) -> list[dict]: ...

    def metrics(self) -> dict: ...

    def flags(self) -> dict: ...

    def owners(self) -> dict[str, dict]:
        """framework id -> {"user", "executors": {id: user}, "tasks": {id: user}}
        (offerd.slave.owners); asked only when ACLs are configured."""
        ...


def create_app(view: SlaveView, auth: HttpAuth | None = None, authorizer: Authorizer | None = None) -> Flask:
    """The agent's endpoints; `auth` guards them (HTTP Basic, cross-site
    refusal) and `authorizer` applies the ACLs, each only when given."""
    app = Flask("offerd.slave")
    app.json.sort_keys = False
    acls = authorizer if authorizer is not None and authorizer.configured else None

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(message=error.description), error.code

    if auth is not None:
        install(app, auth, lambda message, status: (jsonify(message=message), status))

    def refuse_unless(action: str, obj: str | None) -> None:
        refusal = acls.check(getattr(g, "principal", None), action, obj)
        if refusal is not None:
            raise Forbidden(refusal)

    @app.get("/health")
    def health():
        return "", 200

    @app.get("/state")
    @app.get("/state.json")
    def state():
        found = view.state(None)
        if acls is not None:
            found = filter_state(found, view.owners(), acls, getattr(g, "principal", None))
        return jsonify(found)

    @app.get("/slave(<int:index>)/state")
    @app.get("/slave(<int:index>)/state.json")
    def indexed_state(index: int):
        found = view.state(index)
        if found is None:
            raise NotFound(f"no slave({index}) in this process")
        if acls is not None:
            found = filter_state(found, view.owners(), acls, getattr(g, "principal", None))
        return jsonify(found)

    @app.get("/flags")
    def flags():
        if acls is not None:
            refuse_unless("view_flags", None)
        return jsonify(flags=view.flags())

    @app.get("/metrics/snapshot")
    def metrics():
        return jsonify(view.metrics())

    @app.get("/monitor/statistics")
    @app.get("/monitor/statistics.json")
    def statistics():
        entries = view.statistics()
        if acls is not None:
            owners, principal = view.owners(), getattr(g, "principal", None)
            entries = [e for e in entries if acls.allowed(
                principal, "view_executors", _executor_owner(owners, e.get("framework_id"), e.get("executor_id")))]
        return jsonify(entries)

    def sandbox(path: str) -> str:
        """`path` (confined) once the caller may access that sandbox; 404 after
        the check, so a refused caller does not learn what exists."""
        if acls is not None:
            framework_id, executor_id = sandbox_of(view.work_dir, path)
            if executor_id is None:
                # Above the sandboxes (a listing of frameworks or executors) nothing can be
                # attributed to a user, and a listing tells whose sandboxes exist: refused,
                # as the master's proxy refuses it.
                raise Forbidden("Not authorized by ACL 'access_sandboxes': with --acls only an executor's "
                                "sandbox (work_dir/slaves/<id>/frameworks/<fid>/executors/<eid>/...) can be read")
            refuse_unless("access_sandboxes", _executor_owner(view.owners(), framework_id, executor_id))
        if not os.path.exists(path):
            raise NotFound(f"No such file or directory: {request.args.get('path', '')}")
        return path

    @app.get("/files/browse")
    @app.get("/files/browse.json")
    def browse():
        path = sandbox(_confined(view.work_dir))
        if not os.path.isdir(path):
            return jsonify([_entry(path)])
        entries = []
        for name in sorted(os.listdir(path)):
            try:
                entries.append(_entry(os.path.join(path, name)))
            except OSError:
                continue  # removed while listing
        return jsonify(entries)

    @app.get("/files/read")
    @app.get("/files/read.json")
    def read():
        path = sandbox(_confined(view.work_dir))
        if os.path.isdir(path):
            raise BadRequest("Cannot read a directory")
        offset = _int_arg("offset", 0)
        length = _int_arg("length", -1)
        size = os.path.getsize(path)
        if offset == -1:  # Mesos' way of asking only for the size
            return jsonify(data="", offset=size)
        if offset < 0:
            raise BadRequest("Negative offset provided")
        if length < 0:
            length = size - offset
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(max(0, min(length, MAX_READ_BYTES)))
        return jsonify(data=data.decode("utf-8", "replace"), offset=offset)

    @app.get("/files/download")
    @app.get("/files/download.json")
    def download():
        path = sandbox(_confined(view.work_dir))
        if os.path.isdir(path):
            raise BadRequest("Cannot download a directory")
        return send_file(path, as_attachment=True, download_name=os.path.basename(path))

    return app


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Failed to parse '{name}': {raw!r} is not an integer") from None


def _confined(work_dir: str) -> str:
    """The real path named by ?path= (absolute, or relative to work_dir), refused
    unless it lies inside the sandboxes (work_dir/slaves): `..`, absolute paths
    elsewhere and symlinks pointing out all resolve outside and are refused; the
    checkpoints under work_dir/meta are not served either."""
    raw = request.args.get("path", "")
    if not raw:
        raise BadRequest("Expecting 'path=value' in query")
    if "\0" in raw:
        raise BadRequest("Invalid path")
    base = os.path.realpath(work_dir)
    root = os.path.join(base, "slaves")
    path = os.path.realpath(raw if os.path.isabs(raw) else os.path.join(base, raw))
    if path != root and not path.startswith(root + os.sep):
        raise Forbidden(f"{raw} is outside this slave's sandboxes")
    # A path inside one sandbox must not lead into another (a task can plant a
    # symlink to another's files): whoever checked access to the sandbox the
    # path names, the master's proxy included, checked that one only.
    named = _named_sandbox(work_dir, raw)
    if named is not None and _sandbox_parts(root, path) != named:
        raise Forbidden(f"{raw} leads out of its sandbox")
    return path


def _sandbox_parts(root: str, path: str) -> tuple[str, str, str] | None:
    """(slave id, framework id, executor id) of the sandbox `path` lies in below
    `root` (work_dir/slaves), or None."""
    if not path.startswith(root + os.sep):
        return None
    parts = os.path.relpath(path, root).split(os.sep)
    if len(parts) >= 5 and parts[1] == "frameworks" and parts[3] == "executors":
        return parts[0], parts[2], parts[4]
    return None


def _named_sandbox(work_dir: str, raw: str) -> tuple[str, str, str] | None:
    """The sandbox `raw` names as written (no link followed), under work_dir as
    given or as resolved (the directories in /state are under the former)."""
    for base in dict.fromkeys((os.path.abspath(work_dir), os.path.realpath(work_dir))):
        path = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(base, raw))
        named = _sandbox_parts(os.path.join(base, "slaves"), path)
        if named is not None:
            return named
    return None


def sandbox_of(work_dir: str, path: str) -> tuple[str | None, str | None]:
    """(framework id, executor id) of the sandbox a confined path lies in:
    work_dir/slaves/<slave>/frameworks/<framework>/executors/<executor>/...;
    (None, None) for directories above the sandboxes."""
    parts = _sandbox_parts(os.path.join(os.path.realpath(work_dir), "slaves"), path)
    return (parts[1], parts[2]) if parts is not None else (None, None)


def _executor_owner(owners: dict, framework_id: str | None, executor_id: str | None) -> str | None:
    """The user an executor runs as; None (only rules for ANY user match) when the
    slave cannot tell, e.g. a sandbox of a framework it no longer remembers."""
    framework = owners.get(framework_id) if framework_id else None
    if framework is None:
        return None
    return framework["executors"].get(executor_id) or None


def filter_state(state: dict, owners: dict, acls: Authorizer, principal: str | None) -> dict:
    """A copy of the slave's state without what `principal` may not view."""

    def task_visible(task: dict, framework: dict) -> bool:
        user = framework.get("tasks", {}).get(task.get("id")) or framework.get("user") or None
        return acls.allowed(principal, "view_tasks", user)

    def executor_json(executor: dict, framework: dict) -> dict | None:
        user = framework.get("executors", {}).get(executor.get("id")) or None
        if not acls.allowed(principal, "view_executors", user):
            return None
        out = dict(executor)
        for key in ("tasks", "queued_tasks", "completed_tasks"):
            out[key] = [t for t in executor.get(key, []) if task_visible(t, framework)]
        return out

    def framework_json(framework: dict) -> dict | None:
        known = owners.get(framework.get("id")) or {"user": framework.get("user"), "executors": {}, "tasks": {}}
        if not acls.allowed(principal, "view_frameworks", known.get("user") or None):
            return None
        out = dict(framework)
        for key in ("executors", "completed_executors"):
            out[key] = [e for e in (executor_json(x, known) for x in framework.get(key, [])) if e is not None]
        return out

    out = dict(state)
    for key in ("frameworks", "completed_frameworks"):
        out[key] = [f for f in (framework_json(x) for x in state.get(key, [])) if f is not None]
    if not acls.allowed(principal, "view_flags"):
        out.pop("flags", None)  # as /flags refuses them (and Mesos' agent leaves them out)
    return out


def _entry(path: str) -> dict:
    st = os.stat(path)
    return {
        "path": path,
        "nlink": st.st_nlink,
        "size": st.st_size,
        "mtime": st.st_mtime,
        "mode": stat.filemode(st.st_mode),
        "uid": _name(pwd.getpwuid, st.st_uid),
        "gid": _name(grp.getgrgid, st.st_gid),
    }


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def http_security(flags) -> tuple[HttpAuth, Authorizer]:
    """The guard and the ACLs of a slave's HTTP server, from its flags
    (--http_credentials, --authenticate_http_readonly/_readwrite, --acls);
    raises ValueError saying which flag to fix."""
    credentials = load_credentials(flags.http_credentials) if flags.http_credentials else None
    for name in ("authenticate_http_readonly", "authenticate_http_readwrite"):
        if getattr(flags, name) and credentials is None:
            raise ValueError(f"--{name} needs --http_credentials: a file of principals and secrets")
    auth = HttpAuth(credentials, bool(flags.authenticate_http_readonly), bool(flags.authenticate_http_readwrite),
                    "mesos-agent", public_paths=frozenset({"/health"}))
    return auth, Authorizer.from_flag(flags.acls)
