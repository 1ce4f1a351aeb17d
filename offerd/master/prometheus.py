"""The /metrics/snapshot keys in Prometheus' text format (GET /metrics).

Each Mesos key becomes one gauge: ``master/cpus_total`` is exported as
``offerd_master_cpus_total`` with the original key in its help text, so a
Prometheus server scrapes the same numbers tools written for Mesos read.
Keys are documents of the moment, not monotonic counters we could promise
across master restarts, hence gauges.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "offerd_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")

__all__ = ["CONTENT_TYPE_LATEST", "metric_name", "render"]


def metric_name(key: str) -> str:
    return PREFIX + _INVALID.sub("_", key)


class _Snapshot:
    def __init__(self, values: dict[str, float]):
        self._values = values

    def collect(self):
        seen = set()
        for key in sorted(self._values):
            value = self._values[key]
            name = metric_name(key)
            if name in seen or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            seen.add(name)
            family = GaugeMetricFamily(name, f"Mesos metric {key}")
            family.add_metric([], float(value))
            yield family


def render(values: dict[str, float]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(values))
    return generate_latest(registry)
