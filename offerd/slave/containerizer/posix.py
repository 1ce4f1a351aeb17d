"""Real processes, isolated by the isolators --isolation names (Mesos' Mesos
containerizer: posix launcher with posix/cpu,mem; linux launcher with cgroups
and namespaces).

A container is a process group: its first process (offerd-init, or the command
itself when nothing needs setting up) leads a new session in its sandbox, with
stdout and stderr going to files there. Killing a container signals the whole
group, so a shell's children die with it; with cgroups, every process in the
container's cgroups is killed too, and with a PID namespace killing its PID 1
takes the whole namespace.

Per launch, on a launcher thread: resolve the user, fetch the URIs, ask every
isolator to prepare (a LaunchPlan: cgroups and limits, namespaces), spawn
through `launcher.py` (offerd-init carries the plan out), then isolate and
watch (OOM events are polled by the reaper). When the first process exits the
reaper kills what is left, asks the isolators whether a limit was hit, and
cleans up.

Nothing here blocks the actor thread: fork/exec happens on a small thread pool
(launching is the slave's hot path) and one reaper thread waits for every exit
through pidfds, reporting back with `actor.call_soon`.

Containers of checkpointing frameworks are recovered across a slave restart
(recovery.py), and a SIGTERMed slave leaves them running (`destroy_all(keep_checkpointed=True)`).
So that a slave killed outright (SIGKILL, OOM) leaves nothing else running that
nobody supervises, each live container's session id is recorded under
`work_dir/meta/pids/`, and the next start kills whatever is left in the sessions
it did not adopt (`cleanup_orphans`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import signal
import subprocess
import time

import psutil

from offerd.common.actor import Actor
from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import launcher
from offerd.slave.containerizer.base import Containerizer, LaunchSpec, OnExited, OnStarted, Termination
from offerd.slave.containerizer.isolator import Container as Box
from offerd.slave.containerizer.isolator import Isolator, IsolatorError, LaunchPlan, Limitation
from offerd.slave.fetcher import Fetcher, FetchError
from offerd.slave.sandbox import user_environment
from offerd.slave.containerizer.processes import (  # noqa: F401 (re-exported for the slave and tests)
    Reaper, _Adopted, _read_pid_file, _same_process, _shell_status, _signal_group, cleanup_orphans,
    EXIT_STATUS_FILE, command_argv, pid_directory, process_statistics, read_exit_status,
    recorded_containers,
)

log = logging.getLogger(__name__)

LAUNCH_THREADS = 4


class _Container:
    __slots__ = ("spec", "on_started", "on_exited", "proc", "term_sent", "kill_at", "kill_timer", "limitation")

    def __init__(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited):
        self.spec = spec
        self.on_started = on_started
        self.on_exited = on_exited
        self.proc: subprocess.Popen | None = None
        self.term_sent = False
        self.kill_at: float | None = None   # monotonic deadline for SIGKILL
        self.kill_timer = None
        self.limitation: Limitation | None = None


class PosixContainerizer(Containerizer):
    def __init__(self, actor: Actor, work_dir: str, launch_threads: int = LAUNCH_THREADS,
                 isolators: list[Isolator] | None = None, fetcher: Fetcher | None = None,
                 switch_user: bool = False):
        self.actor = actor
        self._pid_dir = pid_directory(work_dir)
        os.makedirs(self._pid_dir, exist_ok=True)
        self.isolators: list[Isolator] = isolators or []
        # Who lists a container's processes (its cgroups): init joins every cgroup before the
        # task exists, so any one of them holds them all.
        self._members = next((i for i in self.isolators if type(i).pids is not Isolator.pids), None)
        self.fetcher = fetcher or Fetcher()
        self.switch_user = switch_user
        self._boxes: dict[str, Box] = {}                # read by HTTP threads (usage)
        self._watch_fds: dict[str, list[int]] = {}      # launcher/reaper threads
        self._containers: dict[str, _Container] = {}   # actor thread only
        self._pool = concurrent.futures.ThreadPoolExecutor(launch_threads, thread_name_prefix="slave-launcher")
        self._cleanup_pool = concurrent.futures.ThreadPoolExecutor(launch_threads, thread_name_prefix="slave-cleanup")
        self._reaper = Reaper(self._reaped)
        self._closing = False
        self._via_init: set[str] = set()   # containers started by offerd-init (shell-style status)
        self._checkpointed: set[str] = set()   # containers of checkpointing frameworks
        self._detached = False   # the slave exits leaving the checkpointed containers running

    def launch(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited) -> None:
        self._containers[spec.container_id] = _Container(spec, on_started, on_exited)
        if spec.checkpoint:
            self._checkpointed.add(spec.container_id)
        self._pool.submit(self._spawn, spec)

    def kill(self, container_id: str, grace: float) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        deadline = time.monotonic() + max(0.0, grace)
        if container.kill_at is not None and container.kill_at <= deadline:
            return
        container.kill_at = deadline
        if container.proc is not None:
            self._enforce_kill(container)

    def destroy_all(self, keep_checkpointed: bool = False) -> None:
        """Kill every container; with `keep_checkpointed`, those of checkpointing
        frameworks are left running (and unsupervised: the slave is exiting, and
        its next run adopts them from the pid files)."""
        self._detached = keep_checkpointed
        for container in self._containers.values():
            if keep_checkpointed and container.spec.checkpoint:
                continue
            container.kill_at = time.monotonic()
            if container.proc is not None:
                self._enforce_kill(container)

    def recover(self, container_id: str, directory: str, cpus: float, mem_mb: float,
                on_exited: OnExited) -> int | None:
        pid, started = _read_pid_file(os.path.join(self._pid_dir, container_id))
        self._via_init.add(container_id)
        self._checkpointed.add(container_id)
        box = Box(container_id, directory, cpus, mem_mb, pid=pid)
        self._boxes[container_id] = box
        spec = LaunchSpec(container_id, pb.CommandInfo(), directory, cpus=cpus, mem_mb=mem_mb, checkpoint=True)
        container = self._containers[container_id] = _Container(spec, lambda pid: None, on_exited)
        if pid is None or not _same_process(pid, started):
            log.info("container %s ended while the slave was down", container_id)
            self._reaped(container_id, read_exit_status(directory))
            return None
        container.proc = _Adopted(pid, directory)
        self._watch(box)
        self._reaper.watch(container_id, container.proc)
        return pid

    def recovered(self, container_ids: set[str], orphans: set[str] = frozenset()) -> None:
        for isolator in self.isolators:
            isolator.recover(sorted(container_ids), sorted(orphans))

    def update(self, container_id: str, cpus: float, mem_mb: float) -> None:
        box = self._boxes.get(container_id)
        if box is not None:
            self._pool.submit(self._update, box, cpus, mem_mb)

    def usage(self, container_id: str, pid: int | None) -> dict:
        """Statistics from the isolators (cgroup counters), falling back to /proc
        for what no isolator reports."""
        box = self._boxes.get(container_id)
        stats = {}
        if box is not None:
            for isolator in self.isolators:
                try:
                    stats.update(isolator.usage(box))
                except (OSError, IsolatorError, ValueError) as exc:
                    log.debug("no usage from %s for %s: %s", type(isolator).__name__, container_id, exc)
        fallback = process_statistics(pid)
        for key, value in fallback.items():
            stats.setdefault(key, value)
        stats["timestamp"] = fallback["timestamp"]
        return stats

    def close(self) -> None:
        self._closing = True
        self._pool.shutdown(wait=True)
        self._reaper.close(keep=self._checkpointed if self._detached else frozenset())
        self._cleanup_pool.shutdown(wait=True)
        for isolator in self.isolators:
            if hasattr(isolator, "remove_root"):
                isolator.remove_root()

    # -- launcher threads ---------------------------------------------------------

    def _spawn(self, spec: LaunchSpec) -> None:
        box = Box(spec.container_id, spec.directory, spec.cpus, spec.mem_mb, spec.user)
        try:
            os.makedirs(spec.directory, exist_ok=True)
            user = launcher.resolve_user(spec.user) if (self.switch_user and spec.user) else None
            if launcher.switching(user):
                os.chown(spec.directory, user.uid, user.gid)
            if spec.fetch and spec.command.uris:
                # As the task's user when switching (its files, its permissions): nothing to chown after.
                self.fetcher.fetch(spec.command.uris, spec.directory, user if launcher.switching(user) else None)
            plan = LaunchPlan()
            self._boxes[spec.container_id] = box
            for isolator in self.isolators:
                part = isolator.prepare(box)
                if part is not None:
                    plan.merge(part)
            argv, executable = command_argv(spec.command)
            if not spec.command.shell and not shutil.which(executable or argv[0], path=spec.environment.get("PATH")):
                raise launcher.LaunchError(f"the command '{executable or argv[0]}' does not exist or is not "
                                           "executable on this slave")
            # A checkpointed container's init writes the exit status where a restarted slave finds it.
            status_file = os.path.join(spec.directory, EXIT_STATUS_FILE) if spec.checkpoint else None
            # The user's HOME, USER and LOGNAME unless the operator's or the command's environment set them.
            home_fallback = plan.environment.get("MESOS_SANDBOX", spec.directory)
            environment = {**user_environment(user if launcher.switching(user) else None, home_fallback),
                           **spec.environment, **plan.environment}
            launched = launcher.spawn(argv, executable, plan, user, spec.directory, environment, status_file)
            proc = launched.proc
            if launched.via_init:
                self._via_init.add(spec.container_id)
        except Exception as exc:   # noqa: BLE001 (any failure here is the launch's, never the slave's)
            if not isinstance(exc, (OSError, ValueError, subprocess.SubprocessError, launcher.LaunchError,
                                    IsolatorError, FetchError)):
                log.exception("unexpected error launching container %s", spec.container_id)
            message = str(exc) if isinstance(exc, FetchError) else f"Failed to launch container: {exc}"
            self._cleanup(box)
            self.actor.call_soon(self._exited, spec.container_id, None, message)
            return
        box.pid = proc.pid
        self._record_pid(spec.container_id, proc.pid)
        for isolator in self.isolators:
            isolator.isolate(box, proc.pid)
        # Posted before the reaper can post the exit, so on_started always comes first.
        self.actor.call_soon(self._started, spec.container_id, proc)
        self._watch(box)
        self._reaper.watch(spec.container_id, proc)
        if self._closing and not (self._detached and spec.container_id in self._checkpointed):
            _signal_group(proc.pid, signal.SIGKILL)

    def _update(self, box: Box, cpus: float, mem_mb: float) -> None:
        box.cpus, box.mem_mb = cpus, mem_mb
        for isolator in self.isolators:
            try:
                isolator.update(box)
            except IsolatorError as exc:
                log.warning("cannot update container %s: %s", box.container_id, exc)

    def _watch(self, box: Box) -> None:
        fds = []
        for isolator in self.isolators:
            for fd, events in isolator.watch(box):
                fds.append(fd)
                self._reaper.watch_fd(fd, events, lambda i=isolator: self._check(i, box))
        self._watch_fds[box.container_id] = fds

    def _check(self, isolator: Isolator, box: Box) -> None:
        """On the reaper thread: a watched fd fired."""
        limitation = isolator.check(box)
        if limitation is not None:
            log.warning("container %s: %s", box.container_id, limitation.message)
            for fd in self._watch_fds.get(box.container_id, ()):
                self._reaper.unwatch_fd(fd)
            self.actor.call_soon(self._limited, box.container_id, limitation)

    def _record_pid(self, container_id: str, pid: int) -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            started = time.time()  # gone already: the record is removed when it is reaped
        with open(os.path.join(self._pid_dir, container_id), "w") as handle:
            handle.write(f"{pid} {started}")

    def _kill_members(self, box: Box) -> None:
        """SIGKILL every process the isolators see in the container, until none is left."""
        if self._members is None:
            return
        for _ in range(50):
            pids = self._members.pids(box)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)

    def _cleanup(self, box: Box) -> Limitation | None:
        """After the container's end: the first limitation any isolator saw, then
        every isolator's cleanup."""
        limitation = self._settle(box)
        self._release(box)
        return limitation

    def _settle(self, box: Box) -> Limitation | None:
        """Nothing of the container runs any more; the first limitation any isolator saw."""
        for fd in self._watch_fds.pop(box.container_id, ()):
            self._reaper.unwatch_fd(fd)
        self._kill_members(box)
        limitation = None
        for isolator in self.isolators:
            try:
                limitation = limitation or isolator.check(box)
            except (OSError, ValueError, IsolatorError):
                pass
        return limitation

    def _release(self, box: Box) -> None:
        """Every isolator's cleanup (cgroups removed)."""
        for isolator in reversed(self.isolators):
            try:
                isolator.cleanup(box)
            except Exception:
                log.exception("cleanup of container %s by %s failed", box.container_id, type(isolator).__name__)
        self._boxes.pop(box.container_id, None)

    def _reaped(self, container_id: str, returncode: int | None) -> None:
        """On the reaper thread: the container's group is dead, forget it on disk too."""
        self._checkpointed.discard(container_id)
        if container_id in self._via_init:
            self._via_init.discard(container_id)
            returncode = _shell_status(returncode)
        try:
            os.remove(os.path.join(self._pid_dir, container_id))
        except FileNotFoundError:
            log.debug("no pid file for container %s", container_id)
        box = self._boxes.get(container_id)
        if box is None:
            self.actor.call_soon(self._exited, container_id, returncode, None, None)
            return
        # Cleanup (killing stragglers, removing cgroups) waits on the kernel: not on the reaper.
        self._cleanup_pool.submit(self._finish, box, returncode)

    def _finish(self, box: Box, returncode: int | None) -> None:
        # Reported once nothing of it runs and its limitation is known; removing its
        # cgroups (the kernel's slowest part) follows off the task's critical path.
        limitation = self._settle(box)
        self.actor.call_soon(self._exited, box.container_id, returncode, None, limitation)
        self._release(box)

    # -- actor thread ----------------------------------------------------------------

    def _started(self, container_id: str, proc: subprocess.Popen) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        container.proc = proc
        container.on_started(proc.pid)
        if container.kill_at is not None:
            self._enforce_kill(container)

    def _limited(self, container_id: str, limitation: Limitation) -> None:
        container = self._containers.get(container_id)
        if container is None or container.proc is None:
            return
        container.limitation = limitation
        container.kill_at = time.monotonic()
        self._enforce_kill(container)

    def _enforce_kill(self, container: _Container) -> None:
        pid = container.proc.pid
        if container.kill_timer is not None:
            container.kill_timer.cancel()
            container.kill_timer = None
        delay = container.kill_at - time.monotonic()
        if delay <= 0:
            self._force_kill(container)
            return
        if not container.term_sent:
            container.term_sent = True
            # The whole group: the task gets it as anywhere else; its init outlives it to
            # report the status (as a PID namespace's init, it ignores what it does not handle).
            _signal_group(pid, signal.SIGTERM)
        container.kill_timer = self.actor.call_later(delay, self._force_kill, container)

    def _force_kill(self, container: _Container) -> None:
        _signal_group(container.proc.pid, signal.SIGKILL)
        box = self._boxes.get(container.spec.container_id)
        if box is not None and self.isolators:
            # Processes that left the group (setsid) are still in the cgroups.
            self._pool.submit(self._kill_members, box)

    def _exited(self, container_id: str, returncode: int | None, launch_error: str | None = None,
                limitation: Limitation | None = None) -> None:
        container = self._containers.pop(container_id, None)
        if container is None:
            return
        if container.kill_timer is not None:
            container.kill_timer.cancel()
        container.on_exited(Termination(returncode=returncode, launch_error=launch_error,
                                        limitation=limitation or container.limitation))
