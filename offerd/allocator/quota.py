"""Quota for the hierarchical allocator: the guarantee stage and the headroom.

A mixin of `HierarchicalAllocator` (same state, kept apart for size). Quota is
on unreserved scalar resources: a guarantee is served first (quota stage) and
held back from other roles as headroom while unmet; a limit caps a role.
Resources are "chopped" to what is needed, as in Mesos; this builds
`Resources` values, but only for roles with quota.
"""

from __future__ import annotations

from typing import Mapping

from offerd.common.resources import Resources

EMPTY = Resources.EMPTY


class Quota:
    __slots__ = ("guarantee", "limit", "guarantee_q", "limit_q")

    def __init__(self, guarantee: Resources | None, limit: Resources | None):
        self.guarantee = guarantee or EMPTY
        self.limit = limit
        self.guarantee_q = self.guarantee.scalars()
        self.limit_q = limit.scalars() if limit is not None else None


def _scalar_text(quantities: Mapping[str, float]) -> str:
    return ";".join(f"{name}:{amount!r}" for name, amount in quantities.items() if amount > 0)


class QuotaStages:
    """The quota stage, the headroom and limits (methods of HierarchicalAllocator)."""

    def _need(self, role: str) -> dict[str, float]:
        """What the role's guarantee still lacks (scalars > 0)."""
        quota = self._quotas.get(role)
        if quota is None:
            return {}
        held = self._roles.allocations.get(role, {}) if role in self._roles else {}
        return {n: round(g - held.get(n, 0.0), 3) for n, g in quota.guarantee_q.items()
                if g - held.get(n, 0.0) > 1e-9}

    def _room(self, role: str) -> dict[str, float] | None:
        """How much more the role may get under its limit (None: no limit)."""
        quota = self._quotas.get(role)
        if quota is None or quota.limit_q is None:
            return None
        held = self._roles.allocations.get(role, {}) if role in self._roles else {}
        return {n: max(0.0, round(lim - held.get(n, 0.0), 3)) for n, lim in quota.limit_q.items()}

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
        scalars = Resources.parse(_scalar_text(keep)) if any(v > 0 for v in keep.values()) else EMPTY
        non_scalars = unreserved.subtract_saturating(Resources.parse(_scalar_text(have))) if have else unreserved
        if not scalars:
            return reserved
        return reserved + scalars + non_scalars

    def _quota_stage(self, ids, now, result) -> None:
        quota_roles = [r for r in self._quotas if r in self._role_frameworks]
        for slave_id in ids:
            slave = self._slaves[slave_id]
            for role in quota_roles:
                if not slave.available:
                    break
                need = self._need(role)
                if not need or not self._roles.active or role not in self._roles.active:
                    continue
                offerable = self._offerable(slave, role)
                if offerable is None:
                    continue
                room = self._room(role)
                if room is not None:
                    need = {n: min(v, room.get(n, v)) for n, v in need.items()}
                chopped = self._chop(offerable, need, only_capped=False)
                if not chopped or not chopped.meets_minimum(self.min_allocatable):
                    continue
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
        if headroom is not None and not self._need(role):
            unreserved = offerable.unreserved().scalars()
            if any(headroom[n] - unreserved.get(n, 0.0) < -1e-9 for n in headroom):
                # Giving these away would eat into what unmet guarantees need.
                caps = {n: max(0.0, headroom[n]) for n in headroom}
                offerable = self._chop(offerable, caps, only_capped=False)
                self._held_back.add(role)
        if not offerable or not offerable.meets_minimum(self.min_allocatable):
            return None
        return offerable

