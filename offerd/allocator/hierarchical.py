"""The hierarchical DRF allocator (Mesos' HierarchicalDRFAllocator).

One run (`allocate`) visits the candidate slaves in a shuffled order:

1. quota stage: roles whose quota guarantee is not met yet get their
   reservations plus unreserved scalars chopped to what the guarantee still
   needs;
2. fair-share stage: roles in role-sorter order (weighted dominant share),
   frameworks of the role in framework-sorter order; the first framework that
   has not filtered the slave gets everything still offerable there for that
   role, minus the headroom held back for unmet quota of other roles.

Data structures are chosen for big clusters (bench/allocator_bench.py): only
slaves with free resources are candidates (`_free`); per slave the free
resources and their offerable part per role are cached until they change;
decline filters are indexed per (slave, role) so a filtered framework costs a
dict lookup, and whether a filter still covers the offerable resources is
remembered until those change; suppressed and inactive frameworks are not in
the sorters at all; the sorters move one client per grant instead of
re-sorting. Nothing in the inner loop builds a `Resources` on the fast path
(a slave without reservations is granted whole).
"""

from __future__ import annotations

import logging
import random
from typing import Iterable, Mapping

from offerd.allocator.interface import Allocation, Allocations, Allocator
from offerd.allocator.one_role import OneRoleStage
from offerd.allocator.quota import QuotaStages, Quota
from offerd.allocator.sorter import DRFSorter, Sorter, create_sorter, dominant_share
from offerd.common.resources import DEFAULT_MIN_ALLOCATABLE, ResourceError, Resources, parse_min_allocatable

log = logging.getLogger(__name__)

EMPTY = Resources.EMPTY
_new_allocation = tuple.__new__  # Allocation(...) without the namedtuple's Python-level __new__


class _Filter:
    """A decline: `resources` of a slave refused until `expires`."""

    __slots__ = ("resources", "expires", "checked", "holds")

    def __init__(self, resources: Resources, expires: float):
        self.resources = resources
        self.expires = expires
        self.checked: Resources | None = None  # the offerable last compared...
        self.holds = False  # ...and whether the refused ones covered it


class _Slave:
    __slots__ = ("id", "total", "available", "active", "reserved", "allocations", "filters",
                 "hostname", "attributes", "_offerable", "_seen", "_seen_ok", "_seen_q",
                 "_seen_a", "filters_epoch", "blocked")

    def __init__(self, slave_id: str, total: Resources, hostname, attributes):
        self.id = slave_id
        self.total = total
        self.available = total
        self.active = True
        self.reserved = bool(total.reserved())
        # (framework id, role) -> offered or used there
        self.allocations: dict[tuple[str, str | None], Resources] = {}
        # role -> framework id -> filter
        self.filters: dict[str, dict[str, _Filter]] = {}
        self.hostname = hostname
        self.attributes = attributes
        # role ("" if the slave has no reservations) -> offerable, None if below the minimum
        self._offerable: dict[str, Resources | None] = {}
        # Without reservations: the last free Resources seen, whether it met the
        # minimum, and its scalars. A declined offer comes back as the very same
        # object, so the next run finds it here instead of recomputing.
        self._seen: Resources | None = None
        self._seen_ok = False
        self._seen_q: dict[str, float] | None = None
        self._seen_a: Allocation | None = None  # and the last offer made of it
        # Bumped whenever `filters` changes; with `blocked` (see one_role.py) a slave
        # every active framework of a role has filtered is skipped in O(1).
        self.filters_epoch = 0
        self.blocked: tuple | None = None


class _Framework:
    __slots__ = ("id", "roles", "active", "suppressed", "filters")

    def __init__(self, framework_id: str, roles: tuple[str, ...], active: bool, suppressed: set[str]):
        self.id = framework_id
        self.roles = roles
        self.active = active
        self.suppressed = suppressed
        self.filters: dict[tuple[str, str], _Filter] = {}  # (role, slave id) -> filter


class HierarchicalAllocator(OneRoleStage, QuotaStages, Allocator):
    """Roles by weighted DRF, then frameworks; quota first; see the module docstring."""

    def __init__(
        self,
        min_allocatable_resources: list[Resources] | str | None = None,
        rng: random.Random | None = None,
        role_sorter: str = "drf",
        framework_sorter: str = "drf",
        allocation_interval: float = 1.0,
        weights: Mapping[str, float] | None = None,
        agent_recovery_factor: float = 0.8,
        recovery_timeout: float = 600.0,
    ):
        if min_allocatable_resources is None:
            min_allocatable_resources = DEFAULT_MIN_ALLOCATABLE
        if isinstance(min_allocatable_resources, str):
            min_allocatable_resources = parse_min_allocatable(min_allocatable_resources)
        self.min_allocatable = list(min_allocatable_resources)
        self.rng = rng or random.Random()
        self.allocation_interval = allocation_interval
        self._framework_sorter_name = framework_sorter
        self._total: dict[str, float] = {}
        self._total_changed = False
        self._roles: Sorter = create_sorter(role_sorter, self._total, self.rng)
        self._role_frameworks: dict[str, Sorter] = {}
        self._weights: dict[str, float] = dict(weights or {})
        self._quotas: dict[str, Quota] = {}
        # quota.py's caches: role subtrees, and the quota roles covering a role.
        self._quota_caches: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
        self._frameworks: dict[str, _Framework] = {}
        self._slaves: dict[str, _Slave] = {}
        # Frameworks not (yet) known whose usage a slave reported: id -> slave ids.
        self._unknown_usage: dict[str, set[str]] = {}
        # Active slaves with something free: the only candidates of a run.
        self._free: dict[str, None] = {}
        self._runs = 0
        self._now = 0.0
        # Roles whose unreserved resources were held back as quota headroom in the last run.
        self._held_back: set[str] = set()
        self._granted: set[str] = set()  # slaves granted in the quota stage of the current run
        self._interned: dict[tuple, dict[str, float]] = {}  # see _quantities
        self.agent_recovery_factor = agent_recovery_factor
        self.recovery_timeout = recovery_timeout
        # After a failover with quota: (slaves required, deadline) until resumed.
        self._recovery: tuple[int, float] | None = None

    # -- roles ----------------------------------------------------------------

    def _role(self, role: str) -> Sorter:
        sorter = self._role_frameworks.get(role)
        if sorter is None:
            sorter = create_sorter(self._framework_sorter_name, self._total, self.rng)
            self._role_frameworks[role] = sorter
            self._roles.add(role, self._weights.get(role, 1.0), active=False)
            self._quota_caches[0].clear()  # role subtrees
        return sorter

    def _refresh_role(self, role: str) -> None:
        if self._role_frameworks[role].active:
            self._roles.activate(role)
        else:
            self._roles.deactivate(role)

    def _place(self, f: _Framework, role: str) -> None:
        """Put `f` in or out of the role's framework order as it may receive offers."""
        sorter = self._role(role)
        if f.id not in sorter:
            sorter.add(f.id, active=False)
        if f.active and role not in f.suppressed and role in f.roles:
            sorter.activate(f.id)
        else:
            sorter.deactivate(f.id)
        self._refresh_role(role)

    # -- frameworks -----------------------------------------------------------

    def add_framework(self, framework_id, roles, active=True, suppressed_roles=()):
        if framework_id in self._frameworks:
            self.update_framework(framework_id, roles, suppressed_roles)
            self._frameworks[framework_id].active = active
            self._replace(self._frameworks[framework_id])
            return
        f = _Framework(framework_id, tuple(roles), active, set(suppressed_roles))
        self._frameworks[framework_id] = f
        self._replace(f)
        # A reregistering slave may have reported this framework's usage first.
        for slave_id in self._unknown_usage.pop(framework_id, ()):
            slave = self._slaves.get(slave_id)
            held = slave.allocations.pop((framework_id, None), None) if slave is not None else None
            if held is not None:
                self._charge(framework_id, f.roles[0], slave, held)

    def _replace(self, f: _Framework) -> None:
        for role in f.roles:
            self._place(f, role)

    def update_framework(self, framework_id, roles, suppressed_roles=None):
        f = self._frameworks.get(framework_id)
        if f is None:
            return
        old = f.roles
        f.roles = tuple(roles)
        if suppressed_roles is not None:
            f.suppressed = set(suppressed_roles)
        for role in set(old) - set(f.roles):
            self._place(f, role)
            self._drop_filters(f, {role})
        self._replace(f)

    def remove_framework(self, framework_id):
        f = self._frameworks.pop(framework_id, None)
        for slave in self._slaves.values():
            for key in [k for k in slave.allocations if k[0] == framework_id]:
                held = slave.allocations.pop(key)
                if key[1] is not None:
                    self._uncharge(framework_id, key[1], held.scalars())
                self._set_available(slave, slave.available + held)
        if f is not None:
            self._drop_filters(f, None)
        for role, sorter in self._role_frameworks.items():
            if framework_id in sorter:
                sorter.remove(framework_id)
                self._refresh_role(role)

    def activate_framework(self, framework_id):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.active = True
            self._replace(f)

    def deactivate_framework(self, framework_id):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.active = False
            self._replace(f)

    # -- slaves ---------------------------------------------------------------

    def add_slave(self, slave_id, total, used=None, hostname=None, attributes=None):
        if slave_id in self._slaves:
            self.remove_slave(slave_id)
        slave = _Slave(slave_id, total, hostname, attributes)
        self._slaves[slave_id] = slave
        self._add_total(total.scalars(), +1)
        available = total
        for framework_id, resources in (used or {}).items():
            if resources.is_empty():
                continue
            available = available.subtract_saturating(resources)
            f = self._frameworks.get(framework_id)
            if f is None:
                slave.allocations[(framework_id, None)] = resources
                self._unknown_usage.setdefault(framework_id, set()).add(slave_id)
            else:
                self._charge(framework_id, f.roles[0], slave, resources)
        self._set_available(slave, available)

    def update_slave(self, slave_id, total):
        slave = self._slaves.get(slave_id)
        if slave is None:
            return
        self._add_total(slave.total.scalars(), -1)
        self._add_total(total.scalars(), +1)
        used = EMPTY
        for held in slave.allocations.values():
            used = used + held
        slave.total = total
        slave.reserved = bool(total.reserved())
        self._set_available(slave, total.subtract_saturating(used))

    def remove_slave(self, slave_id):
        slave = self._slaves.pop(slave_id, None)
        if slave is None:
            return
        self._free.pop(slave_id, None)
        self._add_total(slave.total.scalars(), -1)
        for (framework_id, role), held in slave.allocations.items():
            if role is not None:
                self._uncharge(framework_id, role, held.scalars())
        for role, by_framework in slave.filters.items():
            for framework_id in by_framework:
                f = self._frameworks.get(framework_id)
                if f is not None:
                    f.filters.pop((role, slave_id), None)

    def activate_slave(self, slave_id):
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.active = True
            self._set_available(slave, slave.available)

    def deactivate_slave(self, slave_id):
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.active = False
            self._free.pop(slave_id, None)

    def _add_total(self, quantities: Mapping[str, float], sign: int) -> None:
        total = self._total
        for name, amount in quantities.items():
            value = round(total.get(name, 0.0) + sign * amount, 3)
            if value > 0:
                total[name] = value
            else:
                total.pop(name, None)
        self._total_changed = True

    def _set_available(self, slave: _Slave, available: Resources) -> None:
        slave.available = available
        if slave._offerable:
            slave._offerable.clear()
        if available and slave.active:
            self._free[slave.id] = None
        else:
            self._free.pop(slave.id, None)

    # -- accounting -----------------------------------------------------------

    def _charge(self, framework_id: str, role: str, slave: _Slave, resources: Resources) -> None:
        key = (framework_id, role)
        held = slave.allocations.get(key)
        slave.allocations[key] = resources if held is None else held + resources
        quantities = resources.scalars()
        sorter = self._role(role)
        if framework_id not in sorter:
            sorter.add(framework_id, active=False)
        sorter.allocated(framework_id, quantities)
        self._roles.allocated(role, quantities)

    def _uncharge(self, framework_id: str, role: str, quantities: Mapping[str, float]) -> None:
        sorter = self._role_frameworks.get(role)
        if sorter is not None:
            sorter.unallocated(framework_id, quantities)
        self._roles.unallocated(role, quantities)

    # -- resources ------------------------------------------------------------

    def recover_resources(self, framework_id, slave_id, resources, refuse_seconds, now, role=None):
        if resources.is_empty():
            return
        slave = self._slaves.get(slave_id)
        f = self._frameworks.get(framework_id)
        if slave is not None:
            if role is None:
                role = next((r for (fid, r) in slave.allocations if fid == framework_id), None)
            key = (framework_id, role)
            held = slave.allocations.get(key, EMPTY)
            if held is resources or held == resources:
                freed, rest = held, EMPTY
            elif held.contains(resources):
                freed, rest = resources, held - resources
            else:
                rest = held.subtract_saturating(resources)
                freed = held - rest
                log.warning("recovering %s of framework %s on %s, which holds only %s",
                            resources, framework_id, slave_id, held)
            if rest:
                slave.allocations[key] = rest
            else:
                slave.allocations.pop(key, None)
            if freed:
                if role is not None:
                    self._uncharge(framework_id, role, freed.scalars())
                self._set_available(slave, slave.available + freed)
        if f is None or slave is None or not refuse_seconds or refuse_seconds <= 0:
            return
        # Mesos (MESOS-4302): a filter shorter than the allocation interval
        # would expire before the next batch run; it lasts at least one interval.
        expires = now + max(refuse_seconds, self.allocation_interval)
        for r in (role,) if role else f.roles:
            flt = _Filter(resources, expires)
            slave.filters.setdefault(r, {})[framework_id] = flt
            f.filters[(r, slave_id)] = flt
        slave.filters_epoch += 1

    def _drop_filters(self, f: _Framework, roles: set[str] | None) -> None:
        for key in [k for k in f.filters if roles is None or k[0] in roles]:
            del f.filters[key]
            role, slave_id = key
            slave = self._slaves.get(slave_id)
            if slave is not None:
                slave.filters_epoch += 1
                by_framework = slave.filters.get(role)
                if by_framework is not None:
                    by_framework.pop(f.id, None)
                    if not by_framework:
                        del slave.filters[role]

    def suppress(self, framework_id, roles=None):
        f = self._frameworks.get(framework_id)
        if f is not None:
            f.suppressed.update(f.roles if not roles else roles)
            self._replace(f)

    def revive(self, framework_id, roles=None):
        f = self._frameworks.get(framework_id)
        if f is None:
            return
        chosen = set(f.roles if not roles else roles)
        f.suppressed -= chosen
        self._drop_filters(f, chosen)
        self._replace(f)

    # -- policy ---------------------------------------------------------------

    def update_weights(self, weights: Mapping[str, float]) -> None:
        for role, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"weight of role {role!r} must be positive, not {weight}")
        self._weights.update(weights)
        for role, weight in weights.items():
            if role in self._roles:
                self._roles.update_weight(role, weight)

    def update_quota(self, role, guarantee, limit=None):
        if guarantee is None and limit is None:
            self._quotas.pop(role, None)
            self._quota_caches[1].clear()
            return
        for what in (guarantee, limit):
            if what is not None and what.roles() - {"*"}:
                raise ResourceError("quota is for unreserved scalar resources only")
        self._quotas[role] = Quota(guarantee, limit)
        self._quota_caches[1].clear()

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def quotas(self) -> dict[str, tuple[Resources, Resources | None]]:
        return {role: (q.guarantee, q.limit) for role, q in self._quotas.items()}

    # -- the question ---------------------------------------------------------

    def allocate(self, now: float, slaves: Iterable[str] | None = None) -> Allocations:
        self._now = now
        if self._recovery is not None and self._paused(now):
            return {}
        self._runs += 1
        if self._total_changed:
            self._total_changed = False
            self._roles.set_total(self._total)
            for sorter in self._role_frameworks.values():
                sorter.set_total(self._total)
        free = self._free
        if slaves is None:
            ids = list(free)
        else:
            ids = [s for s in dict.fromkeys(slaves) if s in free]
        if not ids or not self._roles.active:
            return {}
        self.rng.shuffle(ids)
        result: Allocations = {}
        headroom = None
        self._held_back = set()
        self._granted: set[str] = set()
        if self._quotas:
            self._quota_stage(ids, now, result)
            headroom = self._headroom()
        active_roles = self._roles.active
        if (not self._quotas and len(active_roles) == 1
                and isinstance(self._role_frameworks[next(iter(active_roles))], DRFSorter)):
            self._one_role_stage(next(iter(active_roles)), ids, now, result)
        else:
            self._fair_share_stage(ids, now, result, headroom)
        return result

    def _fair_share_stage(self, ids, now, result, headroom) -> None:
        slaves, role_sorter, role_frameworks = self._slaves, self._roles, self._role_frameworks
        granted_slaves = self._granted
        offerable_for = self._offerable
        quotas = self._quotas
        # Roles at their quota limit in every resource of the cluster: nothing
        # unreserved for them for the rest of the run (grants only lower the room).
        capped: set[str] = set()
        for slave_id in ids:
            slave = slaves[slave_id]
            if capped and not slave.reserved and capped.issuperset(role_sorter.active):
                continue
            served: set[str] | None = None
            while slave.available:
                granted = None
                for role in role_sorter.sort():
                    if served is not None and role in served:
                        continue
                    offerable = offerable_for(slave, role)
                    if offerable is None:
                        continue
                    if quotas:
                        if role in capped and not slave.reserved:
                            continue
                        offerable = self._within_quota(slave, role, offerable, headroom)
                        if offerable is None:
                            if not slave.reserved and self._at_limit(role):
                                capped.add(role)
                            continue
                    filters = slave.filters.get(role)
                    # One offer per framework and slave in a run (its role is the offer's):
                    # only a second grant on this slave (or one after the quota stage) can clash.
                    check = served is not None or slave_id in granted_slaves
                    for framework_id in role_frameworks[role].sort():
                        if check and slave_id in result.get(framework_id, ()):
                            continue
                        if filters:
                            flt = filters.get(framework_id)
                            if flt is not None and self._holds(flt, offerable, now, slave, role, framework_id):
                                continue
                        self._grant(result, framework_id, role, slave, offerable, headroom)
                        granted = role
                        break
                    if granted is not None:
                        break
                if granted is None or not slave.available:
                    break
                if served is None:
                    served = set()
                served.add(granted)

    def _offerable(self, slave: _Slave, role: str) -> Resources | None:
        """What `role` may be offered on `slave` now, or None if below the minimum
        (memoized until the slave's free resources change)."""
        if not slave.reserved:
            available = slave.available
            if available is not slave._seen:
                slave._seen, slave._seen_q, slave._seen_a = available, None, None
                slave._seen_ok = bool(available) and available.meets_minimum(self.min_allocatable)
            return available if slave._seen_ok else None
        memo = slave._offerable
        if role in memo:
            return memo[role]
        offerable = slave.available
        # Only when some reservation is not this role's (or an ancestor's) is a
        # copy needed; otherwise the free resources themselves, so that a declined
        # offer comes back as the very same object (see `_holds`).
        if any(r != "*" and r != role and not role.startswith(r + "/") for r in offerable.roles()):
            offerable = offerable.for_role(role)
        if not offerable or not offerable.meets_minimum(self.min_allocatable):
            offerable = None
        memo[role] = offerable
        return offerable

    def _holds(self, flt: _Filter, offerable: Resources, now: float, slave: _Slave, role: str,
               framework_id: str) -> bool:
        if now >= flt.expires:
            del slave.filters[role][framework_id]
            slave.filters_epoch += 1
            f = self._frameworks.get(framework_id)
            if f is not None:
                f.filters.pop((role, slave.id), None)
            return False
        if flt.checked is not offerable:
            flt.checked = offerable
            # Mesos: a filter holds only while nothing new is on offer.
            # (A declined offer comes back as the very same object: no comparison.)
            flt.holds = flt.resources is offerable or flt.resources.contains(offerable)
        return flt.holds

    def _grant(self, result, framework_id, role, slave, offerable, headroom) -> None:
        per_slave = result.get(framework_id)
        if per_slave is None:
            result[framework_id] = per_slave = {}
        per_slave[slave.id] = _new_allocation(Allocation, (role, offerable))
        key = (framework_id, role)
        held = slave.allocations.get(key)
        slave.allocations[key] = offerable if held is None else held + offerable
        if offerable is slave._seen:
            quantities = slave._seen_q
            if quantities is None:
                quantities = slave._seen_q = self._quantities(offerable)
        else:
            quantities = offerable.scalars()
        # The framework is in the role's sorter: that is how it was chosen.
        self._role_frameworks[role].allocated(framework_id, quantities)
        self._roles.allocated(role, quantities)
        if headroom is not None:
            for name, amount in offerable.unreserved().scalars().items():
                if name in headroom:
                    headroom[name] -= amount
        self._set_available(slave, EMPTY if offerable is slave.available else slave.available - offerable)

    # -- views ----------------------------------------------------------------

    def allocated(self, framework_id: str) -> Resources:
        # Summed on demand (for metrics): ranges of different slaves merge here.
        total = EMPTY
        for slave in self._slaves.values():
            for (fid, _), held in slave.allocations.items():
                if fid == framework_id:
                    total = total + held
        return total

    def _framework_quantities(self, framework_id: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for sorter in self._role_frameworks.values():
            for name, amount in sorter.allocations.get(framework_id, {}).items():
                out[name] = out.get(name, 0.0) + amount
        return out

    def share(self, framework_id: str) -> float:
        """Dominant share of a framework over all its roles (offered and used alike)."""
        return dominant_share(self._framework_quantities(framework_id), self._total)

    def role_share(self, role: str) -> float:
        """Weighted dominant share of a role."""
        if role not in self._roles:
            return 0.0
        return dominant_share(self._roles.allocations[role], self._total, self._roles.weights[role])

    def stats(self) -> dict[str, float]:
        from offerd.allocator.explain import allocator_stats
        return allocator_stats(self)

    def explain(self, framework_id: str | None = None) -> dict:
        from offerd.allocator.explain import explain
        return explain(self, framework_id)
