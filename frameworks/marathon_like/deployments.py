"""Deployment plans and the rolling-restart arithmetic.

A plan is computed from the affected apps before (`original`) and after
(`target`) a change: Stop, then Start, then Scale/Restart ordered by the
dependency depth. The core drives each step; the pure helpers here say how
many instances to kill and launch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from frameworks.marathon_like import ids
from frameworks.marathon_like.model import SCALE_FIELDS

STOP, START, SCALE, RESTART = "StopApplication", "StartApplication", "ScaleApplication", "RestartApplication"


@dataclass
class Deployment:
    id: str
    version: str
    original: dict   # app id -> app (None when absent)
    target: dict
    steps: list[list[dict]]
    current: int = 0               # index of the running step
    step_started: bool = False

    @property
    def affected(self) -> list[str]:
        return sorted({a["app"] for step in self.steps for a in step} | set(self.target) | set(self.original))

    def current_actions(self) -> list[dict]:
        return self.steps[self.current] if self.current < len(self.steps) else []

    def to_json(self) -> dict:
        return {
            "id": self.id, "version": self.version, "affectedApps": self.affected, "affectedPods": [],
            "steps": [{"actions": [dict(a) for a in step]} for step in self.steps],
            "currentActions": [{**a, "readinessCheckResults": []} for a in self.current_actions()],
            "currentStep": min(self.current + 1, len(self.steps)), "totalSteps": len(self.steps),
        }

    def to_record(self) -> dict:
        """What storage keeps: enough to resume the plan after a restart."""
        return {"id": self.id, "version": self.version, "original": self.original, "target": self.target,
                "steps": self.steps, "current": self.current}

    @classmethod
    def from_record(cls, record: dict) -> "Deployment":
        # The step in progress starts again: its actions are idempotent (converge to a target).
        return cls(record["id"], record["version"], record["original"], record["target"], record["steps"],
                   record.get("current", 0))

    def plan_json(self, group_json) -> dict:
        """The "heavy" plan of events: original and target root groups included."""
        return {"id": self.id, "version": self.version, "original": group_json(self.original),
                "target": group_json(self.target),
                "steps": [{"actions": [dict(a) for a in step]} for step in self.steps]}


def config_changed(before: dict, after: dict) -> bool:
    ignore = SCALE_FIELDS | {"version", "versionInfo"}
    keys = (set(before) | set(after)) - ignore
    return any(before.get(k) != after.get(k) for k in keys)


def _depth(app_id: str, apps: dict, seen=()) -> int:
    deps = [d for d in (apps.get(app_id) or {}).get("dependencies", []) if d in apps and d not in seen]
    return 1 + max((_depth(d, apps, (*seen, app_id)) for d in deps), default=0)


def build_plan(original: dict, target: dict, restart: set[str] = frozenset(),
               version: str | None = None) -> Deployment:
    """Steps from `original` to `target` (both app id -> app or None)."""
    stops = [{"action": STOP, "app": a} for a in sorted(original) if original[a] and not target.get(a)]
    starts = [{"action": START, "app": a} for a in sorted(target) if target[a] and not original.get(a)]
    by_depth: dict[int, list[dict]] = {}
    for app_id in sorted(target):
        after, before = target[app_id], original.get(app_id)
        if not after:
            continue
        if app_id in restart or (before and config_changed(before, after) and after["instances"] > 0):
            action = RESTART if before else SCALE
        elif not before or before.get("instances") != after.get("instances") or after["instances"] == 0:
            action = SCALE
        else:
            continue
        by_depth.setdefault(_depth(app_id, target), []).append({"action": action, "app": app_id})
    steps = [s for s in [stops, starts] if s] + [by_depth[d] for d in sorted(by_depth)]
    return Deployment(ids.new_deployment_id(), version or ids.timestamp(), dict(original), dict(target), steps)


@dataclass
class RollingRestart:
    """Counts of one RestartApplication, as Marathon computes them."""

    instances: int
    min_healthy: int
    max_capacity: int
    started: bool = False
    plus_one: bool = False
    notes: list = field(default_factory=list)

    @classmethod
    def of(cls, app: dict) -> "RollingRestart":
        n = app["instances"]
        strategy = app["upgradeStrategy"]
        return cls(n, math.ceil(n * strategy["minimumHealthCapacity"] - 1e-9),
                   math.floor(n * (1 + strategy["maximumOverCapacity"]) + 1e-9))

    def capacity(self, active: int) -> int:
        if not self.started:
            self.started = True
            # No room to kill and no room to launch: allow one extra (issue #3546).
            self.plus_one = self.min_healthy >= self.max_capacity and active >= self.max_capacity
        return self.max_capacity + (1 if self.plus_one else 0)

    def kills(self, ready_old: int, ready_new: int, unready_old: int) -> tuple[int, int]:
        """(ready old, unready old) instances that may be killed now."""
        spare = max(0, ready_old + ready_new - self.min_healthy)
        return min(ready_old, spare), unready_old

    def launches(self, old: int, new: int, capacity: int) -> int:
        return max(0, min(self.instances - new, capacity - old - new))
