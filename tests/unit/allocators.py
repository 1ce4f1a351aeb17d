"""Setup shared by the hierarchical allocator's unit tests: the allocator is a pure
library, driven here with a fixed random seed and a fake clock (the `now` arguments)."""

import random

from offerd.allocator import create_allocator
from offerd.common.resources import Resources

R = Resources.parse


def hier(**options):
    """A hierarchical allocator whose random tie-breaks are the same every run."""
    options.setdefault("rng", random.Random(3))
    return create_allocator("hierarchical", **options)
