"""The allocator through a real master, a real slave and SDK frameworks."""

from __future__ import annotations

import threading

import requests

from offerd.common.resources import Resources
from offerd.framework_sdk import MesosSchedulerDriver, Scheduler
from offerd.proto import offerd_pb2 as pb
from tests.builders import command_task, framework_info
from tests.support import wait_for


class OneTaskPerOffer(Scheduler):
    """Always wants more: launches one task per offer when it fits, once `go` is set."""

    def __init__(self, name: str, task: str, go: threading.Event):
        self.name, self.task, self.go = name, Resources.parse(task), go
        self.task_text = task
        self.launched = 0
        self.framework_id = None
        self.lock = threading.Lock()

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.value

    def resourceOffers(self, driver, offers):
        for offer in offers:
            room = Resources.from_protos(offer.resources)
            if self.go.is_set() and room.contains(self.task):
                with self.lock:
                    self.launched += 1
                    task_id = f"{self.name}-{self.launched}"
                driver.launchTasks(offer.id, [command_task(task_id, offer, "sleep 60", self.task_text)],
                                   pb.Filters(refuse_seconds=0))
            else:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.05))


def test_classic_drf_example_end_to_end(cluster_factory):
    # 9 CPUs and 18 GB; A runs <1 CPU, 4 GB> tasks, B <3 CPUs, 1 GB>.
    cluster = cluster_factory(slaves=1, resources="cpus:9;mem:18432;disk:4096;ports:[31000-32000]",
                              allocation_interval=0.1)
    go = threading.Event()
    a = OneTaskPerOffer("A", "cpus:1;mem:4096", go)
    b = OneTaskPerOffer("B", "cpus:3;mem:1024", go)
    drivers = [MesosSchedulerDriver(s, framework_info(name=s.name), cluster.master) for s in (a, b)]
    try:
        for d in drivers:
            d.start()
        wait_for(lambda: a.framework_id and b.framework_id, 20, message="both frameworks subscribed")
        go.set()
        wait_for(lambda: a.launched + b.launched >= 5, 30, message="five tasks launched")
        # Nothing else fits: the remaining mem:4096 has no cpus for either.
        state = wait_for(lambda: _state_with_running(cluster, 5), 30, message="five tasks running")
        assert (a.launched, b.launched) == (3, 2)  # equal dominant shares: A 12/18 mem, B 6/9 cpus
        frameworks = {f["name"]: f for f in state["frameworks"]}
        # The master's explanation is in /master/state for the web UI.
        assert frameworks["A"]["allocator"]["dominant_share"] >= 2 / 3 - 1e-6  # 0.667
        assert frameworks["B"]["allocator"]["dominant_share"] >= 2 / 3 - 1e-6  # 0.667
        why = requests.get(f"{cluster.master_url}/master/allocator", timeout=5).json()
        assert set(why["frameworks"]) == {a.framework_id, b.framework_id}
        metrics = requests.get(f"{cluster.master_url}/metrics/snapshot", timeout=5).json()
        assert metrics["allocator/mesos/allocation_runs"] > 0
        assert "allocator/mesos/allocation_run_ms/p99" in metrics
        assert "allocator/mesos/roles/*/shares/dominant" in metrics
    finally:
        for d in drivers:
            d.stop()
            d.join()


def _state_with_running(cluster, n):
    state = requests.get(f"{cluster.master_url}/master/state", timeout=5).json()
    running = sum(1 for f in state["frameworks"] for t in f["tasks"] if t["state"] == "TASK_RUNNING")
    return state if running >= n else None


def test_quota_and_weights_endpoints_persist(cluster_factory):
    cluster = cluster_factory(slaves=1)
    url = cluster.master_url
    body = {"role": "dev", "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]}
    assert requests.post(f"{url}/quota", json=body, timeout=5).status_code == 200
    again = requests.post(f"{url}/quota", json=body, timeout=5)
    assert again.status_code == 400 and "already exists" in again.text
    bad = requests.post(f"{url}/quota", json={"role": "dev2", "guarantee": "ports:[1-2]"}, timeout=5)
    assert bad.status_code == 400 and "scalar" in bad.text
    infos = requests.get(f"{url}/quota", timeout=5).json()["infos"]
    assert infos[0]["role"] == "dev" and infos[0]["guarantee"][0]["name"] == "cpus"
    assert requests.put(f"{url}/weights", json=[{"role": "prod", "weight": 3}], timeout=5).status_code == 200
    assert requests.get(f"{url}/weights", timeout=5).json() == [{"role": "prod", "weight": 3.0}]
    metrics = requests.get(f"{url}/metrics/snapshot", timeout=5).json()
    assert metrics["allocator/mesos/quota/roles/dev/resources/cpus/guarantee"] == 1.0
    # Persisted under the master's --work_dir, read back by the next master.
    import glob
    import json
    (path,) = glob.glob(f"{cluster.work_dir}/**/registry.json", recursive=True)
    saved = json.load(open(path))
    assert saved["weights"] == {"prod": 3.0} and saved["quotas"]["dev"]["guarantee"] == "cpus:1"
    assert requests.delete(f"{url}/quota/dev", timeout=5).status_code == 200
    assert requests.get(f"{url}/quota", timeout=5).json() == {"infos": []}
