#!/usr/bin/env python3
"""Allocator cycle time at thousands of slaves and frameworks, as Mesos measures it.

Shaped like Mesos' HierarchicalAllocator_BENCHMARK_Test.DeclineOffers: every
slave has ``cpus:2;mem:1024;disk:4096;ports:[31000-32000]``, every framework is
in one role and declines everything it is offered (refuse_seconds=5, the clock
moving one allocation interval per cycle, so filters pile up and expire as in
a live master). For each (slaves x frameworks) size, in a fresh child process:

* ``decline_cycle_ms``: one full allocation cycle over all slaves;
* ``half_suppressed_cycle_ms``: the same with half of the frameworks suppressed;
* ``event_cycle_ms``: an event-triggered run for one slave (one slave's
  resources recovered, then ``allocate(now, [slave])``);
* ``peak_rss_mb``: the child's peak resident memory (setup included);
* ``reference``: a textbook DRF (progressive filling that re-sorts every
  framework for every slave) on the same inputs, and the speed-up ratio.

Each cycle is timed in wall time and in process CPU time. The garbage
collector runs with the master's settings (``offerd.master.allocation.tune_gc``:
after setup, the analogue of the master's startup and recovery, a collection,
``gc.freeze()`` and a gen-0 threshold of 50,000); ``--gc default`` measures
with CPython's defaults instead. The settings used are in the output (``gc``).
The three setups of a size (all declining, half suppressed, reference) each run
in their own forked child, so each is frozen once, as a master is.

Prints one JSON document; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from offerd.allocator import create_allocator, dominant_share  # noqa: E402
from offerd.common.resources import Resources  # noqa: E402
from offerd.master.allocation import gc_settings, tune_gc  # noqa: E402

SLAVE = "cpus:2;mem:1024;disk:4096;ports:[31000-32000]"
SIZES = [(1000, 100), (5000, 500), (10000, 1000), (20000, 2000), (50000, 200)]
ROLE = "role1"
REFUSE = 5.0


class ReferenceDRF:
    """The textbook loop: for every slave, sort all frameworks by dominant share
    and give the slave to the first one that has not filtered it."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.slaves: dict[str, Resources] = {}
        self.free: dict[str, Resources] = {}
        self.total: dict[str, float] = {}
        self.frameworks: dict[str, dict[str, float]] = {}
        self.suppressed: set[str] = set()
        self.filters: dict[tuple[str, str], tuple[Resources, float]] = {}

    def add_slave(self, slave_id, total):
        self.slaves[slave_id] = self.free[slave_id] = total
        for name, amount in total.scalars().items():
            self.total[name] = self.total.get(name, 0.0) + amount

    def add_framework(self, framework_id):
        self.frameworks[framework_id] = {}

    def suppress(self, framework_id):
        self.suppressed.add(framework_id)

    def allocate(self, now):
        result = {}
        ids = [s for s, free in self.free.items() if free]
        self.rng.shuffle(ids)
        for slave_id in ids:
            free = self.free[slave_id]
            order = sorted((f for f in self.frameworks if f not in self.suppressed),
                           key=lambda f: (dominant_share(self.frameworks[f], self.total), f))
            for f in order:
                flt = self.filters.get((f, slave_id))
                if flt is not None and now < flt[1] and flt[0].contains(free):
                    continue
                result.setdefault(f, {})[slave_id] = free
                held = self.frameworks[f]
                for name, amount in free.scalars().items():
                    held[name] = held.get(name, 0.0) + amount
                self.free[slave_id] = Resources.EMPTY
                break
        return result

    def recover(self, framework_id, slave_id, resources, refuse, now):
        self.free[slave_id] = self.free[slave_id] + resources
        held = self.frameworks[framework_id]
        for name, amount in resources.scalars().items():
            held[name] = round(held[name] - amount, 3)
        if refuse:
            self.filters[(framework_id, slave_id)] = (resources, now + refuse)


def _setup(alloc, slaves: int, frameworks: int, suppress_half: bool, reference: bool):
    total = Resources.parse(SLAVE)
    for i in range(slaves):
        alloc.add_slave(f"s{i}", total)
    for i in range(frameworks):
        if reference:
            alloc.add_framework(f"f{i}")
        else:
            alloc.add_framework(f"f{i}", [ROLE])
        if suppress_half and i % 2:
            alloc.suppress(f"f{i}") if reference else alloc.suppress(f"f{i}", [ROLE])


def _decline_all(alloc, result, now, reference: bool) -> int:
    offers = 0
    for framework_id, per_slave in result.items():
        for slave_id, allocation in per_slave.items():
            offers += 1
            if reference:
                alloc.recover(framework_id, slave_id, allocation, REFUSE, now)
            else:
                alloc.recover_resources(framework_id, slave_id, allocation.resources, REFUSE, now, allocation.role)
    return offers


def _cycles(alloc, cycles: int, reference: bool) -> tuple[list[tuple[float, float]], list[int]]:
    """(wall ms, process CPU ms) per cycle; CPU time is what a busy shared
    machine disturbs least (the collector's work is in both)."""
    times, offers = [], []
    now = 0.0
    for _ in range(cycles):
        started, cpu = time.perf_counter(), time.process_time()
        result = alloc.allocate(now)
        times.append(((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000))
        offers.append(_decline_all(alloc, result, now, reference))
        now += 1.0  # one allocation interval
    return times, offers


def _summary(times: list[tuple[float, float]]) -> dict:
    wall = [w for w, _ in times]
    cpu = [c for _, c in times]
    return {"median": round(statistics.median(wall), 2), "min": round(min(wall), 2),
            "max": round(max(wall), 2), "cpu_median": round(statistics.median(cpu), 2),
            "cpu_min": round(min(cpu), 2), "runs": [round(t, 2) for t in wall],
            "cpu_runs": [round(t, 2) for t in cpu]}


def _tune(gc_mode: str) -> dict:
    return tune_gc() if gc_mode == "master" else gc_settings()


def _in_child(fn, *args):
    """fn(*args) in a fresh forked process (its own heap, frozen once)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(fn(*args)))
    child.start()
    result = queue.get()
    child.join()
    return result


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(slaves: int, frameworks: int, cycles: int, reference_cycles: int, sorter: str, gc_mode: str) -> dict:
    out = _in_child(_measure_declines, slaves, frameworks, cycles, sorter, gc_mode)
    out["half_suppressed_cycle_ms"] = _in_child(_measure_half_suppressed, slaves, frameworks, cycles, sorter, gc_mode)
    if reference_cycles:
        ref = _in_child(_measure_reference, slaves, frameworks, reference_cycles, gc_mode)
        out["reference"] = ref
        out["speedup"] = round(ref["decline_cycle_ms"]["median"] / out["decline_cycle_ms"]["median"], 1)
        out["speedup_cpu"] = round(ref["decline_cycle_ms"]["cpu_median"] / out["decline_cycle_ms"]["cpu_median"], 1)
    return out


def _measure_declines(slaves: int, frameworks: int, cycles: int, sorter: str, gc_mode: str) -> dict:
    out: dict = {"slaves": slaves, "frameworks": frameworks}
    rng = random.Random(1)

    started = time.perf_counter()
    alloc = create_allocator("hierarchical", rng=rng, role_sorter=sorter, framework_sorter=sorter)
    _setup(alloc, slaves, frameworks, False, False)
    out["setup_s"] = round(time.perf_counter() - started, 2)
    out["gc"] = _tune(gc_mode)
    times, offers = _cycles(alloc, cycles, False)
    out["decline_cycle_ms"] = _summary(times)
    out["offers_per_cycle"] = offers[-1]

    # Event-triggered: one slave's resources come back (a task ended), one run for it.
    event_times, event_offers = [], 0
    now = float(cycles)
    for i in range(200):
        result = alloc.allocate(now, [f"s{i}"])
        _decline_all(alloc, result, now, False)
        slave_id = f"s{i + 200}"
        held = alloc.allocate(now, [slave_id])  # take it, then give it back unfiltered
        for framework_id, per_slave in held.items():
            allocation = per_slave[slave_id]
            alloc.recover_resources(framework_id, slave_id, allocation.resources, None, now, allocation.role)
        started = time.perf_counter()
        result = alloc.allocate(now, [slave_id])
        event_times.append((time.perf_counter() - started) * 1000)
        event_offers += _decline_all(alloc, result, now, False)
    out["event_cycle_ms"] = {"median": round(statistics.median(event_times), 4),
                             "p99": round(sorted(event_times)[int(len(event_times) * 0.99) - 1], 4),
                             "runs": len(event_times), "offers": event_offers}
    out["peak_rss_mb"] = _rss_mb()
    return out


def _measure_half_suppressed(slaves: int, frameworks: int, cycles: int, sorter: str, gc_mode: str) -> dict:
    alloc = create_allocator("hierarchical", rng=random.Random(1), role_sorter=sorter, framework_sorter=sorter)
    _setup(alloc, slaves, frameworks, True, False)
    _tune(gc_mode)
    times, _ = _cycles(alloc, cycles, False)
    return _summary(times)


def _measure_reference(slaves: int, frameworks: int, cycles: int, gc_mode: str) -> dict:
    ref = ReferenceDRF(random.Random(1))
    _setup(ref, slaves, frameworks, False, True)
    _tune(gc_mode)
    times, offers = _cycles(ref, cycles, True)
    return {"decline_cycle_ms": _summary(times), "offers_per_cycle": offers[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(f"{s}x{f}" for s, f in SIZES),
                        help="comma-separated SLAVESxFRAMEWORKS (default: the five Mesos-like sizes)")
    parser.add_argument("--cycles", type=int, default=7, help="measured cycles per size (median reported)")
    parser.add_argument("--reference_cycles", type=int, default=2,
                        help="cycles of the textbook DRF per size (0 skips it; it is slow)")
    parser.add_argument("--reference_max_work", type=float, default=1.1e8,
                        help="skip the reference where slaves*frameworks*log2(frameworks) exceeds this "
                        "(default: all but 20,000 x 2,000, whose one textbook cycle takes minutes); "
                        "above 2.5e7 it runs a single cycle")
    parser.add_argument("--sorter", default="drf", choices=["drf", "random"])
    parser.add_argument("--gc", default="master", choices=["master", "default"],
                        help="collector settings: the master's (tune_gc, default) or CPython's defaults")
    args = parser.parse_args()
    results = []
    for size in args.sizes.split(","):
        slaves, frameworks = (int(x) for x in size.lower().split("x"))
        import math
        work = slaves * frameworks * max(1.0, math.log2(frameworks))
        ref = 0 if work > args.reference_max_work else args.reference_cycles if work <= 2.5e7 else 1
        ref = min(ref, args.reference_cycles)
        print(f"allocator_bench: {slaves} slaves x {frameworks} frameworks...", file=sys.stderr, flush=True)
        result = measure(slaves, frameworks, args.cycles, ref, args.sorter, args.gc)
        print(f"  decline cycle median {result['decline_cycle_ms']['median']} ms"
              f" (cpu {result['decline_cycle_ms']['cpu_median']} ms)"
              + (f", reference {result['reference']['decline_cycle_ms']['median']} ms"
                 f" (x{result['speedup']})" if "reference" in result else ""), file=sys.stderr, flush=True)
        results.append(result)
    doc = {
        "benchmark": "allocator",
        "case": "DeclineOffers (every framework declines everything, refuse_seconds=5, 1 s per cycle)",
        "slave_resources": SLAVE,
        "sorter": args.sorter,
        "gc": ("master settings (offerd.master.allocation.tune_gc): after setup gc.collect(), gc.freeze(), "
               "gc.set_threshold(50000, 20, 10)" if args.gc == "master" else "CPython defaults"),
        "cpu_time": "time.process_time() of the measuring process around allocate(now)",
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "targets_ms": {"10000x1000": 100, "20000x2000": 300, "event": 1},
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
