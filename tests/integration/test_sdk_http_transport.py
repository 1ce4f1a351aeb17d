"""The SDK's scheduler driver over Mesos' v1 scheduler HTTP API (transport="http").

The same RecordingScheduler and driver methods as over ZeroMQ, against a real
cluster: what changes is only how the driver reaches the master.
"""

from __future__ import annotations

import pytest

from offerd.framework_sdk import MesosSchedulerDriver
from offerd.framework_sdk.scheduler_driver import TRANSPORT_VARIABLE
from offerd.proto import offerd_pb2 as pb
from tests.builders import RecordingScheduler, RunningFramework, framework_info
from tests.integration.test_sdk_examples import run_example
from tests.support import wait_for


def http_framework(cluster, info=None, **driver_kwargs) -> RunningFramework:
    return RunningFramework(cluster.master, info=info,
                            driver_kwargs={**cluster.driver_kwargs(), "transport": "http", **driver_kwargs})


def test_tasks_launch_update_acknowledge_kill_and_reconcile_over_http(cluster):
    with http_framework(cluster) as fw:
        done = fw.scheduler.submit("true")
        long = fw.scheduler.submit("sleep 300")
        fw.scheduler.wait_state(done, pb.TASK_FINISHED)
        fw.scheduler.wait_state(long, pb.TASK_RUNNING)
        framework = next(f for f in cluster.state()["frameworks"] if f["id"] == fw.framework_id)
        assert framework["name"] == fw.info.name and framework["active"]

        # Implicit acknowledgements reached the master: the finished task's update is not resent.
        wait_for(lambda: not [t for t in _tasks(cluster, fw.framework_id) if t["id"] == done],
                 timeout=30, message="the finished task to leave the active tasks")

        fw.driver.reconcileTasks([pb.TaskStatus(task_id=pb.TaskID(value=long), state=pb.TASK_RUNNING)])
        fw.scheduler.wait_for(lambda: len([s for s in fw.scheduler.updates[long]
                                           if s.reason == pb.TaskStatus.REASON_RECONCILIATION]) >= 1,
                              what="an explicit reconciliation answer")

        fw.driver.killTask(pb.TaskID(value=long))
        fw.scheduler.wait_state(long, pb.TASK_KILLED)
        assert fw.scheduler.errors == []


def test_framework_failover_over_http_keeps_its_tasks(cluster):
    info = framework_info(name="http-failover", failover_timeout=60.0)
    first = http_framework(cluster, info=info).__enter__()
    task_id = first.scheduler.submit("sleep 300")
    first.scheduler.wait_state(task_id, pb.TASK_RUNNING)
    framework_id = first.framework_id
    first.driver.stop(failover=True)
    first.driver.join()

    info2 = framework_info(name="http-failover", failover_timeout=60.0)
    info2.id.value = framework_id
    with http_framework(cluster, info=info2) as second:
        assert second.framework_id == framework_id
        second.driver.reconcileTasks([])
        status = second.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        assert status.slave_id.value
        second.driver.killTask(pb.TaskID(value=task_id))
        second.scheduler.wait_state(task_id, pb.TASK_KILLED)
        assert second.scheduler.errors == []


def test_a_restarted_master_gets_the_framework_back_over_http(cluster):
    info = framework_info(name="http-master-restart", failover_timeout=120.0)
    with http_framework(cluster, info=info) as fw:
        task_id = fw.scheduler.submit("sleep 300")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        cluster.master_proc.kill()
        cluster.master_proc.wait()
        cluster.start_master()
        # The stream broke; the driver found the master again and resubscribed with its id.
        fw.scheduler.wait_for(lambda: fw.scheduler.reregistrations >= 1, timeout=90, what="reregistered")
        # The restarted master knows the task once its slave has reregistered.
        wait_for(lambda: [t for t in _tasks(cluster, fw.framework_id) if t["id"] == task_id],
                 timeout=60, message="the slave to bring the task back")
        fw.driver.reconcileTasks([])
        fw.scheduler.wait_for(lambda: any(s.reason == pb.TaskStatus.REASON_RECONCILIATION
                                          and s.state == pb.TASK_RUNNING
                                          for s in fw.scheduler.updates[task_id]),
                              timeout=60, what="the task reported running after the restart")
        assert fw.scheduler.framework_ids == [fw.framework_id]
        assert fw.scheduler.errors == []


def test_a_refused_subscribe_reaches_error_with_the_masters_reason(cluster):
    with http_framework(cluster) as gone:
        framework_id = gone.framework_id
    # stop() tore the framework down; subscribing with its id again is refused.
    scheduler = RecordingScheduler()
    info = framework_info()
    info.id.value = framework_id
    driver = MesosSchedulerDriver(scheduler, info, cluster.master, transport="http")
    driver.start()
    try:
        scheduler.wait_for(lambda: scheduler.errors, what="error()")
        assert driver.join() == pb.DRIVER_ABORTED
    finally:
        driver.stop()
    assert scheduler.errors == [f"SUBSCRIBE refused (400): Framework {framework_id} has been removed"], \
        scheduler.errors
    assert scheduler.framework_ids == []


def test_an_unknown_transport_is_reported_through_error(cluster):
    scheduler = RecordingScheduler()
    driver = MesosSchedulerDriver(scheduler, framework_info(), cluster.master, transport="carrier-pigeon")
    assert driver.start() == pb.DRIVER_ABORTED
    assert "unknown transport 'carrier-pigeon'" in scheduler.errors[0]


def test_the_shell_example_runs_over_http_with_the_environment_variable(cluster, monkeypatch):
    monkeypatch.setenv(TRANSPORT_VARIABLE, "http")
    result = run_example(cluster, "shell_framework.py", "--tasks", 4, "--cpus", 0.5, "--mem", 64,
                         "--command", "echo hello over http", "--timeout", 120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 finished, 0 failed, 0 not run, of 4 task(s)" in result.stdout


@pytest.mark.parametrize("cluster", ["secure"], indirect=True)
def test_http_transport_on_a_secure_cluster(cluster):
    # Basic auth with the driver's credential, HTTPS verified with the CA file.
    with http_framework(cluster) as fw:
        task_id = fw.scheduler.submit("true")
        fw.scheduler.wait_state(task_id, pb.TASK_FINISHED)
        assert fw.scheduler.errors == []

    # A wrong secret: the master's 401 aborts the driver with the reason.
    kwargs = cluster.driver_kwargs()
    wrong = pb.Credential(principal=kwargs["credential"].principal, secret=b"not-the-secret")
    scheduler = RecordingScheduler()
    driver = MesosSchedulerDriver(scheduler, framework_info(name="wrong-secret"), cluster.master,
                                  credential=wrong, ca_file=kwargs["ca_file"], transport="http")
    driver.start()
    try:
        assert driver.join() == pb.DRIVER_ABORTED
    finally:
        driver.stop()
    assert len(scheduler.errors) == 1 and scheduler.errors[0].startswith("Master refused authentication: "), \
        scheduler.errors


def _tasks(cluster, framework_id: str) -> list[dict]:
    for fw in cluster.state()["frameworks"]:
        if fw["id"] == framework_id:
            return fw.get("tasks", [])
    return []
