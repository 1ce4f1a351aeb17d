"""State persistence: the storage contract on every backend (memory, files, ZooKeeper), restore into a core, and
the real thing: SIGKILL the marathon process, start it again, nothing relaunched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from frameworks.marathon_like.core import Config, Core
from frameworks.marathon_like.storage import FileStorage, InMemoryStorage
from offerd.proto import offerd_pb2 as pb
from tests.marathon.test_e2e_marathon import APP, no_deployments, running
from tests.support import wait_for


def _app(app_id="/a", version="2026-01-01T00:00:00.000Z", **extra):
    return {"id": app_id, "version": version, "instances": 1, "portDefinitions": [], **extra}


# -- one contract, every backend --------------------------------------------------------------

def _zk_storage(request):
    from frameworks.marathon_like.zk import ZooKeeperStorage
    return ZooKeeperStorage.connect(request.getfixturevalue("zk_url"))


BACKENDS = {
    "memory": lambda request, tmp_path: InMemoryStorage(),
    "file": lambda request, tmp_path: FileStorage(str(tmp_path / "state")),
    "zookeeper": lambda request, tmp_path: _zk_storage(request),
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request, tmp_path):
    store = BACKENDS[request.param](request, tmp_path)
    yield store
    store.close()


def test_apps_and_versions(storage):
    storage.max_versions = 3
    for second in range(5):
        storage.save_app(_app("/g/a", f"2026-01-01T00:00:0{second}.000Z", instances=second))
    storage.save_app(_app("/b"))
    assert storage.app_versions("/g/a") == [f"2026-01-01T00:00:0{s}.000Z" for s in (4, 3, 2)]
    assert storage.app_version("/g/a", "2026-01-01T00:00:03.000Z")["instances"] == 3
    assert storage.app_version("/g/a", "2026-01-01T00:00:00.000Z") is None
    assert storage.app_version("/g/a", "../../etc") is None
    assert {a["id"]: a["instances"] for a in storage.apps()} == {"/g/a": 4, "/b": 1}
    storage.delete_app("/g/a")
    assert [a["id"] for a in storage.apps()] == ["/b"] and storage.app_versions("/g/a") == []


def test_deployments_instances_failures_and_framework_id(storage):
    storage.save_deployment({"id": "d1", "current": 0})
    storage.save_deployment({"id": "d1", "current": 1})
    storage.save_instance({"task_id": "a.1", "state": "TASK_RUNNING"})
    storage.save_instance({"task_id": "a.2", "state": "TASK_STAGING"})
    storage.delete_instance("a.2")
    storage.save_failure("/g/a", {"taskId": "a.0"})
    assert storage.deployments() == [{"id": "d1", "current": 1}]
    assert storage.instances() == [{"task_id": "a.1", "state": "TASK_RUNNING"}]
    assert storage.failures() == {"/g/a": {"taskId": "a.0"}}
    assert storage.framework_id() is None
    storage.save_framework_id("fw-1")
    assert storage.framework_id() == "fw-1"
    storage.save_framework_id(None)
    assert storage.framework_id() is None
    storage.delete_deployment("d1")
    assert storage.deployments() == []


def test_file_store_survives_a_new_process_object_and_leaves_no_temp_files(tmp_path):
    first = FileStorage(str(tmp_path))
    first.save_app(_app("/x"))
    first.save_framework_id("fw")
    second = FileStorage(str(tmp_path))
    assert [a["id"] for a in second.apps()] == ["/x"] and second.framework_id() == "fw"
    assert not [p for p in tmp_path.rglob(".tmp-*")]


# -- a core restores what it stored -----------------------------------------------------------

def test_core_restores_apps_instances_and_deployments(tmp_path):
    first = Core(Config(), FileStorage(str(tmp_path)))
    app, deployment = first.create_app({"id": "/web", "cmd": "sleep 1", "instances": 2, "cpus": 0.1, "mem": 16})
    offer = pb.Offer(hostname="h1")
    offer.id.value, offer.slave_id.value, offer.framework_id.value = "o1", "s1", "fw"
    for name, amount in (("cpus", 4), ("mem", 1024)):
        offer.resources.add(name=name, type=pb.Value.SCALAR).scalar.value = amount
    offer.resources.add(name="ports", type=pb.Value.RANGES).ranges.range.add(begin=31000, end=31100)
    with first.lock:
        first.on_offers([offer])
        task_ids = sorted(first.instances)
        status = pb.TaskStatus(state=pb.TASK_RUNNING)
        status.task_id.value = task_ids[0]
        first.on_status(status)
    assert len(task_ids) == 2

    second = Core(Config(), FileStorage(str(tmp_path)))
    assert second.apps["/web"] == first.apps["/web"]
    assert sorted(second.instances) == task_ids
    assert second.instances[task_ids[0]].state == "TASK_RUNNING"
    assert second.instances[task_ids[0]].started_at == first.instances[task_ids[0]].started_at
    assert list(second.deployments) == [deployment.id]
    # Adopted, not relaunched: nothing is queued and nothing is killed.
    with second.lock:
        second.converge_all()
    assert second.queue["/web"].count == 0 and second.driver.calls == []
    assert second.clock.next() > app["version"]


# -- the real process ---------------------------------------------------------------------------

def _framework_tasks(cluster) -> tuple[set[str], set[str]]:
    frameworks = [f for f in cluster.state()["frameworks"] if f["name"] == "marathon"]
    live = {t["id"] for f in frameworks for t in f["tasks"]}
    done = {t["id"] for f in frameworks for t in f["completed_tasks"]}
    return live, done


def test_sigkill_and_restart_adopts_running_tasks(marathon):
    api, cluster = marathon, marathon.cluster
    assert api.post("/v2/apps", json={"id": "/keep", "instances": 3, **APP}).status_code == 201
    assert api.post("/v2/apps", json={"id": "/grp/other", "instances": 1, **APP}).status_code == 201
    before = {t["id"] for t in running(api, "/keep", 3)}
    running(api, "/grp/other", 1)
    no_deployments(api)
    apps_before = {a["id"]: a["version"] for a in api.get("/v2/apps").json()["apps"]}
    versions_before = api.get("/v2/apps/keep/versions").json()
    framework_id = api.get("/v2/info").json()["frameworkId"]

    cluster.marathon_proc.send_signal(signal.SIGKILL)
    cluster.marathon_proc.wait(10)
    cluster.start_marathon()
    wait_for(lambda: _get_json(api, "/v2/info"), 30, message="marathon back")
    wait_for(lambda: api.get("/v2/info").json().get("frameworkId") == framework_id, 30,
             message="the same framework id re-registered")

    assert {a["id"]: a["version"] for a in api.get("/v2/apps").json()["apps"]} == apps_before
    assert api.get("/v2/apps/keep/versions").json() == versions_before
    # Give reconciliation and a few ticks the chance to do something wrong.
    time.sleep(2.0)
    assert {t["id"] for t in api.tasks("/keep")} == before
    live, done = _framework_tasks(cluster)
    assert before <= live and len(live) == 4 and not done
    app = api.get("/v2/apps/keep").json()["app"]
    assert app["tasksRunning"] == 3 and app["deployments"] == []
    # Still fully working after the restart.
    assert api.put("/v2/apps/keep", json={"instances": 4}).status_code == 200
    running(api, "/keep", 4)


def _get_json(api, path):
    try:
        response = api.get(path, timeout=2)
    except Exception:
        return None
    return response.json() if response.status_code == 200 else None


def test_marathon_cli_defaults_keep_tasks_across_restart():
    """The defaults that make adoption work: a week of failover and a local store."""
    out = subprocess.run([sys.executable, "-m", "offerd", "marathon", "--help"], capture_output=True, text=True,
                         cwd=".", timeout=30).stdout
    assert "1weeks" in out and "--work_dir" in out


def test_zk_url_parsing():
    from frameworks.marathon_like.storage import StorageError
    from frameworks.marathon_like.zk import parse_url

    assert parse_url("zk://h1:2181,h2:2181/marathon/") == ("h1:2181,h2:2181", "/marathon", None)
    assert parse_url("zk://u:p%40ss@h:2181/a/b") == ("h:2181", "/a/b", "u:p@ss")
    for bad in ("h:2181/marathon", "zk://h:2181", "zk:///marathon"):
        with pytest.raises(StorageError):
            parse_url(bad)


@pytest.mark.parametrize("bad", ["h:2181/marathon", "zk://h:2181", "zk:///marathon", "zk://h:port/marathon",
                                 "zk://user@h:2181/marathon", "file:///nonexistent/zk-url"])
def test_zk_url_errors_are_the_masters(bad):
    """One parser for the master and Marathon: a malformed --zk gets the same words from both."""
    from frameworks.marathon_like.storage import StorageError
    from frameworks.marathon_like.zk import parse_url
    from offerd.common.election import ElectionError, parse_zk_url

    with pytest.raises(ElectionError) as master:
        parse_zk_url(bad)
    with pytest.raises(StorageError) as marathon:
        parse_url(bad)
    assert str(marathon.value) == str(master.value)


def test_marathon_process_refuses_a_malformed_zk_url():
    """The real process ends at once with the reason, before contacting anything."""
    done = subprocess.run([sys.executable, "-m", "offerd", "marathon", "--master=127.0.0.1:5050",
                           "--zk=zk://user:secret@zkhost:notaport/marathon", "--http_port=0"],
                          capture_output=True, text=True, cwd=".", timeout=60)
    assert done.returncode == 1, done.stderr
    assert "invalid ZooKeeper host 'zkhost:notaport'" in done.stderr and "use HOST:PORT" in done.stderr
    assert "secret" not in done.stderr   # the password is redacted, as the master does
