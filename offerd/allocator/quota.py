"""Quota for the hierarchical allocator: the guarantee stage and the headroom.

A mixin of `HierarchicalAllocator` (same state, kept apart for size). Quota is
on unreserved scalar resources: a guarantee is served first (quota stage) and
held back from other roles as headroom while unmet; a limit caps a role.
Resources are "chopped" to what is needed, as in Mesos; this builds
`Resources` values, but only for roles with quota.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Mapping

from offerd.common.resources import Resources

if TYPE_CHECKING:
    from offerd.allocator.hierarchical import _Slave

log = logging.getLogger(__name__)

EMPTY = Resources.EMPTY


class Quota:
    __slots__ = ("guarantee", "limit", "guarantee_q", "limit_q")

    def __init__(self, guarantee: Resources | None, limit: Resources | None):
        self.guarantee = guarantee or EMPTY
        self.limit = limit
        self.guarantee_q = self.guarantee.scalars()
        self.limit_q = limit.scalars() if limit is not None else None


def in_subtree(role: str, top: str) -> bool:
    """`role` is `top` or below it in the role tree (``eng/web`` under ``eng``)."""
    return role == top or role.startswith(top + "/")


class QuotaStages:
    """The quota stage, the headroom, limits and the pause after a failover
    (methods of HierarchicalAllocator).

    Quota is hierarchical, as in Mesos: the quota of ``eng`` covers what
    ``eng`` and every role below it (``eng/web``, ``eng/web/a``) hold, its
    guarantee may be served to any of them, and its limit caps them together.
    """

    def recovering(self, expected_slaves: int, now: float) -> None:
        """The master failed over and expects `expected_slaves` to reregister.
        With quota set, nothing is allocated until `agent_recovery_factor` of
        them are back or `recovery_timeout` has passed (Mesos), so that the
        first slaves back are not all handed out before quota can be honoured."""
        if not self._quotas or expected_slaves <= 0:
            return
        required = math.ceil(expected_slaves * self.agent_recovery_factor)
        self._recovery = (required, now + self.recovery_timeout)
        log.info("allocation paused until %d of %d slaves reregister or %.0fs pass",
                 required, expected_slaves, self.recovery_timeout)

    def _paused(self, now: float) -> bool:
        required, deadline = self._recovery
        if len(self._slaves) >= required or now >= deadline:
            log.info("allocation resumed: %d slaves, %s", len(self._slaves),
                     "timeout" if now >= deadline else "enough reregistered")
            self._recovery = None
            return False
        return True

    def _subtree(self, top: str) -> list[str]:
        """The known roles in `top`'s subtree (itself included), cached until a
        role or a quota is added (`_quota_caches` is emptied then)."""
        cache = self._quota_caches[0]
        roles = cache.get(top)
        if roles is None:
            nested = cache.get("/")  # the known roles below some other role
            if nested is None:
                nested = cache["/"] = [r for r in self._roles.allocations if "/" in r]
            prefix = top + "/"
            roles = [top] if top in self._roles.allocations else []
            roles += [r for r in nested if r.startswith(prefix)]
            cache[top] = roles
        return roles

    def _subtree_held(self, top: str) -> Mapping[str, float]:
        """What `top`'s subtree holds (read only: may be the role's own dict)."""
        allocations = self._roles.allocations
        roles = self._subtree(top)
        if len(roles) == 1:
            return allocations[roles[0]]
        held: dict[str, float] = {}
        for role in roles:
            for name, amount in allocations[role].items():
                held[name] = held.get(name, 0.0) + amount
        return held

    def _quota_roles_of(self, role: str) -> list[str]:
        """The roles with quota that cover `role`: itself and its ancestors (cached)."""
        cache = self._quota_caches[1]
        roles = cache.get(role)
        if roles is None:
            # `role` and its ancestors: "a/b/c" is covered by "a/b/c", "a/b" and "a".
            parts = role.split("/")
            ancestors = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
            roles = cache[role] = [q for q in ancestors if q in self._quotas]
        return roles

    def _need(self, role: str) -> dict[str, float]:
        """What the role's own guarantee still lacks (scalars > 0)."""
        quota = self._quotas.get(role)
        if quota is None:
            return {}
        held = self._subtree_held(role)
        return {n: round(g - held.get(n, 0.0), 3) for n, g in quota.guarantee_q.items()
                if g - held.get(n, 0.0) > 1e-9}

    def _owed(self, role: str) -> bool:
        """Some guarantee covering `role` (its own or an ancestor's) is unmet."""
        return any(self._need(q) for q in self._quota_roles_of(role))

    def _room(self, role: str) -> dict[str, float] | None:
        """How much more the role may get under the limits of its own quota
        and its ancestors' (None: no limit)."""
        room: dict[str, float] | None = None
        for q in self._quota_roles_of(role):
            limit = self._quotas[q].limit_q
            if limit is None:
                continue
            held = self._subtree_held(q)
            room = room if room is not None else {}
            for n, lim in limit.items():
                left = max(0.0, round(lim - held.get(n, 0.0), 3))
                room[n] = min(room.get(n, left), left)
        return room

    def _at_limit(self, role: str) -> bool:
        """No room left under the limits for any resource the cluster has."""
        room = self._room(role)
        return room is not None and all(room.get(n, 1.0) <= 0 for n in self._total)

    def _chop(self, offerable: Resources, caps: Mapping[str, float], only_capped: bool) -> Resources:
        """The role's reservations plus unreserved scalars at most `caps`
        (names not in `caps` kept unless `only_capped`); unreserved non-scalars
        go along when any unreserved scalar does."""
        reserved = offerable.reserved()
        unreserved = offerable.unreserved()
        have = unreserved.scalars()
        keep = {}
        for name, amount in have.items():
            if name in caps:
                keep[name] = min(amount, caps[name])
            elif not only_capped:
                keep[name] = amount
        scalars = Resources.from_scalars(keep)
        non_scalars = unreserved.subtract_saturating(Resources.from_scalars(have))
        if not scalars:
            return reserved
        return reserved + scalars + non_scalars

    def _quota_stage(self, ids, now, result) -> None:
        # Each quota role's guarantee may go to it or to any active role below
        # it, in role-sorter order; deeper quotas are visited first. Grants only
        # raise what roles hold, so a guarantee met stays met for the stage: it
        # leaves `pending`, and the stage costs slaves + quota roles, not their product.
        need_of = self._need
        pending = dict.fromkeys(q for q in sorted(self._quotas, key=lambda q: -q.count("/")) if need_of(q))
        active = self._roles.active
        for slave_id in ids:
            if not pending:
                break
            slave = self._slaves[slave_id]
            met = []
            for top in pending:
                if not slave.available:
                    break
                subtree = self._subtree(top)
                if len(subtree) > 1:
                    members = set(subtree)
                    subtree = [r for r in self._roles.sort() if r in members]
                elif not subtree or subtree[0] not in active:
                    continue
                for role in subtree:
                    need = need_of(top)
                    if not need or not slave.available:
                        break
                    self._quota_grant(slave, slave_id, role, need, now, result)
                if not need_of(top):
                    met.append(top)
            for top in met:
                del pending[top]

    def _quota_grant(self, slave, slave_id, role, need, now, result) -> None:
        offerable = self._offerable(slave, role)
        if offerable is None:
            return
        room = self._room(role)
        if room is not None:
            need = {n: min(v, room.get(n, v)) for n, v in need.items()}
        chopped = self._chop(offerable, need, only_capped=False)
        if not chopped or not chopped.meets_minimum(self.min_allocatable):
            return
        filters = slave.filters.get(role)
        for framework_id in self._role_frameworks[role].sort():
            if slave_id in self._granted and slave_id in result.get(framework_id, ()):
                continue
            if filters:
                flt = filters.get(framework_id)
                if flt is not None and self._holds(flt, chopped, now, slave, role, framework_id):
                    continue
            self._grant(result, framework_id, role, slave, chopped, None)
            self._granted.add(slave_id)
            break

    def _headroom(self) -> dict[str, float] | None:
        """Free unreserved scalars minus what unmet guarantees still need:
        what the fair-share stage may hand out (None if nothing is owed)."""
        required: dict[str, float] = {}
        for role in self._quotas:
            for name, amount in self._need(role).items():
                required[name] = required.get(name, 0.0) + amount
        if not required:
            return None
        free: dict[str, float] = {name: -amount for name, amount in required.items()}
        for slave_id in self._free:
            for name, amount in self._slaves[slave_id].available.unreserved().scalars().items():
                if name in free:
                    free[name] += amount
        return free

    def _within_quota(self, slave: _Slave, role: str, offerable: Resources, headroom) -> Resources | None:
        """Cut `offerable` to the role's limit and to the quota headroom of others."""
        room = self._room(role)
        if room is not None:
            offerable = self._chop(offerable, room, only_capped=False)
        if headroom is not None and not self._owed(role):
            unreserved = offerable.unreserved().scalars()
            if any(headroom[n] - unreserved.get(n, 0.0) < -1e-9 for n in headroom):
                # Giving these away would eat into what unmet guarantees need.
                caps = {n: max(0.0, headroom[n]) for n in headroom}
                offerable = self._chop(offerable, caps, only_capped=False)
                self._held_back.add(role)
        if not offerable or not offerable.meets_minimum(self.min_allocatable):
            return None
        return offerable

