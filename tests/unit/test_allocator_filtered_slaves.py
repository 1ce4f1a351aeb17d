"""Slaves every framework has declined: skipped without walking the filters
(one_role.py's `blocked` memo), and offered again as soon as anything that made
them so changes: a framework joins or wakes up, a filter expires, a revive, new
resources on the slave. Also the quota stage's caches as roles come and go."""

from tests.unit.allocators import R, hier

FOREVER = float(2**31 - 1)


def _decline(alloc, result, now, refuse=FOREVER):
    for fid, per_slave in result.items():
        for sid, (role, res) in per_slave.items():
            alloc.recover_resources(fid, sid, res, refuse, now, role)


def _declined_by_all(frameworks=3, refuse=FOREVER):
    alloc = hier()
    alloc.add_slave("s1", R("cpus:4;mem:1024;ports:[31000-32000]"))
    for i in range(frameworks):
        alloc.add_framework(f"f{i}", ["web"])
    now = 0.0
    for _ in range(frameworks):
        result = alloc.allocate(now)
        assert sum(len(v) for v in result.values()) == 1
        _decline(alloc, result, now, refuse)
        now += 1.0
    assert alloc.allocate(now) == {}
    assert alloc.allocate(now + 1) == {}  # the memoised verdict
    return alloc, now + 1


def test_a_new_framework_gets_the_slave_everyone_else_declined():
    alloc, now = _declined_by_all()
    alloc.add_framework("late", ["web"])
    assert list(alloc.allocate(now)) == ["late"]


def test_a_framework_that_wakes_up_without_a_filter_gets_it():
    alloc, now = _declined_by_all()
    alloc.add_framework("sleeper", ["web"], active=False)
    assert alloc.allocate(now) == {}
    alloc.activate_framework("sleeper")
    assert list(alloc.allocate(now)) == ["sleeper"]


def test_revive_drops_the_filters_and_the_verdict():
    alloc, now = _declined_by_all()
    alloc.revive("f1")
    assert list(alloc.allocate(now)) == ["f1"]


def test_an_expired_filter_offers_the_slave_again():
    alloc, now = _declined_by_all(refuse=10.0)
    assert alloc.allocate(now + 1) == {}
    result = alloc.allocate(now + 20)
    assert sum(len(v) for v in result.values()) == 1


def test_more_resources_on_the_slave_are_offered():
    alloc, now = _declined_by_all()
    alloc.update_slave("s1", R("cpus:8;mem:1024;ports:[31000-32000]"))
    result = alloc.allocate(now)
    assert sum(len(v) for v in result.values()) == 1


def test_a_suppressed_framework_leaving_the_order_does_not_unblock_it():
    alloc, now = _declined_by_all()
    alloc.suppress("f0")
    assert alloc.allocate(now) == {}
    alloc.revive("f0")  # drops f0's filter too
    assert list(alloc.allocate(now)) == ["f0"]


def test_quota_subtrees_follow_roles_added_later():
    alloc = hier()
    alloc.update_quota("eng", R("cpus:2;mem:256"), R("cpus:2;mem:256"))
    alloc.add_slave("s1", R("cpus:4;mem:512"))
    alloc.add_framework("web", ["eng/web"])  # a role below the quota role, known only now
    result = alloc.allocate(0.0)
    (role, offered), = result["web"].values()
    assert role == "eng/web"
    assert offered.scalars() == {"cpus": 2.0, "mem": 256.0}  # the limit covers the subtree
    alloc.add_framework("other", ["ops"])
    assert list(alloc.allocate(1.0)) == ["other"]
