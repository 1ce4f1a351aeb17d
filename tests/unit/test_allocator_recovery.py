"""Hierarchical quota over the role tree, the pause after a master failover,
and the one-role fast path of the hierarchical allocator (same choices as the
general loop). A pure library driven with a fake clock."""

import random

import pytest

from offerd.allocator import create_allocator
from offerd.common.resources import Resources
from offerd.master.allocation import RunTimer

R = Resources.parse


def hier(**options):
    options.setdefault("rng", random.Random(3))
    return create_allocator("hierarchical", **options)


def decline_all(alloc, result, now, refuse=None):
    for fid, per_slave in result.items():
        for sid, (role, res) in per_slave.items():
            alloc.recover_resources(fid, sid, res, refuse, now, role)


# -- quota over the role tree --------------------------------------------------------


def test_quota_of_a_parent_role_is_served_to_its_children():
    alloc = hier()
    for i in range(10):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    for i in range(4):
        alloc.add_framework(f"big{i}", ["big"])
    alloc.add_framework("web", ["eng/web"])
    alloc.update_quota("eng", R("cpus:6"), None)
    alloc.allocate(0)
    # eng's guarantee covers eng/web: 6 cpus there first (eng share 0.6), 4 to big.
    assert alloc.allocated("web").scalar("cpus") == 6
    assert alloc.role_share("eng/web") == pytest.approx(0.6)
    assert alloc.role_share("big") == pytest.approx(0.4)


def test_children_count_towards_the_parent_guarantee():
    alloc = hier()
    for i in range(10):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    alloc.add_framework("web", ["eng/web"])
    alloc.add_framework("api", ["eng/api"])
    alloc.add_framework("other", ["other"])
    alloc.update_quota("eng", R("cpus:4"), None)
    alloc.allocate(0)
    eng = alloc.allocated("web").scalar("cpus") + alloc.allocated("api").scalar("cpus")
    assert eng >= 4  # the guarantee of eng, met by its children together
    assert eng + alloc.allocated("other").scalar("cpus") == 10


def test_limit_of_a_parent_role_caps_its_children_together():
    alloc = hier()
    for i in range(8):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    alloc.add_framework("web", ["eng/web"])
    alloc.add_framework("api", ["eng/api"])
    alloc.update_quota("eng", None, R("cpus:3;mem:3072"))
    alloc.allocate(0)
    eng = alloc.allocated("web").scalar("cpus") + alloc.allocated("api").scalar("cpus")
    assert eng == 3  # eng/web + eng/api <= eng's limit of 3 cpus
    assert "QUOTA_LIMIT" in [r["code"] for r in alloc.explain("web")["reasons"]]


def test_sibling_role_is_not_covered():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:4;mem:4096"))
    alloc.add_framework("f", ["engineering"])  # not below "eng"
    alloc.update_quota("eng", None, R("cpus:1;mem:1024"))
    alloc.allocate(0)
    assert alloc.allocated("f") == R("cpus:4;mem:4096")


# -- pause after a failover -------------------------------------------------------------


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


# -- the one-role fast path ---------------------------------------------------------------


def _general_only(alloc):
    # Route the one-role case through the general loop, for comparison.
    alloc._one_role_stage = lambda role, ids, now, result: alloc._fair_share_stage(ids, now, result, None)
    return alloc


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_role_fast_path_makes_the_general_loops_choices(seed):
    allocs = [hier(rng=random.Random(seed)), _general_only(hier(rng=random.Random(seed)))]
    rng = random.Random(seed)
    shapes = ["cpus:2;mem:1024;ports:[31000-32000]", "cpus:1;mem:4096", "cpus(web):1;cpus:1;mem:512"]
    slaves = [(f"s{i}", R(rng.choice(shapes))) for i in range(60)]
    for alloc in allocs:
        for sid, total in slaves:
            alloc.add_slave(sid, total)
        for i in range(12):
            alloc.add_framework(f"f{i}", ["web"])
        alloc.suppress("f3")
    outcomes = [[], []]
    for now in range(15):
        for alloc, out in zip(allocs, outcomes):
            result = alloc.allocate(float(now))
            out.append(sorted((f, s, str(a.resources)) for f, per in result.items() for s, a in per.items()))
            d = random.Random(now)
            for fid, per_slave in result.items():
                for sid, (role, res) in per_slave.items():
                    if d.random() < 0.7:  # decline with a filter of 1-4 s; keep the rest
                        alloc.recover_resources(fid, sid, res, float(d.randint(1, 4)), float(now), role)
        assert outcomes[0][-1] == outcomes[1][-1]
    assert allocs[0].role_share("web") == pytest.approx(allocs[1].role_share("web"))
    for i in range(12):
        assert allocs[0].share(f"f{i}") == pytest.approx(allocs[1].share(f"f{i}"))


# -- metrics -------------------------------------------------------------------------------


def test_run_timer_reports_latency_beside_run_time():
    timer = RunTimer()
    timer.record(12.0)
    assert "allocator/mesos/allocation_run_latency_ms" not in timer.snapshot()
    timer.latency.record(0.5)
    snap = timer.snapshot()
    assert snap["allocator/mesos/allocation_run_ms"] == 12.0
    assert snap["allocator/mesos/allocation_run_latency_ms"] == 0.5
    assert snap["allocator/mesos/allocation_run_latency_ms/p99"] == 0.5
