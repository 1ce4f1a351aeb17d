"""The pause after a master failover: with quota set, allocation waits until enough
slaves reregistered (--allocator_agent_recovery_factor) or --allocator_recovery_timeout
passed, as in Mesos."""

from tests.unit.allocators import R, hier


def _recovered(quota: bool, **options):
    alloc = hier(**options)
    alloc.add_framework("f", ["web"])
    if quota:
        alloc.update_quota("web", R("cpus:1"), None)
    alloc.recovering(10, now=0.0)
    return alloc


def test_allocation_pauses_until_enough_slaves_reregister():
    alloc = _recovered(quota=True)
    for i in range(7):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    assert alloc.allocate(1.0) == {}  # 7 of 10 < 0.8
    assert "RECOVERING" in [r["code"] for r in alloc.explain("f")["reasons"]]
    alloc.add_slave("s7", R("cpus:1;mem:1024"))
    result = alloc.allocate(2.0)  # 8 of 10: resumed
    assert len(result["f"]) == 8
    assert "RECOVERING" not in [r["code"] for r in alloc.explain("f")["reasons"]]


def test_allocation_resumes_after_the_recovery_timeout():
    alloc = _recovered(quota=True, recovery_timeout=600.0)
    alloc.add_slave("s0", R("cpus:1;mem:1024"))
    assert alloc.allocate(599.0) == {}
    assert list(alloc.allocate(600.0)["f"]) == ["s0"]


def test_recovery_factor_is_an_option():
    alloc = _recovered(quota=True, agent_recovery_factor=0.5)
    for i in range(5):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    assert len(alloc.allocate(1.0)["f"]) == 5


def test_no_pause_without_quota():
    alloc = _recovered(quota=False)
    alloc.add_slave("s0", R("cpus:1;mem:1024"))
    assert list(alloc.allocate(1.0)["f"]) == ["s0"]
