"""End to end: a real master, real slaves and the real marathon process, over HTTP."""

from __future__ import annotations

import time

import requests

from tests.marathon.conftest import OPEN_AND_SECURE
from tests.support import wait_for

APP = {"cpus": 0.1, "mem": 16, "cmd": "sleep 600"}


def running(api, app_id, n, timeout=30.0):
    return wait_for(lambda: len(tasks := api.tasks(app_id)) == n and tasks, timeout,
                    message=f"{n} running tasks of {app_id}")


def no_deployments(api, timeout=30.0):
    wait_for(lambda: api.get("/v2/deployments").json() == [], timeout, message="deployments to finish")


@OPEN_AND_SECURE
def test_app_runs_scales_and_replaces_killed_tasks(marathon):
    api = marathon
    response = api.post("/v2/apps", json={"id": "/web", "instances": 3, "portDefinitions": [{"port": 0}, {"port": 0}],
                                          **APP, "cmd": "echo $PORT0 $PORTS $MARATHON_APP_ID > info; sleep 600"})
    assert response.status_code == 201, response.text
    tasks = running(api, "/web", 3)
    for task in tasks:
        assert task["host"] == "127.0.0.1"
        assert len(task["ports"]) == 2 and all(31000 <= p <= 32000 for p in task["ports"])
    no_deployments(api)
    app = api.get("/v2/apps/web").json()["app"]
    assert app["tasksRunning"] == 3 and len(app["tasks"]) == 3

    # Scale up and down.
    assert api.put("/v2/apps/web", json={"instances": 5}).status_code == 200
    running(api, "/web", 5)
    no_deployments(api)
    assert api.put("/v2/apps/web", json={"instances": 2}).status_code == 200
    running(api, "/web", 2)
    no_deployments(api)

    # A killed task is replaced.
    victim = api.tasks("/web")[0]["id"]
    response = api.delete(f"/v2/apps/web/tasks/{victim}")
    assert response.status_code == 200 and response.json()["task"]["id"] == victim
    wait_for(lambda: len(api.tasks("/web")) == 2 and victim not in {t["id"] for t in api.tasks("/web")}, 30,
             message="a replacement")

    # Deleting stops every instance.
    assert api.delete("/v2/apps/web").status_code == 200
    wait_for(lambda: api.get("/v2/tasks").json()["tasks"] == [], 30, message="all tasks gone")
    assert api.get("/v2/apps/web").status_code == 404


@OPEN_AND_SECURE
def test_failing_command_backs_off_and_is_visible_in_queue(marathon):
    api = marathon
    api.post("/v2/apps", json={"id": "/crash", "instances": 1, **APP, "cmd": "exit 1",
                               "backoffSeconds": 30, "backoffFactor": 2})

    def delayed():
        queue = api.get("/v2/queue").json()["queue"]
        items = [q for q in queue if q["app"]["id"] == "/crash"]
        return items and items[0]["delay"]["timeLeftSeconds"] > 0 and items[0]
    item = wait_for(delayed, 30, message="a backoff delay")
    assert item["count"] == 1 and item["delay"]["overdue"] is False
    failure = api.get("/v2/apps/crash").json()["app"]["lastTaskFailure"]
    assert failure["state"] == "TASK_FAILED" and failure["appId"] == "/crash"
    assert api.delete("/v2/queue/crash/delay").status_code == 204
    assert api.delete("/v2/queue/nothere/delay").status_code == 404


def test_unmet_constraint_reason_in_queue(marathon):
    api = marathon
    api.post("/v2/apps", json={"id": "/picky", "instances": 1, **APP,
                               "constraints": [["hostname", "IS", "elsewhere.example"]]})

    def rejected():
        queue = api.get("/v2/queue").json()["queue"]
        for item in queue:
            if item["app"]["id"] == "/picky":
                summary = {r["reason"]: r["declined"]
                           for r in item["processedOffersSummary"]["rejectSummaryLastOffers"]}
                return summary.get("UnfulfilledConstraint", 0) > 0
        return False
    wait_for(rejected, 30, message="UnfulfilledConstraint in processedOffersSummary")
    assert api.tasks("/picky", state=None) == []


def test_rolling_restart_keeps_capacity(marathon):
    api = marathon
    api.post("/v2/apps", json={"id": "/roll", "instances": 4, **APP,
                               "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}})
    old = {t["id"] for t in running(api, "/roll", 4)}
    no_deployments(api)
    assert api.post("/v2/apps/roll/restart").status_code == 200
    lowest, deadline = 4, time.monotonic() + 40
    while time.monotonic() < deadline:
        tasks = api.tasks("/roll")
        lowest = min(lowest, len(tasks))
        ids = {t["id"] for t in tasks}
        if len(ids) == 4 and not ids & old and api.get("/v2/deployments").json() == []:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("restart did not finish")
    assert lowest >= 2


@OPEN_AND_SECURE
def test_bad_definitions_get_marathon_errors(marathon):
    api = marathon
    response = api.post("/v2/apps", json={"id": "/bad", "cmd": "x", "instances": -1})
    assert response.status_code == 422
    assert response.json() == {"message": "Object is not valid",
                               "details": [{"path": "/instances", "errors": ["got -1, expected 0 or more"]}]}
    response = api.post("/v2/apps", data="{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["message"] == "Invalid JSON"
    if api.cluster.security is not None:
        # A good definition without credentials is refused before it is read.
        response = requests.post(f"{api.url}/v2/apps", json={"id": "/anonymous", **APP}, verify=api.ca_file,
                                 timeout=10)
        assert response.status_code == 401, response.text
    assert api.get("/v2/apps").json() == {"apps": []}


def test_health_checks_report_and_replace_unhealthy(marathon):
    api = marathon
    server = "exec python3 -m http.server $PORT0 --bind 127.0.0.1"
    check = {"protocol": "HTTP", "portIndex": 0, "gracePeriodSeconds": 0, "intervalSeconds": 1,
             "timeoutSeconds": 1, "maxConsecutiveFailures": 2}
    api.post("/v2/apps", json={"id": "/ok", "instances": 1, **APP, "mem": 64, "cmd": server,
                               "healthChecks": [{**check, "path": "/"}]})
    api.post("/v2/apps", json={"id": "/sick", "instances": 1, **APP, "mem": 64, "cmd": server,
                               "healthChecks": [{**check, "path": "/missing"}], "backoffSeconds": 1})
    wait_for(lambda: api.get("/v2/apps/ok").json()["app"]["tasksHealthy"] == 1, 30, message="a healthy task")
    task = api.tasks("/ok")[0]
    assert task["healthCheckResults"][0]["alive"] is True
    failure = wait_for(lambda: api.get("/v2/apps/sick").json()["app"].get("lastTaskFailure"), 30,
                       message="the unhealthy task killed")
    assert failure["message"].startswith("unhealthy")
    wait_for(lambda: (tasks := api.tasks("/sick")) and tasks[0]["id"] != failure["taskId"], 30,
             message="a replacement")
