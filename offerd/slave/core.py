"""One slave's behaviour: the master's events in, tasks and status updates out.

A `SlaveCore` lives on an actor thread and owns its books (tasks.py), its
status update manager and its connection to the master. The daemon
(daemon.py) hosts one; a simulated fleet (simulate.py) hosts many on one actor.
How tasks run is delegated: command tasks to command_tasks.py, custom
executors to executors.py, processes to a containerizer.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Callable

from offerd.common import curve, tls
from offerd.common.actor import Actor
from offerd.common.credentials import Credential, load_credential
from offerd.common.detector import resolve_master
from offerd.common.resources import ResourceError, Resources
from offerd.common.transport import Client
from offerd.proto import offerd_pb2 as pb
from offerd.slave import checkpoint, recovery
from offerd.slave.command_tasks import CommandTasks
from offerd.slave.containerizer import Containerizer
from offerd.slave.gc import SandboxGC
from offerd.slave.executors import CustomExecutors
from offerd.slave.registration import RegistrationLoop, reconnect_backoff
from offerd.slave.sandbox import container_environment
from offerd.slave.status_updates import StatusUpdateManager, is_terminal
from offerd.slave.tasks import MAX_COMPLETED_FRAMEWORKS, ExecutorRun, ExecutorRunState, Framework, Task, valid_id

log = logging.getLogger(__name__)

Event = pb.SlaveEvent
MAX_STATUSES_PER_TASK = 16


def validate_task(task: pb.TaskInfo) -> str | None:
    """Why the slave cannot run `task`, or None. The master validates first;
    this guards the sandbox paths and the command the slave itself runs."""
    if not valid_id(task.task_id.value):
        return f"invalid task id {task.task_id.value!r}"
    if task.HasField("executor") == task.HasField("command"):
        return "a task needs exactly one of 'command' and 'executor'"
    command = task.executor.command if task.HasField("executor") else task.command
    if task.HasField("executor") and not valid_id(task.executor.executor_id.value):
        return f"invalid executor id {task.executor.executor_id.value!r}"
    if not command.value and not command.arguments:
        return "the command to run is empty"
    try:  # what the containers are sized from: task and executor resources together
        Resources.from_protos([*task.resources, *task.executor.resources])
    except ResourceError as exc:
        return f"invalid resources: {exc}"
    return None


@dataclass(frozen=True)
class MasterLink:
    """How a slave reaches its master: who it proves it is (--credential), the
    master's CURVE public key (--master_public_key), and the TLS context for
    https master lookups (--ssl_ca_file). Built once and shared by a fleet."""

    credential: Credential | None = None
    server_key: bytes | None = None
    ssl_context: object | None = None

    @classmethod
    def from_flags(cls, flags) -> "MasterLink":
        """Raises ValueError naming the flag and what is wrong with it."""
        credential = server_key = ssl_context = None
        if getattr(flags, "credential", None):
            try:
                credential = load_credential(flags.credential)
            except ValueError as exc:
                raise ValueError(f"--credential: {exc}") from None
        if getattr(flags, "master_public_key", None):
            try:
                server_key = curve.public_key(flags.master_public_key)
            except curve.KeyFileError as exc:
                raise ValueError(f"--master_public_key: {exc}") from None
        if getattr(flags, "ssl_ca_file", None):
            try:
                ssl_context = tls.client_context(flags.ssl_ca_file)
            except (ValueError, OSError) as exc:  # tls names the file and the problem
                raise ValueError(f"--ssl_ca_file={flags.ssl_ca_file}: {exc}") from None
        return cls(credential, server_key, ssl_context)

    def resolve(self, master: str) -> str:
        if self.ssl_context is None:
            return resolve_master(master)
        return resolve_master(master, ssl_context=self.ssl_context)


def exposure_gaps(flags) -> list[str]:
    """The protections a slave listening off loopback should have and does not."""
    missing = []
    if not getattr(flags, "credential", None):
        missing.append("authentication to the master (--credential)")
    if not getattr(flags, "master_public_key", None):
        missing.append("encryption of the link to the master (--master_public_key)")
    if not (getattr(flags, "http_credentials", None) and flags.authenticate_http_readonly
            and flags.authenticate_http_readwrite):
        missing.append("HTTP authentication (--http_credentials with --authenticate_http_readonly "
                       "and --authenticate_http_readwrite)")
    if not getattr(flags, "ssl_cert_file", None):
        missing.append("HTTPS (--ssl_cert_file and --ssl_key_file)")
    return missing


class SlaveCore:
    def __init__(
        self,
        actor: Actor,
        flags,
        slave_info: pb.SlaveInfo,
        work_dir: str,
        containerizer: Containerizer,
        executor_server=None,
        executor_endpoint: str | None = None,
        on_shutdown: Callable[[str], None] | None = None,
        on_registered: Callable[[str], None] | None = None,
        name: str = "slave",
        base_environment: dict[str, str] | None = None,
        link: MasterLink | None = None,
        executor_public_key: bytes | None = None,
        on_auth_refused: Callable[[str], None] | None = None,
        resources: Resources | None = None,
    ):
        """`link` defaults to MasterLink.from_flags(flags); `on_auth_refused(message)`
        is called, after this core has stopped, when the master refuses its credential.
        `resources` is what `slave_info.resources` was built from (--resources, parsed
        once at startup); it is derived from `slave_info` when not given."""
        self.actor = actor
        self.flags = flags
        self.name = name
        self.work_dir = work_dir
        self.containerizer = containerizer
        self.on_shutdown = on_shutdown or (lambda reason: None)
        self.on_registered = on_registered or (lambda slave_id: None)
        self.on_auth_refused = on_auth_refused or (lambda message: None)
        self.link = link if link is not None else MasterLink.from_flags(flags)
        self.auth_refused: str | None = None
        self._info = slave_info
        self.resources = resources if resources is not None else Resources.from_protos(slave_info.resources)
        self._base_env = base_environment or {}
        saved = checkpoint.read_slave_info(work_dir)
        self.slave_id: str | None = saved.id.value if saved is not None else None
        self.registered = False
        self.stopped = False
        self.start_time = time.time()
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: collections.deque[Framework] = collections.deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self.stats = collections.Counter()
        self.master_info: pb.MasterInfo | None = None
        # Per-task logging would swamp a simulated fleet's log at thousands of tasks/s.
        self.task_log_level = logging.DEBUG if containerizer.simulated else logging.INFO

        self.client = Client(
            actor, resolve=lambda: self.link.resolve(flags.master),
            accepted=[pb.SlaveEvent, pb.ProtocolError], on_message=self._on_message,
            on_connected=self._on_connected, on_disconnected=self._on_disconnected,
            heartbeat_interval=flags.heartbeat_interval, name=name,
            server_key=self.link.server_key, credential=self.link.credential,
            on_auth_failed=self._on_auth_failed, backoff=reconnect_backoff(),
        )
        self.updates = StatusUpdateManager(
            self.client.send, actor.call_later,
            retry_interval=flags.status_update_retry_interval, retry_max=flags.status_update_retry_max,
        )
        self.updates.slave_id = self.slave_id
        self.registration = RegistrationLoop(self, flags.registration_backoff_factor)
        # Checkpointing frameworks' containers are mirrored on disk to survive a restart.
        self.checkpointer = None if containerizer.simulated else recovery.Checkpointer(work_dir)
        self.gc = None
        if not containerizer.simulated and hasattr(flags, "gc_delay"):
            self.gc = SandboxGC(actor, work_dir, flags.gc_delay, flags.gc_disk_headroom, flags.disk_watch_interval)
        self.commands = CommandTasks(self)
        # Simulated slaves run every task like a command task: there is no process to subscribe.
        self.executors = None
        if executor_server is not None and not containerizer.simulated:
            self.executors = CustomExecutors(self, executor_server, executor_endpoint, executor_public_key)
        self._handlers = {
            Event.REGISTERED: self._on_registered,
            Event.REREGISTERED: self._on_reregistered,
            Event.RUN_TASK: self._on_run_task,
            Event.KILL_TASK: self._on_kill_task,
            Event.ACKNOWLEDGE: self._on_acknowledge,
            Event.FRAMEWORK_MESSAGE: self._on_framework_message,
            Event.SHUTDOWN_FRAMEWORK: self._on_shutdown_framework,
            Event.SHUTDOWN_EXECUTOR: self._on_shutdown_executor,
            Event.ERROR: self._on_error,
            Event.SHUTDOWN: self._on_shutdown,
        }

    # -- lifecycle --------------------------------------------------------------

    def recover(self) -> set[str]:
        """Before start(): rebuild the books from the checkpoint and adopt the
        containers still running; returns their container ids."""
        if self.checkpointer is None:
            return set()
        return recovery.recover(self, getattr(self.flags, "recover", "reconnect"))

    def start(self) -> None:
        if self.slave_id:
            log.info("%s: found checkpointed slave id %s in %s", self.name, self.slave_id, self.work_dir)
        if self.gc is not None:
            # The GC schedule of the last run was in memory: find its leftover sandboxes again.
            self.gc.rescan({e.directory for f in self.frameworks.values() for e in f.executors.values()})
        self.client.start()

    def stop(self, keep_checkpointed: bool = False) -> None:
        """Kill everything this slave runs and close its connection. With
        `keep_checkpointed` (a SIGTERM under --recover=reconnect) the containers of
        checkpointing frameworks keep running for the next run to adopt."""
        if self.stopped:
            return
        self.stopped = True
        self.registered = False
        self.registration.stop()
        self.updates.pause()
        if keep_checkpointed:
            kept = sum(1 for f in self.frameworks.values() if f.info.checkpoint for _ in f.executors)
            if kept:
                log.info("%s: leaving %d executor(s) of checkpointing frameworks running for the next run",
                         self.name, kept)
        self.commands.close()
        self.containerizer.destroy_all(keep_checkpointed=keep_checkpointed)
        if self.gc is not None:
            self.gc.close()
        for framework in self.frameworks.values():
            for executor in framework.executors.values():
                if executor.timer is not None:
                    executor.timer.cancel()
        self.client.close()

    def shutdown(self) -> None:
        """Shut this slave down for good (SIGUSR1, Mesos' agent shutdown): tell the
        master it is leaving (UNREGISTER), kill everything, forget the slave id."""
        if self.stopped:
            return
        if self.slave_id:
            log.warning("%s: shutting down: unregistering slave %s and killing all tasks", self.name, self.slave_id)
            self.client.send(pb.SlaveCall(type=pb.SlaveCall.UNREGISTER, slave_id=pb.SlaveID(value=self.slave_id)))
        self.stop()
        checkpoint.forget_slave(self.work_dir)
        self.slave_id = None

    def slave_info(self) -> pb.SlaveInfo:
        info = pb.SlaveInfo()
        info.CopyFrom(self._info)
        if self.slave_id:
            info.id.value = self.slave_id
        return info

    # -- connection and registration ---------------------------------------------

    def _on_connected(self) -> None:
        self.registration.connected()

    def _on_auth_failed(self, reason: str) -> None:
        # As Mesos' agent: a refused credential ends the slave (no retrying with a
        # secret the master rejects), but not as a shutdown, so running executors
        # of checkpointing frameworks survive for a restart with a fixed credential.
        message = f"Master refused authentication: {reason}"
        principal = self.link.credential.principal if self.link.credential is not None else "?"
        log.error("%s: %s; check --credential (principal %r) against the master's --credentials",
                  self.name, message, principal)
        self.auth_refused = message
        self.stop(keep_checkpointed=getattr(self.flags, "recover", "reconnect") == "reconnect")
        self.on_auth_refused(message)

    def _on_disconnected(self) -> None:
        if self.registered:
            log.warning("%s: lost the master; holding status updates until reregistered", self.name)
        self.registered = False
        self.registration.stop()
        self.updates.pause()

    def _on_registered(self, event: pb.SlaveEvent) -> None:
        slave_id = event.registered.slave_id.value
        if self.registered and slave_id == self.slave_id:
            return  # an answer to a retried REGISTER
        if not valid_id(slave_id):
            log.error("%s: the master sent an unusable slave id %r", self.name, slave_id)
            return
        if self.slave_id and slave_id != self.slave_id:
            log.warning("%s: the master gave a new id %s instead of %s", self.name, slave_id, self.slave_id)
        self.slave_id = slave_id
        checkpoint.write_slave_info(self.work_dir, self.slave_info())
        log.info("%s: registered with the master as %s", self.name, slave_id)
        self._now_registered(event)

    def _on_reregistered(self, event: pb.SlaveEvent) -> None:
        if self.registered:
            return
        log.info("%s: reregistered with the master as %s", self.name, self.slave_id)
        self._now_registered(event)

    def _now_registered(self, event: pb.SlaveEvent) -> None:
        self.registered = True
        self.registration.stop()
        if event.registered.HasField("master_info"):
            self.master_info = event.registered.master_info
        self.updates.slave_id = self.slave_id
        self.updates.resume()
        self.on_registered(self.slave_id)

    def _on_shutdown(self, event: pb.SlaveEvent) -> None:
        reason = event.error.message or "the master removed this slave"
        log.warning("%s: the master asked this slave to shut down (%s); killing all tasks and forgetting "
                    "slave id %s", self.name, reason, self.slave_id)
        self.stop()
        checkpoint.forget_slave(self.work_dir)
        self.slave_id = None
        self.on_shutdown(reason)

    def _on_error(self, event: pb.SlaveEvent) -> None:
        log.error("%s: error from the master: %s", self.name, event.error.message)

    # -- master events --------------------------------------------------------------

    def _on_message(self, message) -> None:
        if isinstance(message, pb.ProtocolError):
            log.warning("%s: the master refused a frame (%s): %s", self.name, message.kind, message.message)
            return
        handler = self._handlers.get(message.type)
        if handler is None:
            self.stats["invalid_master_events"] += 1
            log.warning("%s: ignoring a SlaveEvent of unknown type %d", self.name, message.type)
            return
        handler(message)

    def _on_run_task(self, event: pb.SlaveEvent) -> None:
        runs = ([event.run_task] if event.HasField("run_task") else []) + list(event.run_tasks)
        if not self.registered:
            log.warning("%s: ignoring %d task(s) sent before this slave is registered", self.name, len(runs))
            return
        for run in runs:
            self.run_task(run.framework_info, run.task)

    def run_task(self, framework_info: pb.FrameworkInfo, task: pb.TaskInfo) -> None:
        framework_id = framework_info.id.value
        if not valid_id(framework_id):
            log.warning("%s: ignoring task %s of a framework without a valid id", self.name, task.task_id.value)
            return
        framework = self.frameworks.get(framework_id)
        if framework is None:
            framework = self.frameworks[framework_id] = Framework(framework_info)
        elif framework.terminating:
            log.warning("%s: ignoring task %s: framework %s is shutting down", self.name,
                        task.task_id.value, framework_id)
            return
        else:
            framework.info = framework_info
        error = validate_task(task)
        if error is None and task.task_id.value in framework.tasks:
            log.warning("%s: ignoring task %s of framework %s: a task with that id is already here",
                        self.name, task.task_id.value, framework_id)
            return
        if error is not None:
            self.refuse(framework_id, task, pb.TASK_ERROR, pb.TaskStatus.REASON_TASK_INVALID, error)
        else:
            self.stats["tasks_launched"] += 1
            log.log(self.task_log_level, "%s: launching task %s of framework %s", self.name,
                    task.task_id.value, framework_id)
            if task.HasField("executor") and self.executors is not None:
                if task.HasField("health_check"):
                    # As in Mesos, a custom executor owns its tasks' health checks.
                    log.info("%s: task %s has a health check; its executor %s runs it, not the slave",
                             self.name, task.task_id.value, task.executor.executor_id.value)
                self.executors.run_task(framework, task)
            else:
                self.commands.run_task(framework, task)
        if task.task_id.value not in framework.tasks:  # refused: keep no empty framework around
            self._maybe_remove_framework(framework)

    def _on_kill_task(self, event: pb.SlaveEvent) -> None:
        kill = event.kill_task
        framework_id, task_id = kill.framework_id.value, kill.task_id.value
        framework = self.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        if task is None:
            if not self._completed_here(framework_id, task_id):
                # The master believes the task is here (a RUN_TASK lost on the way?): say it is not.
                state = framework.dropped_state() if framework is not None else pb.TASK_LOST
                self.refuse(framework_id, pb.TaskInfo(task_id=kill.task_id), state,
                            pb.TaskStatus.REASON_TASK_UNKNOWN, "Attempted to kill a task unknown to the slave")
            return
        if task.terminal:
            return
        policy = kill.kill_policy if kill.HasField("kill_policy") else None
        log.log(self.task_log_level, "%s: killing task %s of framework %s", self.name, task_id, framework_id)
        if task.executor.is_command:
            self.commands.kill(task, policy)
        else:
            self.executors.kill_task(task, policy)

    def _on_acknowledge(self, event: pb.SlaveEvent) -> None:
        ack = event.acknowledge
        framework_id, task_id = ack.framework_id.value, ack.task_id.value
        status = self.updates.acknowledge(framework_id, task_id, ack.uuid)
        if status is not None and is_terminal(status.state):
            self._task_done(framework_id, task_id)
        elif status is not None:
            framework = self.frameworks.get(framework_id)
            task = framework.tasks.get(task_id) if framework is not None else None
            if task is not None:
                self.checkpoint_task(task)

    def _on_framework_message(self, event: pb.SlaveEvent) -> None:
        message = event.framework_message
        executor = self.find_executor(message.framework_id.value, message.executor_id.value)
        if executor is None or executor.is_command or self.executors is None:
            self.stats["dropped_framework_messages"] += 1
            log.warning("%s: dropping a framework message for unknown executor %s of framework %s",
                        self.name, message.executor_id.value, message.framework_id.value)
            return
        self.executors.message(executor, message.data)

    def _on_shutdown_framework(self, event: pb.SlaveEvent) -> None:
        framework = self.frameworks.get(event.shutdown_framework.framework_id.value)
        if framework is None:
            return
        log.info("%s: shutting down framework %s", self.name, framework.id)
        framework.terminating = True
        for executor in list(framework.executors.values()):
            self.shutdown_executor(executor)
            self._maybe_remove_executor(executor)
        self._maybe_remove_framework(framework)

    def _on_shutdown_executor(self, event: pb.SlaveEvent) -> None:
        request = event.shutdown_executor
        executor = self.find_executor(request.framework_id.value, request.executor_id.value)
        if executor is None:
            log.warning("%s: ignoring shutdown of unknown executor %s of framework %s", self.name,
                        request.executor_id.value, request.framework_id.value)
            return
        self.shutdown_executor(executor)

    def shutdown_executor(self, executor: ExecutorRun) -> None:
        if executor.is_command:
            for task in executor.tasks.values():
                if not task.terminal:
                    self.commands.kill(task, None)
        elif self.executors is not None:
            self.executors.shutdown(executor)

    # -- services for command_tasks / executors ----------------------------------

    def find_executor(self, framework_id: str, executor_id: str) -> ExecutorRun | None:
        framework = self.frameworks.get(framework_id)
        return framework.executors.get(executor_id) if framework is not None else None

    def add_task(self, executor: ExecutorRun, task: Task) -> None:
        framework = executor.framework
        framework.executors[executor.id] = executor
        framework.tasks[task.id] = task
        executor.tasks[task.id] = task
        if self._checkpointing(executor):
            self.checkpointer.task_added(self.slave_id, task)
            self.checkpoint_task(task)

    def _checkpointing(self, executor: ExecutorRun) -> bool:
        return self.checkpointer is not None and self.slave_id is not None and self.checkpointer.wanted(executor)

    def checkpoint_task(self, task: Task) -> None:
        """Mirror a task's state and unacknowledged updates (checkpointing frameworks)."""
        if self._checkpointing(task.executor):
            self.checkpointer.task_updated(self.slave_id, task, self.updates.pending(task.framework_id, task.id))

    def environment(self, variables: dict[str, str], command: pb.CommandInfo | None) -> dict[str, str]:
        if self.containerizer.simulated:
            return {}
        return container_environment(self._base_env, variables, command)

    def send_status(self, task: Task, state: int, message: str | None = None, reason: int | None = None,
                    source: int = pb.TaskStatus.SOURCE_EXECUTOR) -> None:
        status = pb.TaskStatus(task_id=task.info.task_id, state=state, source=source)
        if message:
            status.message = message
        if reason is not None:
            status.reason = reason
        if not task.executor.is_command:
            status.executor_id.value = task.executor.id
        self.forward_status(task, status)

    def forward_status(self, task: Task, status: pb.TaskStatus) -> bool:
        """Hand an update to the status update manager; False for a duplicate."""
        if not self.updates.update(task.framework_id, status):
            return False
        task.state = status.state
        if len(task.statuses) >= MAX_STATUSES_PER_TASK:
            del task.statuses[0]
        task.statuses.append(status)
        self.checkpoint_task(task)
        return True

    def refuse(self, framework_id: str, task: pb.TaskInfo, state: int, reason: int, message: str) -> None:
        """A terminal update for a task the slave will not run (no record is kept)."""
        log.warning("%s: task %s of framework %s: %s", self.name, task.task_id.value, framework_id, message)
        status = pb.TaskStatus(task_id=task.task_id, state=state, reason=reason, message=message,
                               source=pb.TaskStatus.SOURCE_SLAVE)
        if task.HasField("executor"):
            status.executor_id.CopyFrom(task.executor.executor_id)
        self.updates.update(framework_id, status)

    def send_to_master(self, call: pb.SlaveCall) -> None:
        if self.slave_id and not self.stopped:
            call.slave_id.value = self.slave_id
            self.client.send(call)

    def executor_terminated(self, executor: ExecutorRun) -> None:
        executor.state = ExecutorRunState.TERMINATED
        executor.pid = None
        self._maybe_remove_executor(executor)

    # -- retiring records ---------------------------------------------------------------

    def _task_done(self, framework_id: str, task_id: str) -> None:
        framework = self.frameworks.get(framework_id)
        task = framework.tasks.pop(task_id, None) if framework is not None else None
        if task is None:
            return
        executor = task.executor
        executor.tasks.pop(task_id, None)
        executor.completed_tasks.append(task)
        if self._checkpointing(executor):
            self.checkpointer.task_removed(self.slave_id, task)
        self._maybe_remove_executor(executor)

    def _maybe_remove_executor(self, executor: ExecutorRun) -> None:
        if not executor.terminated:
            return
        framework = executor.framework
        if framework.terminating:
            # The master removed the framework: no acknowledgement will ever come.
            for task in executor.tasks.values():
                framework.tasks.pop(task.id, None)
                executor.completed_tasks.append(task)
            executor.tasks.clear()
        if executor.tasks or framework.executors.get(executor.id) is not executor:
            return
        del framework.executors[executor.id]
        framework.completed_executors.append(executor)
        if self._checkpointing(executor):
            self.checkpointer.executor_removed(self.slave_id, executor)
        if self.gc is not None:
            self.gc.schedule(executor.directory)
        self._maybe_remove_framework(framework)

    def _completed_here(self, framework_id: str, task_id: str) -> bool:
        frameworks = [f for f in (self.frameworks.get(framework_id), *self.completed_frameworks)
                      if f is not None and f.id == framework_id]
        return any(f.completed(task_id) for f in frameworks)

    def _maybe_remove_framework(self, framework: Framework) -> None:
        if framework.executors or self.frameworks.get(framework.id) is not framework:
            return
        if framework.terminating:
            self.updates.cleanup(framework.id)
            log.info("%s: framework %s is gone", self.name, framework.id)
        del self.frameworks[framework.id]
        if framework.completed_executors:  # not one that only had tasks refused
            self.completed_frameworks.append(framework)
