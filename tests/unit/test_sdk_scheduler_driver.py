"""The scheduler driver against a protocol-level fake master (tests/fakes/sdk_peers.py)."""

from __future__ import annotations

import getpass
import threading
import time

import pytest

from offerd.framework_sdk import MesosSchedulerDriver, SchedulerDriver
from offerd.proto import offerd_pb2 as mesos_pb2
from tests.fakes.sdk_peers import FakeMaster, RecordingScheduler
from tests.support import wait_for

Call = mesos_pb2.Call
Event = mesos_pb2.Event


@pytest.fixture(autouse=True)
def fast_failure_detection(monkeypatch):
    # A lost master is noticed after 0.5 s instead of 5 s.
    monkeypatch.setattr(SchedulerDriver, "heartbeat_interval", 0.1)


@pytest.fixture
def master():
    fake = FakeMaster()
    yield fake
    fake.close()


@pytest.fixture
def make_driver(master):
    drivers = []

    def make(scheduler=None, implicit=True, framework=None, **kwargs):
        if framework is None:
            framework = mesos_pb2.FrameworkInfo(name="test framework")
        scheduler = scheduler or RecordingScheduler()
        driver = MesosSchedulerDriver(scheduler, framework, master.master, implicit, **kwargs)
        drivers.append(driver)
        return driver, scheduler

    yield make
    for driver in drivers:
        driver.stop()


def started(make_driver, master, **kwargs):
    driver, scheduler = make_driver(**kwargs)
    assert driver.start() == mesos_pb2.DRIVER_RUNNING
    scheduler.wait("registered")
    return driver, scheduler


def offer(number=1, slave="S1"):
    o = mesos_pb2.Offer()
    o.id.value = f"O{number}"
    o.framework_id.value = "fake-master-0000"
    o.slave_id.value = slave
    o.hostname = "localhost"
    for name, value in (("cpus", 2.0), ("mem", 1024.0)):
        resource = o.resources.add()
        resource.name = name
        resource.type = mesos_pb2.Value.SCALAR
        resource.scalar.value = value
    return o


def update(task="t1", state=mesos_pb2.TASK_RUNNING, uuid=b"\x01" * 16, slave="S1"):
    event = Event(type=Event.UPDATE)
    status = event.update.status
    status.task_id.value = task
    status.state = state
    status.slave_id.value = slave
    if uuid:
        status.uuid = uuid
    return event


def test_subscribe_fills_in_the_user_and_registered_gets_the_framework_id(make_driver, master):
    driver, scheduler = started(make_driver, master)

    subscribe = master.wait(Call.SUBSCRIBE)
    assert subscribe.subscribe.framework_info.name == "test framework"
    assert subscribe.subscribe.framework_info.user == getpass.getuser()
    assert not subscribe.HasField("framework_id")
    framework_id, master_info = scheduler.wait("registered")
    assert framework_id.value == "fake-master-0000"
    assert master_info.hostname == "localhost"
    assert driver.start() == mesos_pb2.DRIVER_RUNNING  # start works once


def test_methods_before_start_do_nothing_and_say_not_started(make_driver, master):
    driver, _ = make_driver()
    assert driver.declineOffer(offer().id) == mesos_pb2.DRIVER_NOT_STARTED
    assert driver.join() == mesos_pb2.DRIVER_NOT_STARTED
    assert driver.stop() == mesos_pb2.DRIVER_NOT_STARTED


def test_launch_tasks_on_an_offer_sends_accept_with_launch(make_driver, master):
    def launch(driver, offers):
        for o in offers:
            task = mesos_pb2.TaskInfo()
            task.task_id.value = "task-1"
            task.slave_id.value = o.slave_id.value
            task.name = "task 1"
            task.command.value = "true"
            cpus = task.resources.add()
            cpus.name = "cpus"
            cpus.type = mesos_pb2.Value.SCALAR
            cpus.scalar.value = 1
            assert driver.launchTasks(o.id, [task]) == mesos_pb2.DRIVER_RUNNING

    scheduler = RecordingScheduler().on("resourceOffers", launch)
    started(make_driver, master, scheduler=scheduler)
    master.send(Event(type=Event.OFFERS, offers=Event.Offers(offers=[offer(1)])))

    accept = master.wait(Call.ACCEPT)
    assert accept.framework_id.value == "fake-master-0000"
    assert [o.value for o in accept.accept.offer_ids] == ["O1"]
    [operation] = accept.accept.operations
    assert operation.type == mesos_pb2.Offer.Operation.LAUNCH
    assert [t.task_id.value for t in operation.launch.task_infos] == ["task-1"]
    assert accept.accept.filters.refuse_seconds == 5.0  # Mesos' default filter


def test_offer_calls_take_lists_and_filters(make_driver, master):
    driver, _ = started(make_driver, master)
    filters = mesos_pb2.Filters(refuse_seconds=60)
    driver.launchTasks([offer(1).id, offer(2).id], [], filters)  # no tasks: a decline
    driver.declineOffer(offer(3).id)
    driver.acceptOffers([offer(4).id], [], filters)

    decline = master.wait(Call.DECLINE)
    assert [o.value for o in decline.decline.offer_ids] == ["O1", "O2"]
    assert decline.decline.filters.refuse_seconds == 60
    assert [o.value for o in master.wait(Call.DECLINE, 2).decline.offer_ids] == ["O3"]
    accept = master.wait(Call.ACCEPT)
    assert [o.value for o in accept.accept.offer_ids] == ["O4"] and not accept.accept.operations


def test_other_calls_reach_the_master(make_driver, master):
    driver, _ = started(make_driver, master)
    task_id = mesos_pb2.TaskID(value="t1")
    driver.killTask(task_id)
    driver.reviveOffers()
    driver.suppressOffers(["analytics"])
    status = mesos_pb2.TaskStatus(task_id=task_id, state=mesos_pb2.TASK_RUNNING)
    status.slave_id.value = "S1"
    driver.reconcileTasks([status])
    driver.reconcileTasks([])
    driver.requestResources([mesos_pb2.Request()])

    assert master.wait(Call.KILL).kill.task_id.value == "t1"
    assert not master.wait(Call.REVIVE).revive.roles
    assert list(master.wait(Call.SUPPRESS).suppress.roles) == ["analytics"]
    explicit = master.wait(Call.RECONCILE).reconcile.tasks
    assert [(t.task_id.value, t.slave_id.value) for t in explicit] == [("t1", "S1")]
    assert not master.wait(Call.RECONCILE, 2).reconcile.tasks  # implicit
    assert len(master.wait(Call.REQUEST).request.requests) == 1
    for call in master.received[1:]:
        assert call.framework_id.value == "fake-master-0000"


def test_status_update_is_delivered_then_acknowledged(make_driver, master):
    acks_seen_in_callback = []
    scheduler = RecordingScheduler().on(
        "statusUpdate", lambda driver, status: acks_seen_in_callback.append(len(master.of_type(Call.ACKNOWLEDGE))))
    started(make_driver, master, scheduler=scheduler)

    master.send(update(uuid=b"u" * 16))
    (status,) = scheduler.wait("statusUpdate")
    ack = master.wait(Call.ACKNOWLEDGE)
    assert (ack.acknowledge.task_id.value, ack.acknowledge.slave_id.value, ack.acknowledge.uuid) == (
        "t1", "S1", b"u" * 16)
    assert status.state == mesos_pb2.TASK_RUNNING
    assert acks_seen_in_callback == [0]  # acknowledged after the callback returned

    # An update without uuid (reconciliation, master-generated) needs no ack.
    master.send(update(task="t2", uuid=b""))
    scheduler.wait("statusUpdate", 2)
    master.send(update(task="t3", uuid=b"v" * 16))
    master.wait(Call.ACKNOWLEDGE, 2)
    assert [a.acknowledge.task_id.value for a in master.of_type(Call.ACKNOWLEDGE)] == ["t1", "t3"]


def test_a_redelivered_update_is_not_delivered_twice_but_acknowledged_again(make_driver, master):
    driver, scheduler = started(make_driver, master)
    master.send(update(uuid=b"a" * 16))
    master.wait(Call.ACKNOWLEDGE)
    master.send(update(uuid=b"a" * 16))  # the slave retried: our ack crossed it
    master.wait(Call.ACKNOWLEDGE, 2)
    master.send(update(state=mesos_pb2.TASK_FINISHED, uuid=b"b" * 16))
    master.wait(Call.ACKNOWLEDGE, 3)

    states = [args[0].state for args in scheduler.args_of("statusUpdate")]
    assert states == [mesos_pb2.TASK_RUNNING, mesos_pb2.TASK_FINISHED]


def test_explicit_acknowledgements(make_driver, master):
    driver, scheduler = started(make_driver, master, implicit=False)
    master.send(update(uuid=b"e" * 16))
    (status,) = scheduler.wait("statusUpdate")
    master.send(update(uuid=b"e" * 16))  # redelivered before we acknowledged: dropped
    master.send(update(task="t2", uuid=b""))
    scheduler.wait("statusUpdate", 2)
    assert master.of_type(Call.ACKNOWLEDGE) == []

    assert driver.acknowledgeStatusUpdate(status) == mesos_pb2.DRIVER_RUNNING
    ack = master.wait(Call.ACKNOWLEDGE)
    assert (ack.acknowledge.task_id.value, ack.acknowledge.uuid) == ("t1", b"e" * 16)
    master.send(update(uuid=b"e" * 16))  # redelivered after: acknowledged again
    master.wait(Call.ACKNOWLEDGE, 2)
    assert len(scheduler.args_of("statusUpdate")) == 2


def test_framework_messages_keep_their_bytes(make_driver, master):
    driver, scheduler = started(make_driver, master)
    data = b"data with a \0 byte\xff"
    event = Event(type=Event.MESSAGE)
    event.message.slave_id.value = "S1"
    event.message.executor_id.value = "E1"
    event.message.data = data
    master.send(event)
    executor_id, slave_id, message = scheduler.wait("frameworkMessage")
    assert (executor_id.value, slave_id.value, message) == ("E1", "S1", data)

    driver.sendFrameworkMessage(executor_id, slave_id, data)
    call = master.wait(Call.MESSAGE)
    assert (call.message.executor_id.value, call.message.slave_id.value, call.message.data) == ("E1", "S1", data)


def test_rescind_and_failures_reach_their_callbacks(make_driver, master):
    _, scheduler = started(make_driver, master)
    master.send(Event(type=Event.RESCIND, rescind=Event.Rescind(offer_id=mesos_pb2.OfferID(value="O9"))))
    lost_executor = Event(type=Event.FAILURE)
    lost_executor.failure.slave_id.value = "S1"
    lost_executor.failure.executor_id.value = "E1"
    lost_executor.failure.status = 9
    master.send(lost_executor)
    lost_slave = Event(type=Event.FAILURE)
    lost_slave.failure.slave_id.value = "S2"
    master.send(lost_slave)

    assert scheduler.wait("offerRescinded")[0].value == "O9"
    executor_id, slave_id, status = scheduler.wait("executorLost")
    assert (executor_id.value, slave_id.value, status) == ("E1", "S1", 9)
    assert scheduler.wait("slaveLost")[0].value == "S2"


def test_error_event_aborts_the_driver_then_calls_error(make_driver, master):
    seen = {}

    def on_error(driver, message):
        seen["status_in_callback"] = driver.abort()  # already aborted: says so

    scheduler = RecordingScheduler().on("error", on_error)
    driver, _ = started(make_driver, master, scheduler=scheduler)
    master.send(Event(type=Event.ERROR, error=Event.Error(message="Framework failed over")))

    assert scheduler.wait("error") == ("Framework failed over",)
    assert seen["status_in_callback"] == mesos_pb2.DRIVER_ABORTED
    assert driver.join() == mesos_pb2.DRIVER_ABORTED
    assert driver.declineOffer(offer().id) == mesos_pb2.DRIVER_ABORTED
    master.send(update())  # ignored now
    assert driver.stop() == mesos_pb2.DRIVER_ABORTED
    assert master.of_type(Call.TEARDOWN) == [] and master.of_type(Call.DECLINE) == []
    assert "statusUpdate" not in scheduler.names()


def test_a_protocol_error_from_the_master_is_an_error(make_driver, master):
    driver, scheduler = started(make_driver, master)
    master.send(mesos_pb2.ProtocolError(message="message too big", kind="offerd.v1.Call"))
    (message,) = scheduler.wait("error")
    assert "message too big" in message
    assert driver.join() == mesos_pb2.DRIVER_ABORTED


def test_a_refused_subscription_is_an_error(make_driver, master):
    master.subscribe_error = "Framework has been removed"
    driver, scheduler = make_driver()
    driver.start()
    assert scheduler.wait("error") == ("Framework has been removed",)
    assert driver.join() == mesos_pb2.DRIVER_ABORTED


def test_a_callback_that_raises_aborts_the_driver(make_driver, master):
    def boom(driver, offers):
        raise RuntimeError("bug in the scheduler")

    scheduler = RecordingScheduler().on("resourceOffers", boom)
    driver, _ = started(make_driver, master, scheduler=scheduler)
    master.send(Event(type=Event.OFFERS, offers=Event.Offers(offers=[offer()])))
    assert driver.join() == mesos_pb2.DRIVER_ABORTED


def test_sys_exit_in_a_callback_comes_out_of_run(make_driver, master):
    def leave(driver, frameworkId, masterInfo):
        raise SystemExit(3)

    driver, _ = make_driver(scheduler=RecordingScheduler().on("registered", leave))
    with pytest.raises(SystemExit) as exc:
        driver.run()
    assert exc.value.code == 3


def test_stop_tears_the_framework_down(make_driver, master):
    driver, _ = started(make_driver, master)
    assert driver.stop() == mesos_pb2.DRIVER_STOPPED
    teardown = master.wait(Call.TEARDOWN)
    assert teardown.framework_id.value == "fake-master-0000"
    assert driver.join() == mesos_pb2.DRIVER_STOPPED
    assert driver.stop() == mesos_pb2.DRIVER_STOPPED


def test_stop_with_failover_only_disconnects(make_driver, master):
    driver, _ = started(make_driver, master)
    assert driver.stop(failover=True) == mesos_pb2.DRIVER_STOPPED
    assert wait_for(lambda: master.lost_peers, timeout=2)  # the goodbye arrived
    assert master.of_type(Call.TEARDOWN) == []


def test_run_returns_driver_stopped_after_stop_from_a_callback(make_driver, master):
    def done(driver, status):
        driver.stop()

    driver, _ = make_driver(scheduler=RecordingScheduler().on("statusUpdate", done))
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("status", driver.run()))
    runner.start()
    wait_for(lambda: master.peer is not None and master.of_type(Call.SUBSCRIBE))
    master.send(update(state=mesos_pb2.TASK_FINISHED))
    runner.join(5)
    assert result["status"] == mesos_pb2.DRIVER_STOPPED
    master.wait(Call.ACKNOWLEDGE)  # stop() inside statusUpdate still acknowledges
    master.wait(Call.TEARDOWN)


def test_reconnects_after_the_master_restarts_and_reregisters_with_the_same_id(make_driver, master):
    driver, scheduler = started(make_driver, master)
    master.restart()

    scheduler.wait("disconnected")
    scheduler.wait("reregistered")
    resubscribe = master.wait(Call.SUBSCRIBE, 2)
    assert resubscribe.framework_id.value == "fake-master-0000"
    assert resubscribe.subscribe.framework_info.id.value == "fake-master-0000"
    assert scheduler.names().count("registered") == 1
    # And it works as before.
    driver.declineOffer(offer().id)
    assert master.wait(Call.DECLINE).framework_id.value == "fake-master-0000"


def test_a_launch_while_disconnected_is_reported_lost(make_driver, master):
    master.auto_subscribe = False  # connected, never subscribed
    driver, scheduler = make_driver()
    driver.start()
    master.wait(Call.SUBSCRIBE)
    task = mesos_pb2.TaskInfo(name="t")
    task.task_id.value = "t1"
    task.slave_id.value = "S1"
    assert driver.launchTasks(offer().id, [task]) == mesos_pb2.DRIVER_RUNNING
    (status,) = scheduler.wait("statusUpdate")
    assert status.state == mesos_pb2.TASK_LOST
    assert status.reason == mesos_pb2.TaskStatus.REASON_MASTER_DISCONNECTED
    assert status.task_id.value == "t1" and not status.uuid
    assert master.of_type(Call.ACCEPT) == []


def test_suppression_survives_a_resubscription(make_driver, master):
    framework = mesos_pb2.FrameworkInfo(name="f", roles=["a", "b"])
    driver, scheduler = started(make_driver, master, framework=framework, suppressedRoles=["a"])
    assert list(master.wait(Call.SUBSCRIBE).subscribe.suppressed_roles) == ["a"]
    driver.suppressOffers()
    master.wait(Call.SUPPRESS)
    master.restart()
    scheduler.wait("reregistered")
    assert sorted(master.wait(Call.SUBSCRIBE, 2).subscribe.suppressed_roles) == ["a", "b"]


def test_update_framework_is_one_call_not_a_resubscription(make_driver, master):
    driver, scheduler = started(make_driver, master)
    new_info = mesos_pb2.FrameworkInfo(name="test framework", roles=["x"], webui_url="http://ui")
    assert driver.updateFramework(new_info, ["x"]) == mesos_pb2.DRIVER_RUNNING
    update = master.wait(Call.UPDATE_FRAMEWORK)
    assert update.framework_id.value == "fake-master-0000"
    assert update.update_framework.framework_info.id.value == "fake-master-0000"
    assert update.update_framework.framework_info.webui_url == "http://ui"
    assert list(update.update_framework.suppressed_roles) == ["x"]
    assert len(master.of_type(Call.SUBSCRIBE)) == 1
    # The subscription carries on: offers keep flowing, and no callback says otherwise.
    master.send(Event(type=Event.OFFERS, offers=Event.Offers(offers=[offer()])))
    scheduler.wait("resourceOffers")
    assert scheduler.names() == ["registered", "resourceOffers"]


def test_a_slow_callback_does_not_look_like_a_dead_scheduler(make_driver, master):
    # Heartbeats run on the I/O thread, callbacks on their own: a callback that
    # blocks for three times the failure-detection window (0.5 s here) must not
    # drop the connection, which a master would take for a failed scheduler.
    slow = threading.Event()

    def block(driver, offers):
        time.sleep(1.5)
        slow.set()

    driver, scheduler = started(make_driver, master, scheduler=RecordingScheduler().on("resourceOffers", block))
    master.send(Event(type=Event.OFFERS, offers=Event.Offers(offers=[offer()])))
    assert slow.wait(5)
    driver.declineOffer(offer().id)
    master.wait(Call.DECLINE)
    assert "disconnected" not in scheduler.names()
    assert len(master.of_type(Call.SUBSCRIBE)) == 1
