"""A slave that stops answering, with the Marathon-like framework partition-aware, as
Marathon is: its tasks turn TASK_UNREACHABLE (not TASK_LOST), the app's
unreachableStrategy decides when a replacement starts, and when the slave is back the
surplus instance is killed. A real cluster; the slave is frozen with SIGSTOP, so its
tasks keep running while the master hears nothing from it."""

from __future__ import annotations

import signal

from offerd.cli.local import registered_slaves
from tests.marathon.conftest import Api
from tests.marathon.test_e2e_marathon import APP, running
from tests.support import free_port, wait_for


def test_an_unreachable_instance_is_replaced_and_the_surplus_killed_on_return(cluster_factory):
    cluster = cluster_factory(
        slaves=2, marathon_port=free_port(),
        master_args=["--slave_ping_timeout=1secs", "--max_slave_ping_timeouts=3"],
        slave_args=["--recover=reconnect"],
        marathon_args=["--min_revive_offers_interval=0.2secs", "--decline_offer_duration=1secs"])
    api = Api(cluster.marathon_url)
    created = api.post("/v2/apps", json={"id": "/lost", "instances": 1, **APP,
                                         "unreachableStrategy": {"inactiveAfterSeconds": 0,
                                                                 "expungeAfterSeconds": 3600}})
    assert created.status_code == 201, created.text
    [task] = running(api, "/lost", 1, timeout=60)
    port = next(s["port"] for s in registered_slaves(cluster) if s["id"] == task["slaveId"])
    frozen = cluster.slave_procs[port - cluster.port - 1]

    frozen.send_signal(signal.SIGSTOP)
    try:
        def unreachable_and_replaced():
            tasks = {t["id"]: t for t in api.tasks("/lost", state=None)}
            states = sorted(t["state"] for t in tasks.values())
            return tasks.get(task["id"], {}).get("state") == "TASK_UNREACHABLE" and \
                states == ["TASK_RUNNING", "TASK_UNREACHABLE"] and tasks
        tasks = wait_for(unreachable_and_replaced, 60, message="the instance unreachable and a replacement running")
        [replacement] = [t for t in tasks if t != task["id"]]
        assert api.get("/v2/apps/lost").json()["app"]["instances"] == 1
    finally:
        frozen.send_signal(signal.SIGCONT)

    # Back: the slave reregisters with its task still running; one of the two goes.
    def one_left():
        tasks = api.tasks("/lost", state=None)
        return len(tasks) == 1 and tasks[0]["state"] == "TASK_RUNNING" and tasks[0]
    survivor = wait_for(one_left, 60, message="the surplus instance killed")
    assert survivor["id"] in (task["id"], replacement)
    state = cluster.state()
    live = [t for f in state["frameworks"] for t in f["tasks"] if t["state"] in ("TASK_RUNNING", "TASK_STAGING")]
    assert [t["id"] for t in live] == [survivor["id"]]
