"""The launch queue: how many instances each app still needs, its backoff, and
the offer statistics that explain why it waits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from frameworks.marathon_like import ids

REASONS = ("UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound", "AgentMaintenance",
           "InsufficientCpus", "InsufficientMemory", "InsufficientDisk", "InsufficientGpus",
           "InsufficientPorts", "DeclinedScarceResources")


@dataclass
class Backoff:
    delay: float = 0.0            # the current delay, seconds
    until: float = 0.0            # no launch before this time

    def failed(self, app: dict, now: float) -> None:
        if self.delay <= 0:
            self.delay = float(app["backoffSeconds"])
        else:
            self.delay = min(self.delay * app["backoffFactor"], float(app["maxLaunchDelaySeconds"]))
        self.until = now + self.delay

    def reset(self) -> None:
        self.delay, self.until = 0.0, 0.0

    def time_left(self, now: float) -> float:
        return max(0.0, self.until - now)


@dataclass
class QueueEntry:
    app_id: str
    count: int = 0
    since: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    processed: int = 0
    unused: int = 0
    last_unused_at: float | None = None
    last_used_at: float | None = None
    rejects: Counter = field(default_factory=Counter)
    last_unused: list = field(default_factory=list)

    def record(self, reason: str | None, offer, now: float) -> None:
        self.processed += 1
        if reason is None:
            self.last_used_at = now
            return
        self.unused += 1
        self.last_unused_at = now
        self.rejects[reason] += 1
        self.last_unused.append({"offer": {"id": offer.id.value, "agentId": offer.slave_id.value,
                                           "hostname": offer.hostname},
                                 "timestamp": ids.timestamp(now), "reason": [reason]})
        del self.last_unused[:-10]

    def to_json(self, app_json: dict, now: float, embed_offers: bool = False, role: str = "*") -> dict:
        left = self.backoff.time_left(now)
        summary = [{"reason": r, "declined": self.rejects.get(r, 0), "processed": self.processed}
                   for r in REASONS]
        out = {
            "app": app_json, "count": self.count, "role": role,
            "delay": {"timeLeftSeconds": int(round(left)), "overdue": left <= 0},
            "since": ids.timestamp(self.since),
            "processedOffersSummary": {
                "processedOffersCount": self.processed, "unusedOffersCount": self.unused,
                "lastUnusedOfferAt": ids.timestamp(self.last_unused_at) if self.last_unused_at else None,
                "lastUsedOfferAt": ids.timestamp(self.last_used_at) if self.last_used_at else None,
                "rejectSummaryLastOffers": summary, "rejectSummaryLaunchAttempt": summary,
            },
        }
        if embed_offers:
            out["lastUnusedOffers"] = list(self.last_unused)
        return out
