"""The hierarchical allocator: roles, weights, quota, filters, explanations, sorters.

Driven as a pure library with a fake clock; sorter-independent tests run over
every sorter. Expected shares are written beside the asserts.
"""

import random

import pytest

from offerd.allocator import SORTERS, HierarchicalAllocator, create_allocator, create_sorter
from offerd.common.resources import Resources

R = Resources.parse


@pytest.fixture(params=sorted(SORTERS))
def sorter_name(request):
    return request.param


def hier(sorter="drf", **options):
    options.setdefault("rng", random.Random(3))
    return create_allocator("hierarchical", role_sorter=sorter, framework_sorter=sorter, **options)


def decline_all(alloc, result, now, refuse=None):
    for fid, per_slave in result.items():
        for sid, (role, res) in per_slave.items():
            alloc.recover_resources(fid, sid, res, refuse, now, role)


# -- sorters ------------------------------------------------------------------------


def test_sorter_contract(sorter_name):
    total = {"cpus": 10.0, "mem": 100.0}
    s = create_sorter(sorter_name, total, random.Random(1))
    s.add("a")
    s.add("b", weight=2.0)
    s.add("c", active=False)
    assert sorted(s.sort()) == ["a", "b"]  # inactive clients are not offered
    s.allocated("a", {"cpus": 5.0})
    assert s.share("a") == pytest.approx(0.5)  # 5/10
    s.allocated("b", {"mem": 50.0})
    assert s.share("b") == pytest.approx(0.25)  # 50/100 / weight 2
    s.unallocated("a", {"cpus": 5.0})
    assert s.share("a") == 0.0
    s.deactivate("a")
    assert list(s.sort()) == ["b"]
    s.remove("b")
    assert list(s.sort()) == []


def test_drf_sorter_order_follows_weighted_shares():
    s = create_sorter("drf", {"cpus": 10.0})
    for c in ("a", "b", "c"):
        s.add(c)
    s.allocated("a", {"cpus": 3.0})  # 0.3
    s.allocated("b", {"cpus": 1.0})  # 0.1
    assert list(s.sort()) == ["c", "b", "a"]  # 0.0, 0.1, 0.3
    s.update_weight("a", 10.0)  # 0.03
    assert list(s.sort()) == ["c", "a", "b"]
    s.set_total({"cpus": 1.0})  # a 0.3, b 1.0
    assert list(s.sort()) == ["c", "a", "b"]


def test_random_sorter_is_weighted():
    s = create_sorter("random", {}, random.Random(5))
    s.add("heavy", weight=9.0)
    s.add("light", weight=1.0)
    firsts = [next(iter(s.sort())) for _ in range(2000)]
    assert 0.85 < firsts.count("heavy") / 2000 < 0.95  # expected 0.9
    assert sorted(s.sort()) == ["heavy", "light"]  # every active client, once


# -- roles and weights --------------------------------------------------------------


def test_roles_are_sorted_before_frameworks():
    alloc = hier()
    for i in range(4):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    # Role a has three frameworks, role b one: roles share fairly, not frameworks.
    for f in ("a1", "a2", "a3"):
        alloc.add_framework(f, ["a"])
    alloc.add_framework("b1", ["b"])
    alloc.allocate(0)
    assert alloc.role_share("a") == pytest.approx(0.5)  # 2 of 4 slaves
    assert alloc.role_share("b") == pytest.approx(0.5)
    assert alloc.share("b1") == pytest.approx(0.5)


def test_weights_change_shares_proportionally(sorter_name):
    alloc = hier(sorter_name)
    for i in range(8):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    alloc.update_weights({"prod": 3.0})
    alloc.add_framework("p", ["prod"])
    alloc.add_framework("d", ["dev"])
    if sorter_name == "drf":
        alloc.allocate(0)
        # prod weight 3, dev 1: 6 and 2 slaves (weighted shares 0.75/3 = 0.25 = 2/8)
        assert alloc.share("p") == pytest.approx(0.75)
        assert alloc.share("d") == pytest.approx(0.25)
        assert alloc.role_share("prod") == pytest.approx(0.25)
    else:
        got = {"p": 0, "d": 0}
        for now in range(300):
            result = alloc.allocate(now)
            for fid, per_slave in result.items():
                got[fid] += len(per_slave)
            decline_all(alloc, result, now)
        assert 0.65 < got["p"] / (got["p"] + got["d"]) < 0.85  # expected 0.75


def test_reserved_resources_only_to_their_role_even_with_lower_share():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:2;mem:1024;cpus(web):2;mem(web):512"))
    alloc.add_framework("other", ["batch"])
    result = alloc.allocate(0)
    assert result["other"]["s1"].resources == R("cpus:2;mem:1024")
    alloc.add_framework("web", ["web"])
    result = alloc.allocate(1)
    assert result == {"web": {"s1": (("web"), R("cpus(web):2;mem(web):512"))}}


def test_multi_role_framework_gets_one_offer_per_slave_and_run():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:2;mem:1024;cpus(b):1;mem(b):256"))
    alloc.add_framework("f", ["a", "b"])
    first = alloc.allocate(0)
    assert len(first["f"]) == 1
    second = alloc.allocate(1)  # the other role's part comes in the next run
    role1, role2 = first["f"]["s1"].role, second["f"]["s1"].role
    assert {role1, role2} == {"a", "b"}
    assert alloc.allocated("f") == R("cpus:2;mem:1024;cpus(b):1;mem(b):256")


# -- filters -------------------------------------------------------------------------


def test_filter_lasts_at_least_one_allocation_interval():
    alloc = hier(allocation_interval=2.0)
    alloc.add_slave("s1", R("cpus:1;mem:512"))
    alloc.add_framework("f", ["*"])
    decline_all(alloc, alloc.allocate(0), 10.0, refuse=0.5)
    assert alloc.allocate(11.0) == {}  # 0.5 s pushed to 2 s
    assert alloc.allocate(12.0) != {}


def test_filters_per_role_of_a_multi_role_framework():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:1;mem:512"))
    alloc.add_framework("f", ["a", "b"])
    result = alloc.allocate(0)
    role = result["f"]["s1"].role
    decline_all(alloc, result, 0, refuse=10)
    again = alloc.allocate(1)
    assert again["f"]["s1"].role != role  # the other role is not filtered


def test_no_starvation_with_fifty_declining_frameworks():
    alloc = hier(rng=random.Random(11))
    for i in range(10):
        alloc.add_slave(f"s{i}", R("cpus:4;mem:4096"))
    frameworks = [f"f{i:02d}" for i in range(50)]
    for fid in frameworks:
        alloc.add_framework(fid, ["*"])
    first_offer = {}
    now = 0.0
    for cycle in range(40):
        result = alloc.allocate(now)
        for fid in result:
            first_offer.setdefault(fid, cycle)
        decline_all(alloc, result, now, refuse=5.0)
        now += 1.0
    # 10 slaves, 50 frameworks: every one is offered within ~5 cycles (50/10),
    # each filter keeps its decliner off that slave for 5 s: bound of 10 cycles.
    assert set(first_offer) == set(frameworks)
    assert max(first_offer.values()) < 10


# -- quota ---------------------------------------------------------------------------


def test_quota_guarantee_is_served_before_fair_share():
    alloc = hier()
    for i in range(10):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    for i in range(4):
        alloc.add_framework(f"big{i}", ["big"])
    alloc.add_framework("q", ["guaranteed"])
    alloc.update_quota("guaranteed", R("cpus:6"), None)
    alloc.allocate(0)
    # Quota stage: 6 cpus to "guaranteed" (share 0.6, above fair 0.5).
    assert alloc.allocated("q").scalar("cpus") == 6
    assert alloc.role_share("guaranteed") == pytest.approx(0.6)
    assert alloc.role_share("big") == pytest.approx(0.4)


def test_headroom_is_held_back_for_unmet_quota():
    alloc = hier()
    for i in range(4):
        alloc.add_slave(f"s{i}", R("cpus:1;mem:1024"))
    alloc.add_framework("other", ["other"])
    alloc.update_quota("guaranteed", R("cpus:2"), None)  # no framework in the role yet
    alloc.allocate(0)
    assert alloc.allocated("other").scalar("cpus") == 2  # 2 cpus kept as headroom
    reasons = alloc.explain("other")["reasons"]
    assert "QUOTA_HEADROOM" in [r["code"] for r in reasons]
    alloc.add_framework("q", ["guaranteed"])
    alloc.allocate(1)
    assert alloc.allocated("q").scalar("cpus") == 2


def test_quota_limit_caps_a_role():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:4;mem:4096"))
    alloc.add_framework("f", ["capped"])
    alloc.update_quota("capped", None, R("cpus:1;mem:1024"))
    alloc.allocate(0)
    assert alloc.allocated("f") == R("cpus:1;mem:1024")
    assert alloc.explain("f")["reasons"][0]["code"] == "QUOTA_LIMIT"


# -- explanations and metrics -----------------------------------------------------------


def test_explain_says_why_no_offers():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:1;mem:512"))
    alloc.add_slave("s2", R("cpus:1;mem:512"))
    alloc.add_framework("f", ["*"])
    alloc.add_framework("sup", ["*"], suppressed_roles=["*"])
    decline_all(alloc, alloc.allocate(0), 0, refuse=30)
    why = alloc.explain()
    f = why["frameworks"]["f"]
    assert f["getting_offers"] is False
    assert f["roles"]["*"]["filtered_slaves"] == 2 and f["roles"]["*"]["offerable_slaves"] == 2
    assert [r["code"] for r in f["reasons"]] == ["FILTERED"]
    sup = why["frameworks"]["sup"]
    assert [r["code"] for r in sup["reasons"]] == ["SUPPRESSED"]
    alloc.revive("f")
    assert alloc.explain("f")["getting_offers"] is True
    alloc.deactivate_framework("f")
    assert alloc.explain("f")["reasons"][0]["code"] == "INACTIVE"


def test_explain_no_resources():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:1;mem:512"))
    alloc.add_framework("a", ["*"])
    alloc.allocate(0)
    alloc.add_framework("b", ["*"])
    codes = [r["code"] for r in alloc.explain("b")["reasons"]]
    assert codes == ["NO_RESOURCES"]


def test_stats_keys_are_mesos_names():
    alloc = hier()
    alloc.add_slave("s1", R("cpus:4;mem:1024"))
    alloc.add_framework("f", ["web"])
    alloc.update_quota("web", R("cpus:1"), None)
    decline_all(alloc, alloc.allocate(0), 0, refuse=5)
    stats = alloc.stats()
    assert stats["mesos/allocation_runs"] == 1
    assert stats["mesos/roles/web/shares/dominant"] == 0.0  # declined: nothing held
    assert stats["mesos/offer_filters/roles/web/active"] == 1
    assert stats["mesos/quota/roles/web/resources/cpus/guarantee"] == 1.0
    assert stats["mesos/resources/cpus/total"] == 4.0


def test_third_party_allocator_by_entry_point(monkeypatch):
    import offerd.allocator as registry

    class EP:
        name = "mine"

        def load(self):
            return HierarchicalAllocator

    monkeypatch.setattr(registry, "entry_points", lambda group: [EP()])
    assert isinstance(create_allocator("mine"), HierarchicalAllocator)
