"""The hierarchical allocator against the reference one (offerd/allocator/drf.py).

In the case both cover (one role, no weights, no quota, no filters) they must
agree on what DRF decides: on identical slaves every grant goes to a framework
with the lowest dominant share, so however each breaks ties, the frameworks end
a run holding the same numbers of slaves.
"""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from offerd.allocator import create_allocator
from offerd.common.resources import Resources

R = Resources.parse

SHAPES = ["cpus:2;mem:1024", "cpus:1;mem:4096", "cpus:4;mem:2048;disk:100"]


def _run(name, shape, free, held, seed):
    options = {"rng": random.Random(seed)}
    if name == "hierarchical":
        options.update(role_sorter="drf", framework_sorter="drf")
    alloc = create_allocator(name, **options)
    for i in range(len(held)):
        alloc.add_framework(f"f{i}", ["*"])
    busy = 0
    for i, count in enumerate(held):
        for _ in range(count):  # slaves this framework's tasks already fill
            alloc.add_slave(f"busy{busy}", shape, used={f"f{i}": shape})
            busy += 1
    for s in range(free):
        alloc.add_slave(f"s{s}", shape)
    offers = alloc.allocate(0.0)
    slaves = {f"f{i}": count + len(offers.get(f"f{i}", {})) for i, count in enumerate(held)}
    return offers, slaves


@settings(max_examples=80, deadline=None)
@given(shape=st.sampled_from(SHAPES), free=st.integers(0, 12),
       held=st.lists(st.integers(0, 3), min_size=1, max_size=5), seed=st.integers(0, 1000))
def test_hierarchical_and_reference_agree_on_one_role(shape, free, held, seed):
    shape = R(shape)
    reference_offers, reference = _run("drf", shape, free, held, seed)
    offers, hierarchical = _run("hierarchical", shape, free, held, seed)
    # Every free slave is offered whole, once.
    assert sum(len(o) for o in offers.values()) == sum(len(o) for o in reference_offers.values()) == free
    assert all(a.resources == shape for o in offers.values() for a in o.values())
    assert sorted(hierarchical.values()) == sorted(reference.values())
    # Water-filling: nobody ends more than one slave above anyone who got an offer.
    if offers:
        lowest_served = min(hierarchical[f] for f in offers)
        assert max(hierarchical.values()) <= max(lowest_served + 1, max(held))
