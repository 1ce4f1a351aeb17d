"""Allocators: pure libraries that decide who is offered what.

``create_allocator(name, **options)`` picks one by name (``--allocator``):
first among the ``offerd.allocators`` entry points of installed packages (so a
third party can plug one in), then in the built-in table below.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points

from offerd.allocator.drf import DRFAllocator
from offerd.allocator.hierarchical import HierarchicalAllocator
from offerd.allocator.interface import Allocation, Allocations, Allocator
from offerd.allocator.sorter import SORTERS, DRFSorter, RandomSorter, Sorter, create_sorter, dominant_share

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "offerd.allocators"

# Built in, used when no entry point of that name is installed. "drf" is the
# one-level reference allocator the hierarchical one is tested against (drf.py).
ALLOCATORS: dict[str, type[Allocator]] = {
    "hierarchical": HierarchicalAllocator,
    "drf": DRFAllocator,
}


def allocator_class(name: str) -> type[Allocator]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    try:
        return ALLOCATORS[name]
    except KeyError:
        known = sorted(set(ALLOCATORS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ValueError(f"unknown allocator {name!r}; known allocators: {', '.join(known)}") from None


def create_allocator(name: str = "hierarchical", **options) -> Allocator:
    """Options a class does not take (e.g. sorters for "drf") are dropped with a log line."""
    cls = allocator_class(name)
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        dropped = sorted(set(options) - set(params))
        if dropped:
            log.info("allocator %s ignores options %s", name, ", ".join(dropped))
        options = {k: v for k, v in options.items() if k in params}
    return cls(**options)


__all__ = ["ALLOCATORS", "Allocation", "Allocations", "Allocator", "DRFAllocator", "DRFSorter",
           "ENTRY_POINT_GROUP", "HierarchicalAllocator", "RandomSorter", "SORTERS", "Sorter",
           "allocator_class", "create_allocator", "create_sorter", "dominant_share"]
