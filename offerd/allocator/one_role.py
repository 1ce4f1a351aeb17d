"""The fair-share stage for one active role, and the shapes of quantities.

A mixin of `HierarchicalAllocator` (same state, kept apart for size): the loop
that runs once per slave of the cluster in the common case (one role active, no
quota owed, frameworks in DRF order) — bench/allocator_bench.py's case. It makes
the same choices as `HierarchicalAllocator._fair_share_stage` (a test compares
the two) with the work per slave inlined; see offerd/allocator/README.md,
"Performance notes".
"""

from __future__ import annotations

from collections import Counter

from offerd.allocator.interface import Allocation
from offerd.common.resources import Resources

EMPTY = Resources.EMPTY
_new_allocation = tuple.__new__  # Allocation(...) without the namedtuple's Python-level __new__


class OneRoleStage:
    """`_one_role_stage` and `_quantities` (methods of HierarchicalAllocator)."""

    def _one_role_stage(self, role, ids, now, result) -> None:
        """The fair-share stage when one role is active, nothing is owed to
        quota and its frameworks are in DRF order (the common case, and the
        benchmark's). The role order cannot change within the run, so the role
        is charged once at the end, and a slave gets at most one grant (the
        only role that could use the rest is served). Same choices as
        `_fair_share_stage`, with the work per slave inlined: this loop runs
        once per slave of the cluster."""
        slaves, free = self._slaves, self._free
        sorter = self._role_frameworks[role]
        order, grant_at = sorter.order(), sorter.grant_at
        offerable_for, holds = self._offerable, self._holds
        new_allocation = _new_allocation
        granted: list[dict[str, float]] = []  # the quantities of each grant, for the role
        epoch = sorter.epoch  # no framework joins or leaves the order during a run
        for slave_id in ids:
            slave = slaves[slave_id]
            offerable = slave.available
            # `_offerable`'s memo hit, inlined: a slave without reservations
            # whose free resources are those already checked against the minimum.
            if slave.reserved or offerable is not slave._seen or not slave._seen_ok:
                offerable = offerable_for(slave, role)
                if offerable is None:
                    continue
            filters = slave.filters.get(role)
            if filters:
                # A slave every active framework has filtered stays so while its
                # offerable resources, the active frameworks and its filters are
                # unchanged and none of the filters expired: skipped without the
                # walk (with declines that never expire, most slaves end up here).
                blocked = slave.blocked
                if (blocked is not None and blocked[0] is offerable and blocked[1] == epoch
                        and blocked[2] == slave.filters_epoch and now < blocked[3] and blocked[4] == role):
                    continue
                for i, key in enumerate(order):
                    framework_id = key[2]
                    flt = filters.get(framework_id)
                    if flt is None:
                        break
                    if flt.checked is offerable and now < flt.expires:
                        if flt.holds:
                            continue  # `_holds`' memo hit, inlined
                        break
                    if not holds(flt, offerable, now, slave, role, framework_id):
                        break
                else:
                    # Every framework of the role filtered this slave. Expiry over
                    # all its filters (inactive frameworks' too): never too late.
                    slave.blocked = (offerable, epoch, slave.filters_epoch,
                                     min(flt.expires for flt in filters.values()), role)
                    continue
            elif order:
                i, framework_id = 0, order[0][2]
            else:
                break  # no framework in the order (grants never remove one)
            per_slave = result.get(framework_id)
            if per_slave is None:
                result[framework_id] = per_slave = {}
            if offerable is slave._seen:
                # Declined before: the same offer again (immutable), the same quantities.
                allocation, quantities = slave._seen_a, slave._seen_q
                if allocation is None or allocation[0] is not role:
                    allocation = slave._seen_a = new_allocation(Allocation, (role, offerable))
                if quantities is None:
                    quantities = slave._seen_q = self._quantities(offerable)
            else:
                allocation = new_allocation(Allocation, (role, offerable))
                quantities = self._quantities(offerable)
            per_slave[slave_id] = allocation
            key = (framework_id, role)
            allocations = slave.allocations
            held = allocations.get(key)
            allocations[key] = offerable if held is None else held + offerable
            if not grant_at(i, framework_id, quantities):
                order = sorter.order()
            granted.append(quantities)
            if offerable is slave.available:
                slave.available = EMPTY
                if slave._offerable:
                    slave._offerable.clear()
                del free[slave_id]
            else:
                self._set_available(slave, slave.available - offerable)
        if granted:
            # Summed per distinct quantities object (interned: slaves of one
            # shape share one), counted in C: no Python work per grant here.
            by_id = dict(zip(map(id, granted), granted))
            total: dict[str, float] = {}
            for key, count in Counter(map(id, granted)).items():
                for name, amount in by_id[key].items():
                    total[name] = total.get(name, 0.0) + amount * count
            self._roles.allocated(role, total, len(granted))

    def _quantities(self, offerable: Resources) -> dict[str, float]:
        """`offerable.scalars()`, one shared (never mutated) dict per distinct
        value, so a run can count its grants per shape instead of summing each."""
        quantities = offerable.scalars()
        interned = self._interned
        if len(interned) > 4096:  # a long-lived master sees many shapes
            interned.clear()
        return interned.setdefault(tuple(quantities.items()), quantities)
