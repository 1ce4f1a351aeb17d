"""The slave's HTTP API (Mesos' agent endpoints), as a Flask app factory.

Views never touch actor state: they ask a `view` object, which gets its data
computed on the actor thread (`actor.call`) and hands back plain dicts.
Reading files happens here, on the HTTP threads, confined to the sandboxes:
each is opened component by component from work_dir/slaves without following
a symbolic link (offerd.slave.safe_files), so a task cannot point the slave at
a file outside by swapping a name for a link; links are refused (403).

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

from offerd.common import lenient_paths
from offerd.common.acls import Authorizer
from offerd.common.credentials import load_credentials
from offerd.common.http_auth import HttpAuth, install
from offerd.slave.safe_files import UnsafePath, open_beneath
from offerd.slave import executor_http, openapi, operator_api

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
    app = Flask("offerd.slave", static_folder=None)  # no static files: no /static route
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

    app.add_url_rule("/openapi.json", "openapi", openapi.serve)  # public: no secrets in it
    operator_api.install(app, view, acls, open_sandbox)  # POST /api/v1, Mesos' agent calls
    executor_http.install(app, view)  # POST /api/v1/executor, Mesos' v1 HTTP executors

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

    def sandbox() -> tuple[int, str]:
        raw = request.args.get("path", "")
        if not raw:
            raise BadRequest("Expecting 'path=value' in query")
        return open_sandbox(view, acls, getattr(g, "principal", None), raw)

    @app.get("/files/browse")
    @app.get("/files/browse.json")
    def browse():
        fd, path = sandbox()
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                return jsonify([_entry(path, st)])
            entries = []
            for name in sorted(os.listdir(fd)):
                try:
                    entries.append(_entry(os.path.join(path, name),
                                          os.stat(name, dir_fd=fd, follow_symlinks=False)))
                except OSError:
                    continue  # removed while listing
            return jsonify(entries)
        finally:
            os.close(fd)

    @app.get("/files/read")
    @app.get("/files/read.json")
    def read():
        fd, _ = sandbox()
        try:
            size = _regular_size(fd, "read")
            offset = _int_arg("offset", 0)
            length = _int_arg("length", -1)
            if offset == -1:  # Mesos' way of asking only for the size
                return jsonify(data="", offset=size)
            if offset < 0:
                raise BadRequest("Negative offset provided")
            if length < 0:
                length = size - offset
            data = os.pread(fd, max(0, min(length, MAX_READ_BYTES)), offset)
            return jsonify(data=data.decode("utf-8", "replace"), offset=offset)
        finally:
            os.close(fd)

    @app.get("/files/download")
    @app.get("/files/download.json")
    def download():
        fd, path = sandbox()
        try:
            size = _regular_size(fd, "download")
        except BaseException:
            os.close(fd)
            raise
        os.set_blocking(fd, True)
        response = send_file(os.fdopen(fd, "rb"), as_attachment=True, download_name=os.path.basename(path),
                             mimetype="application/octet-stream")
        response.content_length = size
        return response

    return lenient_paths.install(app)


def open_sandbox(view: SlaveView, acls: Authorizer | None, principal: str | None, raw: str) -> tuple[int, str]:
    """An fd of what `raw` names (file or directory) and its path, once the
    caller may access that sandbox; 404 after the check, so a refused caller
    does not learn what exists. Opened without following any link
    (safe_files): what was checked is what is read."""
    _, path, parts = resolve_sandbox_path(view.work_dir, raw)
    if acls is not None:
        framework_id, executor_id = _sandbox_ids(parts)
        if executor_id is None:
            # Above the sandboxes (a listing of frameworks or executors) nothing can be
            # attributed to a user, and a listing tells whose sandboxes exist: refused,
            # as the master's proxy refuses it.
            raise Forbidden("Not authorized by ACL 'access_sandboxes': with --acls only an executor's "
                            "sandbox (work_dir/slaves/<id>/frameworks/<fid>/executors/<eid>/...) can be read")
        refusal = acls.check(principal, "access_sandboxes", _executor_owner(view.owners(), framework_id, executor_id))
        if refusal is not None:
            raise Forbidden(refusal)
    try:
        root = os.open(_sandboxes_root(view.work_dir), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"No such file or directory: {raw}") from None
    try:
        return open_beneath(root, parts), path
    except UnsafePath:
        raise Forbidden(f"{raw} is a symbolic link or leads through one: sandbox files are served "
                        "without following links") from None
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"No such file or directory: {raw}") from None
    finally:
        os.close(root)


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Failed to parse '{name}': {raw!r} is not an integer") from None


def _sandboxes_root(work_dir: str) -> str:
    return os.path.join(os.path.realpath(work_dir), "slaves")


def resolve_sandbox_path(work_dir: str, raw: str) -> tuple[str, str, list[str]]:
    """(`raw` as given, its path below the real work_dir/slaves, its components
    there). `raw` (?path=, or a v1 LIST_FILES / READ_FILE path) is absolute, or
    relative to work_dir; `..` is resolved as written, and anything not under
    work_dir/slaves (the checkpoints in work_dir/meta included) is refused.
    Links are not resolved here: the open refuses them."""
    if "\0" in raw:
        raise BadRequest("Invalid path")
    for base in dict.fromkeys((os.path.abspath(work_dir), os.path.realpath(work_dir))):
        path = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(base, raw))
        root = os.path.join(base, "slaves")
        if path == root or path.startswith(root + os.sep):
            parts = [p for p in path[len(root):].split(os.sep) if p]
            return raw, os.path.join(_sandboxes_root(work_dir), *parts), parts
    raise Forbidden(f"{raw} is outside this slave's sandboxes")


def _sandbox_ids(parts: list[str]) -> tuple[str | None, str | None]:
    """(framework id, executor id) of the sandbox below work_dir/slaves that
    `parts` lie in: <slave>/frameworks/<framework>/executors/<executor>/...;
    (None, None) for directories above the sandboxes."""
    if len(parts) >= 5 and parts[1] == "frameworks" and parts[3] == "executors":
        return parts[2], parts[4]
    return None, None


def _regular_size(fd: int, what: str) -> int:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"Cannot {what} a directory")
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"Cannot {what} a FIFO, socket or device: not a regular file")
    return st.st_size


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


def _entry(path: str, st: os.stat_result) -> dict:
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
                    "mesos-agent",
                    # Executors authenticate with their own token there (offerd.slave.executor_http).
                    public_paths=frozenset({"/health", "/openapi.json", executor_http.PATH}))
    return auth, Authorizer.from_flag(flags.acls)
