"""POST /api/v1/executor: a v1 HTTP executor, written here with http.client and
no SDK, runs as a custom executor of a real framework on a real cluster.

It SUBSCRIBEs to $MESOS_AGENT_ENDPOINT with its token, takes LAUNCH, sends
UPDATEs with uuids and sees them ACKNOWLEDGED; the scheduler sees the updates.
"""

import base64
import http.client
import json
import os
import sys
import uuid

from offerd.proto import offerd_pb2 as pb
from offerd.framework_sdk import MesosSchedulerDriver
from tests.builders import RecordingScheduler, RunningFramework, command_task, framework_info
from tests.support import wait_for

EXECUTOR = r'''
import base64, http.client, json, os, sys, uuid

log_path = sys.argv[1]
env = {k: v for k, v in os.environ.items() if k.startswith("MESOS_")}
with open(log_path + ".env", "w") as f:
    json.dump(env, f)
host, port = os.environ["MESOS_AGENT_ENDPOINT"].rsplit(":", 1)
ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
       "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}
headers = {"Content-Type": "application/json", "Accept": "application/json",
           "Authorization": "Bearer " + os.environ["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"]}

def note(entry):
    with open(log_path, "a") as f:
        f.write(json.dumps(entry) + "\n")

def post(call):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/v1/executor", json.dumps(dict(ids, **call)), headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    note({"posted": call["type"], "status": resp.status, "body": body.decode()})

def update(task_id, state):
    post({"type": "UPDATE", "update": {"status": {
        "task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
        "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}}})

conn = http.client.HTTPConnection(host, int(port), timeout=120)
conn.request("POST", "/api/v1/executor", json.dumps(dict(ids, type="SUBSCRIBE", subscribe={})), headers)
resp = conn.getresponse()
note({"subscribe_status": resp.status, "content_type": resp.getheader("Content-Type")})
if resp.status != 200:
    note({"body": resp.read().decode()})
    sys.exit(1)
buf = b""
while True:
    chunk = resp.read1(65536)
    if not chunk:
        break
    buf += chunk
    while b"\n" in buf:
        size, rest = buf.split(b"\n", 1)
        if len(rest) < int(size):
            break
        record, buf = rest[:int(size)], rest[int(size):]
        event = json.loads(record)
        note({"event": event})
        kind = event["type"]
        if kind == "LAUNCH":
            task_id = event["launch"]["task"]["task_id"]["value"]
            update(task_id, "TASK_RUNNING")
            if not task_id.startswith("sleep"):
                update(task_id, "TASK_FINISHED")
        elif kind == "KILL":
            update(event["kill"]["task_id"]["value"], "TASK_KILLED")
        elif kind == "SHUTDOWN":
            sys.exit(0)
'''


class ExecutorScheduler(RecordingScheduler):
    """Launches each submitted task on the HTTP executor instead of as a command."""

    def __init__(self, script: str, log_path: str):
        super().__init__()
        self.script = script
        self.log_path = log_path

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                pending = list(self.pending)
                self.pending.clear()
            if not pending:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.2))
                continue
            tasks = []
            for task_id, _ in pending:
                task = command_task(task_id, offer, "true")
                task.ClearField("command")
                task.executor.executor_id.value = "http-executor"
                task.executor.command.value = f"{sys.executable} {self.script} {self.log_path}"
                tasks.append(task)
                self.task_slaves[task_id] = offer.slave_id.value
            driver.launchTasks(offer.id, tasks, pb.Filters(refuse_seconds=0.1))


def _entries(log_path: str) -> list[dict]:
    if not os.path.exists(log_path):
        return []
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _events(log_path: str, kind: str) -> list[dict]:
    return [e["event"] for e in _entries(log_path) if "event" in e and e["event"]["type"] == kind]


def _post(endpoint: str, body, headers: dict) -> tuple[int, str]:
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/v1/executor", body, headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def test_http_executor_runs_tasks_kills_and_refuses_bad_calls(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=1)
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    log_path = str(tmp_path / "executor.log")
    scheduler = ExecutorScheduler(str(script), log_path)
    framework = RunningFramework.__new__(RunningFramework)
    framework.scheduler, framework.info = scheduler, framework_info()
    framework.driver = MesosSchedulerDriver(scheduler, framework.info, cluster.master)
    with framework:
        scheduler.submit("", task_id="quick")
        finished = scheduler.wait_state("quick", [pb.TASK_FINISHED], timeout=60)
        assert finished.source == pb.TaskStatus.SOURCE_EXECUTOR
        assert pb.TASK_RUNNING in scheduler.states("quick")
        assert _entries(log_path)[0] == {"subscribe_status": 200, "content_type": "application/json"}
        subscribed = _events(log_path, "SUBSCRIBED")[0]["subscribed"]
        assert subscribed["executor_info"]["executor_id"]["value"] == "http-executor"
        assert subscribed["framework_info"]["id"]["value"] == framework.framework_id
        assert subscribed["agent_info"]["hostname"] and subscribed["container_id"]["value"]
        wait_for(lambda: len(_events(log_path, "ACKNOWLEDGED")) >= 2, timeout=30)
        posted = [e for e in _entries(log_path) if "posted" in e]
        assert [(e["posted"], e["status"]) for e in posted] == [("UPDATE", 202), ("UPDATE", 202)]

        with open(log_path + ".env") as f:
            env = json.load(f)
        for name in ("MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_DIRECTORY", "MESOS_SANDBOX",
                     "MESOS_CHECKPOINT", "MESOS_RECOVERY_TIMEOUT", "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                     "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "MESOS_AGENT_ENDPOINT"):
            assert env.get(name), name
        endpoint, token = env["MESOS_AGENT_ENDPOINT"], env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"]

        # The same executor gets a second task, which is killed.
        scheduler.submit("", task_id="sleep-1")
        scheduler.wait_state("sleep-1", [pb.TASK_RUNNING], timeout=60)
        framework.driver.killTask(pb.TaskID(value="sleep-1"))
        scheduler.wait_state("sleep-1", [pb.TASK_KILLED], timeout=60)
        assert _events(log_path, "KILL")[0]["kill"]["task_id"]["value"] == "sleep-1"

        ids = {"framework_id": {"value": framework.framework_id}, "executor_id": {"value": "http-executor"}}
        good = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        subscribe = json.dumps(dict(ids, type="SUBSCRIBE", subscribe={}))
        update = json.dumps(dict(ids, type="UPDATE", update={"status": {
            "task_id": {"value": "sleep-1"}, "state": "TASK_RUNNING",
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}}))
        assert _post(endpoint, subscribe, {"Content-Type": "application/json"})[0] == 401
        assert _post(endpoint, subscribe, dict(good, Authorization="Bearer not-a-token"))[0] == 401
        assert _post(endpoint, subscribe, dict(good, **{"Content-Type": "text/plain"}))[0] == 415
        assert _post(endpoint, "{not json", good)[0] == 400
        assert _post(endpoint, subscribe, dict(good, Accept="text/html"))[0] == 406
        status, text = _post(endpoint, json.dumps(dict(ids, type="SUBSCRIBE", subscribe={},
                                                       executor_id={"value": "someone-else"})), good)
        assert status == 400 and "someone-else" in text
        no_uuid = json.loads(update)
        del no_uuid["update"]["status"]["uuid"]
        assert _post(endpoint, json.dumps(no_uuid), good)[0] == 400
        assert _post(endpoint, json.dumps(dict(ids, type="UPDATE")), good)[0] == 400
        # An UPDATE for a task the executor is not running: refused, nothing forwarded.
        stray = json.loads(update)
        stray["update"]["status"]["task_id"]["value"] = "no-such-task"
        assert _post(endpoint, json.dumps(stray), good)[0] == 400
        assert scheduler.states("no-such-task") == []
        assert _post(endpoint, json.dumps(dict(ids, type="HEARTBEAT")), good)[0] == 202
    # The framework is gone: its executor is told to shut down, on its stream.
    wait_for(lambda: _events(log_path, "SHUTDOWN"), timeout=30)
