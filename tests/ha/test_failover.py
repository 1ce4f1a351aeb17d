"""Master failover with real processes: three masters, slaves and a scheduler
that find the leader through ZooKeeper; the leader is SIGKILLed with tasks running."""

from __future__ import annotations

import time

import pytest

from offerd.cli import secure_setup
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.ha.cluster import HACluster
from tests.support import wait_for

SESSION_TIMEOUT = 2.0
TASKS = 50


@pytest.fixture
def ha_cluster(request, zk_url, tmp_path):
    """Three masters and two slaves; open unless parametrized "secure" (the masters then
    share one CURVE key pair, credentials, ACLs and a TLS certificate)."""
    mode = getattr(request, "param", "open")
    if mode not in ("open", "secure"):
        raise ValueError(f"ha_cluster: unknown mode {mode!r}; use 'open' or 'secure'")
    security = secure_setup.prepare(str(tmp_path)) if mode == "secure" else None
    cluster = HACluster(zk_url, masters=3, slaves=2, work_dir=str(tmp_path), security=security,
                        master_args=[f"--zk_session_timeout={SESSION_TIMEOUT}secs", "--allocation_interval=0.2secs",
                                     "--slave_reregister_timeout=30secs"],
                        slave_args=["--heartbeat_interval=0.3secs"])
    yield cluster.start()
    cluster.stop()


class OfferCounting(RunningFramework):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offers = 0
        inner = self.scheduler.resourceOffers

        def counting(driver, offers):
            self.offers += len(offers)
            inner(driver, offers)

        self.scheduler.resourceOffers = counting
        self.driver.heartbeat_interval = 0.3


def running_tasks(state: dict) -> list[str]:
    return [t["id"] for f in state.get("frameworks", []) for t in f.get("tasks", []) if t["state"] == "TASK_RUNNING"]


@pytest.mark.parametrize("ha_cluster", ["open", "secure"], indirect=True)
def test_leader_sigkill_three_times_keeps_every_task(ha_cluster):
    cluster = ha_cluster
    info = framework_info(name="ha", failover_timeout=120.0)
    # Secure: the scheduler proves its principal again to each new leader, over CURVE.
    with OfferCounting(cluster.zk_url, info=info, driver_kwargs=cluster.driver_kwargs()) as fw:
        t0 = time.monotonic()
        ids = [fw.scheduler.submit("sleep 600") for _ in range(TASKS)]
        for task_id in ids:
            fw.scheduler.wait_state(task_id, pb.TASK_RUNNING, timeout=60)
        print(f"tasks running after {time.monotonic() - t0:.2f}s", flush=True)
        for kill in range(3):
            old = cluster.leader()
            reregistrations = fw.scheduler.reregistrations
            killed_at = time.monotonic()
            cluster.kill_master(old)
            new = cluster.wait_leader(SESSION_TIMEOUT + 10, not_index=old)
            elected_after = time.monotonic() - killed_at
            assert elected_after < SESSION_TIMEOUT + 2 + 2, f"kill {kill}: new leader after {elected_after:.1f}s"
            print(f"kill {kill}: elected after {elected_after:.2f}s", flush=True)
            fw.scheduler.wait_for(lambda: fw.scheduler.reregistrations > reregistrations, 30,
                                  what=f"the scheduler to resubscribe (kill {kill})")
            print(f"kill {kill}: resubscribed after {time.monotonic() - killed_at:.2f}s", flush=True)
            wait_for(lambda: cluster.state(new).get("activated_slaves") == 2, 30,
                     message=f"both slaves to reregister (kill {kill})")
            print(f"kill {kill}: slaves after {time.monotonic() - killed_at:.2f}s", flush=True)
            wait_for(lambda: sorted(running_tasks(cluster.state(new))) == sorted(ids), 30,
                     message=f"all {TASKS} tasks running on the new leader (kill {kill})")
            offers = fw.offers
            wait_for(lambda: fw.offers > offers, 30, message=f"offers from the new leader (kill {kill})")
            print(f"kill {kill}: offers after {time.monotonic() - killed_at:.2f}s", flush=True)
            cluster.start_master(old)  # as a supervisor would; it stands by
        # None lost, killed or duplicated; each task ran once (one TASK_RUNNING... or more
        # from reconciliation, never a second launch).
        for task_id in ids:
            states = fw.scheduler.states(task_id)
            assert pb.TASK_RUNNING in states and not set(states) - {pb.TASK_STAGING, pb.TASK_STARTING,
                                                                     pb.TASK_RUNNING}, (task_id, states)
        fw.driver.reconcileTasks([])
        time.sleep(1)
        state = cluster.state()
        assert len(state["frameworks"]) == 1 and state["frameworks"][0]["id"] == fw.framework_id
        assert not fw.scheduler.errors, fw.scheduler.errors
        if cluster.security is not None:
            # The last leader knows every peer by the principal it proved to that leader.
            assert state["frameworks"][0]["principal"] == secure_setup.OPERATOR
            assert [s.get("principal") for s in state["slaves"]] == ["slave", "slave"], state["slaves"]


def test_failover_timeout_is_kept_across_a_master_failover(zk_url, tmp_path):
    cluster = HACluster(zk_url, masters=2, slaves=1, work_dir=str(tmp_path),
                        master_args=[f"--zk_session_timeout={SESSION_TIMEOUT}secs", "--allocation_interval=0.2secs"],
                        slave_args=["--heartbeat_interval=0.3secs"]).start()
    try:
        fw = OfferCounting(cluster.zk_url, info=framework_info(name="gone-for-good", failover_timeout=3.0))
        with fw:
            task_id = fw.scheduler.submit("sleep 600")
            fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
            framework_id = fw.framework_id
            fw.driver.stop(failover=True)  # the scheduler goes away for good
        old = cluster.leader()
        cluster.kill_master(old)
        new = cluster.wait_leader(SESSION_TIMEOUT + 10, not_index=old)
        # The new leader never saw the scheduler, only the slave's report of its
        # task; the registry's failover_timeout (3 s, not forever) removes it.
        wait_for(lambda: any(f["id"] == framework_id for f in cluster.state(new).get("completed_frameworks", [])),
                 20, message="the framework to be removed after its failover timeout")
        wait_for(lambda: not any(f["tasks"] for f in cluster.state(new)["frameworks"]), 10,
                 message="its task to be gone")
    finally:
        cluster.stop()
