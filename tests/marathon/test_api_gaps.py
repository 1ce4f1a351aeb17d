"""Smaller parts of the reference: text-mode /v2/tasks, unreachableStrategy, group
settings (PATCH, empty groups), group versions, dryRun and group rollback."""

from __future__ import annotations

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.marathon.test_engine import launched, offer
from tests.support import wait_for

APP = {"cmd": "sleep 1", "cpus": 0.1, "mem": 16}


def _status(core, task_id, state):
    status = pb.TaskStatus(state=state)
    status.task_id.value = task_id
    with core.lock:
        core.on_status(status)


def _launch(core, n=1):
    with core.lock:
        core.on_offers([offer(n)])
    return [t.task_id.value for t in launched(core)]


def test_text_tasks_for_load_balancers(client, core):
    client.post("/v2/apps", json={"id": "/lb/web", **APP, "instances": 2,
                                  "portDefinitions": [{"port": 10001}, {"port": 10002}]})
    client.post("/v2/apps", json={"id": "/noports", **APP, "instances": 0, "portDefinitions": []})
    task_ids = _launch(core)
    for task_id in task_ids:
        _status(core, task_id, pb.TASK_RUNNING)
    text = client.get("/v2/tasks", headers={"Accept": "text/plain"})
    assert text.status_code == 200 and text.mimetype == "text/plain"
    lines = text.get_data(as_text=True).splitlines()
    ports = [core.instances[t].ports for t in task_ids]
    assert lines[0] == "lb_web\t10001\t" + "".join(f"h1:{p[0]}\t" for p in ports)
    assert lines[1] == "lb_web\t10002\t" + "".join(f"h1:{p[1]}\t" for p in ports)
    assert lines[2] == "noports\t \t"
    assert client.get("/v2/tasks").is_json                               # JSON stays the default
    assert client.get("/v2/tasks", headers={"Accept": "*/*"}).is_json


@pytest.mark.parametrize("strategy,path", [
    ("sometimes", "/unreachableStrategy"),
    ({"inactiveAfterSeconds": -1, "expungeAfterSeconds": 5}, "/unreachableStrategy/inactiveAfterSeconds"),
    ({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}, "/unreachableStrategy/expungeAfterSeconds"),
    ({"inactiveAfterSeconds": "x", "expungeAfterSeconds": 5}, "/unreachableStrategy/inactiveAfterSeconds"),
])
def test_unreachable_strategy_validation(client, strategy, path):
    response = client.post("/v2/apps", json={"id": "/u", **APP, "unreachableStrategy": strategy})
    assert response.status_code == 422 and path in {d["path"] for d in response.get_json()["details"]}


def test_unreachable_instance_replaced_then_expunged(client, core):
    client.post("/v2/apps", json={"id": "/u", **APP, "instances": 1,
                                  "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 3600}})
    assert client.get("/v2/apps/u").get_json()["app"]["unreachableStrategy"] == {
        "inactiveAfterSeconds": 0, "expungeAfterSeconds": 3600}
    [task_id] = _launch(core)
    _status(core, task_id, pb.TASK_RUNNING)
    _status(core, task_id, pb.TASK_UNREACHABLE)
    with core.lock:
        core.converge_all()
    # Inactive: still known (it may come back), but a replacement is wanted.
    assert task_id in core.instances and core.queue["/u"].count == 1
    assert core.storage.instances()[0]["unreachable_since"] is not None
    _status(core, task_id, pb.TASK_RUNNING)          # back before the expunge timer
    with core.lock:
        core.converge_all()
    assert core.queue["/u"].count == 0 and not core.instances[task_id].inactive

    core.apps["/u"]["unreachableStrategy"] = {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}
    _status(core, task_id, pb.TASK_UNREACHABLE)
    with core.lock:
        core.converge_all()
    assert task_id not in core.instances and core.queue["/u"].count == 1
    assert ("killTask", pb.TaskID(value=task_id)) in core.driver.calls


def test_disabled_unreachable_strategy_expunges_at_once(client, core):
    client.post("/v2/apps", json={"id": "/d", **APP, "instances": 1, "unreachableStrategy": "disabled"})
    [task_id] = _launch(core)
    _status(core, task_id, pb.TASK_UNREACHABLE)
    assert task_id not in core.instances and core.queue["/d"].count == 1


def test_empty_groups_dependencies_and_patch(client, core):
    assert client.post("/v2/groups", json={"id": "/prod", "groups": [{"id": "db"}, {"id": "web"}]}).status_code == 201
    tree = client.get("/v2/groups/prod").get_json()
    assert [g["id"] for g in tree["groups"]] == ["/prod/db", "/prod/web"]
    assert client.post("/v2/groups", json={"id": "/prod"}).status_code == 409
    assert client.post("/v2/groups", json={"id": "/Bad_Group"}).status_code == 422

    response = client.patch("/v2/groups/prod/web", json={"dependencies": ["../db"]})
    assert response.status_code == 200 and response.get_json()["deploymentId"]
    assert client.get("/v2/groups/prod/web").get_json()["dependencies"] == ["/prod/db"]
    assert client.patch("/v2/groups/nothere", json={"dependencies": []}).status_code == 404
    assert client.get("/v2/deployments").get_json() == []                  # no restart, no deployment

    assert client.delete("/v2/groups/prod").status_code == 200
    assert client.get("/v2/groups/prod").status_code == 404
    assert core.storage.groups() == []


def test_dry_run_changes_nothing(client, core):
    client.post("/v2/apps", json={"id": "/g/a", **APP, "instances": 1})
    before = client.get("/v2/groups").get_json()
    response = client.put("/v2/groups/g?dryRun=true", json={"apps": [{"id": "a", **APP, "cmd": "sleep 2"},
                                                                     {"id": "b", **APP}]})
    assert response.status_code == 200
    actions = [a for step in response.get_json()["steps"] for a in step["actions"]]
    assert {"action": "RestartApplication", "app": "/g/a"} in actions
    assert {"action": "StartApplication", "app": "/g/b"} in actions
    assert client.get("/v2/groups").get_json() == before and "/g/b" not in core.apps
    bad = client.put("/v2/groups/g?dryRun=true", json={"apps": [{"id": "c", **APP, "instances": -1}]})
    assert bad.status_code == 422


def test_group_versions_and_rollback(client, core):
    client.post("/v2/apps", json={"id": "/v/a", **APP, "instances": 1})
    first = client.get("/v2/groups/v").get_json()["version"]
    client.put("/v2/apps/v/a?force=true", json={"instances": 3})
    versions = client.get("/v2/groups/v/versions").get_json()
    assert len(versions) == 2 and versions[-1] == first
    old = client.get(f"/v2/groups/v/versions/{first}").get_json()
    assert old["apps"][0]["instances"] == 1
    assert client.get("/v2/groups/v/versions/2001-01-01T00:00:00.000Z").status_code == 404
    assert client.get("/v2/groups/versions").get_json() == versions          # the root's
    response = client.put("/v2/groups/v?force=true", json={"version": first})
    assert response.status_code == 200
    assert core.apps["/v/a"]["instances"] == 1


@pytest.mark.parametrize("checks,path", [
    ([{"portName": "nope"}], "/readinessChecks(0)/portName"),
    ([{"portName": "http", "intervalSeconds": 1, "timeoutSeconds": 5}], "/readinessChecks(0)/timeoutSeconds"),
    ([{"portName": "http"}, {"portName": "http"}], "/readinessChecks"),
    ([{"portName": "http", "httpStatusCodesForReady": []}], "/readinessChecks(0)/httpStatusCodesForReady"),
])
def test_readiness_check_validation(client, checks, path):
    response = client.post("/v2/apps", json={"id": "/r", **APP, "portDefinitions": [{"port": 0, "name": "http"}],
                                             "readinessChecks": checks})
    assert response.status_code == 422 and path in {d["path"] for d in response.get_json()["details"]}


def test_readiness_gates_the_deployment(client, core):
    import http.server
    import threading

    from frameworks.marathon_like.health import HealthChecker

    state = {"status": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"])
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"warming up" if state["status"] != 200 else b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    checker = HealthChecker(core)
    try:
        client.post("/v2/apps", json={"id": "/r", **APP, "instances": 1,
                                      "portDefinitions": [{"port": 0, "name": "http"}],
                                      "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 1,
                                                           "timeoutSeconds": 0.5, "preserveLastResponse": True}]})
        [task_id] = _launch(core)
        core.instances[task_id].host, core.instances[task_id].ports = "127.0.0.1", [server.server_address[1]]
        _status(core, task_id, pb.TASK_RUNNING)

        def results():
            checker.poll()
            app = client.get("/v2/apps/r?embed=app.readiness").get_json()["app"]
            return app["readinessCheckResults"]
        [result] = wait_for(results, 5)
        assert result["ready"] is False and result["lastResponse"]["status"] == 503
        assert result["lastResponse"]["body"] == "warming up"
        assert len(client.get("/v2/deployments").get_json()) == 1        # waits for readiness

        state["status"] = 200
        wait_for(lambda: checker.poll() or core.instances[task_id].readiness_ok, timeout=5)
        assert client.get("/v2/deployments").get_json() == []
        assert client.get("/v2/apps/r?embed=app.readiness").get_json()["app"]["readinessCheckResults"] == []
    finally:
        checker.close()
        server.shutdown()
