"""Allocator contract: the pure library driven with a fake clock.

Every test runs against every built-in allocator and, for the hierarchical
one, every sorter (Habit 3). Expected dominant shares are written beside the
asserts, as in Mesos' sorter tests. Tests of an order only DRF promises take
the `drf_make` fixture (both allocators, DRF sorters).
"""

import random

import pytest

from offerd.allocator import ALLOCATORS, Allocation, create_allocator, dominant_share
from offerd.common.resources import Resources

R = Resources.parse


# (allocator, sorter for roles and frameworks); the one-level "drf" has no sorters.
VARIANTS = [("hierarchical", "drf"), ("hierarchical", "random"), ("drf", None)]
assert {a for a, _ in VARIANTS} == set(ALLOCATORS)


def _factory(allocator, sorter):
    def factory(**options):
        options.setdefault("rng", random.Random(7))
        if sorter is not None:
            options.setdefault("role_sorter", sorter)
            options.setdefault("framework_sorter", sorter)
        return create_allocator(allocator, **options)
    return factory


@pytest.fixture(params=VARIANTS, ids=lambda v: "-".join(x for x in v if x))
def make(request):
    return _factory(*request.param)


@pytest.fixture(params=[v for v in VARIANTS if v[1] != "random"], ids=lambda v: "-".join(x for x in v if x))
def drf_make(request):
    return _factory(*request.param)


def offered(allocations, framework_id):
    return allocations.get(framework_id, {})


# -- the share function -----------------------------------------------------------


def test_dominant_share_is_the_largest_fraction():
    total = {"cpus": 9, "mem": 18432}
    assert dominant_share({"cpus": 1, "mem": 4096}, total) == pytest.approx(4096 / 18432)  # mem dominates: 0.222
    assert dominant_share({"cpus": 3, "mem": 1024}, total) == pytest.approx(3 / 9)  # cpus dominate: 0.333
    assert dominant_share({"cpus": 3}, total, weight=2) == pytest.approx(1 / 6)
    assert dominant_share({"gpus": 1}, total) == 0.0  # nothing of it in the cluster


def test_unknown_allocator_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known allocators: drf, hierarchical"):
        create_allocator("nope")


# -- the classic DRF example (Ghodsi et al., as in Mesos' docs) -------------------


def test_drf_example_a_gets_three_tasks_b_two(drf_make):
    make = drf_make
    alloc = make()
    alloc.add_slave("s1", R("cpus:9;mem:18432"))
    task = {"A": R("cpus:1;mem:4096"), "B": R("cpus:3;mem:1024")}
    alloc.add_framework("A", ["*"])
    alloc.add_framework("B", ["*"])
    launched = {"A": 0, "B": 0}
    order = []
    now = 0.0
    while True:
        allocations = alloc.allocate(now)
        progress = False
        for fid, per_slave in allocations.items():
            for sid, (role, resources) in per_slave.items():
                if resources.contains(task[fid]):
                    launched[fid] += 1
                    order.append(fid)
                    progress = True
                    rest = resources - task[fid]
                else:
                    rest = resources
                # Decline the rest without a filter: the next run decides again.
                alloc.recover_resources(fid, sid, rest, None, now, role)
        now += 1
        if not progress:
            break
    # A <1,4GB>: shares 0.222 0.444 0.667 ; B <3,1GB>: shares 0.333 0.667
    assert order == ["A", "B", "A", "B", "A"]
    assert launched == {"A": 3, "B": 2}
    assert alloc.share("A") == pytest.approx(12288 / 18432)  # 0.667 (mem)
    assert alloc.share("B") == pytest.approx(6 / 9)  # 0.667 (cpus)
    assert alloc.allocated("A") == R("cpus:3;mem:12288")
    assert alloc.allocated("B") == R("cpus:6;mem:2048")


def test_lowest_share_goes_first_and_offers_count_as_allocated(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:4;mem:4096"))
    alloc.add_slave("s2", R("cpus:4;mem:4096"))
    alloc.add_framework("f1", ["*"])
    alloc.add_framework("f2", ["*"])
    result = alloc.allocate(0)
    # Two slaves, two frameworks: each gets one whole slave (share 0.5 each).
    assert sorted(len(v) for v in result.values()) == [1, 1]
    assert alloc.allocated("f1") == R("cpus:4;mem:4096")
    assert alloc.allocated("f2") == R("cpus:4;mem:4096")
    # Nothing left until something is recovered.
    assert alloc.allocate(1) == {}


def test_whole_slave_goes_to_one_framework_per_role(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024;ports:[31000-31009]"))
    alloc.add_framework("f1", ["*"])
    result = alloc.allocate(0)
    assert result == {"f1": {"s1": Allocation("*", R("cpus:2;mem:1024;ports:[31000-31009]"))}}


def test_recovered_resources_are_offered_again(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    (sid, (role, res)), = alloc.allocate(0)["f1"].items()
    alloc.recover_resources("f1", sid, R("cpus:1;mem:512"), None, 0, role)
    assert alloc.allocate(0) == {"f1": {"s1": Allocation("*", R("cpus:1;mem:512"))}}


# -- filters, suppress, revive ----------------------------------------------------------


def test_decline_filter_holds_until_it_expires(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    res = alloc.allocate(0)["f1"]["s1"].resources
    alloc.recover_resources("f1", "s1", res, 5.0, now=10.0)
    assert alloc.allocate(12.0) == {}
    assert alloc.allocate(14.99) == {}
    assert alloc.allocate(15.0) == {"f1": {"s1": Allocation("*", res)}}


def test_filter_does_not_hold_when_more_is_on_offer(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:4;mem:4096"))
    alloc.add_framework("f1", ["*"])
    alloc.allocate(0)
    # The framework uses half and declines the other half for 100 s ...
    alloc.recover_resources("f1", "s1", R("cpus:2;mem:2048"), 100.0, 0)
    assert alloc.allocate(1) == {}
    # ... then its task ends: the slave now offers more than was refused.
    alloc.recover_resources("f1", "s1", R("cpus:2;mem:2048"), None, 2)
    assert alloc.allocate(3) == {"f1": {"s1": Allocation("*", R("cpus:4;mem:4096"))}}


def test_filter_is_per_framework(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    res = alloc.allocate(0)["f1"]["s1"].resources
    alloc.add_framework("f2", ["*"])
    alloc.recover_resources("f1", "s1", res, 60.0, 0)
    assert alloc.allocate(1) == {"f2": {"s1": Allocation("*", res)}}


def test_zero_or_negative_refuse_seconds_install_no_filter(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    for refuse in (0.0, -1.0, None):
        res = alloc.allocate(0)["f1"]["s1"].resources
        alloc.recover_resources("f1", "s1", res, refuse, 0)
    assert "f1" in alloc.allocate(0)


def test_suppress_stops_offers_and_revive_clears_filters(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    res = alloc.allocate(0)["f1"]["s1"].resources
    alloc.recover_resources("f1", "s1", res, 1000.0, 0)
    alloc.suppress("f1")
    assert alloc.allocate(2000) == {}  # filter expired, but suppressed
    alloc.revive("f1")
    assert "f1" in alloc.allocate(2000)
    # revive also drops a fresh filter at once
    alloc.recover_resources("f1", "s1", res, 1000.0, 3000)
    alloc.revive("f1")
    assert "f1" in alloc.allocate(3001)


def test_subscribed_with_suppressed_roles(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["a", "b"], suppressed_roles=["a"])
    assert alloc.allocate(0)["f1"]["s1"].role == "b"


def test_suppress_one_role_of_a_multi_role_framework(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["a", "b"])
    alloc.suppress("f1", ["a"])
    assert alloc.allocate(0)["f1"]["s1"].role == "b"
    alloc.recover_resources("f1", "s1", R("cpus:2;mem:1024"), None, 0)
    alloc.suppress("f1", ["b"])
    assert alloc.allocate(0) == {}
    alloc.revive("f1", ["a"])
    assert alloc.allocate(0)["f1"]["s1"].role == "a"


# -- roles and reservations --------------------------------------------------------------


def test_reserved_resources_go_only_to_their_role(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:1;mem:512;cpus(web):2;mem(web):1024"))
    alloc.add_framework("batch", ["batch"])
    result = alloc.allocate(0)
    assert result == {"batch": {"s1": Allocation("batch", R("cpus:1;mem:512"))}}
    alloc.add_framework("web", ["web"])
    result = alloc.allocate(0)
    assert result == {"web": {"s1": Allocation("web", R("cpus(web):2;mem(web):1024"))}}


def test_min_allocatable_resources(make):
    alloc = make(min_allocatable_resources="cpus:1|mem:1024")
    alloc.add_slave("s1", R("cpus:0.5;mem:512"))
    alloc.add_slave("s2", R("cpus:1;mem:16"))
    alloc.add_framework("f1", ["*"])
    assert alloc.allocate(0) == {"f1": {"s2": Allocation("*", R("cpus:1;mem:16"))}}


def test_default_minimum_is_mesos(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:0.001;mem:16"))
    alloc.add_framework("f1", ["*"])
    assert alloc.allocate(0) == {}


# -- frameworks and slaves coming and going ------------------------------------------------


def test_inactive_framework_gets_nothing_until_activated(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"], active=False)
    assert alloc.allocate(0) == {}
    alloc.activate_framework("f1")
    assert "f1" in alloc.allocate(0)
    alloc.recover_resources("f1", "s1", R("cpus:2;mem:1024"), None, 0)
    alloc.deactivate_framework("f1")
    assert alloc.allocate(0) == {}


def test_removing_a_framework_frees_what_it_held(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    alloc.allocate(0)
    alloc.add_framework("f2", ["*"])
    assert alloc.allocate(0) == {}
    alloc.remove_framework("f1")
    assert alloc.allocate(0) == {"f2": {"s1": Allocation("*", R("cpus:2;mem:1024"))}}


def test_removed_slave_is_not_offered_and_its_allocation_is_dropped(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    alloc.allocate(0)
    alloc.remove_slave("s1")
    assert alloc.allocated("f1").is_empty()
    assert alloc.allocate(0) == {}


def test_deactivated_slave_is_skipped(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.deactivate_slave("s1")
    alloc.add_framework("f1", ["*"])
    assert alloc.allocate(0) == {}
    alloc.activate_slave("s1")
    assert "f1" in alloc.allocate(0)


def test_slave_with_used_resources_counts_them(make):
    alloc = make()
    # A reregistering slave reports a task of a framework not subscribed yet.
    alloc.add_slave("s1", R("cpus:4;mem:4096"), used={"f1": R("cpus:3;mem:1024")})
    alloc.add_framework("f1", ["*"], active=False)
    assert alloc.allocated("f1") == R("cpus:3;mem:1024")
    alloc.add_framework("f2", ["*"])
    assert alloc.allocate(0) == {"f2": {"s1": Allocation("*", R("cpus:1;mem:3072"))}}
    # The task ends: its resources come back.
    alloc.recover_resources("f1", "s1", R("cpus:3;mem:1024"), None, 0)
    assert alloc.allocate(0) == {"f2": {"s1": Allocation("*", R("cpus:3;mem:1024"))}}


def test_update_slave_total(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.update_slave("s1", R("cpus:4;mem:1024"))
    alloc.add_framework("f1", ["*"])
    assert alloc.allocate(0)["f1"]["s1"].resources == R("cpus:4;mem:1024")


def test_allocate_only_the_given_slaves(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_slave("s2", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    assert list(alloc.allocate(0, slaves=["s2", "unknown"])["f1"]) == ["s2"]


def test_recovering_more_than_held_does_not_corrupt_accounting(make):
    alloc = make()
    alloc.add_slave("s1", R("cpus:2;mem:1024"))
    alloc.add_framework("f1", ["*"])
    alloc.allocate(0)
    alloc.recover_resources("f1", "s1", R("cpus:3;mem:1024;gpus:1"), None, 0)
    assert alloc.allocated("f1").is_empty()
    assert alloc.allocate(0) == {"f1": {"s1": Allocation("*", R("cpus:2;mem:1024"))}}


def test_recover_for_unknown_slave_or_framework_is_harmless(make):
    alloc = make()
    alloc.recover_resources("nobody", "nowhere", R("cpus:1"), 5.0, 0)
    alloc.suppress("nobody")
    alloc.revive("nobody")
    alloc.remove_framework("nobody")
    alloc.remove_slave("nowhere")
    assert alloc.allocate(0) == {}


def test_slave_order_is_shuffled_with_the_given_rng(make):
    def first_slave(seed):
        alloc = make(rng=random.Random(seed))
        for i in range(8):
            alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
        alloc.add_framework("f1", ["*"])
        alloc.add_framework("f2", ["*"])
        return sorted(alloc.allocate(0)["f1"])
    assert first_slave(1) == first_slave(1)
    assert len({tuple(first_slave(seed)) for seed in range(10)}) > 1


def test_many_frameworks_share_fairly(drf_make):
    make = drf_make
    alloc = make()
    for i in range(10):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    for i in range(5):
        alloc.add_framework(f"f{i}", ["*"])
    result = alloc.allocate(0)
    # Ten equal slaves, five frameworks: two slaves each (share 0.2 each).
    assert sorted(len(v) for v in result.values()) == [2, 2, 2, 2, 2]
    assert alloc.stats()["allocation_runs"] == 1


def test_same_ports_on_several_slaves_are_accounted_per_slave(make, caplog):
    # Ranges add up as unions, so a framework holding ports:[31000-32000] on two
    # slaves must still be able to give back each slave's ports separately.
    alloc = make()
    for sid in ("s1", "s2"):
        alloc.add_slave(sid, R("cpus:1;mem:1024;ports:[31000-32000]"))
    alloc.add_framework("f1", ["*"])
    assert sorted(alloc.allocate(0)["f1"]) == ["s1", "s2"]
    assert alloc.share("f1") == 1.0
    for sid in ("s1", "s2"):
        alloc.recover_resources("f1", sid, R("cpus:1;mem:1024;ports:[31000-32000]"), None, 0)
    assert "mismatch" not in caplog.text
    assert alloc.share("f1") == 0.0 and alloc.allocated("f1").is_empty()
    assert sorted(alloc.allocate(0)["f1"]) == ["s1", "s2"]
