"""Checkpointing and recovery of running containers (Mesos' agent recovery).

For frameworks with FrameworkInfo.checkpoint, the slave mirrors what it runs
under work_dir/meta, as Mesos does:

    meta/boot_id
    meta/slaves/<sid>/frameworks/<fid>/framework.info
        .../executors/<eid>/runs/<cid>/run.json           executor info, sandbox, resources
        .../runs/<cid>/executor.token                      a custom executor's secret (mode 0600)
        .../runs/<cid>/tasks/<tid>/task.info               the TaskInfo
        .../runs/<cid>/tasks/<tid>/task.updates            state + unacknowledged updates
    meta/pids/<cid>                                        pid and start time (containerizer)

A checkpointed container's first process, offerd-init
(containerizer/launcher.py), writes the command's exit status into the sandbox
(`.offerd_exit_status`) when it ends, so a task that ends while the slave is
down still has one. Writes go through `durable.write_atomically` without
fsync, as Mesos' ``state::checkpoint`` does by default: the temporary file and
rename make each one all-or-nothing when the slave process dies, which leaves the
page cache intact; fsync would add ~0.4 ms per task update on the actor thread
and protect only against a machine crash, after which the new boot id discards
this whole mirror anyway.

On start, `recover()` rebuilds the books from the mirror: with
--recover=reconnect it adopts each container still running (same pid and
start time) and its status update streams, which are resent once the master
has the slave back; a container that ended meanwhile reports its exit status.
With --recover=cleanup every recovered container is killed and its tasks are
reported. A different boot id starts fresh: no id, no containers.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import shutil

from offerd.common.durable import write_atomically
from offerd.proto import offerd_pb2 as pb
from offerd.slave.tasks import ExecutorRun, ExecutorRunState, Framework, Task, scalar

log = logging.getLogger(__name__)

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
TOKEN_FILE = "executor.token"


def _write(path: str, data: bytes) -> None:
    write_atomically(path, data, sync=False)


def _write_secret(path: str, text: str) -> None:
    """Like _write, but readable by the slave's user only, from the first byte on."""
    write_atomically(path, text, mode=0o600, sync=False)


def _b64(message) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def current_boot_id() -> str:
    try:
        with open(BOOT_ID_FILE) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def check_boot_id(work_dir: str) -> bool:
    """True if this machine has not rebooted since the slave last ran here.
    After a reboot the old checkpoint is discarded (a new slave id follows)."""
    path = os.path.join(work_dir, "meta", "boot_id")
    now = current_boot_id()
    try:
        with open(path) as handle:
            before = handle.read().strip()
    except FileNotFoundError:
        before = None
    if before is not None and before != now:
        log.warning("the machine rebooted since the last run (boot id %s, was %s): starting fresh", now, before)
        for name in ("slaves", "pids"):
            shutil.rmtree(os.path.join(work_dir, "meta", name), ignore_errors=True)
    _write(path, now.encode())
    return before is None or before == now


class Checkpointer:
    """Writes the mirror for checkpointing frameworks; owned by the actor thread."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def _framework_dir(self, slave_id: str, framework_id: str) -> str:
        return os.path.join(self.work_dir, "meta", "slaves", slave_id, "frameworks", framework_id)

    def run_dir(self, slave_id: str, executor: ExecutorRun) -> str:
        return os.path.join(self._framework_dir(slave_id, executor.framework.id), "executors", executor.id,
                            "runs", executor.container_id)

    @staticmethod
    def wanted(executor: ExecutorRun) -> bool:
        return bool(executor.framework.info.checkpoint)

    def task_added(self, slave_id: str, task: Task) -> None:
        executor = task.executor
        framework_dir = self._framework_dir(slave_id, executor.framework.id)
        _write(os.path.join(framework_dir, "framework.info"), executor.framework.info.SerializeToString())
        run = self.run_dir(slave_id, executor)
        if not os.path.exists(os.path.join(run, "run.json")):
            _write(os.path.join(run, "run.json"), json.dumps({
                "executor_info": _b64(executor.info) if executor.info is not None else None,
                "directory": executor.directory,
            }).encode())
        _write(os.path.join(run, "tasks", task.id, "task.info"), task.info.SerializeToString())

    def executor_token(self, slave_id: str, executor: ExecutorRun, token: str) -> None:
        """Keep a custom executor's token so it can reconnect to the next run of this slave."""
        _write_secret(os.path.join(self.run_dir(slave_id, executor), TOKEN_FILE), token)

    def task_updated(self, slave_id: str, task: Task, pending: list[pb.TaskStatus]) -> None:
        path = os.path.join(self.run_dir(slave_id, task.executor), "tasks", task.id, "task.updates")
        _write(path, json.dumps({"state": task.state, "launched": task.launched,
                                 "pending": [_b64(s) for s in pending]}).encode())

    def task_removed(self, slave_id: str, task: Task) -> None:
        shutil.rmtree(os.path.join(self.run_dir(slave_id, task.executor), "tasks", task.id), ignore_errors=True)

    def executor_removed(self, slave_id: str, executor: ExecutorRun) -> None:
        run = self.run_dir(slave_id, executor)
        shutil.rmtree(run, ignore_errors=True)
        # Drop now-empty parents up to the framework's directory.
        for parent in (os.path.dirname(run), os.path.dirname(os.path.dirname(run))):
            try:
                os.rmdir(parent)
            except OSError:
                break


def _runs(work_dir: str, slave_id: str):
    """(framework_info, run dir, executor id, container id) of every checkpointed run."""
    base = os.path.join(work_dir, "meta", "slaves", slave_id, "frameworks")
    for framework_id in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        framework_dir = os.path.join(base, framework_id)
        try:
            with open(os.path.join(framework_dir, "framework.info"), "rb") as handle:
                info = pb.FrameworkInfo.FromString(handle.read())
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable checkpoint of framework %s: %s", framework_id, exc)
            continue
        executors = os.path.join(framework_dir, "executors")
        for executor_id in sorted(os.listdir(executors)) if os.path.isdir(executors) else ():
            runs = os.path.join(executors, executor_id, "runs")
            for container_id in sorted(os.listdir(runs)) if os.path.isdir(runs) else ():
                yield info, os.path.join(runs, container_id), executor_id, container_id


def recover(core, mode: str) -> set[str]:
    """Rebuild the books of `core` from its checkpoint and adopt the containers
    still running; returns the container ids recovered (kept)."""
    if not core.slave_id:
        return set()
    kept: set[str] = set()
    for framework_info, run, executor_id, container_id in _runs(core.work_dir, core.slave_id):
        try:
            with open(os.path.join(run, "run.json")) as handle:
                meta = json.load(handle)
            _recover_run(core, mode, framework_info, run, executor_id, container_id, meta)
            kept.add(container_id)
        except (OSError, ValueError, KeyError) as exc:
            core.stats["recovery_errors"] += 1
            log.warning("cannot recover container %s of executor %s: %s", container_id, executor_id, exc)
            shutil.rmtree(run, ignore_errors=True)
    if kept:
        log.info("%s: recovered %d container(s) from the checkpoint (--recover=%s)", core.name, len(kept), mode)
    return kept


def _recover_run(core, mode, framework_info, run, executor_id, container_id, meta) -> None:
    framework = core.frameworks.get(framework_info.id.value)
    if framework is None:
        framework = core.frameworks[framework_info.id.value] = Framework(framework_info)
    executor_info = (pb.ExecutorInfo.FromString(base64.b64decode(meta["executor_info"]))
                     if meta.get("executor_info") else None)
    executor = ExecutorRun(executor_id, framework, executor_info, container_id, meta["directory"])
    executor.state = ExecutorRunState.RUNNING if executor_info is None else ExecutorRunState.REGISTERING
    framework.executors[executor_id] = executor
    tasks_dir = os.path.join(run, "tasks")
    resources = list(executor_info.resources) if executor_info is not None else []
    for task_id in sorted(os.listdir(tasks_dir)) if os.path.isdir(tasks_dir) else ():
        with open(os.path.join(tasks_dir, task_id, "task.info"), "rb") as handle:
            info = pb.TaskInfo.FromString(handle.read())
        task = Task(info, framework.id, executor)
        try:
            with open(os.path.join(tasks_dir, task_id, "task.updates")) as handle:
                updates = json.load(handle)
        except FileNotFoundError:
            updates = {"state": pb.TASK_STAGING, "launched": False, "pending": []}
        task.state = updates["state"]
        task.launched = updates.get("launched", False) or executor_info is None
        framework.tasks[task.id] = task
        executor.tasks[task.id] = task
        resources.extend(info.resources)
        for raw in updates["pending"]:
            status = pb.TaskStatus.FromString(base64.b64decode(raw))
            core.updates.update(framework.id, status)
            task.statuses.append(status)
    if executor_info is not None and core.executors is not None:
        # Before the container is looked at: an executor found dead forgets its token again.
        token = _read_token(run)
        if token:
            core.executors.recovered_token(executor, token)
        else:
            log.warning("%s: executor %s (container %s) has no checkpointed token: it cannot reconnect to "
                        "this slave", core.name, executor_id, container_id)
    handler = core.commands if executor_info is None else core.executors
    pid = core.containerizer.recover(
        container_id, executor.directory, scalar(resources, "cpus"), scalar(resources, "mem"),
        functools.partial(handler.recovered_exit, executor))
    executor.pid = pid
    if executor_info is None and mode != "cleanup":
        core.commands.recovered(executor)
    if mode == "cleanup":
        log.info("%s: killing recovered container %s (--recover=cleanup)", core.name, container_id)
        for task in executor.tasks.values():
            task.kill_requested = True
        core.containerizer.kill(container_id, 0)


def _read_token(run: str) -> str | None:
    try:
        with open(os.path.join(run, TOKEN_FILE)) as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        return None
