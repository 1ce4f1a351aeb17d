"""The endpoints the web UI and CLI read: Mesos' key lists,
agreement between endpoints, Prometheus text, and the sandbox proxy's refusals.
No browser needed."""

from __future__ import annotations

import pytest
import requests

from offerd.master.prometheus import metric_name
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info

pytestmark = pytest.mark.timeout(120)

STATE_KEYS = ("version git_sha git_branch git_tag build_date build_time build_user start_time elected_time id pid "
              "hostname capabilities activated_slaves deactivated_slaves unreachable_slaves leader leader_info "
              "cluster flags slaves recovered_slaves frameworks completed_frameworks orphan_tasks "
              "unregistered_frameworks").split()
FRAMEWORK_KEYS = ("id name used_resources offered_resources capabilities hostname webui_url active connected "
                  "recovered user failover_timeout checkpoint registered_time principal roles resources tasks "
                  "unreachable_tasks completed_tasks offers executors labels").split()
SLAVE_KEYS = ("id hostname port attributes pid registered_time resources used_resources offered_resources "
              "reserved_resources unreserved_resources active deactivated version capabilities").split()
TASK_KEYS = "id name framework_id executor_id slave_id state resources role statuses".split()
ROLE_KEYS = "name weight quota allocated offered reserved resources frameworks".split()
METRIC_KEYS = (
    ["master/elected", "master/uptime_secs", "master/outstanding_offers", "master/dropped_messages",
     "master/valid_status_updates", "master/invalid_status_updates", "master/slave_registrations",
     "master/slave_reregistrations", "master/slave_removals", "master/messages_register_framework",
     "master/messages_launch_tasks", "master/messages_decline_offers", "master/messages_revive_offers",
     "master/messages_status_update", "master/messages_status_update_acknowledgement",
     "master/messages_reconcile_tasks", "master/messages_kill_task",
     "system/cpus_total", "system/load_1min", "system/load_5min", "system/load_15min",
     "system/mem_total_bytes", "system/mem_free_bytes"]
    + [f"master/{r}_{k}" for r in ("cpus", "mem", "disk", "gpus") for k in ("total", "used", "percent")]
    + [f"master/{r}_revocable_{k}" for r in ("cpus", "mem", "disk", "gpus") for k in ("total", "used", "percent")]
    + [f"master/slaves_{k}" for k in ("active", "inactive", "connected", "disconnected", "unreachable")]
    + [f"master/frameworks_{k}" for k in ("active", "inactive", "connected", "disconnected")]
    + [f"master/tasks_{k}" for k in ("staging", "starting", "running", "killing", "finished", "failed", "killed",
                                     "lost", "error", "unreachable", "dropped", "gone", "gone_by_operator")])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from offerd.cli.local import LocalCluster, free_base_port

    work = tmp_path_factory.mktemp("endpoints")
    cluster = LocalCluster(slaves=2, port=free_base_port(2), work_dir=str(work), log_dir=str(work / "logs"),
                           resources="cpus:4;mem:4096;disk:4096;ports:[31000-32000]", allocation_interval=0.2,
                           master_args=["--cluster=endpoints"])
    cluster.start(timeout=60)
    framework = RunningFramework(cluster.master, framework_info(name="endpoints", roles=["web"]))
    framework.__enter__()
    s = framework.scheduler
    s.submit("echo done", task_id="t-done")
    s.submit("sleep 600", task_id="t-run")
    s.wait_state("t-done", pb.TASK_FINISHED)
    s.wait_state("t-run", pb.TASK_RUNNING)
    yield cluster, framework
    framework.__exit__(None, None, None)
    cluster.stop()


def get(cluster, endpoint, **params):
    return requests.get(cluster.master_url + endpoint, params=params, timeout=10, allow_redirects=False)


def test_state_keys_follow_the_reference(live):
    cluster, _ = live
    state = get(cluster, "/master/state").json()
    assert [k for k in STATE_KEYS if k not in state] == []
    (framework,) = state["frameworks"]
    assert [k for k in FRAMEWORK_KEYS if k not in framework] == []
    for slave in state["slaves"]:
        assert [k for k in SLAVE_KEYS if k not in slave] == []
    for task in framework["tasks"] + framework["completed_tasks"]:
        assert [k for k in TASK_KEYS if k not in task] == []
        assert all(set(s) >= {"state", "timestamp"} for s in task["statuses"])


def test_metrics_keys_and_agreement_with_state(live):
    cluster, _ = live
    metrics = get(cluster, "/metrics/snapshot").json()
    assert [k for k in METRIC_KEYS if k not in metrics] == []
    assert any(k.startswith("allocator/") for k in metrics)
    state = get(cluster, "/master/state").json()
    summary = get(cluster, "/master/state-summary").json()
    (framework,) = state["frameworks"]
    assert metrics["master/tasks_running"] == len(framework["tasks"]) == summary["frameworks"][0]["TASK_RUNNING"] == 1
    assert metrics["master/tasks_finished"] == len(framework["completed_tasks"]) == 1
    assert metrics["master/slaves_active"] == state["activated_slaves"] == len(summary["slaves"]) == 2
    assert metrics["master/cpus_total"] == sum(s["resources"]["cpus"] for s in state["slaves"])
    assert metrics["master/cpus_used"] == pytest.approx(sum(s["used_resources"]["cpus"] for s in state["slaves"]))


def test_prometheus_text_has_the_same_numbers(live):
    cluster, _ = live
    response = get(cluster, "/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    lines = dict(line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#"))
    assert float(lines[metric_name("master/cpus_total")]) == 8.0
    assert float(lines[metric_name("master/tasks_running")]) == 1.0
    assert metric_name("system/load_1min") in lines
    assert "# HELP offerd_master_cpus_total Mesos metric master/cpus_total" in response.text


def test_tasks_filters_and_roles(live):
    cluster, framework = live
    every = get(cluster, "/master/tasks").json()["tasks"]
    assert sorted(t["id"] for t in every) == ["t-done", "t-run"]
    assert [t["id"] for t in get(cluster, "/master/tasks", state="running").json()["tasks"]] == ["t-run"]
    assert [t["id"] for t in get(cluster, "/master/tasks", order="desc", limit=1).json()["tasks"]] == ["t-run"]
    assert [t["id"] for t in get(cluster, "/master/tasks", limit=1, offset=1).json()["tasks"]] == ["t-run"]
    assert get(cluster, "/master/tasks", framework_id="other").json()["tasks"] == []
    roles = {r["name"]: r for r in get(cluster, "/master/roles").json()["roles"]}
    web = roles["web"]
    assert [k for k in ROLE_KEYS if k not in web] == []
    assert web["frameworks"] == [framework.framework_id] and web["weight"] == 1.0
    assert web["allocated"]["cpus"] == pytest.approx(0.1)


def test_sandbox_proxy_and_its_refusals(live):
    cluster, framework = live
    box = get(cluster, "/master/sandbox", task_id="t-done").json()
    assert box["slave_id"] == framework.scheduler.task_slaves["t-done"] and box["executor_id"] == "t-done"
    slave, directory = box["slave_id"], box["directory"]
    names = {e["path"].rsplit("/", 1)[1] for e in get(cluster, "/files/browse", slave_id=slave, path=directory).json()}
    assert {"stdout", "stderr"} <= names
    read = get(cluster, "/files/read", slave_id=slave, path=directory + "/stdout").json()
    assert read == {"data": "done\n", "offset": 0}
    assert get(cluster, "/files/read", slave_id=slave, path=directory + "/stdout", offset=-1).json()["offset"] == 5
    download = get(cluster, "/files/download", slave_id=slave, path=directory + "/stdout")
    assert download.content == b"done\n" and "attachment" in download.headers["Content-Disposition"]

    unknown = get(cluster, "/files/read", slave_id="no-such-slave", path=directory + "/stdout")
    assert unknown.status_code == 404 and "No slave with id no-such-slave" in unknown.text
    for outside in ("/etc/passwd", directory + "/../../../../../../etc/passwd", directory.rsplit("/", 3)[0]):
        refused = get(cluster, "/files/read", slave_id=slave, path=outside)
        assert refused.status_code == 403 and "is not inside a sandbox" in refused.text, outside
    assert get(cluster, "/files/browse", slave_id=slave, path="relative/path").status_code == 400
    assert get(cluster, "/files/browse", path=directory).status_code == 400
    missing = get(cluster, "/files/read", slave_id=slave, path=directory + "/nope")
    assert missing.status_code == 404 and "No such file" in missing.text
    assert get(cluster, "/master/sandbox", task_id="nope").status_code == 404


def test_slave_usage_through_the_master(live):
    cluster, framework = live
    slave = framework.scheduler.task_slaves["t-run"]
    usage = get(cluster, f"/master/slaves/{slave}/monitor/statistics").json()
    (entry,) = [u for u in usage if u["executor_id"] == "t-run"]
    assert entry["statistics"]["mem_rss_bytes"] > 0
    assert get(cluster, f"/master/slaves/{slave}/state").json()["id"] == slave
    assert get(cluster, "/master/slaves/nope/monitor/statistics").status_code == 404


def test_read_only_and_mutating_endpoints_are_apart(live):
    cluster, _ = live
    assert requests.get(cluster.master_url + "/master/teardown", timeout=5).status_code == 405
    assert requests.post(cluster.master_url + "/master/state", timeout=5).status_code == 405
    assert requests.post(cluster.master_url + "/files/read", timeout=5).status_code == 405
