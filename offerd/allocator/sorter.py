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
        # Bumped whenever the set of active clients changes (see `blocked` in one_role.py).
        self.epoch = 0

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
        if client in self.weights and client not in self.active:
            self.active.add(client)
            self.epoch += 1

    def deactivate(self, client: str) -> None:
        if client in self.active:
            self.active.discard(client)
            self.epoch += 1

    def update_weight(self, client: str, weight: float) -> None:
        if client in self.weights:
            self.weights[client] = weight

    # -- accounting -----------------------------------------------------------

    def allocated(self, client: str, quantities: Mapping[str, float], grants: int = 1) -> None:
        """`client` was given these scalar quantities (offered or used), in
        `grants` offers (a batch of a run is charged at once)."""
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
        self._names: list[str] | None = []  # None: to rebuild from _order
        self._keys: dict[str, tuple[float, int, str]] = {}
        self._grants: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._stale = False

    def _sync_names(self) -> list[str]:
        names = self._names
        if names is None:
            names = self._names = [key[2] for key in self._order]
        return names

    def activate(self, client):
        if client in self.weights and client not in self._keys:
            self._flush()
            self.active.add(client)
            self.epoch += 1
            key = self._key(client)
            self._keys[client] = key
            if not self._stale:
                i = bisect_right(self._order, key)
                self._order.insert(i, key)
                if self._names is not None:
                    self._names.insert(i, client)

    def deactivate(self, client):
        if client in self.active:
            self.active.discard(client)
            self.epoch += 1
        self._flush()
        key = self._keys.pop(client, None)
        if key is not None and not self._stale:
            i = bisect_left(self._order, key)
            del self._order[i]
            if self._names is not None:
                del self._names[i]

    def update_weight(self, client, weight):
        super().update_weight(client, weight)
        self._stale = True

    def _key(self, client: str) -> tuple[float, int, str]:
        return (self.share(client), self._grants.get(client, 0), client)

    def remove(self, client):
        super().remove(client)
        self._grants.pop(client, None)

    def allocated(self, client, quantities, grants=1):
        held = self.allocations[client]
        get = held.get
        for name in quantities:
            held[name] = get(name, 0.0) + quantities[name]
        counts = self._grants
        counts[client] = counts.get(client, 0) + grants
        self._dirty.add(client)

    def order(self) -> list[tuple[float, int, str]]:
        """The live sorted list of (share, grants, client) keys of the active
        clients (`sort()`'s order), for a caller that hands out many grants
        in a row through `grant_at`; no copy."""
        self._refresh()
        return self._order

    def grant_at(self, i: int, client: str, quantities: Mapping[str, float]) -> bool:
        """`allocated(client, quantities)` for the client at index `i` of
        `order()`: moved now, to the right only (a grant never lowers a
        share), without searching for its old place; `sort()`'s list of names
        is rebuilt when next asked for. False (and a plain `allocated`) if `i`
        is not that client's place: ask `order()` again."""
        order = self._order
        if self._dirty or self._stale or i >= len(order) or order[i][2] is not client:
            self.allocated(client, quantities)
            return False
        held = self.allocations[client]
        get = held.get
        weight = self.weights[client]
        if weight == 1.0:
            # The old key's share is exactly the old maximum (no division by a
            # weight), and adding can only raise fractions: keep the larger.
            share = order[i][0]
            total = self.total
            for name in quantities:
                value = held[name] = get(name, 0.0) + quantities[name]
                cluster = total.get(name)
                if cluster:
                    fraction = value / cluster
                    if fraction > share:
                        share = fraction
        else:
            for name in quantities:
                held[name] = get(name, 0.0) + quantities[name]
            share = dominant_share(held, self.total, weight)
        counts = self._grants
        grants = counts[client] = counts.get(client, 0) + 1
        key = (share, grants, client)
        del order[i]
        order.insert(bisect_right(order, key, i), key)
        self._keys[client] = key
        self._names = None
        return True

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
        # Names (sort()'s list) are kept in step only if built; else rebuilt when asked.
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
                if names is not None:
                    del names[i]
                i = bisect_right(order, key)
                order.insert(i, key)
                if names is not None:
                    names.insert(i, client)
                keys[client] = key
        dirty.clear()

    def _refresh(self) -> None:
        if self._stale:
            self._dirty.clear()
            self._keys = {c: self._key(c) for c in self.active}
            self._order = sorted(self._keys.values())
            self._names = None
            self._stale = False
        elif self._dirty and len(self._order) > 1:
            self._flush()

    def sort(self):
        self._refresh()
        # The live list, no copy: callers stop at their first allocation.
        return self._sync_names()


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
