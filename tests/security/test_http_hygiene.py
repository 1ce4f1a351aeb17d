"""Body types on state-changing requests: the master, the slave's guard and
Marathon refuse a body whose type the endpoint does not take (415), so a form
or text/plain post (what a page on another site can send without asking) is
never read as JSON. Real servers over real HTTP; each attack is shown to change
nothing."""

from __future__ import annotations

import json

import pytest
import requests
from flask import Flask, jsonify, request

from frameworks.marathon_like.core import Config
from frameworks.marathon_like.service import MarathonService
from offerd.common.http import HttpServer
from offerd.common.http_auth import HttpAuth, install
from offerd.common.http_hygiene import FORM, accepts
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from tests.builders import RunningFramework, framework_info
from tests.support import wait_for

APP = {"id": "/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 0}
CURL_ADVICE = "-H 'Content-Type: application/json'"


# -- the guard itself, on a small app served by the real HTTP server --------------------


@pytest.fixture(scope="module")
def guarded_app():
    """An app guarded like the slave's (JSON by default) with one form endpoint."""
    app = Flask("hygiene")
    received: list = []

    @app.post("/json")
    def json_endpoint():
        received.append(("json", request.get_data()))
        return jsonify(ok=True)

    @app.post("/form")
    @accepts(FORM)
    def form_endpoint():
        received.append(("form", request.form.get("id")))
        return jsonify(ok=True)

    install(app, HttpAuth(), lambda message, status: (jsonify(message=message), status))
    server = HttpServer(app, "127.0.0.1", 0, threads=2, name="hygiene-http").start()
    yield f"http://127.0.0.1:{server.port}", received
    server.close()


def test_json_endpoints_take_json_bodies_only(guarded_app):
    base, received = guarded_app
    received.clear()
    document = json.dumps({"id": "x"})
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.offerd+json"):
        answer = requests.post(base + "/json", data=document, headers={"Content-Type": content_type}, timeout=10)
        assert answer.status_code == 200, (content_type, answer.text)
    refused = [("application/x-www-form-urlencoded", document), ("text/plain", document),
               ("multipart/form-data; boundary=x", document), (None, document)]
    for content_type, data in refused:
        headers = {"Content-Type": content_type} if content_type else {}
        answer = requests.post(base + "/json", data=data, headers=headers, timeout=10)
        assert answer.status_code == 415, (content_type, answer.text)
        assert "application/json" in answer.json()["message"]
    assert len(received) == 3  # only the three JSON posts reached the view


def test_a_chunked_body_is_judged_like_any_other(guarded_app):
    base, received = guarded_app
    received.clear()
    chunks = iter([b'{"id": ', b'"x"}'])   # a generator body: requests sends it chunked
    answer = requests.post(base + "/json", data=chunks, headers={"Content-Type": "text/plain"}, timeout=10)
    assert answer.status_code == 415
    assert received == []


def test_form_endpoints_take_forms_and_bodiless_requests_reach_the_view(guarded_app):
    base, received = guarded_app
    received.clear()
    assert requests.post(base + "/form", data={"id": "f1"}, timeout=10).status_code == 200
    answer = requests.post(base + "/form", json={"id": "f2"}, timeout=10)
    assert answer.status_code == 415 and FORM in answer.json()["message"]
    # No body at all: the endpoint judges, as before.
    assert requests.post(base + "/json", timeout=10).status_code == 200
    assert received == [("form", "f1"), ("json", b"")]
    # Unrouted requests keep their own answers.
    assert requests.post(base + "/nowhere", data="x", headers={"Content-Type": "text/plain"},
                         timeout=10).status_code == 404
    assert requests.put(base + "/json", data="x", headers={"Content-Type": "text/plain"},
                        timeout=10).status_code == 405


# -- the master -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def master():
    m = Master(master_flags(port=0, allocation_interval="100ms")).start()
    yield m
    m.stop()


def _url(master, path):
    return f"http://127.0.0.1:{master.http_port}{path}"


def test_curl_default_form_type_on_quota_says_what_header_to_add(master):
    body = json.dumps({"role": "dev", "guarantee": "cpus:1;mem:64"})
    # What `curl -d @quota.json` sends.
    answer = requests.post(_url(master, "/quota"), data=body, timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert CURL_ADVICE in answer.text and "curl -d" in answer.text
    assert "dev" not in json.dumps(requests.get(_url(master, "/quota"), timeout=10).json())
    answer = requests.post(_url(master, "/quota"), data=body, timeout=10,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert "dev" in json.dumps(requests.get(_url(master, "/quota"), timeout=10).json())


def test_weights_and_operator_api_refuse_non_json_bodies(master):
    before = requests.get(_url(master, "/weights"), timeout=10).json()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = requests.put(_url(master, "/weights"), data=json.dumps([{"role": "ops", "weight": 9}]),
                              headers=headers, timeout=10)
        assert answer.status_code == 415, (content_type, answer.text)
    assert requests.get(_url(master, "/weights"), timeout=10).json() == before
    call = json.dumps({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "s1"}}})
    answer = requests.post(_url(master, "/api/v1"), data=call, timeout=10,
                           headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415 and "application/json" in answer.text
    # With the right type the call reaches the endpoint, which judges it (no such slave).
    answer = requests.post(_url(master, "/api/v1"), data=call, timeout=10,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 400


def test_a_request_without_a_body_is_judged_by_the_endpoint(master):
    answer = requests.post(_url(master, "/quota"), timeout=10)
    assert answer.status_code == 400 and "Failed to parse" in answer.text
    answer = requests.post(_url(master, "/master/teardown"), timeout=10)
    assert answer.status_code == 400 and "frameworkId" in answer.text


def test_teardown_takes_a_form_as_mesos_and_nothing_else(master):
    with RunningFramework(f"127.0.0.1:{master.http_port}", framework_info(name="victim")) as framework:
        framework_id = framework.framework_id

        def active():
            state = requests.get(_url(master, "/master/state"), timeout=10).json()
            return [f["id"] for f in state["frameworks"]]

        wait_for(lambda: framework_id in active(), message="the framework in /master/state")
        refused = [
            dict(json={"frameworkId": framework_id}),
            dict(data=f"frameworkId={framework_id}", headers={"Content-Type": "text/plain"}),
            # A browser's cross-site form post: refused before the type is even looked at.
            dict(data={"frameworkId": framework_id}, headers={"Origin": "http://evil.example"}),
        ]
        statuses = [requests.post(_url(master, "/master/teardown"), timeout=10, **attack).status_code
                    for attack in refused]
        assert statuses == [415, 415, 403]
        assert framework_id in active()
        # `curl -d frameworkId=...`, as Mesos documents it.
        answer = requests.post(_url(master, "/master/teardown"), data={"frameworkId": framework_id}, timeout=10)
        assert answer.status_code == 200, answer.text
        wait_for(lambda: framework_id not in active(), message="the framework torn down")


# -- Marathon -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marathon():
    """The Marathon service in process, on a real HTTP server (no master: apps wait)."""
    service = MarathonService(Config(master="127.0.0.1:1", http_port=0)).start()
    yield f"http://127.0.0.1:{service.http.port}"
    service.stop(failover=True)


def _app_ids(base) -> list[str]:
    return [app["id"] for app in requests.get(base + "/v2/apps", timeout=10).json()["apps"]]


def test_browser_form_posts_never_create_an_app(marathon):
    attacks = [
        # <form method=post action=http://marathon:8080/v2/apps> on another site.
        dict(data={"id": "/evil-form", "cmd": "id"}, headers={"Origin": "http://evil.example"}),
        # fetch(..., {mode: "no-cors", body: JSON text}): text/plain, no preflight.
        dict(data=json.dumps({**APP, "id": "/evil-text"}),
             headers={"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"}),
        # A JSON-looking form field name: what enctype=text/plain forms are used for.
        dict(data='{"id": "/evil-trick", "cmd": "id", "x": "="}',
             headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for attack in attacks:
        answer = requests.post(marathon + "/v2/apps", timeout=10, **attack)
        assert answer.status_code == 403, (attack, answer.text)
        assert "cross-site" in answer.json()["message"]
    assert not [a for a in _app_ids(marathon) if a.startswith("/evil")]


def test_no_origin_non_json_posts_never_create_an_app(marathon):
    """Without browser headers (an old browser, a proxy that strips them, a script): still 415."""
    attempts = [("text/plain", json.dumps({**APP, "id": "/plain-text"})),
                ("application/x-www-form-urlencoded", json.dumps({**APP, "id": "/plain-form"})),
                (None, json.dumps({**APP, "id": "/plain-none"}))]
    for content_type, data in attempts:
        headers = {"Content-Type": content_type} if content_type else {}
        for method in ("POST", "PUT", "PATCH"):
            path = "/v2/apps" if method == "POST" else "/v2/apps/plain"
            answer = requests.request(method, marathon + path, data=data, headers=headers, timeout=10)
            assert answer.status_code == 415, (method, content_type, answer.text)
            message = answer.json()["message"]
            assert "Content-Type: application/json" in message
    assert not [a for a in _app_ids(marathon) if a.startswith("/plain")]


def test_json_with_a_charset_creates_the_app(marathon):
    answer = requests.post(marathon + "/v2/apps", data=json.dumps({**APP, "id": "/charset"}), timeout=10,
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 201, answer.text
    assert "/charset" in _app_ids(marathon)
    # A bodiless POST is judged by its endpoint as before.
    assert requests.post(marathon + "/v2/apps/charset/restart", timeout=10).status_code == 200
