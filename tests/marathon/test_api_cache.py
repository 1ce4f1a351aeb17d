"""GET /v2/apps answers from per-app cached JSON: it must still follow every change."""

from __future__ import annotations

from frameworks.marathon_like.core import encode
from tests.marathon.test_engine import launched, offer

from offerd.proto import offerd_pb2 as pb


def _apps(client):
    return {a["id"]: a for a in client.get("/v2/apps").get_json()["apps"]}


def test_list_follows_versions_counts_and_deployments(client, core):
    assert client.post("/v2/apps", json={"id": "/c", "cmd": "sleep 1", "cpus": 0.1, "mem": 16,
                                         "instances": 2}).status_code == 201
    first = _apps(client)["/c"]
    assert first["tasksStaged"] == 0 and len(first["deployments"]) == 1
    assert _apps(client) == {"/c": first}            # served from the cache, same document

    with core.lock:
        core.on_offers([offer()])
    task_ids = [t.task_id.value for t in launched(core)]
    assert _apps(client)["/c"]["tasksStaged"] == 2
    with core.lock:
        for task_id in task_ids:
            status = pb.TaskStatus(state=pb.TASK_RUNNING)
            status.task_id.value = task_id
            core.on_status(status)
    running = _apps(client)["/c"]
    assert running["tasksRunning"] == 2 and running["tasksStaged"] == 0 and running["deployments"] == first["deployments"]
    with core.lock:
        for inst in core.instances.values():       # pretend the settle time passed
            inst.started_at -= core.config.deployment_settle_seconds
        core.progress_deployments()
    after = _apps(client)["/c"]
    assert after["tasksRunning"] == 2 and after["tasksStaged"] == 0 and after["deployments"] == []

    client.put("/v2/apps/c", json={"cmd": "sleep 2"})
    changed = _apps(client)["/c"]
    assert changed["cmd"] == "sleep 2" and changed["version"] != first["version"]
    # The uncached path (extra embeds) agrees with the cached one on the shared fields.
    embedded = {a["id"]: a for a in client.get("/v2/apps?embed=apps.tasks").get_json()["apps"]}["/c"]
    assert {k: v for k, v in embedded.items() if k != "tasks"} == changed
    client.delete("/v2/apps/c")
    assert "/c" not in _apps(client)


def test_encode_falls_back_for_huge_numbers():
    assert encode({"n": 2 ** 70}) == b'{"n":1180591620717411303424}'
