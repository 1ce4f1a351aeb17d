"""The chaos test's history checker (tests/ha/chaos_history.py) catches each kind
of violation in a synthetic history, and passes the histories Mesos allows."""

from __future__ import annotations

import json

from tests.ha.chaos_history import (History, SlaveRecord, check_acknowledged, check_delivered, check_instances,
                                    check_processes, check_terminal, instance_of, summary)

AWARE, PLAIN = "fw-aware", "fw-plain"


def history(*updates, acked=True) -> History:
    """`updates`: (framework, task id, state[, slave id]) in arrival order; each gets a
    uuid and, with `acked`, its acknowledgement."""
    h = History()
    h.add_framework(AWARE, partition_aware=True)
    h.add_framework(PLAIN, partition_aware=False)
    for number, (framework, task_id, state, *rest) in enumerate(updates):
        uuid = f"u{number}"
        h.record(framework, task_id, state, slave_id=rest[0] if rest else "s1", uuid=uuid, timestamp=100.0 + number)
        if acked:
            h.acknowledge(framework, task_id, uuid)
    return h


def kinds(violations) -> list[str]:
    return sorted(v.kind for v in violations)


def test_a_clean_history_passes_every_check():
    h = history((AWARE, "t1", "TASK_STAGING"), (AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_FINISHED"),
                (AWARE, "t1", "TASK_FINISHED"),   # a resend of the same terminal state
                (PLAIN, "t2", "TASK_RUNNING"), (PLAIN, "t2", "TASK_LOST"))
    slaves = [SlaveRecord("s1", AWARE, "t1", "TASK_RUNNING", 101.0), SlaveRecord("s1", AWARE, "t1", "TASK_FINISHED")]
    assert check_terminal(h, {AWARE: ["t1"], PLAIN: ["t2"]}) == []
    assert check_acknowledged(h) == []
    assert check_delivered(h, slaves, {(AWARE, "t1"): "TASK_FINISHED", (PLAIN, "t2"): "TASK_LOST"}) == []
    assert check_processes(h, {"t1": [], "t3": [42]}) == []   # t3: not ended, may run


def test_unreachable_then_running_is_allowed_for_a_partition_aware_framework():
    h = history((AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_UNREACHABLE"), (AWARE, "t1", "TASK_RUNNING"),
                (AWARE, "t1", "TASK_KILLED"))
    assert check_terminal(h, {AWARE: ["t1"]}) == []


def test_a_task_running_again_after_a_terminal_state_is_caught():
    h = history((PLAIN, "t1", "TASK_RUNNING"), (PLAIN, "t1", "TASK_LOST"), (PLAIN, "t1", "TASK_RUNNING"))
    (violation,) = check_terminal(h, {})
    assert violation.kind == "revived_after_terminal" and "TASK_RUNNING after TASK_LOST" in violation.detail


def test_two_different_terminal_states_are_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_FAILED"), (AWARE, "t1", "TASK_KILLED"))
    assert kinds(check_terminal(h, {AWARE: ["t1"]})) == ["several_terminal_states"]


def test_the_slaves_word_after_task_lost_to_a_framework_that_is_not_partition_aware_is_caught():
    h = history((PLAIN, "t1", "TASK_RUNNING"), (PLAIN, "t1", "TASK_LOST"), (PLAIN, "t1", "TASK_FINISHED"))
    (violation,) = check_terminal(h, {PLAIN: ["t1"]})
    assert violation.kind == "terminal_after_lost" and "TASK_FINISHED after TASK_LOST" in violation.detail


def test_a_task_that_never_ended_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"))
    violations = check_terminal(h, {AWARE: ["t1", "t-never-heard-of"]})
    assert kinds(violations) == ["no_terminal_state", "no_terminal_state"]
    assert {v.task_id for v in violations} == {"t1", "t-never-heard-of"}


def test_an_update_received_but_never_acknowledged_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"), acked=False)
    assert kinds(check_acknowledged(h)) == ["never_acknowledged"]


def test_an_acknowledgement_of_an_update_never_received_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"))
    h.acknowledge(AWARE, "t1", "made-up")
    assert kinds(check_acknowledged(h)) == ["acknowledged_unreceived"]


def test_an_update_the_slave_sent_that_never_reached_the_scheduler_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"))
    slaves = [SlaveRecord("s1", AWARE, "t1", "TASK_RUNNING", 100.0),
              SlaveRecord("s1", AWARE, "t1", "TASK_FINISHED", 107.0)]
    (violation,) = check_delivered(h, slaves, {})
    assert violation.kind == "lost_update" and "TASK_FINISHED" in violation.detail


def test_the_same_state_with_another_timestamp_is_a_different_update():
    h = history((AWARE, "t1", "TASK_RUNNING"))   # timestamp 100.0
    assert kinds(check_delivered(h, [SlaveRecord("s1", AWARE, "t1", "TASK_RUNNING", 250.0)], {})) == ["lost_update"]


def test_an_update_still_pending_on_a_slave_at_the_end_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_FINISHED"))
    pending_delivered = SlaveRecord("s1", AWARE, "t1", "TASK_FINISHED", 101.0, pending=True)
    pending_lost = SlaveRecord("s1", AWARE, "t2", "TASK_FAILED", 300.0, pending=True)
    assert kinds(check_delivered(h, [pending_delivered, pending_lost], {})) == ["lost_update",
                                                                                 "unacknowledged_at_slave"]


def test_a_master_state_the_scheduler_never_heard_is_caught():
    h = history((PLAIN, "t1", "TASK_RUNNING"))
    (violation,) = check_delivered(h, [], {(PLAIN, "t1"): "TASK_FAILED"})
    assert violation.kind == "master_state_unseen" and "TASK_FAILED" in violation.detail


def test_marathon_instance_running_twice_is_caught():
    h = History()
    h.record_marathon("/web", "web.instance-a._app.1", "TASK_RUNNING")
    h.record_marathon("/web", "web.instance-a._app.2", "TASK_RUNNING")   # same instance, first never ended
    assert instance_of("web.instance-a._app.2") == "web.instance-a"
    assert "instance_ran_twice" in kinds(check_instances(h, {"/web": 5}))


def test_marathon_replacing_an_ended_instance_is_fine():
    h = History()
    h.record_marathon("/web", "web.instance-a._app.1", "TASK_RUNNING")
    h.record_marathon("/web", "web.instance-a._app.1", "TASK_LOST")
    h.record_marathon("/web", "web.instance-a._app.2", "TASK_RUNNING")
    h.record_marathon("/web", "web.b", "TASK_RUNNING")
    assert check_instances(h, {"/web": 2}) == []


def test_marathon_app_with_more_running_tasks_than_instances_is_caught():
    h = History()
    for task in ("web.a", "web.b", "web.c"):
        h.record_marathon("/web", task, "TASK_RUNNING")
    (violation,) = check_instances(h, {"/web": 2})
    assert violation.kind == "too_many_running" and violation.task_id == "web.c"


def test_marathon_task_running_after_its_end_is_caught():
    h = History()
    h.record_marathon("/web", "web.a", "TASK_RUNNING")
    h.record_marathon("/web", "web.a", "TASK_KILLED")
    h.record_marathon("/web", "web.a", "TASK_RUNNING")
    assert kinds(check_instances(h, {"/web": 1})) == ["revived_after_terminal"]


def test_a_process_left_after_task_lost_to_a_framework_that_is_not_partition_aware_is_caught():
    h = history((PLAIN, "t1", "TASK_RUNNING", "s9"), (PLAIN, "t1", "TASK_LOST", "s9"))
    (violation,) = check_processes(h, {"t1": [4242]})
    assert violation.kind == "ran_after_lost" and "4242" in violation.detail and "s9" in violation.detail


def test_a_process_left_after_any_other_terminal_state_is_caught():
    h = history((AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_GONE"))
    assert kinds(check_processes(h, {"t1": [7]})) == ["ran_after_terminal"]


def test_the_summary_is_json_and_counts_each_kind():
    h = history((PLAIN, "t1", "TASK_RUNNING"), (PLAIN, "t1", "TASK_LOST"), (PLAIN, "t1", "TASK_RUNNING"))
    violations = check_terminal(h, {})
    out = json.loads(json.dumps(summary(h, violations, kills=3, restarts=1, partitions=2)))
    assert out["kills"] == 3 and out["partitions"] == 2 and out["tasks"] == 1 and out["updates"] == 3
    assert out["violations"] == {"revived_after_terminal": 1}
    assert out["violation_details"][0]["task_id"] == "t1"


def test_a_marathon_task_left_running_after_marathon_heard_it_lost_is_caught():
    h = History()
    h.record_marathon("/web", "web.a", "TASK_RUNNING", "s2")
    h.record_marathon("/web", "web.a", "TASK_LOST", "s2")
    assert kinds(check_processes(h, {"web.a": [99]})) == ["ran_after_lost"]


def test_updates_after_task_lost_to_a_framework_that_is_not_partition_aware_are_not_owed_to_it():
    h = history((PLAIN, "t1", "TASK_RUNNING"), (PLAIN, "t1", "TASK_LOST"))
    finished = SlaveRecord("s1", PLAIN, "t1", "TASK_FINISHED", 500.0)
    assert check_delivered(h, [finished], {(PLAIN, "t1"): "TASK_LOST"}) == []
    still_pending = SlaveRecord("s1", PLAIN, "t1", "TASK_FINISHED", 500.0, pending=True)
    assert kinds(check_delivered(h, [still_pending], {})) == ["unacknowledged_at_slave"]
    # A partition-aware framework is owed every update.
    aware = history((AWARE, "t1", "TASK_RUNNING"), (AWARE, "t1", "TASK_LOST"))
    assert kinds(check_delivered(aware, [SlaveRecord("s1", AWARE, "t1", "TASK_FINISHED", 500.0)], {})) == [
        "lost_update"]
