#!/usr/bin/env python3
"""Mesos' own allocator benchmarks, same shapes, on offerd's hierarchical allocator.

The cases follow the BENCHMARK tests of Mesos' src/tests/hierarchical_allocator_tests.cpp
and src/tests/hierarchical_allocator_benchmarks.cpp (agent and framework counts,
agent resources, what is already in use, how offers are answered, what is timed):

* DeclineOffers: agents ``cpus:24;mem:4096;disk:4096;ports:[31000-32000]``, each with
  ``cpus:16;mem:2014;disk:1024`` and 16 port fragments in use by one framework
  (round-robin), every framework in role ``*``; every offer is declined with a filter
  that never expires (refuse_seconds=INT_MAX); frameworks x 2 rounds, each round's
  ``allocate()`` timed (the declines before it are not).
* ResourceLabels: the same in role ``role1`` with 16 cpus of each agent reserved for
  ``role1`` and in use. offerd's reservations carry no labels, so what Mesos
  stresses (comparing 12-label reservations) does not exist here; the case measures
  DeclineOffers over agents with reservations (the allocator's per-role path).
* SuppressOffers: as DeclineOffers but ``cpus:16;mem:1024;disk:1024`` in use; offers
  are recovered without a filter; before each of 5 timed runs another fifth of the
  frameworks suppresses. ExtremeSuppressOffers: 99% suppressed, 5 timed runs.
* AddAndUpdateSlave: agents ``cpus:2;mem:1024;disk:4096;ports:[31000-32000]`` added
  with part in use; then every agent's total grows by ``cpus:10`` (Mesos: revocable
  cpus; offerd has no revocable resources, so plain ones). The master runs one
  allocation for all the slave events it received meanwhile (``request_allocation``),
  so each phase is timed as its events plus that one run over the slaves involved.
* AllocatorBacklog: Mesos enqueues one revive per framework and counts how few
  allocation runs its batching needs. offerd's allocator is called synchronously by
  the master; the equivalent is each event followed by the event-triggered run it
  asks for (add framework, add agent, revive), unbatched, i.e. the worst case.
* Metrics: quota ``cpus:1;mem:512;disk:256`` for each of `frameworks` roles, one
  framework per role, agents ``cpus:16;mem:2048;disk:1024``; after one allocation,
  time ``stats()`` (the allocator's part of /metrics/snapshot) and its JSON.
* MultiFrameworkAllocations: 80 agents ``cpus:64;mem:488000``; 4 Marathon-like, 500
  Jenkins-like and 50 Spark-like frameworks launching tasks from their offers until
  all are launched (30 s budget); every run timed.
* LargeAndSmallQuota: small-quota roles (``cpus:1;mem:1024;disk:1024``) and large ones
  (``cpus:4;mem:4096;disk:4096``), one framework each, agents ``cpus:2;mem:2048;disk:2048``
  (small/5 + large*5 of them); the first run (all quota served) and the second
  (nothing left) timed, with the drf and the random sorter.

Each case runs in a fresh forked child; after setup the collector gets the master's
settings (``offerd.master.allocation.tune_gc``). Times are wall time
(``perf_counter``) with process CPU time beside them; medians are reported. Prints
one JSON document on stdout; progress goes to stderr.
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

from offerd.allocator import create_allocator  # noqa: E402
from offerd.common.resources import Resources  # noqa: E402
from offerd.master.allocation import tune_gc  # noqa: E402

INT_MAX = 2**31 - 1
INTERVAL = 1.0  # Mesos' default --allocation_interval
AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"
SMALL_AGENT = "cpus:2;mem:1024;disk:4096;ports:[31000-32000]"

AGENTS = [1000, 5000, 10000, 20000, 30000, 50000]
FRAMEWORKS = [1, 50, 100, 200, 500, 1000, 3000, 6000]
QUOTA_PARAMS = [(25, 5), (250, 50), (2500, 500)]  # (small roles, large roles)

# The default run: representative sizes that finish in a few minutes.
DEFAULT = {
    "DeclineOffers": [(1000, 100), (5000, 500), (10000, 1000)],
    "ResourceLabels": [(1000, 100), (10000, 200)],
    "SuppressOffers": [(10000, 1000), (20000, 3000)],
    "ExtremeSuppressOffers": [(10000, 1000), (20000, 3000)],
    "AddAndUpdateSlave": [(10000, 1000), (20000, 2000)],
    "AllocatorBacklog": [(10000, 1000), (20000, 3000)],
    "Metrics": [(10000, 1000), (20000, 3000)],
    "MultiFrameworkAllocations": [None],
    "LargeAndSmallQuota": [(s, lg, sorter) for s, lg in QUOTA_PARAMS for sorter in ("drf", "random")],
}


def _ports_fragments(begin: int, end: int, count: int) -> str:
    """Mesos' test helper `fragment`: `count` ranges from the front, single ports two
    apart, the last one running to the end."""
    ranges = [(begin + 2 * i, begin + 2 * i) for i in range(count)]
    ranges[-1] = (ranges[-1][0], end)
    return "ports:[" + ",".join(f"{b}-{e}" for b, e in ranges) + "]"


class Clock:
    def __init__(self):
        self.now = 0.0

    def advance(self) -> float:
        self.now += INTERVAL
        return self.now


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _ms(values: list[float]) -> dict:
    if not values:
        return {"runs": 0}
    ordered = sorted(values)
    out = {"median": round(statistics.median(values), 3), "min": round(ordered[0], 3),
           "max": round(ordered[-1], 3), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
           "mean": round(statistics.fmean(values), 3), "runs": len(values)}
    if len(values) <= 20:
        out["each"] = [round(v, 3) for v in values]
    return out


def _offers(result) -> list[tuple[str, str, object]]:
    return [(fid, sid, alloc) for fid, per_slave in result.items() for sid, alloc in per_slave.items()]


def _new(sorter: str = "drf"):
    return create_allocator("hierarchical", rng=random.Random(1), role_sorter=sorter, framework_sorter=sorter,
                            allocation_interval=INTERVAL)


def _setup_used(alloc, agents: int, frameworks: int, role: str, total: Resources, used: Resources,
                clock: Clock) -> dict:
    """Frameworks, then agents with `used` held by one framework each (round-robin),
    then the allocation the master runs for the new agents; returns setup times."""
    ids = [f"f{i}" for i in range(frameworks)]
    _, add_fw, _ = _timed(lambda: [alloc.add_framework(fid, [role]) for fid in ids])
    _, add_ag, _ = _timed(lambda: [alloc.add_slave(f"a{i}", total, used={ids[i % frameworks]: used})
                                   for i in range(agents)])
    return {"add_frameworks_ms": round(add_fw, 1), "add_agents_ms": round(add_ag, 1)}


def _rounds(alloc, clock: Clock, rounds: int, refuse: float | None, before_round=None) -> dict:
    """`rounds` times: answer the last run's offers (declined with `refuse`), then
    time one batch run."""
    offers = _offers(alloc.allocate(clock.now))  # the run after setup (Mesos: event-triggered)
    walls, cpus, made = [], [], []
    for i in range(rounds):
        now = clock.now
        for fid, sid, allocation in offers:
            alloc.recover_resources(fid, sid, allocation.resources, refuse, now, allocation.role)
        if before_round is not None:
            before_round(i)
        result, wall, cpu = _timed(alloc.allocate, clock.advance())
        offers = _offers(result)
        walls.append(wall)
        cpus.append(cpu)
        made.append(len(offers))
    offering = [w for w, n in zip(walls, made) if n]
    # Mesos' published DeclineOffers figures are its log lines of rounds 0-2.
    return {"first_rounds_ms": [round(w, 3) for w in walls[:3]], "first_rounds_offers": made[:3],
            "round_ms": _ms(walls), "round_cpu_ms": _ms(cpus),
            "offering_round_ms": _ms(offering),
            "zero_offer_round_ms": _ms([w for w, n in zip(walls, made) if not n]),
            "offers_first_round": made[0] if made else 0, "offers_total": sum(made),
            "rounds_with_offers": len(offering)}


# -- the cases (each runs in its own child) ------------------------------------


def decline_offers(agents: int, frameworks: int, max_rounds: int | None) -> dict:
    clock, alloc = Clock(), _new()
    used = Resources.parse("cpus:16;mem:2014;disk:1024;" + _ports_fragments(31000, 32000, 16))
    out = _setup_used(alloc, agents, frameworks, "*", Resources.parse(AGENT), used, clock)
    tune_gc()
    rounds = frameworks * 2 if max_rounds is None else min(frameworks * 2, max_rounds)
    out.update(_rounds(alloc, clock, rounds, float(INT_MAX)))
    out["rounds"] = rounds
    return out


def resource_labels(agents: int, frameworks: int, max_rounds: int | None) -> dict:
    clock, alloc = Clock(), _new()
    total = Resources.parse("cpus:8;cpus(role1):16;mem:4096;disk:4096;ports:[31000-32000]")
    used = Resources.parse("cpus(role1):16;mem:2014;disk:1024;" + _ports_fragments(31000, 32000, 16))
    out = _setup_used(alloc, agents, frameworks, "role1", total, used, clock)
    tune_gc()
    rounds = frameworks * 2 if max_rounds is None else min(frameworks * 2, max_rounds)
    out.update(_rounds(alloc, clock, rounds, float(INT_MAX)))
    out["rounds"] = rounds
    return out


def suppress_offers(agents: int, frameworks: int, extreme: bool) -> dict:
    clock, alloc = Clock(), _new()
    used = Resources.parse("cpus:16;mem:1024;disk:1024;" + _ports_fragments(31000, 32000, 16))
    out = _setup_used(alloc, agents, frameworks, "*", Resources.parse(AGENT), used, clock)
    suppressed = [0]
    if extreme:
        count = int(frameworks * 0.99)
        for i in range(count):
            alloc.suppress(f"f{i}")
        suppressed[0] = count
        step = None
    else:
        def step(_):
            for _ in range(frameworks // 5):
                alloc.suppress(f"f{suppressed[0]}")
                suppressed[0] += 1
    tune_gc()
    out.update(_rounds(alloc, clock, 5, None, step))
    out["suppressed"] = suppressed[0]
    return out


def add_and_update_slave(agents: int, frameworks: int) -> dict:
    clock, alloc = Clock(), _new()
    ids = [f"f{i}" for i in range(frameworks)]
    tune_gc()
    _, add_fw, _ = _timed(lambda: [alloc.add_framework(fid, ["*"]) for fid in ids])
    total = Resources.parse(SMALL_AGENT)
    used = Resources.parse("cpus:1;mem:128;disk:1024;ports:[31126-31510,31512-31623,31810-31852,31854-31964]")
    agent_ids = [f"a{i}" for i in range(agents)]

    def add():
        for i, aid in enumerate(agent_ids):
            alloc.add_slave(aid, total, used={ids[i % frameworks]: used})
        return alloc.allocate(clock.advance(), agent_ids)

    added, add_ms, add_cpu = _timed(add)
    grown = total + Resources.parse("cpus:10")

    def update():
        for aid in agent_ids:
            alloc.update_slave(aid, grown)
        return alloc.allocate(clock.advance(), agent_ids)

    updated, update_ms, update_cpu = _timed(update)
    return {"add_frameworks_ms": round(add_fw, 2), "add_agents_ms": round(add_ms, 1),
            "add_agents_cpu_ms": round(add_cpu, 1), "add_agents_offers": len(_offers(added)),
            "update_agents_ms": round(update_ms, 1), "update_agents_cpu_ms": round(update_cpu, 1),
            "update_agents_offers": len(_offers(updated))}


def allocator_backlog(agents: int, frameworks: int) -> dict:
    clock, alloc = Clock(), _new()
    ids = [f"f{i}" for i in range(frameworks)]
    total = Resources.parse(AGENT)
    tune_gc()

    def phase(events, event):
        runs = alloc.stats()["allocation_runs"]
        offers = 0
        for x in events:
            event(x)
            offers += len(_offers(alloc.allocate(clock.now)))
        return alloc.stats()["allocation_runs"] - runs, offers

    out = {}
    for name, events, event in (
            ("add_frameworks", ids, lambda fid: alloc.add_framework(fid, ["*"])),
            ("add_agents", [f"a{i}" for i in range(agents)], lambda aid: alloc.add_slave(aid, total)),
            ("revives", ids, lambda fid: alloc.revive(fid))):
        (runs, offers), wall, cpu = _timed(phase, events, event)
        out[name] = {"ms": round(wall, 1), "cpu_ms": round(cpu, 1), "allocation_runs": runs, "offers": offers,
                     "per_event_us": round(wall * 1000 / max(1, len(events)), 2)}
    return out


def metrics(agents: int, frameworks: int) -> dict:
    clock, alloc = Clock(), _new()
    quota = Resources.parse("cpus:1;mem:512;disk:256")
    _, quota_ms, _ = _timed(lambda: [alloc.update_quota(str(i), quota, quota) for i in range(frameworks)])
    _, fw_ms, _ = _timed(lambda: [alloc.add_framework(f"f{i}", [str(i)]) for i in range(frameworks)])
    total = Resources.parse("cpus:16;mem:2048;disk:1024")
    _, ag_ms, _ = _timed(lambda: [alloc.add_slave(f"a{i}", total) for i in range(agents)])
    result, run_ms, _ = _timed(alloc.allocate, clock.advance())
    tune_gc()
    walls, cpus, size = [], [], 0
    for _ in range(5):
        snapshot, wall, cpu = _timed(lambda: json.dumps(alloc.stats()))
        walls.append(wall)
        cpus.append(cpu)
        size = len(snapshot)
    return {"set_quota_ms": round(quota_ms, 1), "add_frameworks_ms": round(fw_ms, 1),
            "add_agents_ms": round(ag_ms, 1), "allocation_ms": round(run_ms, 1),
            "allocation_offers": len(_offers(result)), "metrics_ms": _ms(walls), "metrics_cpu_ms": _ms(cpus),
            "metrics_json_bytes": size}


def multi_framework_allocations() -> dict:
    clock, alloc = Clock(), _new()
    # name, role, instances, max tasks per instance, task resources, max tasks per offer
    profiles = [(f"Marathon-{i + 1}", f"roleA-{i + 1}", 1, 4000, "cpus:0.07;mem:400", 100) for i in range(4)]
    profiles.append(("Jenkins", "roleB", 500, 5, "cpus:0.1;mem:4000", 1))
    profiles += [(f"SparkDispatcher-{i + 1}", f"roleC-{i + 1}", 1, 20, "cpus:1;mem:1000", 5) for i in range(50)]
    agent = Resources.parse("cpus:64;mem:488000")
    for i in range(80):
        alloc.add_slave(f"agent-{i}", agent)
    spec, target = {}, 0
    for name, role, instances, max_tasks, task, per_offer in profiles:
        for i in range(instances):
            spec[f"{name}-{i}"] = (Resources.parse(task), max_tasks, per_offer)
            alloc.add_framework(f"{name}-{i}", [role])
            target += max_tasks
    tune_gc()
    launched: dict[str, int] = {fid: 0 for fid in spec}
    total_launched, walls, cpus, offers_made = 0, [], [], 0
    started = time.perf_counter()
    while total_launched < target and time.perf_counter() - started < 30.0:
        result, wall, cpu = _timed(alloc.allocate, clock.advance())
        walls.append(wall)
        cpus.append(cpu)
        now = clock.now
        for fid, sid, allocation in _offers(result):
            offers_made += 1
            task, max_tasks, per_offer = spec[fid]
            rest, here = allocation.resources, 0
            while rest.contains(task) and launched[fid] < max_tasks and here < per_offer:
                rest = rest - task
                launched[fid] += 1
                here += 1
            total_launched += here
            alloc.recover_resources(fid, sid, rest, None, now, allocation.role)
    return {"tasks_target": target, "tasks_launched": total_launched, "rounds": len(walls), "offers": offers_made,
            "round_ms": _ms(walls), "round_cpu_ms": _ms(cpus),
            "total_allocate_ms": round(sum(walls), 1), "timed_out": total_launched < target}


def large_and_small_quota(small: int, large: int, sorter: str) -> dict:
    clock, alloc = Clock(), _new(sorter)
    agent = Resources.parse("cpus:2;mem:2048;disk:2048")
    agents = small // 5 + large * 5
    for i in range(agents):
        alloc.add_slave(f"agent-{i}", agent)
    roles = [f"smallQuotaRole{i}" for i in range(small)] + [f"largeQuotaRole{i}" for i in range(large)]
    for i, role in enumerate(roles):
        alloc.add_framework(f"framework-{i}", [role])
    small_q, large_q = Resources.parse("cpus:1;mem:1024;disk:1024"), Resources.parse("cpus:4;mem:4096;disk:4096")
    for role in roles:
        # Mesos 1.8's quota is both the guarantee and the limit.
        q = small_q if role.startswith("small") else large_q
        alloc.update_quota(role, q, q)
    tune_gc()
    first, first_ms, first_cpu = _timed(alloc.allocate, clock.advance())
    second, second_ms, second_cpu = _timed(alloc.allocate, clock.advance())
    return {"agents": agents, "roles": len(roles), "first_run_ms": round(first_ms, 2),
            "first_run_cpu_ms": round(first_cpu, 2), "first_run_offers": len(_offers(first)),
            "second_run_ms": round(second_ms, 2), "second_run_offers": len(_offers(second))}


CASES = {
    "DeclineOffers": lambda p, a: decline_offers(*p, a.max_rounds),
    "ResourceLabels": lambda p, a: resource_labels(*p, a.max_rounds),
    "SuppressOffers": lambda p, a: suppress_offers(*p, False),
    "ExtremeSuppressOffers": lambda p, a: suppress_offers(*p, True),
    "AddAndUpdateSlave": lambda p, a: add_and_update_slave(*p),
    "AllocatorBacklog": lambda p, a: allocator_backlog(*p),
    "Metrics": lambda p, a: metrics(*p),
    "MultiFrameworkAllocations": lambda p, a: multi_framework_allocations(),
    "LargeAndSmallQuota": lambda p, a: large_and_small_quota(*p),
}


def _child(case: str, params, args) -> dict:
    started = time.perf_counter()
    out = CASES[case](params, args)
    out["case_s"] = round(time.perf_counter() - started, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _in_child(case: str, params, args) -> dict:
    """One case in a fresh forked process: its own heap, frozen once, as a master's."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(_child(case, params, args)))
    child.start()
    result = queue.get()
    child.join()
    return result


def _plan(args) -> list[tuple[str, object]]:
    chosen = args.cases.split(",") if args.cases else list(CASES)
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    sizes = None
    if args.sizes:
        sizes = [tuple(int(x) for x in s.lower().split("x")) for s in args.sizes.split(",")]
    plan = []
    for case in chosen:
        if case == "MultiFrameworkAllocations":
            plan.append((case, None))
        elif case == "LargeAndSmallQuota":
            params = ([(s, lg, so) for s, lg in QUOTA_PARAMS for so in ("drf", "random")] if args.full
                      else DEFAULT[case])
            plan += [(case, p) for p in params]
        else:
            params = sizes or ([(a, f) for a in AGENTS for f in FRAMEWORKS] if args.full else DEFAULT[case])
            plan += [(case, p) for p in params]
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="Mesos' whole matrix: agents 1k,5k,10k,20k,30k,50k x frameworks 1..6k for every "
                        "parameterised case (many hours: DeclineOffers runs frameworks x 2 rounds)")
    parser.add_argument("--cases", default="", help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--sizes", default="", help="comma-separated AGENTSxFRAMEWORKS for the chosen cases "
                        "(instead of the default or --full sizes)")
    parser.add_argument("--max_rounds", type=int, default=None,
                        help="cap on DeclineOffers/ResourceLabels rounds (default: frameworks x 2, as Mesos)")
    args = parser.parse_args()
    plan = _plan(args)
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for case, params in plan:
        label = case if params is None else f"{case} {params}"
        print(f"mesos_allocator_bench: {label} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()
        out = _in_child(case, params, args)
        entry = {"case": case}
        if params is not None and case != "LargeAndSmallQuota":
            entry["agents"], entry["frameworks"] = params
        elif params is not None:
            entry["small_quota_roles"], entry["large_quota_roles"], entry["sorter"] = params
        entry["load_average_before"] = [round(x, 2) for x in load]
        entry.update(out)
        results.append(entry)
        headline = out.get("round_ms", {}).get("median", out.get("first_run_ms", out.get("metrics_ms", {})))
        print(f"  {out['case_s']} s; headline {headline}", file=sys.stderr, flush=True)
    doc = {
        "benchmark": "mesos_allocator",
        "shapes": "Mesos src/tests/hierarchical_allocator_tests.cpp and hierarchical_allocator_benchmarks.cpp",
        "gc": "master settings (offerd.master.allocation.tune_gc) after setup",
        "times": "milliseconds; wall (perf_counter) unless named cpu (process_time)",
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "total_s": round(time.perf_counter() - started, 1),
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
