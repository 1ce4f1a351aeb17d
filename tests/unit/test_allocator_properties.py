"""Property-based tests of the hierarchical allocator (hypothesis), every sorter."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from offerd.allocator import create_allocator
from offerd.common.resources import Resources

R = Resources.parse

slave_texts = st.sampled_from([
    "cpus:2;mem:1024;ports:[31000-31010]",
    "cpus:1;mem:512;cpus(web):1;mem(web):256",
    "cpus:4;mem:4096;disk:100",
    "cpus(batch):2;mem(batch):512",
])
roles = st.sampled_from(["*", "web", "batch"])
# an event: (kind, framework index, slave index, refuse seconds)
events = st.lists(st.tuples(st.sampled_from(["allocate", "decline", "suppress", "revive", "tick"]),
                            st.integers(0, 3), st.integers(0, 3), st.sampled_from([None, 0.5, 3.0])),
                  max_size=40)


def build(sorter, slaves, framework_roles, seed):
    alloc = create_allocator("hierarchical", rng=random.Random(seed), role_sorter=sorter,
                             framework_sorter=sorter, allocation_interval=1.0)
    for i, text in enumerate(slaves):
        alloc.add_slave(f"s{i}", R(text))
    for i, fr in enumerate(framework_roles):
        alloc.add_framework(f"f{i}", fr)
    return alloc


@settings(max_examples=60, deadline=None)
@given(sorter=st.sampled_from(["drf", "random"]),
       slaves=st.lists(slave_texts, min_size=1, max_size=4),
       framework_roles=st.lists(st.lists(roles, min_size=1, max_size=2, unique=True), min_size=1, max_size=4),
       script=events, seed=st.integers(0, 100))
def test_never_overcommits_and_respects_reservations_and_filters(sorter, slaves, framework_roles, script, seed):
    alloc = build(sorter, slaves, framework_roles, seed)
    totals = {f"s{i}": R(t) for i, t in enumerate(slaves)}
    # (framework, slave, role, offered): a framework may hold several offers of a slave
    # (one per role, or more after other resources there were freed); as in Mesos
    outstanding: list[tuple[str, str, str, Resources]] = []
    filters: dict[tuple[str, str, str], tuple[Resources, float]] = {}
    now = 0.0
    for kind, fi, si, refuse in script:
        fid, sid = f"f{fi % len(framework_roles)}", f"s{si % len(slaves)}"
        if kind == "allocate":
            result = alloc.allocate(now)
            for f, per_slave in result.items():
                for s, (role, res) in per_slave.items():
                    # reserved resources only to their role
                    assert res.roles() <= {"*", role}
                    flt = filters.get((f, role, s))
                    if flt is not None and now < flt[1]:
                        assert not flt[0].contains(res)  # a filter holds until it expires
                    outstanding.append((f, s, role, res))
            # never more than a slave has, summed over every outstanding offer
            for s, total in totals.items():
                used = [res for (f, ss, _, res) in outstanding if ss == s]
                # never more than a slave has, and no resource in two offers at once:
                # scalars sum up within the total; ranges add up as unions, so no port is counted twice
                used = sum(used, Resources.EMPTY) if used else Resources.EMPTY
                ports = sum(r.range_len("ports") for (f, ss, _, r) in outstanding if ss == s)
                assert ports == used.range_len("ports")
                assert total.contains(used)
                for name, amount in used.scalars().items():
                    assert amount <= total.scalar(name) + 1e-9
        elif kind == "decline" and any(o[:2] == (fid, sid) for o in outstanding):
            offer = next(o for o in outstanding if o[:2] == (fid, sid))
            outstanding.remove(offer)
            role, res = offer[2], offer[3]
            alloc.recover_resources(fid, sid, res, refuse, now, role)
            if refuse:
                filters[(fid, role, sid)] = (res, now + max(refuse, 1.0))
        elif kind == "suppress":
            alloc.suppress(fid)
        elif kind == "revive":
            alloc.revive(fid)
            for key in [k for k in filters if k[0] == fid]:
                del filters[key]
        elif kind == "tick":
            now += 1.0


@settings(max_examples=30, deadline=None)
@given(weight=st.sampled_from([1.0, 2.0, 3.0]), slaves=st.integers(4, 12))
def test_weights_change_shares_proportionally(weight, slaves):
    alloc = build("drf", ["cpus:1;mem:1024"] * slaves, [["a"], ["b"]], 1)
    alloc.update_weights({"a": weight})
    alloc.allocate(0)
    # Weighted shares end within one slave of each other: share_a / w == share_b.
    assert abs(alloc.role_share("a") - alloc.role_share("b")) <= 1 / slaves + 1e-9
    assert alloc.share("f0") + alloc.share("f1") == 1.0 or abs(alloc.share("f0") + alloc.share("f1") - 1) < 1e-9


@settings(max_examples=30, deadline=None)
@given(guarantee=st.integers(1, 6), others=st.integers(1, 4), seed=st.integers(0, 50))
def test_quota_role_gets_its_guarantee_first(guarantee, others, seed):
    alloc = build("drf", ["cpus:1;mem:512"] * 8, [["q"]] + [["o"]] * others, seed)
    alloc.update_quota("q", R(f"cpus:{guarantee}"), None)
    alloc.allocate(0)
    assert alloc.allocated("f0").scalar("cpus") >= guarantee
    # The other role gets no more than what is left: no more than its fair share before q is served.
    assert alloc.role_share("o") <= (8 - guarantee) / 8 + 1e-9
