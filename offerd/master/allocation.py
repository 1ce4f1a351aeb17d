"""The master's side of the allocator: role policy, cycle timings, explanations.

* `RolePolicy`: weights and quota. Changed by operators (``/quota``,
  ``/weights``), persisted through the registry first, then told to the
  allocator. Runs on the actor thread.
* `RunTimer`: allocation cycle times for ``allocator/mesos/allocation_run_ms``
  and ``allocation_run_latency_ms`` with their percentiles (the allocator
  itself reads no clock).
* `tune_gc`: the collector settings of a master process (bench/allocator_bench.py
  measures with the same).
"""

from __future__ import annotations

import collections
import gc
import json
import logging
from typing import TYPE_CHECKING

from google.protobuf import json_format

from offerd.common.resources import ResourceError, Resources
from offerd.master.flags import parse_weights
from offerd.master.registry import (
    Registrar,
    RegistryError,
    RemoveQuota,
    UpdateQuota,
    UpdateWeights,
    backend_for,
)

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)


def parse_roles(text: str | None) -> frozenset[str] | None:
    """--roles: comma-separated whitelist; None means any role."""
    if not text:
        return None
    return frozenset(r.strip() for r in text.split(",") if r.strip()) | {"*"}


def _resources_json(resources: Resources | None) -> list[dict] | None:
    if resources is None:
        return None
    return [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in resources.to_protos()]


def _parse_resources(value) -> Resources | None:
    """Mesos JSON (a list of Resource objects) or the text form."""
    if value is None:
        return None
    if isinstance(value, str):
        return Resources.parse(value)
    if isinstance(value, list):
        return Resources.parse(json.dumps(value))
    raise ResourceError(f"expected a list of resources or text, not {type(value).__name__}")


class RolePolicy:
    def __init__(self, master: Master):
        self.master = master
        self.registrar = Registrar(backend_for(master.flags.work_dir))
        self.flag_weights = parse_weights(master.flags.weights)

    def recover(self) -> None:
        """Tell the allocator what the flags and the registry say (registry wins)."""
        state = self.registrar.state
        weights = {**self.flag_weights, **state.weights}
        if weights:
            self._allocator_call("update_weights", weights)
        for role, quota in state.quotas.items():
            self._allocator_call("update_quota", role, _parse_resources(quota.get("guarantee")),
                                 _parse_resources(quota.get("limit")))
        if weights or state.quotas:
            log.info("registry version %d: weights %s, quota for %s", state.version, weights,
                     sorted(state.quotas) or "no role")

    def _allocator_call(self, name: str, *args) -> str | None:
        try:
            getattr(self.master.allocator, name)(*args)
        except NotImplementedError as exc:
            return str(exc)
        return None

    # -- operator calls (actor thread) ----------------------------------------

    def set_quota(self, body: dict) -> str | None:
        """POST /quota: {"role": "dev", "guarantee": [...], "limit": [...]}; an error text or None."""
        if not isinstance(body, dict) or not isinstance(body.get("role"), str):
            return "Failed to parse set quota request: expected a JSON object with a 'role' string"
        role = body["role"]
        try:
            guarantee = _parse_resources(body.get("guarantee"))
            limit = _parse_resources(body.get("limit"))
        except ResourceError as exc:
            return f"Failed to parse set quota request: {exc}"
        if not hasattr(self.master.allocator, "quotas"):
            return f"allocator {self.master.flags.allocator} does not support quota"
        if role in self.registrar.state.quotas and not body.get("force"):
            return f"Failed to validate set quota request: quota for role '{role}' already exists"
        try:
            self.registrar.apply(UpdateQuota(role, str(guarantee) if guarantee else None,
                                             str(limit) if limit else None))
        except RegistryError as exc:
            return f"Failed to validate set quota request: {exc}"
        self.master.allocator.update_quota(role, guarantee, limit)
        self._changed()
        return None

    def remove_quota(self, role: str) -> str | None:
        try:
            self.registrar.apply(RemoveQuota(role))
        except RegistryError as exc:
            return f"Failed to remove quota: {exc}"
        self._allocator_call("update_quota", role, None, None)
        self._changed()
        return None

    def update_weights(self, body) -> str | None:
        """PUT /weights: [{"role": "prod", "weight": 3.0}, ...] as Mesos."""
        if not isinstance(body, list) or not all(isinstance(w, dict) and isinstance(w.get("role"), str)
                                                 and "weight" in w for w in body):
            return ("Failed to parse update weights request: expected [{\"role\": <string>, "
                    "\"weight\": <positive number>}, ...]")
        weights = {w["role"]: w["weight"] for w in body}
        if not hasattr(self.master.allocator, "weights"):
            return f"allocator {self.master.flags.allocator} does not support weights"
        try:
            self.registrar.apply(UpdateWeights(weights))
        except RegistryError as exc:
            return f"Failed to validate update weights request: {exc}"
        self.master.allocator.update_weights({r: float(w) for r, w in weights.items()})
        self._changed()
        return None

    def _changed(self) -> None:
        self.master.touch()
        self.master.request_allocation()

    # -- views (actor thread) -------------------------------------------------

    def quota_json(self) -> dict:
        """GET /quota, as Mesos' QuotaStatus: {"infos": [{"role", "guarantee", "limit"}]}."""
        infos = []
        for role, quota in sorted(self.registrar.state.quotas.items()):
            info = {"role": role, "guarantee": _resources_json(_parse_resources(quota.get("guarantee"))) or []}
            if quota.get("limit"):
                info["limit"] = _resources_json(_parse_resources(quota["limit"]))
            infos.append(info)
        return {"infos": infos}

    def weights_json(self) -> list[dict]:
        weights = {**self.flag_weights, **self.registrar.state.weights}
        return [{"role": role, "weight": weight} for role, weight in sorted(weights.items())]

    def allocator_json(self, framework_id: str | None = None) -> dict:
        """GET /master/allocator: why each framework is (not) getting offers."""
        explain = getattr(self.master.allocator, "explain", None)
        out = {"allocator": self.master.flags.allocator,
               "role_sorter": self.master.flags.role_sorter, "framework_sorter": self.master.flags.framework_sorter}
        if explain is None:
            out["error"] = f"allocator {self.master.flags.allocator} does not explain itself"
            return out
        data = explain()
        if framework_id is not None:
            data["frameworks"] = {k: v for k, v in data["frameworks"].items() if k == framework_id}
        out.update(data)
        out["weights"] = {w["role"]: w["weight"] for w in self.weights_json()}
        out["quota"] = self.quota_json()["infos"]
        return out


# CPython's default gen-0 threshold (700) runs a young collection every few
# hundred allocations; an allocation cycle at 10,000 slaves allocates tens of
# thousands of tracked objects (offers, keys), and each young collection that
# survives pushes towards a full one that walks every record of the master.
GC_THRESHOLD = (50_000, 20, 10)

_gc_tuned = False


def tune_gc() -> dict:
    """Once per process, after startup and recovery: collect, then freeze what
    lives now (modules, the recovered state) out of the collector's scans, and
    raise the gen-0 threshold. Frozen objects are still freed by reference
    counting; only cycles among them are never collected, hence once."""
    global _gc_tuned
    if not _gc_tuned:
        _gc_tuned = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLD)
    return gc_settings()


def gc_settings() -> dict:
    return {"gc_threshold": list(gc.get_threshold()), "gc_frozen_objects": gc.get_freeze_count(),
            "gc_enabled": gc.isenabled()}


class RunTimer:
    """The last `window` cycle times, reported like a Mesos timer metric."""

    PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999), ("p9999", 0.9999))

    def __init__(self, key: str = "allocator/mesos/allocation_run_ms", window: int = 1000,
                 latency_key: str | None = "allocator/mesos/allocation_run_latency_ms"):
        self.key = key
        self.samples: collections.deque[float] = collections.deque(maxlen=window)
        # Mesos' allocation_run_latency_ms: from the request of a run (an event:
        # slave added, resources recovered, revive) until it starts, i.e. the
        # time it waited behind the actor's other work.
        self.latency = RunTimer(latency_key, window, None) if latency_key else None

    def record(self, ms: float) -> None:
        self.samples.append(ms)

    def snapshot(self) -> dict[str, float]:
        if self.latency is not None and self.latency.samples:
            return {**self._snapshot(), **self.latency.snapshot()}
        return self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        if not self.samples:
            return {}
        ordered = sorted(self.samples)
        n = len(ordered)
        out = {self.key: self.samples[-1], f"{self.key}/count": n, f"{self.key}/min": ordered[0],
               f"{self.key}/max": ordered[-1], f"{self.key}/mean": sum(ordered) / n}
        for name, fraction in self.PERCENTILES:
            out[f"{self.key}/{name}"] = ordered[min(n - 1, int(fraction * n))]
        return out
