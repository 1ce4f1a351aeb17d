"""The reference allocator: Dominant Resource Fairness over frameworks, one level.

Kept small on purpose, as the plain statement of DRF the production allocator
(hierarchical.py, the default) is checked against: the allocator contract
tests (tests/unit/test_allocator.py) run on both, and
tests/unit/test_allocator_reference.py asserts that where both apply (one
role, no weights, no quota) they hand out the same. It stays selectable with
``--allocator=drf`` for comparisons; it has no role tree, weights or quota, and
never will (hierarchical.py has them).

Each run visits the candidate slaves in a shuffled order and, on each slave,
the active frameworks from the lowest dominant share up. A framework gets all
that is still offerable on that slave for one of its roles (unreserved plus
that role's reservations), unless the role is suppressed, a decline filter
covers those resources, or they are below the minimum allocatable size. Shares
are recomputed after every grant, so a run interleaves frameworks the way DRF
intends.
"""

from __future__ import annotations

import logging
import random
from typing import Iterable

from offerd.allocator.interface import Allocation, Allocations, Allocator
from offerd.allocator.sorter import dominant_share
from offerd.common.resources import (
    DEFAULT_MIN_ALLOCATABLE,
    ResourceError,
    Resources,
    parse_min_allocatable,
)

log = logging.getLogger(__name__)

EMPTY = Resources.EMPTY


def _minus(a: Resources, b: Resources) -> Resources:
    # The master's bookkeeping and ours should agree; if they ever do not, a
    # wrong number must not become an exception inside an allocation run.
    try:
        return a - b
    except ResourceError as exc:
        log.warning("allocator accounting mismatch (%s); clamping", exc)
        return a.subtract_saturating(b)


class _Filter:
    __slots__ = ("resources", "expires")

    def __init__(self, resources: Resources, expires: float):
        self.resources = resources
        self.expires = expires


class _Framework:
    __slots__ = ("id", "roles", "active", "suppressed", "quantities", "filters")

    def __init__(self, framework_id: str, roles: tuple[str, ...], active: bool, suppressed: set[str]):
        self.id = framework_id
        self.roles = roles
        self.active = active
        self.suppressed = suppressed
        # Scalar amounts allocated over all slaves, for the share. Not a
        # `Resources` sum: ranges add up as unions, so ports:[31000-32000] of
        # two slaves would count once and could not be taken back twice.
        self.quantities: dict[str, float] = {}
        # (role, slave id) -> what was refused there, and until when
        self.filters: dict[tuple[str, str], _Filter] = {}

    def charge(self, resources: Resources, sign: int) -> None:
        quantities = self.quantities
        for name, amount in resources.scalars().items():
            # Rounded to the fixed-point grid of Resources so sums never drift.
            value = round(quantities.get(name, 0.0) + sign * amount, 3)
            if value > 0:
                quantities[name] = value
            else:
                quantities.pop(name, None)


class _Slave:
    __slots__ = ("id", "total", "allocated", "by_framework", "active", "hostname", "attributes")

    def __init__(self, slave_id: str, total: Resources, hostname, attributes):
        self.id = slave_id
        self.total = total
        self.allocated = EMPTY
        self.by_framework: dict[str, Resources] = {}
        self.active = True
        self.hostname = hostname
        self.attributes = attributes


class DRFAllocator(Allocator):
    """Dominant Resource Fairness over frameworks; see the module docstring."""

    def __init__(
        self,
        min_allocatable_resources: list[Resources] | str | None = None,
        rng: random.Random | None = None,
    ):
        if min_allocatable_resources is None:
            min_allocatable_resources = DEFAULT_MIN_ALLOCATABLE
        if isinstance(min_allocatable_resources, str):
            min_allocatable_resources = parse_min_allocatable(min_allocatable_resources)
        self.min_allocatable = list(min_allocatable_resources)
        self.rng = rng or random.Random()
        self._frameworks: dict[str, _Framework] = {}
        self._slaves: dict[str, _Slave] = {}
        self._total_scalars: dict[str, float] | None = None
        self._runs = 0

    # -- frameworks -----------------------------------------------------------

    def add_framework(self, framework_id, roles, active=True, suppressed_roles=()):
        if framework_id in self._frameworks:
            self.update_framework(framework_id, roles, suppressed_roles)
            f = self._frameworks[framework_id]
            f.active = active
            return
        f = _Framework(framework_id, tuple(roles), active, set(suppressed_roles))
        # A reregistering slave may have reported this framework's usage first.
        for slave in self._slaves.values():
            held = slave.by_framework.get(framework_id)
            if held is not None:
                f.charge(held, +1)
        self._frameworks[framework_id] = f

    def update_framework(self, framework_id, roles, suppressed_roles=None):
        f = self._frameworks.get(framework_id)
        if f is None:
            return
        f.roles = tuple(roles)
        if suppressed_roles is not None:
            f.suppressed = set(suppressed_roles)
        f.filters = {key: flt for key, flt in f.filters.items() if key[0] in f.roles}

    def remove_framework(self, framework_id):
        self._frameworks.pop(framework_id, None)
        for slave in self._slaves.values():
            held = slave.by_framework.pop(framework_id, None)
            if held is not None:
                slave.allocated = _minus(slave.allocated, held)

    def activate_framework(self, framework_id):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.active = True

    def deactivate_framework(self, framework_id):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.active = False

    # -- slaves ---------------------------------------------------------------

    def add_slave(self, slave_id, total, used=None, hostname=None, attributes=None):
        if slave_id in self._slaves:
            self.remove_slave(slave_id)
        slave = _Slave(slave_id, total, hostname, attributes)
        for framework_id, resources in (used or {}).items():
            if resources.is_empty():
                continue
            slave.by_framework[framework_id] = resources
            slave.allocated += resources
            f = self._frameworks.get(framework_id)
            if f is not None:
                f.charge(resources, +1)
        self._slaves[slave_id] = slave
        self._total_scalars = None

    def update_slave(self, slave_id, total):
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.total = total
            self._total_scalars = None

    def remove_slave(self, slave_id):
        slave = self._slaves.pop(slave_id, None)
        if slave is None:
            return
        for framework_id, held in slave.by_framework.items():
            f = self._frameworks.get(framework_id)
            if f is not None:
                f.charge(held, -1)
        for f in self._frameworks.values():
            if f.filters:
                f.filters = {key: flt for key, flt in f.filters.items() if key[1] != slave_id}
        self._total_scalars = None

    def activate_slave(self, slave_id):
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.active = True

    def deactivate_slave(self, slave_id):
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.active = False

    # -- resources ------------------------------------------------------------

    def recover_resources(self, framework_id, slave_id, resources, refuse_seconds, now, role=None):
        if resources.is_empty():
            return
        slave = self._slaves.get(slave_id)
        f = self._frameworks.get(framework_id)
        if slave is not None:
            held = slave.by_framework.get(framework_id, EMPTY)
            if held.contains(resources):
                freed = resources
                rest = held - resources
            else:
                rest = held.subtract_saturating(resources)
                freed = held - rest
                log.warning("recovering %s of framework %s on %s, which holds only %s",
                            resources, framework_id, slave_id, held)
            if rest.is_empty():
                slave.by_framework.pop(framework_id, None)
            else:
                slave.by_framework[framework_id] = rest
            slave.allocated = _minus(slave.allocated, freed)
            if f is not None:
                f.charge(freed, -1)
        if f is None or slave is None or not refuse_seconds or refuse_seconds <= 0:
            return
        expires = now + refuse_seconds
        for r in (role,) if role else f.roles:
            f.filters[(r, slave_id)] = _Filter(resources, expires)

    def suppress(self, framework_id, roles=None):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.suppressed.update(f.roles if not roles else roles)

    def revive(self, framework_id, roles=None):
        f = self._frameworks.get(framework_id)
        if f is None:
            return
        chosen = set(f.roles if not roles else roles)
        f.suppressed -= chosen
        f.filters = {key: flt for key, flt in f.filters.items() if key[0] not in chosen}

    # -- the question ---------------------------------------------------------

    def allocate(self, now: float, slaves: Iterable[str] | None = None) -> Allocations:
        self._runs += 1
        candidates = [f for f in self._frameworks.values()
                      if f.active and not f.suppressed.issuperset(f.roles)]
        if not candidates:
            return {}
        ids = sorted(self._slaves if slaves is None else {s for s in slaves if s in self._slaves})
        self.rng.shuffle(ids)
        total = self._totals()
        shares = {f.id: dominant_share(f.quantities, total) for f in candidates}
        result: Allocations = {}
        for slave_id in ids:
            slave = self._slaves[slave_id]
            if not slave.active:
                continue
            available = _minus(slave.total, slave.allocated)
            if available.is_empty():
                continue
            for f in sorted(candidates, key=lambda f: (shares[f.id], f.id)):
                role, offerable = self._offerable(f, slave_id, available, now)
                if offerable is None:
                    continue
                result.setdefault(f.id, {})[slave_id] = Allocation(role, offerable)
                available = _minus(available, offerable)
                slave.allocated += offerable
                slave.by_framework[f.id] = slave.by_framework.get(f.id, EMPTY) + offerable
                f.charge(offerable, +1)
                shares[f.id] = dominant_share(f.quantities, total)
                if available.is_empty():
                    break
        return result

    def _offerable(self, f: _Framework, slave_id: str, available: Resources, now: float):
        for role in f.roles:
            if role in f.suppressed:
                continue
            offerable = available.for_role(role)
            if offerable.is_empty() or not offerable.meets_minimum(self.min_allocatable):
                continue
            flt = f.filters.get((role, slave_id))
            if flt is not None:
                if now >= flt.expires:
                    del f.filters[(role, slave_id)]
                elif flt.resources.contains(offerable):
                    # Mesos: a filter holds only while nothing new is on offer.
                    continue
            return role, offerable
        return None, None

    def _totals(self) -> dict[str, float]:
        if self._total_scalars is None:
            total = sum((s.total for s in self._slaves.values()), EMPTY)
            self._total_scalars = total.scalars()
        return self._total_scalars

    # -- views ----------------------------------------------------------------

    def allocated(self, framework_id: str) -> Resources:
        # Summed on demand (for metrics): ranges of different slaves merge here.
        return sum((s.by_framework[framework_id] for s in self._slaves.values()
                    if framework_id in s.by_framework), EMPTY)

    def share(self, framework_id: str) -> float:
        """Dominant share of a framework (offered and used count alike)."""
        f = self._frameworks.get(framework_id)
        return dominant_share(f.quantities, self._totals()) if f is not None else 0.0

    def stats(self) -> dict[str, float]:
        return {
            "allocation_runs": self._runs,
            "offer_filters_active": sum(len(f.filters) for f in self._frameworks.values()),
            "frameworks": len(self._frameworks),
            "slaves": len(self._slaves),
        }
