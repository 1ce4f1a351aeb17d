"""The master's accounting invariant, checked on demand.

For every slave, with the one resource algebra (`Resources`):

    allocated (its tasks not yet recovered + its executors)
  + offered   (outstanding offers on it)
  + idle      (what the allocator holds as available there)
  = total

and the master's records and the allocator's agree: the same slaves with the
same totals, the same frameworks, the same resources per framework per slave
(the allocator does not tell an offer from a running task: both are
"allocated" to the framework until given back). The records are also
consistent among themselves: every offer is indexed by its framework and its
slave and both are live; every task of a framework sits on a live slave that
indexes the very same record, and the reverse; per-state task gauges match the
tasks held.

`violations(master)` reads the actor's state and must run on the actor thread;
`check(master)` runs it there and waits; `repair(master)` restores the
invariant after a handler failed half-way (the dispatcher calls it). With ``--check_invariants`` the master
runs it after every turn that changed something and logs what it finds (the
test suite turns it on for every cluster it starts).

The allocator's side is read from the two built-in allocators' records (there
is no public "dump your books" call in the allocator contract); for a
third-party allocator only the framework totals of `Allocator.allocated` are
compared, on scalars (ranges of different slaves cannot be summed).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Iterable

from offerd.allocator.drf import DRFAllocator
from offerd.allocator.hierarchical import HierarchicalAllocator
from offerd.common.resources import ResourceError, Resources
from offerd.common.task_states import TERMINAL_STATES
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

EMPTY = Resources.EMPTY


class _Books:
    """One side's view: slave id -> (total, idle or None, framework id -> allocated)."""

    def __init__(self) -> None:
        self.totals: dict[str, Resources] = {}
        self.idle: dict[str, Resources | None] = {}
        self.held: dict[str, dict[str, Resources]] = {}
        self.frameworks: set[str] = set()


def _add(problems: list[str], where: str, a: Resources, b: Resources) -> Resources:
    try:
        return a + b
    except ResourceError as exc:
        problems.append(f"{where}: resources do not add up ({exc})")
        return a


def _master_books(master: Master, problems: list[str]) -> _Books:
    books = _Books()
    state = master.state
    books.frameworks = set(state.frameworks)
    for slave_id, slave in state.slaves.items():
        books.totals[slave_id] = slave.total
        held: dict[str, Resources] = collections.defaultdict(lambda: EMPTY)
        for (framework_id, task_id), task in slave.tasks.items():
            if not task.recovered:
                held[framework_id] = _add(problems, f"slave {slave_id} task {task_id}",
                                          held[framework_id], task.resources)
        for framework_id, executors in slave.executors.items():
            for executor_id, executor in executors.items():
                held[framework_id] = _add(problems, f"slave {slave_id} executor {executor_id}",
                                          held[framework_id], executor.resources)
        for offer in slave.offers.values():
            held[offer.framework_id] = _add(problems, f"slave {slave_id} offer {offer.offer_id}",
                                            held[offer.framework_id], offer.resources)
        books.held[slave_id] = {fid: r for fid, r in held.items() if not r.is_empty()}
    return books


def _allocator_books(allocator, problems: list[str]) -> _Books | None:
    books = _Books()
    if isinstance(allocator, HierarchicalAllocator):
        books.frameworks = set(allocator._frameworks)
        for slave_id, slave in allocator._slaves.items():
            books.totals[slave_id] = slave.total
            books.idle[slave_id] = slave.available
            held: dict[str, Resources] = collections.defaultdict(lambda: EMPTY)
            for (framework_id, _role), resources in slave.allocations.items():
                held[framework_id] = _add(problems, f"allocator slave {slave_id}", held[framework_id], resources)
            books.held[slave_id] = {fid: r for fid, r in held.items() if not r.is_empty()}
        return books
    if isinstance(allocator, DRFAllocator):
        books.frameworks = set(allocator._frameworks)
        for slave_id, slave in allocator._slaves.items():
            books.totals[slave_id] = slave.total
            held = {fid: r for fid, r in slave.by_framework.items() if not r.is_empty()}
            books.held[slave_id] = held
            summed = EMPTY
            for resources in held.values():
                summed = _add(problems, f"allocator slave {slave_id}", summed, resources)
            if summed != slave.allocated:
                problems.append(f"allocator slave {slave_id}: allocated {slave.allocated} is not the sum of "
                                f"its frameworks' {summed}")
            # This allocator keeps no idle amount: it is total - allocated when it allocates.
            books.idle[slave_id] = slave.total.subtract_saturating(slave.allocated) \
                if slave.total.contains(slave.allocated) else None
            if books.idle[slave_id] is None:
                problems.append(f"allocator slave {slave_id}: allocated {slave.allocated} exceeds total {slave.total}")
        return books
    return None


def _names(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids))


def _compare(master_books: _Books, alloc: _Books, problems: list[str]) -> None:
    only_master = set(master_books.totals) - set(alloc.totals)
    only_alloc = set(alloc.totals) - set(master_books.totals)
    if only_master:
        problems.append(f"slaves known to the master but not the allocator: {_names(only_master)}")
    if only_alloc:
        problems.append(f"slaves known to the allocator but not the master: {_names(only_alloc)}")
    only_master = master_books.frameworks - alloc.frameworks
    only_alloc = alloc.frameworks - master_books.frameworks
    if only_master:
        problems.append(f"frameworks known to the master but not the allocator: {_names(only_master)}")
    if only_alloc:
        problems.append(f"frameworks known to the allocator but not the master: {_names(only_alloc)}")
    for slave_id in sorted(set(master_books.totals) & set(alloc.totals)):
        total = master_books.totals[slave_id]
        if alloc.totals[slave_id] != total:
            problems.append(f"slave {slave_id}: total is {total} for the master, {alloc.totals[slave_id]} for "
                            "the allocator")
        ours, theirs = master_books.held[slave_id], alloc.held[slave_id]
        for framework_id in sorted(set(ours) | set(theirs)):
            mine, its = ours.get(framework_id, EMPTY), theirs.get(framework_id, EMPTY)
            if mine != its:
                problems.append(f"slave {slave_id} framework {framework_id}: master holds {mine or 'nothing'} "
                                f"(tasks + executors + offers), allocator {its or 'nothing'}")
        idle = alloc.idle.get(slave_id)
        if idle is None:
            continue
        summed = idle
        for resources in ours.values():
            summed = _add(problems, f"slave {slave_id}", summed, resources)
        if summed != total:
            problems.append(f"slave {slave_id}: allocated + offered + idle = {summed}, total is {total}")


def _compare_totals(master: Master, books: _Books, problems: list[str]) -> None:
    """For an allocator we cannot read: framework totals, scalars only."""
    per_framework: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for held in books.held.values():
        for framework_id, resources in held.items():
            per_framework[framework_id].update(resources.scalars())
    for framework_id in books.frameworks:
        ours = {k: round(v, 3) for k, v in per_framework[framework_id].items() if round(v, 3)}
        theirs = {k: round(v, 3) for k, v in master.allocator.allocated(framework_id).scalars().items()
                  if round(v, 3)}
        if ours != theirs:
            problems.append(f"framework {framework_id}: master holds {ours}, allocator {theirs}")


def _records(master: Master, problems: list[str]) -> None:
    state = master.state
    for offer_id, offer in state.offers.items():
        framework = state.frameworks.get(offer.framework_id)
        slave = state.slaves.get(offer.slave_id)
        if framework is None or framework.offers.get(offer_id) is not offer:
            problems.append(f"offer {offer_id}: framework {offer.framework_id} is gone or does not hold it")
        if slave is None or slave.offers.get(offer_id) is not offer:
            problems.append(f"offer {offer_id}: slave {offer.slave_id} is gone or does not hold it")
    for framework_id, framework in state.frameworks.items():
        for offer_id in framework.offers:
            if offer_id not in state.offers:
                problems.append(f"framework {framework_id} holds offer {offer_id} the master does not")
        for task_id, task in framework.tasks.items():
            slave = state.slaves.get(task.slave_id)
            if task.framework_id != framework_id or task.task_id != task_id:
                problems.append(f"framework {framework_id} holds task {task_id} under a wrong key")
            if slave is None:
                problems.append(f"task {task_id} of framework {framework_id}: slave {task.slave_id} is gone "
                                "but the task is neither unreachable nor completed")
            elif slave.tasks.get((framework_id, task_id)) is not task:
                problems.append(f"task {task_id} of framework {framework_id}: slave {task.slave_id} does not "
                                "hold it")
    for slave_id, slave in state.slaves.items():
        for offer_id in slave.offers:
            if offer_id not in state.offers:
                problems.append(f"slave {slave_id} holds offer {offer_id} the master does not")
        for (framework_id, task_id), task in slave.tasks.items():
            framework = state.frameworks.get(framework_id)
            if task.slave_id != slave_id:
                problems.append(f"slave {slave_id} holds task {task_id} recorded on slave {task.slave_id}")
            if framework is None or framework.tasks.get(task_id) is not task:
                problems.append(f"task {task_id} on slave {slave_id}: framework {framework_id} is gone or does "
                                "not hold it")
            if task.state in TERMINAL_STATES and not task.recovered:
                problems.append(f"task {task_id} on slave {slave_id} is {pb.TaskState.Name(task.state)} but its "
                                "resources were not given back")
        for framework_id in slave.executors:
            if framework_id not in state.frameworks:
                problems.append(f"slave {slave_id} runs executors of unknown framework {framework_id}")
    counted: collections.Counter = collections.Counter(
        task.state for task in state.all_tasks() if task.state not in TERMINAL_STATES)
    gauges = {s: n for s, n in state.active_task_counts.items() if n}
    if dict(counted) != gauges:
        problems.append("task gauges " + _states(gauges) + " do not match the tasks held " + _states(counted))


def _states(counts) -> str:
    return "{" + ", ".join(f"{pb.TaskState.Name(s)}: {n}" for s, n in sorted(counts.items())) + "}"


def violations(master: Master) -> list[str]:
    """What is wrong with the master's books (empty: nothing). Actor thread only."""
    problems: list[str] = []
    _records(master, problems)
    ours = _master_books(master, problems)
    theirs = _allocator_books(master.allocator, problems)
    if theirs is not None:
        _compare(ours, theirs, problems)
    else:
        ours.frameworks = set(master.state.frameworks)
        _compare_totals(master, ours, problems)
    return problems


def check(master: Master, timeout: float = 5.0) -> list[str]:
    """`violations`, run on the master's actor thread; from any thread."""
    return master.actor.call(violations, master, timeout=timeout)


def repair(master: Master) -> list[str]:
    """Make the books consistent again after a handler failed half-way (a bug):
    returns the violations found before repairing (empty: nothing to do).

    The master's records are the truth; they are first made consistent among
    themselves (an offer or task indexed on one side only is put on both or
    dropped, task gauges recounted), then the allocator's view of every slave
    that disagrees is re-derived from them: that slave's offers are rescinded
    and it is removed from and added again to the allocator with what its tasks
    and executors use. Rebuilding beats an undo log here: it also repairs what
    an earlier, unnoticed bug left behind. Actor thread only.
    """
    problems = violations(master)
    if not problems:
        return []
    state = master.state
    _repair_offers(master)
    _repair_tasks(master)
    counts: collections.Counter = collections.Counter(
        task.state for task in state.all_tasks() if task.state not in TERMINAL_STATES)
    state.active_task_counts.clear()
    state.active_task_counts.update(counts)
    _repair_allocator(master)
    master.touch()
    master.request_allocation()
    return problems


def _repair_offers(master: Master) -> None:
    state = master.state
    for offer_id, offer in list(state.offers.items()):
        framework = state.frameworks.get(offer.framework_id)
        slave = state.slaves.get(offer.slave_id)
        if framework is None or slave is None or framework.offers.get(offer_id) is not offer \
                or slave.offers.get(offer_id) is not offer:
            master.offers.rescind(offer, recover=False)
    for holder in [*state.frameworks.values(), *state.slaves.values()]:
        for offer_id in [o for o in holder.offers if o not in state.offers]:
            offer = holder.offers.pop(offer_id)
            if offer.timer is not None:
                offer.timer.cancel()


def _repair_tasks(master: Master) -> None:
    state = master.state
    for framework_id, framework in state.frameworks.items():
        for task_id, task in list(framework.tasks.items()):
            slave = state.slaves.get(task.slave_id)
            if slave is None:
                # Its slave is gone: the task cannot run anywhere the master knows.
                del framework.tasks[task_id]
                framework.add_completed(task)
            else:
                slave.tasks.setdefault((framework_id, task_id), task)
    for slave in state.slaves.values():
        for key, task in list(slave.tasks.items()):
            framework = state.frameworks.get(key[0])
            if framework is None or framework.tasks.setdefault(key[1], task) is not task:
                del slave.tasks[key]
            elif task.state in TERMINAL_STATES and not task.recovered:
                task.recovered = True  # the allocator is rebuilt from the tasks below
        for framework_id in [f for f in slave.executors if f not in state.frameworks]:
            del slave.executors[framework_id]


def _repair_allocator(master: Master) -> None:
    state = master.state
    allocator = master.allocator
    problems: list[str] = []
    ours = _master_books(master, problems)
    theirs = _allocator_books(allocator, problems)
    if theirs is not None:
        for framework_id in theirs.frameworks - set(state.frameworks):
            allocator.remove_framework(framework_id)
        missing = set(state.frameworks) - theirs.frameworks
    else:
        missing = set()
    for framework_id in missing:
        framework = state.frameworks[framework_id]
        allocator.add_framework(framework_id, framework.roles, active=framework.active,
                                suppressed_roles=framework.suppressed_roles & set(framework.roles))
    for slave_id, slave in state.slaves.items():
        if theirs is not None and _slave_agrees(slave_id, ours, theirs):
            continue
        master.offers.rescind_slave_offers(slave, recover=False)
        allocator.remove_slave(slave_id)
        allocator.add_slave(slave_id, slave.total, used=master.slaves.used(slave), hostname=slave.hostname,
                            attributes=slave.info.attributes)
        if not slave.active:
            allocator.deactivate_slave(slave_id)
    if theirs is not None:
        for slave_id in set(theirs.totals) - set(state.slaves):
            allocator.remove_slave(slave_id)


def _slave_agrees(slave_id: str, ours: _Books, theirs: _Books) -> bool:
    if slave_id not in theirs.totals or theirs.totals[slave_id] != ours.totals[slave_id]:
        return False
    if ours.held[slave_id] != theirs.held[slave_id]:
        return False
    idle = theirs.idle.get(slave_id)
    if idle is None:
        return True
    summed = idle
    try:
        for resources in ours.held[slave_id].values():
            summed = summed + resources
    except ResourceError:
        return False
    return summed == ours.totals[slave_id]
