"""The one-role fast path of the hierarchical allocator makes the general loop's choices."""

import random

import pytest

from tests.unit.allocators import R, hier


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
