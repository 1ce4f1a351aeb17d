"""Allocators: pure libraries that decide who is offered what (DESIGN.md §6).

``create_allocator(name, **options)`` picks one by name (``--allocator``).
"""

from __future__ import annotations

from offerd.allocator.drf import DRFAllocator, dominant_share
from offerd.allocator.interface import Allocation, Allocations, Allocator

# Until the hierarchical allocator (roles, weights, quota) lands, its name
# gives the one-level DRF allocator, so the flag value users type stays valid.
ALLOCATORS: dict[str, type[Allocator]] = {
    "hierarchical": DRFAllocator,
}


def create_allocator(name: str = "hierarchical", **options) -> Allocator:
    try:
        cls = ALLOCATORS[name]
    except KeyError:
        known = ", ".join(sorted(ALLOCATORS))
        raise ValueError(f"unknown allocator {name!r}; known allocators: {known}") from None
    return cls(**options)


__all__ = ["ALLOCATORS", "Allocation", "Allocations", "Allocator", "DRFAllocator",
           "create_allocator", "dominant_share"]
