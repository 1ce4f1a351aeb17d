"""The slave's HTTP API (Mesos' agent endpoints), as a Flask app factory.

Views never touch actor state: they ask a `view` object, which gets its data
computed on the actor thread (`actor.call`) and hands back plain dicts.
Reading files happens here, on the HTTP threads, confined to the sandboxes.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Protocol

from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound

MAX_READ_BYTES = 16 * 1024 * 1024


class SlaveView(Protocol):
    work_dir: str

    def state(self, index: int | None) -> dict | None: ...

    def statistics(self) -> list[dict]: ...

    def metrics(self) -> dict: ...

    def flags(self) -> dict: ...


def create_app(view: SlaveView) -> Flask:
    app = Flask("offerd.slave")
    app.json.sort_keys = False

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(message=error.description), error.code

    @app.get("/health")
    def health():
        return "", 200

    @app.get("/state")
    @app.get("/state.json")
    def state():
        return jsonify(view.state(None))

    @app.get("/slave(<int:index>)/state")
    @app.get("/slave(<int:index>)/state.json")
    def indexed_state(index: int):
        found = view.state(index)
        if found is None:
            raise NotFound(f"no slave({index}) in this process")
        return jsonify(found)

    @app.get("/flags")
    def flags():
        return jsonify(flags=view.flags())

    @app.get("/metrics/snapshot")
    def metrics():
        return jsonify(view.metrics())

    @app.get("/monitor/statistics")
    @app.get("/monitor/statistics.json")
    def statistics():
        return jsonify(view.statistics())

    @app.get("/files/browse")
    @app.get("/files/browse.json")
    def browse():
        path = _confined(view.work_dir)
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
        path = _confined(view.work_dir)
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
        path = _confined(view.work_dir)
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
    if not os.path.exists(path):
        raise NotFound(f"No such file or directory: {raw}")
    return path


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
