"""Sorters: in what order clients (roles, or frameworks in a role) are offered.

Modelled on Mesos' ``src/master/allocator/sorter/sorter.hpp``: a sorter knows
its clients, their weights and their scalar allocations, and `sort()` answers
"who next". The allocator keeps one role sorter and one framework sorter per
role, both picked by name (``--role_sorter``, ``--framework_sorter``).

The DRF share is one function, `dominant_share`. The DRF sorter keeps its
active clients in a sorted list and moves one client per allocation (a
bisect), so a cycle over thousands of slaves never re-sorts thousands of
frameworks; a change of the cluster total only marks the order stale.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from typing import Iterator, Mapping


def dominant_share(allocated: Mapping[str, float], total: Mapping[str, float], weight: float = 1.0) -> float:
    """The largest allocated/total over the scalar resources, divided by the weight."""
    # Keys, not .items(): a view object per call feeds the garbage collector in hot loops.
    share = 0.0
    for name in allocated:
        cluster = total.get(name)
        if cluster:
            fraction = allocated[name] / cluster
            if fraction > share:
                share = fraction
    return share / weight


class Sorter(ABC):
    """Clients with weights and scalar allocations; `sort()` gives the order.

    Inactive clients keep their allocation (it still counts in the parent's
    share) but are not returned by `sort()`.
    """

    def __init__(self, total: Mapping[str, float] | None = None, rng: random.Random | None = None):
        self.total: Mapping[str, float] = total if total is not None else {}
        self.rng = rng or random.Random()
        self.weights: dict[str, float] = {}
        self.allocations: dict[str, dict[str, float]] = {}
        self.active: set[str] = set()

    # -- clients --------------------------------------------------------------

    def add(self, client: str, weight: float = 1.0, active: bool = True) -> None:
        if client in self.weights:
            return
        self.weights[client] = weight
        self.allocations[client] = {}
        if active:
            self.activate(client)

    def remove(self, client: str) -> None:
        self.deactivate(client)
        self.weights.pop(client, None)
        self.allocations.pop(client, None)

    def __contains__(self, client: str) -> bool:
        return client in self.weights

    def __len__(self) -> int:
        return len(self.weights)

    def activate(self, client: str) -> None:
        if client in self.weights:
            self.active.add(client)

    def deactivate(self, client: str) -> None:
        self.active.discard(client)

    def update_weight(self, client: str, weight: float) -> None:
        if client in self.weights:
            self.weights[client] = weight

    # -- accounting -----------------------------------------------------------

    def allocated(self, client: str, quantities: Mapping[str, float]) -> None:
        """`client` was given these scalar quantities (offered or used)."""
        held = self.allocations[client]
        for name, amount in quantities.items():
            held[name] = held.get(name, 0.0) + amount

    def unallocated(self, client: str, quantities: Mapping[str, float]) -> None:
        held = self.allocations.get(client)
        if held is None:
            return
        for name, amount in quantities.items():
            # Rounded to the fixed-point grid of Resources so sums never drift.
            value = round(held.get(name, 0.0) - amount, 3)
            if value > 0:
                held[name] = value
            else:
                held.pop(name, None)

    def set_total(self, total: Mapping[str, float]) -> None:
        self.total = total

    def share(self, client: str) -> float:
        held = self.allocations.get(client)
        return dominant_share(held, self.total, self.weights[client]) if held else 0.0

    # -- the question ---------------------------------------------------------

    @abstractmethod
    def sort(self) -> Iterator[str]:
        """Active clients in the order they should be offered. Callers stop
        iterating as soon as they change an allocation (then ask again)."""


class DRFSorter(Sorter):
    """Lowest weighted dominant share first; ties by the number of grants so
    far, then by name (as Mesos' DRF sorter). The grant count matters: after
    everyone declines, all shares are 0 again, and ties by name alone would
    hand the cluster to the same few frameworks forever (starvation).

    `_order` holds (share, grants, client) keys of the active clients, sorted, and
    `_names` the clients in the same order (what `sort()` returns, no copy).
    An allocation change only marks the client dirty; the next `sort()` moves
    each dirty client once (a bisect), and with a single active client there
    is nothing to move at all.
    """

    def __init__(self, total=None, rng=None):
        super().__init__(total, rng)
        self._order: list[tuple[float, int, str]] = []
        self._names: list[str] = []
        self._keys: dict[str, tuple[float, int, str]] = {}
        self._grants: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._stale = False

    def activate(self, client):
        if client in self.weights and client not in self._keys:
            self._flush()
            self.active.add(client)
            key = self._key(client)
            self._keys[client] = key
            if not self._stale:
                i = bisect_right(self._order, key)
                self._order.insert(i, key)
                self._names.insert(i, client)

    def deactivate(self, client):
        self.active.discard(client)
        self._flush()
        key = self._keys.pop(client, None)
        if key is not None and not self._stale:
            i = bisect_left(self._order, key)
            del self._order[i]
            del self._names[i]

    def update_weight(self, client, weight):
        super().update_weight(client, weight)
        self._stale = True

    def _key(self, client: str) -> tuple[float, int, str]:
        return (self.share(client), self._grants.get(client, 0), client)

    def remove(self, client):
        super().remove(client)
        self._grants.pop(client, None)

    def allocated(self, client, quantities):
        held = self.allocations[client]
        get = held.get
        for name in quantities:
            held[name] = get(name, 0.0) + quantities[name]
        grants = self._grants
        grants[client] = grants.get(client, 0) + 1
        self._dirty.add(client)

    def unallocated(self, client, quantities):
        super().unallocated(client, quantities)
        self._dirty.add(client)

    def set_total(self, total):
        super().set_total(total)
        self._stale = True

    def _flush(self) -> None:
        dirty = self._dirty
        if not dirty:
            return
        if self._stale:
            dirty.clear()
            return
        order, names, keys, total, weights = self._order, self._names, self._keys, self.total, self.weights
        grants = self._grants
        for client in dirty:
            old = keys.get(client)
            if old is None:
                continue
            key = (dominant_share(self.allocations[client], total, weights[client]), grants.get(client, 0), client)
            if key != old:
                i = bisect_left(order, old)
                del order[i]
                del names[i]
                i = bisect_right(order, key)
                order.insert(i, key)
                names.insert(i, client)
                keys[client] = key
        dirty.clear()

    def sort(self):
        if self._stale:
            self._dirty.clear()
            self._keys = {c: self._key(c) for c in self.active}
            self._order = sorted(self._keys.values())
            self._names = [key[2] for key in self._order]
            self._stale = False
        elif self._dirty and len(self._order) > 1:
            self._flush()
        # The live list, no copy: callers stop at their first allocation.
        return self._names


class RandomSorter(Sorter):
    """Weighted random order (Mesos' ``random`` sorter, MESOS-8936).

    A client of weight w comes first with probability w / sum(weights). The
    order is drawn lazily, since a caller usually needs only the first one or
    two clients: sampled draws first, then the rest shuffled by weight.
    """

    def __init__(self, total=None, rng=None):
        super().__init__(total, rng)
        self._clients: list[str] = []
        self._cum: list[float] = []
        self._stale = True

    def activate(self, client):
        super().activate(client)
        self._stale = True

    def deactivate(self, client):
        super().deactivate(client)
        self._stale = True

    def update_weight(self, client, weight):
        super().update_weight(client, weight)
        self._stale = True

    def sort(self):
        if self._stale:
            self._clients = sorted(self.active)
            acc, cum = 0.0, []
            for c in self._clients:
                acc += self.weights[c]
                cum.append(acc)
            self._cum = cum
            self._stale = False
        return self._draw(self._clients, self._cum)

    def _draw(self, clients: list[str], cum: list[float]) -> Iterator[str]:
        n = len(clients)
        if not n:
            return
        rng, seen = self.rng, set()
        total = cum[-1]
        for _ in range(min(n, 8)):
            i = bisect_left(cum, rng.random() * total)
            client = clients[min(i, n - 1)]
            if client not in seen:
                seen.add(client)
                yield client
        rest = [c for c in clients if c not in seen]
        # Efraimidis-Spirakis: key u^(1/w), largest first, is a weighted shuffle.
        rest.sort(key=lambda c: -math.log(1.0 - rng.random()) / self.weights[c])
        yield from rest


SORTERS: dict[str, type[Sorter]] = {"drf": DRFSorter, "random": RandomSorter}


def create_sorter(name: str, total=None, rng=None) -> Sorter:
    try:
        return SORTERS[name](total, rng)
    except KeyError:
        raise ValueError(f"unknown sorter {name!r}; known sorters: {', '.join(sorted(SORTERS))}") from None
