"""The executor driver against a protocol-level fake slave (tests/fakes/sdk_peers.py)."""

from __future__ import annotations

import threading

import pytest

from offerd.framework_sdk import ExecutorDriver, MesosExecutorDriver
from offerd.proto import offerd_pb2 as mesos_pb2
from tests.fakes.sdk_peers import FakeSlave, RecordingExecutor
from tests.support import wait_for

ExecutorCall = mesos_pb2.ExecutorCall
ExecutorEvent = mesos_pb2.ExecutorEvent


@pytest.fixture(autouse=True)
def fast_failure_detection(monkeypatch):
    monkeypatch.setattr(ExecutorDriver, "heartbeat_interval", 0.1)


@pytest.fixture
def slave():
    fake = FakeSlave()
    yield fake
    fake.close()


@pytest.fixture
def make_driver(slave):
    drivers = []

    def make(executor=None, **env):
        executor = executor or RecordingExecutor()
        driver = MesosExecutorDriver(executor, slave.environment(**env))
        drivers.append(driver)
        return driver, executor

    yield make
    for driver in drivers:
        driver.stop()


def started(make_driver, **env):
    driver, executor = make_driver(**env)
    assert driver.start() == mesos_pb2.DRIVER_RUNNING
    executor.wait("registered")
    return driver, executor


def launch(slave, task_id="t1", data=b""):
    event = ExecutorEvent(type=ExecutorEvent.LAUNCH)
    event.launch.task.task_id.value = task_id
    event.launch.task.name = task_id
    event.launch.task.data = data
    slave.send(event)


def running(task_id="t1", data=b""):
    status = mesos_pb2.TaskStatus(state=mesos_pb2.TASK_RUNNING, data=data)
    status.task_id.value = task_id
    return status


def test_subscribes_with_the_ids_from_the_environment(make_driver, slave):
    driver, executor = started(make_driver, executor_id="my-executor", framework_id="my-framework")
    subscribe = slave.wait(ExecutorCall.SUBSCRIBE)
    assert (subscribe.executor_id.value, subscribe.framework_id.value) == ("my-executor", "my-framework")
    executor_info, framework_info, slave_info = executor.wait("registered")
    assert executor_info.executor_id.value == "my-executor"
    assert framework_info.name == "fake framework"
    assert slave_info.id.value == "fake-S0"


def test_launch_then_status_updates_are_filled_in_and_acknowledged(make_driver, slave):
    driver, executor = started(make_driver)
    launch(slave, "t1", data=b"payload")
    (task,) = executor.wait("launchTask")
    assert task.task_id.value == "t1" and task.data == b"payload"

    assert driver.sendStatusUpdate(running("t1", data=b"with a \0 byte")) == mesos_pb2.DRIVER_RUNNING
    status = slave.wait(ExecutorCall.UPDATE).update.status
    assert status.task_id.value == "t1"
    assert status.executor_id.value == "exec-1"
    assert status.slave_id.value == "fake-S0"
    assert status.source == mesos_pb2.TaskStatus.SOURCE_EXECUTOR
    assert status.timestamp > 0 and len(status.uuid) == 16
    assert status.data == b"with a \0 byte"
    # Once acknowledged, neither the update nor the task is handed over again.
    assert wait_for(lambda: not driver._updates and not driver._tasks)


def test_unacknowledged_updates_and_tasks_ride_on_the_next_subscribe(make_driver, slave):
    driver, executor = started(make_driver)
    slave.auto_ack = False
    launch(slave, "t1")
    launch(slave, "t2")
    executor.wait("launchTask", 2)
    driver.sendStatusUpdate(running("t1"))
    first = slave.wait(ExecutorCall.UPDATE).update.status

    slave.auto_ack = True
    slave.restart(down_for=0.8)
    executor.wait("disconnected")
    (slave_info,) = executor.wait("reregistered")
    assert slave_info.id.value == "fake-S0"

    resubscribe = slave.wait(ExecutorCall.SUBSCRIBE, 2).subscribe
    assert [s.uuid for s in resubscribe.unacknowledged_updates] == [first.uuid]
    assert [t.task_id.value for t in resubscribe.unacknowledged_tasks] == ["t1", "t2"]
    # The slave acknowledged the handed-over update: only t2 is still unconfirmed.
    assert wait_for(lambda: not driver._updates and list(driver._tasks) == ["t2"])
    assert executor.names().count("registered") == 1


def test_an_update_sent_while_disconnected_is_delivered_on_resubscribe(make_driver, slave):
    driver, executor = started(make_driver)
    slave.go_down()
    executor.wait("disconnected", timeout=3)
    driver.sendStatusUpdate(running("t9"))
    slave._open(slave.port)
    executor.wait("reregistered")
    resubscribe = slave.wait(ExecutorCall.SUBSCRIBE, 2).subscribe
    assert [s.task_id.value for s in resubscribe.unacknowledged_updates] == ["t9"]


def test_kill_and_messages(make_driver, slave):
    driver, executor = started(make_driver)
    kill = ExecutorEvent(type=ExecutorEvent.KILL)
    kill.kill.task_id.value = "t1"
    slave.send(kill)
    assert executor.wait("killTask")[0].value == "t1"

    data = b"data with a \0 byte"
    slave.send(ExecutorEvent(type=ExecutorEvent.MESSAGE, message=ExecutorEvent.Message(data=data)))
    assert executor.wait("frameworkMessage") == (data,)
    driver.sendFrameworkMessage(data)
    message = slave.wait(ExecutorCall.MESSAGE)
    assert message.message.data == data and message.executor_id.value == "exec-1"


def test_shutdown_calls_shutdown_then_run_returns_stopped(make_driver, slave):
    driver, executor = make_driver()
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("status", driver.run()))
    runner.start()
    executor.wait("registered")
    slave.send(ExecutorEvent(type=ExecutorEvent.SHUTDOWN))
    executor.wait("shutdown")
    runner.join(5)
    assert result["status"] == mesos_pb2.DRIVER_STOPPED


def test_stop_waits_for_the_slave_to_take_the_last_update(make_driver, slave):
    driver, executor = started(make_driver)
    driver.sendStatusUpdate(mesos_pb2.TaskStatus(task_id=mesos_pb2.TaskID(value="t1"), state=mesos_pb2.TASK_FINISHED))
    assert driver.stop() == mesos_pb2.DRIVER_STOPPED
    assert slave.wait(ExecutorCall.UPDATE).update.status.state == mesos_pb2.TASK_FINISHED
    assert not driver._updates


def test_a_slave_gone_past_the_recovery_timeout_shuts_the_executor_down(make_driver, slave):
    driver, executor = started(make_driver, MESOS_RECOVERY_TIMEOUT="1secs")
    slave.go_down()
    executor.wait("disconnected", timeout=3)
    executor.wait("shutdown", timeout=5)
    assert driver.join() == mesos_pb2.DRIVER_STOPPED


def test_error_event_aborts_then_calls_error(make_driver, slave):
    driver, executor = started(make_driver)
    slave.send(ExecutorEvent(type=ExecutorEvent.ERROR, error=ExecutorEvent.Error(message="unknown executor")))
    assert executor.wait("error") == ("unknown executor",)
    assert driver.join() == mesos_pb2.DRIVER_ABORTED
    assert driver.sendFrameworkMessage(b"x") == mesos_pb2.DRIVER_ABORTED


def test_task_staging_from_an_executor_is_an_error(make_driver, slave):
    driver, executor = started(make_driver)
    staging = mesos_pb2.TaskStatus(task_id=mesos_pb2.TaskID(value="t1"), state=mesos_pb2.TASK_STAGING)
    driver.sendStatusUpdate(staging)
    assert "TASK_STAGING" in executor.wait("error")[0]
    assert driver.join() == mesos_pb2.DRIVER_ABORTED
    assert slave.of_type(ExecutorCall.UPDATE) == []


def test_missing_environment_aborts_with_an_error():
    executor = RecordingExecutor()
    driver = ExecutorDriver(executor, environment={})
    assert driver.run() == mesos_pb2.DRIVER_ABORTED
    (message,) = executor.wait("error")
    assert "MESOS_SLAVE_ENDPOINT" in message and "MESOS_EXECUTOR_ID" in message
