"""Why is my framework not getting offers? And the allocator's metrics.

Read-only views of a `HierarchicalAllocator`, computed on demand (never in an
allocation run). The JSON shape is documented in offerd/allocator/README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offerd.allocator.hierarchical import HierarchicalAllocator


def _offerable_slaves(alloc: HierarchicalAllocator, roles) -> dict[str, int]:
    """Per role: active slaves whose free resources for the role reach the minimum."""
    plain = 0
    reserved = []
    for slave_id in alloc._free:
        slave = alloc._slaves[slave_id]
        if slave.reserved:
            reserved.append(slave)
        elif alloc._offerable(slave, "*") is not None:
            plain += 1
    return {role: plain + sum(1 for s in reserved if alloc._offerable(s, role) is not None) for role in roles}


def _reason(code: str, message: str, role: str | None = None, **extra) -> dict:
    out = {"code": code, "message": message}
    if role is not None:
        out["role"] = role
    out.update(extra)
    return out


def explain(alloc: HierarchicalAllocator, framework_id: str | None = None) -> dict:
    """``{"frameworks": {id: entry}, "roles": {...}}``, or one entry if `framework_id`."""
    now = alloc._now
    frameworks = alloc._frameworks
    chosen = [framework_id] if framework_id is not None else list(frameworks)
    roles = {r for fid in chosen if fid in frameworks for r in frameworks[fid].roles}
    offerable = _offerable_slaves(alloc, roles)
    entries = {}
    for fid in chosen:
        f = frameworks.get(fid)
        if f is None:
            continue
        reasons = []
        role_entries = {}
        if not f.active:
            reasons.append(_reason("INACTIVE", "the scheduler is disconnected; no offers until it resubscribes"))
        if alloc._recovery is not None:
            required, deadline = alloc._recovery
            reasons.append(_reason(
                "RECOVERING", f"allocation is paused after a master failover (quota is set) until {required} "
                f"slaves have reregistered ({len(alloc._slaves)} so far) or {max(0.0, deadline - now):.0f}s pass",
                slaves_required=required, slaves_registered=len(alloc._slaves)))
        for role in f.roles:
            sorter = alloc._role_frameworks.get(role)
            filtered = [(sid, flt.expires) for (r, sid), flt in f.filters.items() if r == role and flt.expires > now]
            quota = alloc._quotas.get(role)
            entry = {
                "share": sorter.share(fid) if sorter is not None and fid in sorter else 0.0,
                "role_share": alloc.role_share(role),
                "weight": alloc._weights.get(role, 1.0),
                "suppressed": role in f.suppressed,
                "filtered_slaves": len(filtered),
                "offerable_slaves": offerable.get(role, 0),
            }
            if quota is not None:
                entry["quota"] = {"guarantee": quota.guarantee.to_json(),
                                  "limit": quota.limit.to_json() if quota.limit is not None else None}
            role_entries[role] = entry
            if role in f.suppressed:
                reasons.append(_reason("SUPPRESSED", f"role {role} is suppressed (SUPPRESS); REVIVE to get offers",
                                       role))
                continue
            if filtered:
                last = max(expires for _, expires in filtered)
                reasons.append(_reason(
                    "FILTERED", f"declined offers of {len(filtered)} slave(s) in role {role}; the last filter "
                    f"expires in {last - now:.1f}s (REVIVE clears them)", role, slaves=len(filtered),
                    expires_in=round(last - now, 3)))
            if role in alloc._held_back:
                reasons.append(_reason("QUOTA_HEADROOM", "unreserved resources are held back for the unmet "
                                       "quota guarantees of other roles", role))
            room = alloc._room(role)
            if room is not None and not any(v > 0 for v in room.values()):
                reasons.append(_reason("QUOTA_LIMIT", f"role {role} is at its quota limit", role))
            if offerable.get(role, 0) == 0:
                reasons.append(_reason(
                    "NO_RESOURCES", f"no slave has free resources for role {role} above "
                    "--min_allocatable_resources (all offered or in use)", role))
            elif offerable.get(role, 0) <= len(filtered):
                pass  # FILTERED already says it
            elif f.active:
                reasons.append(_reason(
                    "FAIR_SHARE", f"{offerable[role] - len(filtered)} slave(s) have resources for role {role}; "
                    "they go to the lowest weighted dominant share first (this framework: "
                    f"{entry['share']:.3f}, its role: {entry['role_share']:.3f})", role))
        getting = f.active and any(
            not e["suppressed"] and e["offerable_slaves"] > e["filtered_slaves"] for e in role_entries.values())
        entries[fid] = {"getting_offers": getting, "dominant_share": alloc.share(fid),
                        "roles": role_entries, "reasons": reasons}
    if framework_id is not None:
        return entries.get(framework_id, {})
    return {
        "frameworks": entries,
        "roles": {role: {"share": alloc.role_share(role), "weight": alloc._weights.get(role, 1.0),
                         "frameworks": len(alloc._role_frameworks[role]),
                         "active_frameworks": len(alloc._role_frameworks[role].active)}
                  for role in alloc._role_frameworks},
        "slaves_with_free_resources": len(alloc._free),
        "allocation_runs": alloc._runs,
    }


def allocator_stats(alloc: HierarchicalAllocator) -> dict[str, float]:
    """Keys under ``allocator/`` of /metrics/snapshot, named as in Mesos."""
    now = alloc._now
    out: dict[str, float] = {
        "allocation_runs": alloc._runs,
        "mesos/allocation_runs": alloc._runs,
        "frameworks": len(alloc._frameworks),
        "slaves": len(alloc._slaves),
    }
    active_filters: dict[str, int] = {}
    for f in alloc._frameworks.values():
        for (role, _), flt in f.filters.items():
            if flt.expires > now:
                active_filters[role] = active_filters.get(role, 0) + 1
    out["offer_filters_active"] = sum(active_filters.values())
    for role in alloc._role_frameworks:
        out[f"mesos/roles/{role}/shares/dominant"] = alloc.role_share(role)
        out[f"mesos/offer_filters/roles/{role}/active"] = active_filters.get(role, 0)
    allocated: dict[str, float] = {}
    for role in alloc._role_frameworks:
        for name, amount in alloc._roles.allocations.get(role, {}).items():
            allocated[name] = allocated.get(name, 0.0) + amount
    for name, amount in alloc._total.items():
        out[f"mesos/resources/{name}/total"] = amount
        out[f"mesos/resources/{name}/offered_or_allocated"] = round(allocated.get(name, 0.0), 3)
    for role, quota in alloc._quotas.items():
        held = alloc._roles.allocations.get(role, {}) if role in alloc._roles else {}
        names = set(quota.guarantee_q) | set(quota.limit_q or ())
        for name in sorted(names):
            prefix = f"mesos/quota/roles/{role}/resources/{name}"
            if name in quota.guarantee_q:
                out[f"{prefix}/guarantee"] = quota.guarantee_q[name]
            if quota.limit_q is not None and name in quota.limit_q:
                out[f"{prefix}/limit"] = quota.limit_q[name]
            out[f"{prefix}/offered_or_allocated"] = round(held.get(name, 0.0), 3)
    return out
