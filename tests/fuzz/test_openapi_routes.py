"""The master's and the slave's /openapi.json name every route their Flask apps have,
and nothing else: a new endpoint without its documentation fails here."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from offerd.common.http import HttpServer
from offerd.master import openapi as master_openapi
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.master.http_api import create_app as master_app
from offerd.master.http_leader import install_http
from offerd.slave import openapi as slave_openapi
from offerd.slave.flags import make_flags
from offerd.slave.http_api import create_app as slave_app, http_security


class _NoMaster:
    """Only the routes are read; no view is called."""


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def _documented(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def test_master_document_names_every_route():
    app = master_app(_NoMaster())
    install_http(app, _NoMaster())
    routes, documented = _routes(app), _documented(master_openapi.document())
    assert routes - documented == set(), "routes missing from offerd/master/openapi.py"
    assert documented - routes == set(), "documented in offerd/master/openapi.py but not served"


def test_slave_document_names_every_route():
    routes, documented = _routes(slave_app(_NoMaster())), _documented(slave_openapi.document())
    assert routes - documented == set(), "routes missing from offerd/slave/openapi.py"
    assert documented - routes == set(), "documented in offerd/slave/openapi.py but not served"


def test_documents_declare_their_path_parameters():
    for document in (master_openapi.document(), slave_openapi.document()):
        for path, item in document["paths"].items():
            for method, operation in item.items():
                declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
                assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_the_documents_are_public_where_everything_else_needs_credentials(tmp_path):
    """A client reads /openapi.json before it can prove anything; nothing secret is in it."""
    credentials = tmp_path / "credentials"
    credentials.write_text("operator s3cret\n")
    master = Master(master_flags(port=0, work_dir=str(tmp_path / "master"), credentials=str(credentials),
                                 authenticate_http_readonly=True, authenticate_http_readwrite=True)).start()
    slave_flags = make_flags(master="127.0.0.1:1", work_dir=str(tmp_path / "slave"), http_credentials=str(credentials),
                             authenticate_http_readonly=True, authenticate_http_readwrite=True)
    slave_http = HttpServer(slave_app(_NoMaster(), *http_security(slave_flags)), "127.0.0.1", 0).start()
    try:
        for base in (f"http://127.0.0.1:{master.http_port}", f"http://127.0.0.1:{slave_http.port}"):
            assert _status(f"{base}/state") == 401
            with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
                assert json.loads(response.read())["openapi"].startswith("3.")
    finally:
        slave_http.close()
        master.stop()
