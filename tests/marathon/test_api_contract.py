"""API contract tests against the Flask app in process (no cluster): wire shapes,
defaults, validation bodies and status codes from the reference."""

from __future__ import annotations

import re

import pytest

from frameworks.marathon_like import schemas
from frameworks.marathon_like.model import Instance

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
APP = {"id": "/foo", "cmd": "sleep 100", "cpus": 0.1, "mem": 16}


def post(client, **fields):
    return client.post("/v2/apps", json={**APP, **fields})


def test_post_app_fills_defaults_and_headers(client):
    response = client.post("/v2/apps", json={"id": "foo", "cmd": "sleep 1"})
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/v2/apps/foo")
    body = response.json
    assert response.headers["Marathon-Deployment-Id"] == body["deployments"][0]["id"]
    assert body["id"] == "/foo"
    for key, value in {"cpus": 1.0, "mem": 128.0, "disk": 0.0, "gpus": 0, "instances": 1, "backoffSeconds": 1,
                       "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300, "killSelection": "YOUNGEST_FIRST",
                       "requirePorts": False, "executor": "",
                       "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}}.items():
        assert body[key] == value, key
    assert body["portDefinitions"][0]["name"] == "default" and body["portDefinitions"][0]["protocol"] == "tcp"
    assert 10000 <= body["portDefinitions"][0]["port"] <= 20000
    assert TS.match(body["version"]) and body["versionInfo"]["lastConfigChangeAt"] == body["version"]
    assert (body["tasksRunning"], body["tasksStaged"], body["tasksHealthy"], body["tasksUnhealthy"]) == (0, 0, 0, 0)
    for banned in ("tty", "check", "executorResources", "resourceLimits", "tasksStats", "role"):
        assert banned not in body


@pytest.mark.parametrize("body,status,details", [
    ({"id": "/a", "cmd": "x", "instances": -3}, 422, [{"path": "/instances", "errors": ["got -3, expected 0 or more"]}]),
    ({"id": "/a", "cmd": "x", "instances": "3"}, 422,
     [{"path": "/instances", "errors": ["error.expected.jsnumber", "expected a number, got a string"]}]),
    ({"id": "/a", "cmd": "x", "killSelection": "RANDOM"}, 422, [{"path": "/killSelection", "errors": [
        "error.unknown.enum.literal", "expected one of YOUNGEST_FIRST, OLDEST_FIRST, got 'RANDOM'"]}]),
    ({"id": "/a"}, 422, [{"path": "/", "errors": [
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."]}]),
    ({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": -1.2}}, 422,
     [{"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["got -1.2, expected between 0.0 and 1.0"]}]),
    ({"id": "/a", "cmd": "x", "constraints": [["hostname"]]}, 422,
     [{"path": "/constraints(0)", "errors": ["Each constraint must have either 2 or 3 fields"]}]),
    ({"id": "/a", "cmd": "x", "healthChecks": [{"portIndex": 3}]}, 422, [{"path": "/healthChecks(0)", "errors": [
        "Health check port indices must address an element of the ports array or container port mappings."]}]),
    ({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 80}, {"port": 80}]}, 422,
     [{"path": "/portDefinitions", "errors": ["ports must be unique"]}]),
    ({"id": "/a", "cmd": "x", "ports": [1], "portDefinitions": [{"port": 2}]}, 422,
     [{"path": "/", "errors": ["cannot specify both ports and port definitions"]}]),
    ({"id": "/a", "cmd": "x", "args": ["y"]}, 422, [{"path": "/", "errors": [
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."]}]),
])
def test_invalid_apps_get_marathon_bodies(client, core, body, status, details):
    response = client.post("/v2/apps", json=body)
    assert response.status_code == status
    assert response.json["details"] == details
    assert response.json["message"] in ("Object is not valid", "Invalid JSON")
    assert core.apps == {}


@pytest.mark.parametrize("app_id", ["/Foo", "/foo_bar", "/-foo", "/foo/tasks", "/foo/restart", "/"])
def test_bad_ids(client, app_id):
    response = client.post("/v2/apps", json={"id": app_id, "cmd": "x"})
    assert response.status_code == 422 and response.json["details"][0]["path"] == "/id"


def test_malformed_json_and_oversized(client):
    response = client.post("/v2/apps", data="{x", content_type="application/json")
    assert response.status_code == 400 and response.json["message"] == "Invalid JSON"
    assert isinstance(response.json["details"], str)
    response = client.post("/v2/apps", data="[" + "1," * 600000 + "1]", content_type="application/json")
    assert response.status_code == 413 and "message" in response.json


def test_conflict_and_lock(client):
    deployment = post(client).json["deployments"][0]["id"]
    assert post(client).status_code == 409
    assert post(client).json == {"message": "An app with id [/foo] already exists."}
    response = client.put("/v2/apps/foo", json={"instances": 2})
    assert response.status_code == 409 and response.json["deployments"] == [{"id": deployment}]
    forced = client.put("/v2/apps/foo?force=True", json={"instances": 2})
    assert forced.status_code == 200 and set(forced.json) == {"deploymentId", "version"}
    assert forced.headers["Marathon-Deployment-Id"] == forced.json["deploymentId"]


def test_unknown_things_are_404(client):
    assert client.get("/v2/apps/nope").json == {"message": "App '/nope' does not exist"}
    assert client.get("/v2/apps/nope").status_code == 404
    assert client.delete("/v2/apps/nope").status_code == 404
    assert client.patch("/v2/apps/nope", json={"instances": 1}).status_code == 404
    assert client.get("/v2/groups/nope").json == {"message": "Group '/nope' does not exist"}
    assert client.delete("/v2/deployments/abc").json == {"message": "DeploymentPlan abc does not exist"}
    assert client.get("/v2/nothing").status_code == 404


def test_put_creates_then_updates_partially(client, core):
    created = client.put("/v2/apps/svc/api", json={"cmd": "sleep 1", "instances": 2})
    assert created.status_code == 201 and created.headers["Location"].endswith("/v2/apps/svc/api")
    core.deployments.clear()
    updated = client.put("/v2/apps/svc/api", json={"instances": 3, "tasksRunning": 99})
    assert updated.status_code == 200
    app = client.get("/v2/apps/svc/api").json["app"]
    assert app["cmd"] == "sleep 1" and app["instances"] == 3
    assert app["versionInfo"]["lastScalingAt"] == app["version"] != app["versionInfo"]["lastConfigChangeAt"]
    assert {"tasks", "lastTaskFailure", "deployments"} & set(app) >= {"tasks", "deployments"}
    core.deployments.clear()
    replaced = client.put("/v2/apps/svc/api?partialUpdate=false", json={"cmd": "sleep 2"})
    assert replaced.status_code == 200
    assert client.get("/v2/apps/svc/api").json["app"]["instances"] == 1


def test_versions_and_rollback(client, core):
    first = post(client).json["version"]
    core.deployments.clear()
    client.put("/v2/apps/foo", json={"cmd": "sleep 2"})
    core.deployments.clear()
    versions = client.get("/v2/apps/foo/versions").json["versions"]
    assert len(versions) == 2 and versions[-1] == first
    assert client.get(f"/v2/apps/foo/versions/{first}").json["cmd"] == "sleep 100"
    bad = client.put("/v2/apps/foo", json={"version": first, "cmd": "x"})
    assert bad.status_code == 422
    assert bad.json["details"][0]["errors"] == ["The 'version' field may only be combined with the 'id' field."]
    assert client.put("/v2/apps/foo", json={"version": first}).status_code == 200
    assert client.get("/v2/apps/foo").json["app"]["cmd"] == "sleep 100"


def test_list_filters_and_embed(client, core):
    post(client, id="/a", labels={"tier": "web", "env": "prod"}, cmd="python -m http.server")
    post(client, id="/b", labels={"tier": "db"}, cmd="postgres")
    post(client, id="/g/c", cmd="sleep 1")
    ids = lambda q: sorted(a["id"] for a in client.get("/v2/apps" + q).json["apps"])  # noqa: E731
    assert ids("?cmd=HTTP") == ["/a"]
    assert ids("?id=g/") == ["/g/c"]
    assert ids("?label=tier") == ["/a", "/b"]
    assert ids("?label=tier==web") == ["/a"]
    assert ids("?label=tier!=web") == ["/b", "/g/c"]
    assert ids("?label=tier in (db, web),env") == ["/a"]
    assert ids("?label=tier notin (web)") == ["/b", "/g/c"]
    apps = client.get("/v2/apps?embed=apps.tasks&embed=app.lastTaskFailure").json["apps"]
    assert all("tasks" in a and "deployments" in a and "tasksRunning" in a for a in apps)
    assert [a["id"] for a in client.get("/v2/apps/g/*").json["*"]] == ["/g/c"]


def _fake_task(core, app_id, host="h1", state="TASK_RUNNING"):
    app = core.apps[app_id]
    inst = Instance(f"{app_id.strip('/')}.{len(core.instances)}", app_id, app["version"], host=host,
                    ports=[31000], service_ports=[10000], state=state, staged_at=1.0, started_at=2.0)
    inst.config_version = app["versionInfo"]["lastConfigChangeAt"]
    core.instances[inst.task_id] = inst
    core.by_app.setdefault(app_id, {})[inst.task_id] = inst
    return inst


def test_tasks_endpoints(client, core):
    post(client, instances=2)
    a, b = _fake_task(core, "/foo", "h1"), _fake_task(core, "/foo", "h2", "TASK_STAGING")
    tasks = client.get("/v2/apps/foo/tasks").json["tasks"]
    assert {t["id"] for t in tasks} == {a.task_id, b.task_id}
    task = next(t for t in tasks if t["id"] == a.task_id)
    assert set(task) == {"id", "appId", "host", "ports", "servicePorts", "slaveId", "state", "stagedAt", "startedAt",
                         "version", "ipAddresses", "healthCheckResults", "localVolumes"}
    assert TS.match(task["stagedAt"]) and len(task["servicePorts"]) >= len(task["ports"])
    schemas.TaskResponse().load(task)
    assert [t["id"] for t in client.get("/v2/tasks?status=running").json["tasks"]] == [a.task_id]
    assert [t["id"] for t in client.get("/v2/tasks?status[]=staging").json["tasks"]] == [b.task_id]
    assert client.delete("/v2/apps/foo/tasks?scale=true&wipe=true").json == {
        "message": "You cannot use scale and wipe at the same time."}
    assert client.delete("/v2/apps/foo/tasks/nope").json == {"message": "Task 'nope' does not exist"}
    killed = client.delete("/v2/apps/foo/tasks?host=h1").json["tasks"]
    assert [t["id"] for t in killed] == [a.task_id]
    assert ("killTask",) == core.driver.calls[-1][:1]
    assert client.post("/v2/tasks/delete", json={"ids": ["garbage"]}).status_code == 400
    core.deployments.clear()
    result = client.post("/v2/tasks/delete?scale=true", json={"ids": [b.task_id]})
    assert set(result.json) == {"deploymentId", "version"}
    assert core.apps["/foo"]["instances"] == 1


def test_deployments_shape_and_cancel(client, core):
    post(client)
    plans = client.get("/v2/deployments").json
    assert isinstance(plans, list) and len(plans) == 1
    plan = plans[0]
    assert set(plan) == {"id", "version", "affectedApps", "affectedPods", "steps", "currentActions", "currentStep",
                         "totalSteps"}
    assert plan["steps"][0] == {"actions": [{"action": "StartApplication", "app": "/foo"}]}
    assert plan["currentStep"] >= 1
    rollback = client.delete(f"/v2/deployments/{plan['id']}")
    assert rollback.status_code == 200 and set(rollback.json) == {"deploymentId", "version"}
    assert "/foo" not in core.apps
    other = post(client, id="/bar").json["deployments"][0]["id"]
    stop = client.delete(f"/v2/deployments/{other}?force=true")
    assert stop.status_code == 202 and stop.data == b""
    assert "/bar" in core.apps and client.get("/v2/deployments").json == []


def test_queue_and_delay(client, core):
    post(client, instances=2)
    item = client.get("/v2/queue").json["queue"][0]
    assert set(item) == {"app", "count", "role", "delay", "since", "processedOffersSummary"}
    assert item["role"] == "*"
    assert item["count"] == 2 and item["delay"] == {"timeLeftSeconds": 0, "overdue": True}
    assert "lastUnusedOffers" in client.get("/v2/queue?embed=lastUnusedOffers").json["queue"][0]
    assert client.delete("/v2/queue/foo/delay").status_code == 204
    assert client.delete("/v2/queue/bar/delay").json == {"message": "Application /bar not found in tasks queue."}


def test_system_endpoints(client):
    info = client.get("/v2/info").json
    assert info["name"] == "marathon" and {"marathon_config", "zookeeper_config", "http_config"} <= set(info)
    assert info["marathon_config"]["max_instances_per_offer"] == 100
    assert client.get("/v2/leader").json == {"leader": "127.0.0.1:8080"}
    assert client.get("/ping").data == b"pong"
    assert client.get("/ping", headers={"Accept": "application/json"}).json == "pong"
    metrics = client.get("/metrics").json
    assert set(metrics) == {"version", "counters", "gauges", "histograms", "meters", "timers"}
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.") and "AppSchema" in doc["components"]["schemas"]
    assert "/v2/apps/{appId}" in doc["paths"]
    assert client.get("/").status_code == 302


def test_groups(client, core):
    response = client.post("/v2/groups", json={"id": "/prod", "apps": [{"id": "web", "cmd": "sleep 1"}],
                                               "groups": [{"id": "db", "apps": [{"id": "pg", "cmd": "sleep 1"}]}]})
    assert response.status_code == 201, response.json
    assert {"/prod/web", "/prod/db/pg"} == set(core.apps)
    root = client.get("/v2/groups").json
    assert root["id"] == "/" and root["groups"][0]["id"] == "/prod"
    prod = client.get("/v2/groups/prod").json
    assert [a["id"] for a in prod["apps"]] == ["/prod/web"] and prod["groups"][0]["id"] == "/prod/db"
    assert client.post("/v2/groups", json={"id": "/prod"}).status_code == 409
    assert client.delete("/v2/groups/prod?force=true").status_code == 200
    assert core.apps == {}


def test_event_stream_filters(client, core):
    response = client.get("/v2/events?event_type=app_terminated_event", buffered=False)
    chunks = response.response
    core.events.publish("deployment_info", plan={}, currentStep={})
    core.events.publish("app_terminated_event", appId="/x")
    text = ""
    for chunk in chunks:
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        if "app_terminated_event" in text:
            break
    response.close()
    assert "event: app_terminated_event\ndata: {" in text and "deployment_info" not in text
    assert '"timestamp":"' in text


def test_collapsed_slashes_and_query_booleans(client, core):
    post(client)
    assert client.get("/v2/apps//foo").status_code == 200
    assert client.put("/v2/apps/foo?force=TRUE", json={"instances": 3}).status_code == 200
    assert client.post("/v2/apps/foo/restart?force=true", data="", content_type="application/json").status_code == 200
