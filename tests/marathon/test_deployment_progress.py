"""Deployments finish only when the instances run: a real cluster, the real marathon
process, over HTTP. An instance that keeps failing keeps its deployment open, and the
launch queue and lastTaskFailure say what is missing and why."""

from __future__ import annotations

from tests.marathon.test_e2e_marathon import APP, no_deployments, running
from tests.support import free_port, wait_for


def _fixed_port_server(port: int) -> str:
    # Both slaves of the fixture run on 127.0.0.1: the second instance finds the port taken.
    return f"exec python3 -m http.server {port} --bind 127.0.0.1"


def _queue_item(api, app_id):
    return next((q for q in api.get("/v2/queue").json()["queue"] if q["app"]["id"] == app_id), None)


def _deployments_of(api, app_id):
    return [d for d in api.get("/v2/deployments").json() if app_id in d["affectedApps"]]


def test_failing_instance_keeps_the_deployment_open_until_fixed(marathon):
    api = marathon
    created = api.post("/v2/apps", json={"id": "/srv", "instances": 2, **APP, "cmd": _fixed_port_server(free_port()),
                                         "backoffSeconds": 2, "backoffFactor": 1})
    assert created.status_code == 201, created.text
    deployment_id = created.headers["Marathon-Deployment-Id"]

    def failed_once():
        app = api.get("/v2/apps/srv?embed=apps.lastTaskFailure").json()["app"]
        return app.get("lastTaskFailure") and app
    app = wait_for(failed_once, 60, message="a failed instance of /srv")
    failure = app["lastTaskFailure"]
    assert failure["appId"] == "/srv" and failure["state"] == "TASK_FAILED"
    # Why: the slave's words end with the task's last line on stderr.
    assert failure["message"].startswith("Command exited with status 1: ") and "Address already in use" in failure["message"]
    assert {"host", "taskId", "timestamp", "version", "slaveId"} <= set(failure)
    # One instance runs, the other keeps failing: the deployment that started them stays.
    running(api, "/srv", 1, timeout=60)
    app = api.get("/v2/apps/srv").json()["app"]
    assert app["deployments"] == [{"id": deployment_id}] and app["lastTaskFailure"]["state"] == "TASK_FAILED"
    [deployment] = _deployments_of(api, "/srv")
    assert deployment["id"] == deployment_id
    assert deployment["currentActions"][0]["action"] == "ScaleApplication"
    assert deployment["currentStep"] == deployment["totalSteps"] == 2

    # The queue says one instance is missing, and that it waits out its backoff.
    def backing_off():
        item = _queue_item(api, "/srv")
        return item and item["delay"]["timeLeftSeconds"] > 0 and item
    item = wait_for(backing_off, 60, message="/srv backing off in the queue")
    assert item["count"] == 1 and item["delay"]["overdue"] is False and item["since"]
    assert item["role"] == "*"
    summary = item["processedOffersSummary"]
    assert summary["processedOffersCount"] >= summary["unusedOffersCount"] >= 0
    assert {r["reason"] for r in summary["rejectSummaryLastOffers"]} >= {"InsufficientCpus", "InsufficientPorts"}
    embedded = next(q for q in api.get("/v2/queue?embed=lastUnusedOffers").json()["queue"]
                    if q["app"]["id"] == "/srv")
    assert isinstance(embedded["lastUnusedOffers"], list)
    assert _deployments_of(api, "/srv") == [deployment]

    # A change without force is refused while the deployment runs; with force it replaces it.
    locked = api.put("/v2/apps/srv", json={"cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1"})
    assert locked.status_code == 409 and locked.json()["deployments"] == [{"id": deployment_id}]
    fixed = api.put("/v2/apps/srv?force=true", json={"cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1"})
    assert fixed.status_code == 200, fixed.text
    running(api, "/srv", 2, timeout=60)
    no_deployments(api, timeout=60)
    assert _queue_item(api, "/srv") is None
    assert api.get("/v2/apps/srv").json()["app"]["tasksRunning"] == 2


def test_a_command_that_exits_keeps_its_deployment_until_deleted(marathon):
    api = marathon
    created = api.post("/v2/apps", json={"id": "/crash", "instances": 1, **APP, "cmd": "exit 1",
                                         "backoffSeconds": 1, "backoffFactor": 1})
    deployment_id = created.headers["Marathon-Deployment-Id"]
    wait_for(lambda: api.get("/v2/apps/crash").json()["app"].get("lastTaskFailure"), 60,
             message="a failure of /crash")
    assert [d["id"] for d in _deployments_of(api, "/crash")] == [deployment_id]

    # DELETE without force rolls back: the app did not exist before, so it is removed.
    rollback = api.delete(f"/v2/deployments/{deployment_id}")
    assert rollback.status_code == 200 and rollback.json()["deploymentId"] != deployment_id
    no_deployments(api, timeout=60)
    assert api.get("/v2/apps/crash").status_code == 404

    # With force the deployment goes, the app stays and is still retried (listed in the queue).
    created = api.post("/v2/apps", json={"id": "/crash2", "instances": 1, **APP, "cmd": "exit 1",
                                         "backoffSeconds": 1, "backoffFactor": 1})
    deployment_id = created.headers["Marathon-Deployment-Id"]
    wait_for(lambda: api.get("/v2/apps/crash2").json()["app"].get("lastTaskFailure"), 60,
             message="a failure of /crash2")
    assert api.delete(f"/v2/deployments/{deployment_id}?force=true").status_code == 202
    assert _deployments_of(api, "/crash2") == []
    assert api.get("/v2/apps/crash2").json()["app"]["deployments"] == []
    wait_for(lambda: _queue_item(api, "/crash2"), 30, message="/crash2 still queued")
    assert api.delete(f"/v2/deployments/{deployment_id}").status_code == 404
