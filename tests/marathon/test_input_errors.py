"""What the API answers for bodies it cannot take, over real HTTP: wrong types (the field's
path, Marathon's Play-JSON key and the same in words), unknown fields (refused at their
path), fields offerd knows but cannot honour (refused with the reason), and that every
field of Marathon's app definition, and a GET document sent back, is still accepted."""

from __future__ import annotations

import pytest
import requests

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.core import Config, Core
from offerd.common.http import HttpServer


@pytest.fixture
def api():
    """A core with no cluster behind it, its API on a real port."""
    core = Core(Config())
    server = HttpServer(create_app(core), "127.0.0.1", 0, name="marathon-input-test").start()
    core.config.http_port = server.port
    url = f"http://127.0.0.1:{server.port}"

    def call(method, path, body=None, **kwargs):
        return requests.request(method, url + path, json=body, timeout=10, **kwargs)
    call.url = url
    yield call
    server.close()


APP = {"id": "/x", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0}


def _only_error(response, status, message):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] == message
    return body["details"]


@pytest.mark.parametrize("change,path,errors", [
    ({"cpus": "lots"}, "/cpus", ["error.expected.jsnumber", "expected a number, got a string"]),
    ({"instances": 1.5}, "/instances", ["error.expected.int", "expected a whole number, got 1.5"]),
    ({"instances": True}, "/instances", ["error.expected.jsnumber", "expected a number, got a boolean"]),
    ({"cmd": ["sleep", "1"]}, "/cmd", ["error.expected.jsstring", "expected a string, got an array"]),
    ({"labels": []}, "/labels", ["error.expected.jsobject", "expected an object, got an array"]),
    ({"env": {"A": 1}}, "/env/A", ["error.expected.jsstring", "expected a string, got a number"]),
    ({"portDefinitions": {"port": 0}}, "/portDefinitions",
     ["error.expected.jsarray", "expected an array, got an object"]),
    ({"container": {"type": "MESOS", "docker": {"image": 3}}}, "/container/docker/image",
     ["error.expected.jsstring", "expected a string, got a number"]),
    ({"healthChecks": [{"protocol": "HTTP", "portIndex": "0"}]}, "/healthChecks(0)/portIndex",
     ["error.expected.jsnumber", "expected a number, got a string"]),
    ({"healthChecks": [{"protocol": "GOPHER"}]}, "/healthChecks(0)/protocol",
     ["error.unknown.enum.literal",
      "expected one of HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS, MESOS_TCP, got 'GOPHER'"]),
    ({"upgradeStrategy": "rolling"}, "/upgradeStrategy",
     ["error.expected.jsobject", "expected an object, got a string"]),
    ({"unreachableStrategy": "sometimes"}, "/unreachableStrategy",
     ["error.expected.jsobject", "expected 'disabled' or an object, got 'sometimes'"]),
    ({"unreachableStrategy": {"inactiveAfterSeconds": "1"}}, "/unreachableStrategy/inactiveAfterSeconds",
     ["error.expected.jsnumber", "expected a number, got a string"]),
    ({"constraints": [["hostname", 1]]}, "/constraints(0)(1)",
     ["error.expected.jsstring", "expected a string, got a number"]),
])
def test_a_wrong_type_names_the_field_and_the_types(api, change, path, errors):
    details = _only_error(api("POST", "/v2/apps", {**APP, **change}), 422, "Invalid JSON")
    assert details == [{"path": path, "errors": errors}]
    assert api("GET", "/v2/apps").json() == {"apps": []}


def test_wrong_types_in_updates_and_groups(api):
    assert api("POST", "/v2/apps", APP).status_code == 201
    before = api("GET", "/v2/apps/x").json()["app"]
    for method in ("PUT", "PATCH"):
        details = _only_error(api(method, "/v2/apps/x", {"mem": "big"}), 422, "Invalid JSON")
        assert details == [{"path": "/mem", "errors": ["error.expected.jsnumber", "expected a number, got a string"]}]
    assert api("GET", "/v2/apps/x").json()["app"]["version"] == before["version"]
    group = {"id": "/g", "groups": [{"id": "/g/h", "apps": [{"id": "a", "cmd": "x", "disk": {}}]}]}
    details = _only_error(api("POST", "/v2/groups", group), 422, "Invalid JSON")
    assert details == [{"path": "/groups(0)/apps(0)/disk",
                        "errors": ["error.expected.jsnumber", "expected a number, got an object"]}]
    # Not JSON at all is still Marathon's 400 with the parser's words.
    response = requests.post(f"{api.url}/v2/apps", data="{nope", headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 400 and response.json()["message"] == "Invalid JSON"
    assert isinstance(response.json()["details"], str)


UNKNOWN = ["error.unknown.field", "unknown field: not part of this definition (misspelt, or at the wrong level?)"]


@pytest.mark.parametrize("method,path,body,where", [
    ("POST", "/v2/apps", {**APP, "instnces": 2}, "/instnces"),
    ("POST", "/v2/apps", {**APP, "volumes": []}, "/volumes"),                 # belongs in container
    ("POST", "/v2/apps", {**APP, "healthChecks": [{"protocol": "HTTP", "portindex": 0}]}, "/healthChecks(0)/portindex"),
    ("POST", "/v2/apps", {**APP, "container": {"type": "MESOS", "volume": []}}, "/container/volume"),
    ("POST", "/v2/apps", {**APP, "upgradeStrategy": {"minimumHealthCapacity": 1, "max": 1}}, "/upgradeStrategy/max"),
    ("POST", "/v2/apps", {**APP, "portDefinitions": [{"port": 0, "hostPort": 80}]}, "/portDefinitions(0)/hostPort"),
    ("PUT", "/v2/apps/x", {"cpu": 1}, "/cpu"),
    ("PATCH", "/v2/apps/x", {"cpu": 1}, "/cpu"),
    ("PUT", "/v2/apps", [{"id": "/x", "memory": 1}], "(0)/memory"),     # Play-JSON's path of an array item
    ("POST", "/v2/groups", {"id": "/g", "app": []}, "/app"),
    ("PUT", "/v2/groups/g", {"apps": [{"id": "a", "cmd": "x", "cpus": 1, "bogus": True}]}, "/apps(0)/bogus"),
    ("PATCH", "/v2/groups", {"dependences": []}, "/dependences"),
])
def test_unknown_fields_are_refused_at_their_path(api, method, path, body, where):
    assert api("POST", "/v2/apps", APP).status_code == 201
    before = api("GET", "/v2/apps").json()["apps"]
    details = _only_error(api(method, path, body), 422, "Invalid JSON")
    assert details == [{"path": where, "errors": UNKNOWN}]
    assert api("GET", "/v2/apps").json()["apps"] == before            # nothing changed
    assert api("GET", "/v2/deployments").json() == []


@pytest.mark.parametrize("change,path,reason", [
    ({"container": {"type": "DOCKER", "docker": {"image": "nginx"}}}, "/container/docker", "container images"),
    ({"container": {"type": "MESOS", "volumes": [{"containerPath": "d", "hostPath": "/d", "mode": "RW"}]}},
     "/container/volumes", "no volumes"),
    ({"executor": "/opt/my-executor"}, "/executor", "command executor only"),
    ({"residency": {"taskLostBehavior": "WAIT_FOREVER"}}, "/residency", "no persistent volumes"),
    ({"secrets": {"s": {"source": "db"}}}, "/secrets", "no secret store"),
    ({"env": {"PW": {"secret": "s"}}}, "/env/PW", "no secret store"),
    ({"ipAddress": {"networkName": "dcos"}}, "/ipAddress", "no IP-per-task"),
    ({"networks": [{"mode": "container/bridge"}]}, "/networks(0)/mode", "host's network"),
    ({"tty": True}, "/tty", "no terminal"),
    ({"check": {"http": {"portIndex": 0}}}, "/check", "use healthChecks"),
    ({"storeUrls": ["http://store.invalid/a"]}, "/storeUrls", "no artifact store"),
    ({"fetch": [{"uri": "http://x.invalid/a", "destPath": "b"}]}, "/fetch(0)/destPath", "keep their names"),
    ({"role": "prod"}, "/role", "role '*'"),
])
def test_known_but_unsupported_fields_are_refused_with_the_reason(api, change, path, reason):
    details = _only_error(api("POST", "/v2/apps", {**APP, **change}), 422, "Object is not valid")
    [detail] = [d for d in details if d["path"] == path]
    assert detail["errors"][0].startswith("not supported by offerd: ") and reason in detail["errors"][0]
    assert api("GET", "/v2/apps").json() == {"apps": []}


def test_group_pods_and_enforce_role_are_refused(api):
    details = _only_error(api("POST", "/v2/groups", {"id": "/g", "groups": [{"id": "/g/p", "pods": [{"id": "p"}]}]}),
                          422, "Object is not valid")
    assert details == [{"path": "/groups(0)/pods", "errors": ["not supported by offerd: pods; define apps"]}]
    details = _only_error(api("PATCH", "/v2/groups", {"enforceRole": True}), 422, "Object is not valid")
    assert details[0]["path"] == "/enforceRole"
    assert api("POST", "/v2/groups", {"id": "/g", "pods": [], "enforceRole": False}).status_code == 201


FULL = {
    "id": "/full", "cmd": "sleep 600", "args": None, "user": None, "env": {"A": "1"}, "instances": 0, "cpus": 0.1,
    "mem": 16, "disk": 0, "gpus": 0, "executor": "", "executorResources": None, "resourceLimits": None,
    "constraints": [["hostname", "UNIQUE"]], "uris": [],
    "fetch": [{"uri": "http://files.invalid/a.tgz", "extract": True, "executable": False, "cache": False}],
    "storeUrls": [], "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300,
    "container": {"type": "MESOS", "volumes": []},
    "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
                      "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15,
                      "ignoreHttp1xx": False, "ipProtocol": "IPv4"}],
    "check": None,
    "readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/ready", "portName": "http",
                         "intervalSeconds": 30, "timeoutSeconds": 10, "httpStatusCodesForReady": [200],
                         "preserveLastResponse": False}],
    "dependencies": [], "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
    "labels": {"team": "a"}, "acceptedResourceRoles": ["*"], "ipAddress": None, "residency": None, "secrets": {},
    "taskKillGracePeriodSeconds": 5, "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http", "labels": {}}],
    "requirePorts": False, "killSelection": "OLDEST_FIRST",
    "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}, "networks": [{"mode": "host"}],
    "tty": False, "role": "*",
}


def test_every_marathon_app_field_is_accepted_and_a_get_document_goes_back(api):
    created = api("POST", "/v2/apps", FULL)
    assert created.status_code == 201, created.text
    app = api("GET", "/v2/apps/full?embed=apps.lastTaskFailure&embed=apps.taskStats").json()["app"]
    assert app["killSelection"] == "OLDEST_FIRST" and app["portDefinitions"][0]["name"] == "http"
    assert "tasks" in app and "deployments" in app and "versionInfo" in app and "ports" in app
    # Sent back as GET gave it (read-only fields included; `version` would ask for a rollback).
    echoed = {k: v for k, v in app.items() if k != "version"}
    echoed["lastTaskFailure"] = {"appId": "/full", "message": "old", "state": "TASK_FAILED"}
    echoed["tasksStats"] = {}
    echoed["readinessCheckResults"] = []
    echoed["labels"] = {"team": "b"}
    updated = api("PUT", "/v2/apps/full?force=true", echoed)
    assert updated.status_code == 200, updated.text
    after = api("GET", "/v2/apps/full").json()["app"]
    assert after["labels"] == {"team": "b"} and after["portDefinitions"] == app["portDefinitions"]
    assert "lastTaskFailure" not in after and "tasksStats" not in after
    # With `version` as well, Marathon's rule holds: version goes alone (it is a rollback).
    details = _only_error(api("PUT", "/v2/apps/full?force=true", app), 422, "Object is not valid")
    assert details == [{"path": "/", "errors": ["The 'version' field may only be combined with the 'id' field."]}]


def test_null_is_the_field_left_out(api):
    assert api("POST", "/v2/apps", {**APP, "cpus": None, "labels": None}).status_code == 201
    app = api("GET", "/v2/apps/x").json()["app"]
    assert app["cpus"] == 1.0 and app["labels"] == {}
    assert api("PATCH", "/v2/apps/x?force=true", {"mem": None, "instances": 0}).status_code == 200
    assert api("GET", "/v2/apps/x").json()["app"]["mem"] == 16
