"""Mesos-level health checks of Marathon apps, end to end: a real master, real
slaves and the real marathon process. The slave runs the checks; Marathon shows
their results and replaces a task the slave killed for failing them."""

from __future__ import annotations

import json
import os

import psutil

from tests.support import wait_for

APP = {"cpus": 0.1, "mem": 64, "instances": 1}
SERVER = "exec python3 -m http.server $PORT0 --bind 127.0.0.1"
TIMING = {"delaySeconds": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 5}


def healthy_count(api, app_id: str) -> int:
    return api.get(f"/v2/apps{app_id}").json()["app"]["tasksHealthy"]


def test_mesos_http_and_command_checks_make_tasks_healthy(marathon):
    api = marathon
    response = api.post("/v2/apps", json={"id": "/web", **APP, "cmd": SERVER, "healthChecks": [
        {"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/", **TIMING, "maxConsecutiveFailures": 3}]})
    assert response.status_code == 201, response.text
    response = api.post("/v2/apps", json={"id": "/cmd", **APP, "cmd": "touch ready; sleep 600", "healthChecks": [
        {"protocol": "COMMAND", "command": {"value": "test -f ready"}, **TIMING, "maxConsecutiveFailures": 3}]})
    assert response.status_code == 201, response.text
    for app_id in ("/web", "/cmd"):
        wait_for(lambda: healthy_count(api, app_id) == 1, 60, message=f"a healthy task of {app_id}")
        [task] = api.tasks(app_id)
        [result] = task["healthCheckResults"]
        assert result["alive"] is True and result["taskId"] == task["id"] and result["firstSuccess"]
    app = api.get("/v2/apps/web").json()["app"]
    assert app["tasksUnhealthy"] == 0 and app["healthChecks"][0]["protocol"] == "MESOS_HTTP"
    # The master's /state shows the health of each status that carries it, as Mesos' does.
    cluster = api.cluster
    with cluster.urlopen(f"{cluster.master_url}/master/state") as answer:
        state = json.load(answer)
    [task] = [t for f in state["frameworks"] for t in f["tasks"] if t["id"] == api.tasks("/web")[0]["id"]]
    assert {"state": "TASK_RUNNING", "healthy": True} in [
        {k: v for k, v in status.items() if k != "timestamp"} for status in task["statuses"]]


def test_an_unhealthy_instance_is_killed_by_the_slave_and_replaced(marathon):
    api = marathon
    check = {"protocol": "COMMAND", "command": {"value": "test -f never-there"}, **TIMING,
             "gracePeriodSeconds": 0, "maxConsecutiveFailures": 2}
    response = api.post("/v2/apps", json={"id": "/sick", **APP, "cmd": "sleep 600", "healthChecks": [check],
                                          "backoffSeconds": 1})
    assert response.status_code == 201, response.text
    failure = wait_for(lambda: api.get("/v2/apps/sick").json()["app"].get("lastTaskFailure"), 60,
                       message="the unhealthy task killed")
    assert failure["state"] == "TASK_KILLED"
    assert failure["message"].startswith("unhealthy") and "2 consecutive failed health checks" in failure["message"]
    wait_for(lambda: (tasks := api.tasks("/sick")) and tasks[0]["id"] != failure["taskId"], 60,
             message="a replacement")


def test_a_command_check_runs_under_the_slave_not_marathon(marathon):
    api = marathon
    cluster = api.cluster
    # The check writes the pids of its ancestry into its working directory, the sandbox.
    ancestry = ('p=$$; while [ "$p" -gt 1 ]; do echo "$p"; '
                'p=$(awk \'/^PPid/ {print $2}\' /proc/$p/status); done > ancestry.new && mv ancestry.new ancestry')
    response = api.post("/v2/apps", json={"id": "/where", **APP, "cmd": "sleep 600", "healthChecks": [
        {"protocol": "COMMAND", "command": {"value": ancestry}, **TIMING, "maxConsecutiveFailures": 3}]})
    assert response.status_code == 201, response.text
    wait_for(lambda: healthy_count(api, "/where") == 1, 60, message="a healthy task")
    [task] = api.tasks("/where")
    found = [os.path.join(root, "ancestry") for root, _, files in os.walk(cluster.work_dir)
             if "ancestry" in files and f"executors{os.sep}{task['id']}" in root]
    assert found, "the check's record of its ancestry is in the task's sandbox"
    pids = {int(line) for line in open(found[0]).read().split()}
    slaves = {proc.pid for proc in cluster.slave_procs if proc is not None}
    assert pids & slaves, "a slave process is an ancestor of the check"
    assert cluster.marathon_proc.pid not in pids
    marathon_descendants = {child.pid for child in psutil.Process(cluster.marathon_proc.pid).children(recursive=True)}
    assert not pids & marathon_descendants
