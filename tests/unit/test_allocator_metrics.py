"""The allocation run's timers, as the master reports them under Mesos' metric names."""

from offerd.master.allocation import RunTimer


def test_run_timer_reports_latency_beside_run_time():
    timer = RunTimer()
    timer.record(12.0)
    assert "allocator/mesos/allocation_run_latency_ms" not in timer.snapshot()
    timer.latency.record(0.5)
    snap = timer.snapshot()
    assert snap["allocator/mesos/allocation_run_ms"] == 12.0
    assert snap["allocator/mesos/allocation_run_latency_ms"] == 0.5
    assert snap["allocator/mesos/allocation_run_latency_ms/p99"] == 0.5
