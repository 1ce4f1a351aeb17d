"""Small builders and a recording scheduler for tests that drive real clusters."""

from __future__ import annotations

import collections
import getpass
import threading
import time

from offerd.common.resources import Resources
from offerd.framework_sdk import MesosSchedulerDriver, Scheduler
from offerd.common.task_states import TERMINAL_STATES as TERMINAL
from offerd.proto import offerd_pb2 as pb



def framework_info(name="test-framework", partition_aware=False, failover_timeout=0.0, **fields):
    info = pb.FrameworkInfo(name=name, user=getpass.getuser(), failover_timeout=failover_timeout, **fields)
    if partition_aware:
        info.capabilities.add(type=pb.FrameworkInfo.Capability.PARTITION_AWARE)
    return info


def command_task(task_id: str, offer: pb.Offer, command: str, resources="cpus:0.1;mem:32",
                 grace_seconds: float | None = None) -> pb.TaskInfo:
    task = pb.TaskInfo(name=task_id)
    task.task_id.value = task_id
    task.slave_id.CopyFrom(offer.slave_id)
    task.command.value = command
    task.resources.extend(Resources.parse(resources).to_protos())
    if grace_seconds is not None:
        task.kill_policy.grace_period.nanoseconds = int(grace_seconds * 1e9)
    return task


class RecordingScheduler(Scheduler):
    """Launches queued commands on offers and records every callback.

    `submit(command)` queues a task; the next offer with room launches it.
    """

    def __init__(self, resources="cpus:0.1;mem:32", grace_seconds=None):
        self.per_task = Resources.parse(resources)
        self.resources = resources
        self.grace_seconds = grace_seconds
        self.pending: collections.deque = collections.deque()
        self.updates: dict[str, list[pb.TaskStatus]] = collections.defaultdict(list)
        self.health_checks: dict[str, pb.HealthCheck] = {}   # task id -> the check its TaskInfo carries
        self.framework_ids: list[str] = []
        self.reregistrations = 0
        self.errors: list[str] = []
        self.lost_slaves: list[str] = []
        self.messages: list[tuple[str, bytes]] = []
        self.task_slaves: dict[str, str] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._counter = 0

    # -- what tests call ------------------------------------------------------

    def submit(self, command: str, task_id: str | None = None, health_check: pb.HealthCheck | None = None) -> str:
        with self.lock:
            self._counter += 1
            task_id = task_id or f"task-{self._counter}"
            self.pending.append((task_id, command))
            if health_check is not None:
                self.health_checks[task_id] = health_check
        return task_id

    def states(self, task_id: str) -> list[int]:
        with self.lock:
            return [s.state for s in self.updates.get(task_id, [])]

    def last(self, task_id: str) -> pb.TaskStatus | None:
        with self.lock:
            statuses = self.updates.get(task_id)
            return statuses[-1] if statuses else None

    def wait_state(self, task_id: str, states, timeout: float = 30.0) -> pb.TaskStatus:
        states = {states} if isinstance(states, int) else set(states)
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for status in self.updates.get(task_id, []):
                    if status.state in states:
                        return status
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [pb.TaskState.Name(s.state) for s in self.updates.get(task_id, [])]
                    wanted = [pb.TaskState.Name(s) for s in states]
                    raise AssertionError(f"task {task_id}: waited {timeout}s for {wanted}; saw {seen}")
                self.changed.wait(left)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition"):
        """Like tests.support.wait_for, but woken by each callback instead of polling,
        and `predicate` runs under the scheduler's lock."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"waited {timeout}s for {what}")
                self.changed.wait(left)

    def terminal_count(self) -> int:
        return sum(1 for statuses in self.updates.values() if any(s.state in TERMINAL for s in statuses))

    # -- callbacks ------------------------------------------------------------

    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.framework_ids.append(framework_id.value)
            self.changed.notify_all()

    def reregistered(self, driver, master_info):
        with self.lock:
            self.reregistrations += 1
            self.changed.notify_all()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            room = Resources.from_protos(offer.resources)
            tasks = []
            with self.lock:
                while self.pending and room.contains(self.per_task):
                    task_id, command = self.pending.popleft()
                    room = room - self.per_task
                    tasks.append(command_task(task_id, offer, command, self.resources, self.grace_seconds))
                    if task_id in self.health_checks:
                        tasks[-1].health_check.CopyFrom(self.health_checks[task_id])
                    self.task_slaves[task_id] = offer.slave_id.value
            if tasks:
                driver.launchTasks(offer.id, tasks, pb.Filters(refuse_seconds=0.1))
            else:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.2))

    def statusUpdate(self, driver, status):
        with self.lock:
            self.updates[status.task_id.value].append(status)
            self.changed.notify_all()

    def frameworkMessage(self, driver, executor_id, slave_id, message):
        with self.lock:
            self.messages.append((executor_id.value, message))
            self.changed.notify_all()

    def slaveLost(self, driver, slave_id):
        with self.lock:
            self.lost_slaves.append(slave_id.value)
            self.changed.notify_all()

    def error(self, driver, message):
        with self.lock:
            self.errors.append(message)
            self.changed.notify_all()


class RunningFramework:
    """A RecordingScheduler under a started driver; stops it on exit."""

    def __init__(self, master: str, info: pb.FrameworkInfo | None = None, driver_kwargs: dict | None = None,
                 **scheduler_kwargs):
        """`driver_kwargs`: the driver's credential, master_public_key, ca_file."""
        self.scheduler = RecordingScheduler(**scheduler_kwargs)
        self.info = info or framework_info()
        self.driver = MesosSchedulerDriver(self.scheduler, self.info, master, **(driver_kwargs or {}))

    def __enter__(self):
        self.driver.start()
        self.scheduler.wait_for(lambda: self.scheduler.framework_ids, what="SUBSCRIBED")
        return self

    def __exit__(self, *exc):
        self.driver.stop()
        self.driver.join()

    @property
    def framework_id(self) -> str:
        return self.scheduler.framework_ids[0]
