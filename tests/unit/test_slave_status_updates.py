"""The status update manager on a fake clock: order, retries, acknowledgements."""

import pytest

from offerd.proto import offerd_pb2 as pb
from offerd.slave.status_updates import StatusUpdateManager


class FakeTimers:
    """call_later on a clock the test moves by hand."""

    class Handle:
        def __init__(self, when, fn, args):
            self.when, self.fn, self.args, self.cancelled = when, fn, args, False

        def cancel(self):
            self.cancelled = True

    def __init__(self):
        self.now = 0.0
        self.pending = []

    def call_later(self, delay, fn, *args):
        handle = self.Handle(self.now + delay, fn, args)
        self.pending.append(handle)
        return handle

    def advance(self, seconds):
        end = self.now + seconds
        while True:
            due = sorted((h for h in self.pending if not h.cancelled and h.when <= end), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            self.pending.remove(handle)
            self.now = handle.when
            handle.fn(*handle.args)
        self.now = end


@pytest.fixture
def harness():
    timers = FakeTimers()
    sent = []
    manager = StatusUpdateManager(sent.append, timers.call_later, retry_interval=10.0, retry_max=60.0,
                                  clock=lambda: 1234.5)
    manager.slave_id = "S1"
    manager.resume()
    return manager, timers, sent


def status(task_id, state, **kwargs):
    return pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=state, **kwargs)


def states(sent):
    return [pb.TaskState.Name(call.update.status.state) for call in sent]


def ack(manager, call):
    update = call.update
    return manager.acknowledge(update.framework_id.value, update.status.task_id.value, update.status.uuid)


def test_one_update_in_flight_per_task_and_strict_order(harness):
    manager, timers, sent = harness
    for state in (pb.TASK_STARTING, pb.TASK_RUNNING, pb.TASK_FINISHED):
        manager.update("F1", status("t1", state))
    assert states(sent) == ["TASK_STARTING"]
    assert sent[0].update.latest_state == pb.TASK_STARTING
    timers.advance(10)
    # The resend of STARTING tells the master where the task is now.
    assert states(sent) == ["TASK_STARTING", "TASK_STARTING"]
    assert sent[1].update.latest_state == pb.TASK_FINISHED
    assert ack(manager, sent[0]).state == pb.TASK_STARTING
    assert states(sent)[2:] == ["TASK_RUNNING"]
    ack(manager, sent[2])
    assert states(sent)[3:] == ["TASK_FINISHED"]
    assert ack(manager, sent[3]).state == pb.TASK_FINISHED
    assert len(manager) == 0  # the stream ends with its acknowledged terminal update


def test_updates_are_filled_in(harness):
    manager, _, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    call = sent[0]
    assert call.type == pb.SlaveCall.UPDATE and call.slave_id.value == "S1"
    assert call.update.framework_id.value == "F1"
    update = call.update.status
    assert len(update.uuid) == 16
    assert update.slave_id.value == "S1"
    assert update.source == pb.TaskStatus.SOURCE_SLAVE
    assert update.timestamp == 1234.5


def test_streams_of_different_tasks_are_independent(harness):
    manager, _, sent = harness
    manager.update("F1", status("a", pb.TASK_RUNNING))
    manager.update("F1", status("b", pb.TASK_RUNNING))
    manager.update("F2", status("a", pb.TASK_RUNNING))
    assert len(sent) == 3


def test_resend_with_exponential_backoff_capped(harness):
    manager, timers, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    times = []
    for _ in range(7):
        before = len(sent)
        while len(sent) == before:
            timers.advance(1.0)
        times.append(timers.now)
    # Resends after 10, 20, 40, then every 60 (the cap): at t = 10, 30, 70, 130, 190, ...
    assert times == [10.0, 30.0, 70.0, 130.0, 190.0, 250.0, 310.0]
    assert all(call.update.status.uuid == sent[0].update.status.uuid for call in sent)
    assert manager.stats["retries"] == 7


def test_ack_stops_the_retries_and_the_next_update_starts_fresh(harness):
    manager, timers, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    manager.update("F1", status("t1", pb.TASK_FINISHED))
    timers.advance(35)  # two resends of RUNNING: backoff now at 40
    assert states(sent) == ["TASK_RUNNING"] * 3
    ack(manager, sent[0])
    assert states(sent)[-1] == "TASK_FINISHED"
    timers.advance(9.9)
    assert len(sent) == 4
    timers.advance(0.2)  # the new head starts at the initial interval again
    assert states(sent)[-1] == "TASK_FINISHED" and len(sent) == 5


def test_duplicate_and_wrong_acks_are_ignored(harness):
    manager, _, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    manager.update("F1", status("t1", pb.TASK_FINISHED))
    running = sent[0]
    assert manager.acknowledge("F1", "t1", b"x" * 16) is None  # wrong uuid
    assert manager.acknowledge("F2", "t1", running.update.status.uuid) is None  # wrong framework
    assert len(sent) == 1
    assert ack(manager, running) is not None
    finished = sent[1]
    assert ack(manager, running) is None  # duplicate
    assert manager.stats["duplicate_acks"] == 1
    assert manager.stats["unexpected_acks"] == 2
    # Acknowledging the next update before it is sent is not possible either.
    assert manager.head("F1", "t1").uuid == finished.update.status.uuid
    assert ack(manager, finished).state == pb.TASK_FINISHED
    assert ack(manager, finished) is None


def test_executor_resends_and_updates_after_terminal_are_not_taken(harness):
    manager, _, sent = harness
    first = status("t1", pb.TASK_RUNNING, uuid=b"u" * 16)
    assert manager.update("F1", first)
    assert not manager.update("F1", status("t1", pb.TASK_RUNNING, uuid=b"u" * 16))
    assert manager.update("F1", status("t1", pb.TASK_FAILED))
    assert not manager.update("F1", status("t1", pb.TASK_RUNNING))
    assert [s.state for s in manager.pending("F1", "t1")] == [pb.TASK_RUNNING, pb.TASK_FAILED]
    assert sent[0].update.status.uuid == b"u" * 16  # an executor's own uuid is kept


def test_paused_while_disconnected_then_flushed(harness):
    manager, timers, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    manager.pause()
    manager.update("F1", status("t2", pb.TASK_RUNNING))
    timers.advance(100)
    assert len(sent) == 1  # no resends and no new sends while paused
    manager.resume()
    assert sorted(call.update.status.task_id.value for call in sent[1:]) == ["t1", "t2"]
    assert sent[1].update.status.uuid in (sent[0].update.status.uuid, sent[2].update.status.uuid)
    timers.advance(10)
    assert len(sent) == 5  # retrying again, from the initial interval


def test_nothing_is_sent_before_the_first_resume():
    timers, sent = FakeTimers(), []
    manager = StatusUpdateManager(sent.append, timers.call_later, retry_interval=1.0)
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    timers.advance(5)
    assert sent == []
    manager.slave_id = "S9"
    manager.resume()
    assert sent[0].update.status.slave_id.value == "S9" and sent[0].slave_id.value == "S9"


def test_cleanup_forgets_a_framework(harness):
    manager, timers, sent = harness
    manager.update("F1", status("t1", pb.TASK_RUNNING))
    manager.update("F2", status("t1", pb.TASK_RUNNING))
    manager.cleanup("F1")
    assert manager.head("F1", "t1") is None and manager.head("F2", "t1") is not None
    timers.advance(10)
    assert [call.update.framework_id.value for call in sent[2:]] == ["F2"]
