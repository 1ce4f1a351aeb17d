"""Quota over the role tree: a parent role's guarantee is served to its children,
its limit caps them together, and a role that merely starts with its name ("engineering"
for "eng") is not below it."""

import pytest

from tests.unit.allocators import R, hier


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
