"""Custom executors: their processes and the executor protocol (docs/protocol.md).

One process per (framework, executor id), started with ExecutorInfo.command in
its sandbox. It connects a DEALER to the slave's executor ROUTER
(MESOS_SLAVE_ENDPOINT) and SUBSCRIBEs; tasks that arrive before that wait in
the executor's queue and are sent as LAUNCH events once it has. Its status
updates enter the slave's status update manager and are acknowledged to it at
once. If it does not subscribe within --executor_registration_timeout, or after
a SHUTDOWN does not exit within its grace period, its process group is killed.
When it exits, its unfinished tasks fail and the master hears EXITED_EXECUTOR.

Executors prove who they are (Mesos' executor authentication, always on here):
the executor endpoint is CURVE-encrypted, and each executor process gets a
fresh random token in MESOS_EXECUTOR_AUTHENTICATION_TOKEN, with its container
id (MESOS_CONTAINER_ID) as the principal it authenticates as and the
endpoint's public key (OFFERD_SLAVE_PUBLIC_KEY). A call is served only on a
connection that proved the container id of the executor it names, so another
process on this machine that knows an executor's ids, or holds another
executor's token, cannot subscribe as it or speak for its tasks. The token
lives while the executor does; it is never logged nor shown in /state, and for
checkpointing frameworks it is kept (mode 0600) so the executor can reconnect
to a restarted slave.
"""

from __future__ import annotations

import functools
import logging
import secrets
import uuid

from offerd.common.transport import Server
from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer import LaunchSpec, Termination
from offerd.slave.sandbox import EXECUTOR_TOKEN_VARIABLE as TOKEN_VARIABLE, sandbox_directory
from offerd.slave.tasks import ExecutorRun, ExecutorRunState, Framework, Task, scalar, seconds

log = logging.getLogger(__name__)

Call = pb.ExecutorCall
ExecEvent = pb.ExecutorEvent
Reason = pb.TaskStatus
SOURCE_SLAVE = pb.TaskStatus.SOURCE_SLAVE
_WAITING = (ExecutorRunState.LAUNCHING, ExecutorRunState.REGISTERING)
PUBLIC_KEY_VARIABLE = "OFFERD_SLAVE_PUBLIC_KEY"
# What Mesos tells its executors: how long to wait for a restarted slave before
# exiting (its agent's --recovery_timeout default), and the longest pause
# between SUBSCRIBE attempts while reconnecting.
RECOVERY_TIMEOUT = "15mins"
SUBSCRIPTION_BACKOFF_MAX = "2secs"


class CustomExecutors:
    def __init__(self, core, server: Server, endpoint: str, public_key: bytes | None = None):
        self.core = core
        self.server = server
        self.endpoint = endpoint
        self.public_key = public_key
        # container id -> token of each live custom executor: what the
        # endpoint's authentication checks (`token`).
        self._tokens: dict[str, str] = {}
        self._handlers = {Call.SUBSCRIBE: self._subscribe, Call.UPDATE: self._update, Call.MESSAGE: self._message}

    # -- executor authentication ---------------------------------------------------

    def token(self, container_id: str) -> str | None:
        """The secret the executor in `container_id` proves; None if no live executor has it."""
        return self._tokens.get(container_id)

    def container_of(self, token: str) -> str | None:
        """The container whose executor holds `token` (an HTTP executor's Bearer token), or None."""
        for container_id, known in self._tokens.items():
            if secrets.compare_digest(known.encode(), token.encode()):
                return container_id
        return None

    def recovered_token(self, executor: ExecutorRun, token: str) -> None:
        """A checkpointed executor's token, found at recovery: it may reconnect with it."""
        self._tokens[executor.container_id] = token

    # -- from the master ----------------------------------------------------------

    def run_task(self, framework: Framework, info: pb.TaskInfo) -> None:
        core = self.core
        executor_id = info.executor.executor_id.value
        executor = framework.executors.get(executor_id)
        if executor is not None and executor.is_command:
            core.refuse(framework.id, info, pb.TASK_ERROR, Reason.REASON_TASK_INVALID,
                        f"executor id {executor_id!r} is in use by a command task on this slave")
            return
        if executor is not None and executor.state in (ExecutorRunState.TERMINATING, ExecutorRunState.TERMINATED):
            core.refuse(framework.id, info, framework.dropped_state(), Reason.REASON_EXECUTOR_TERMINATED,
                        f"executor {executor_id} is terminating")
            return
        if executor is None:
            executor_info = pb.ExecutorInfo()
            executor_info.CopyFrom(info.executor)
            executor_info.framework_id.value = framework.id
            executor = self._launch(framework, executor_info, info)
        task = Task(info, framework.id, executor)
        core.add_task(executor, task)
        self._resize(executor)
        if executor.state is ExecutorRunState.RUNNING:
            self._send_launch(executor, task)

    def _resize(self, executor: ExecutorRun) -> None:
        """The executor's container holds its own resources plus its live tasks'."""
        resources = list(executor.info.resources) + [
            r for t in executor.tasks.values() if not t.terminal for r in t.info.resources]
        self.core.containerizer.update(executor.container_id, scalar(resources, "cpus"), scalar(resources, "mem"))

    def kill_task(self, task: Task, policy: pb.KillPolicy | None) -> None:
        executor = task.executor
        if not task.launched:
            self.core.send_status(task, pb.TASK_KILLED, "Killed before it was delivered to its executor",
                                  Reason.REASON_TASK_KILLED_DURING_LAUNCH, source=SOURCE_SLAVE)
            # An executor launched only for tasks that are now all killed would idle forever.
            if executor.state in _WAITING and all(t.terminal for t in executor.tasks.values()):
                self.shutdown(executor)
            return
        if executor.state is ExecutorRunState.TERMINATED:
            return
        event = ExecEvent(type=ExecEvent.KILL)
        event.kill.task_id.CopyFrom(task.info.task_id)
        if policy is not None:
            event.kill.kill_policy.CopyFrom(policy)
        elif task.info.HasField("kill_policy"):
            event.kill.kill_policy.CopyFrom(task.info.kill_policy)
        self._send(executor, event)

    def message(self, executor: ExecutorRun, data: bytes) -> None:
        if executor.peer is None or executor.state is not ExecutorRunState.RUNNING:
            self.core.stats["dropped_framework_messages"] += 1
            log.warning("dropping a framework message for executor %s: it is not subscribed", executor.id)
            return
        event = ExecEvent(type=ExecEvent.MESSAGE)
        event.message.data = data
        self._send(executor, event)

    def shutdown(self, executor: ExecutorRun) -> None:
        """SHUTDOWN to the executor, then kill it after its grace period."""
        if executor.state in (ExecutorRunState.TERMINATING, ExecutorRunState.TERMINATED):
            return
        was_running = executor.state is ExecutorRunState.RUNNING
        executor.shutdown_requested = True
        executor.state = ExecutorRunState.TERMINATING
        self._cancel_timer(executor)
        if was_running and executor.peer is not None:
            log.info("shutting down executor %s of framework %s", executor.id, executor.framework.id)
            self._send(executor, ExecEvent(type=ExecEvent.SHUTDOWN))
            executor.timer = self.core.actor.call_later(
                self._grace(executor), self.core.containerizer.kill, executor.container_id, 0)
        else:
            self.core.containerizer.kill(executor.container_id, 0)

    # -- process lifecycle -----------------------------------------------------------

    def _grace(self, executor: ExecutorRun) -> float:
        if executor.info.HasField("shutdown_grace_period"):
            return seconds(executor.info.shutdown_grace_period)
        return self.core.flags.executor_shutdown_grace_period

    def _launch(self, framework: Framework, info: pb.ExecutorInfo, first: pb.TaskInfo) -> ExecutorRun:
        core = self.core
        executor_id = info.executor_id.value
        container_id = str(uuid.uuid4())
        directory = sandbox_directory(core.work_dir, core.slave_id, framework.id, executor_id, container_id)
        executor = ExecutorRun(executor_id, framework, info, container_id, directory)
        framework.executors[executor_id] = executor
        environment = core.environment({
            "FRAMEWORK_ID": framework.id, "EXECUTOR_ID": executor_id, "SLAVE_ID": core.slave_id,
            "DIRECTORY": directory, "SANDBOX": directory,
            "CHECKPOINT": "1" if framework.info.checkpoint else "0",
            "SLAVE_ENDPOINT": self.endpoint,
            # Where a v1 HTTP executor finds the slave's /api/v1/executor (offerd.slave.executor_http).
            "AGENT_ENDPOINT": f"{core.flags.ip}:{core.slave_info().port}",
            "RECOVERY_TIMEOUT": RECOVERY_TIMEOUT, "SUBSCRIPTION_BACKOFF_MAX": SUBSCRIPTION_BACKOFF_MAX,
            "EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{self._grace(executor)}secs",
        }, info.command)
        environment["PYTHONUNBUFFERED"] = "1"
        # Set after the command's own environment, which must not choose them.
        token = self._tokens[container_id] = secrets.token_urlsafe(32)
        environment[TOKEN_VARIABLE] = token
        environment["MESOS_CONTAINER_ID"] = environment["OFFERD_CONTAINER_ID"] = container_id
        if self.public_key is not None:
            environment[PUBLIC_KEY_VARIABLE] = self.public_key.decode("ascii")
        if core.checkpointer is not None and core.slave_id and core.checkpointer.wanted(executor):
            core.checkpointer.executor_token(core.slave_id, executor, token)
        log.info("launching executor %s of framework %s in %s", executor_id, framework.id, directory)
        executor.timer = core.actor.call_later(core.flags.executor_registration_timeout,
                                               self._registration_timeout, executor)
        resources = list(info.resources) + list(first.resources)
        core.containerizer.launch(
            LaunchSpec(container_id, info.command, directory, environment,
                       cpus=scalar(resources, "cpus"), mem_mb=scalar(resources, "mem"),
                       user=info.command.user or framework.info.user or None, fetch=True,
                       checkpoint=framework.info.checkpoint),
            functools.partial(self._started, executor), functools.partial(self._exited, executor),
        )
        return executor

    def recovered_exit(self, executor: ExecutorRun, termination: Termination) -> None:
        """A custom executor adopted at recovery ended."""
        self._exited(executor, termination)

    def _started(self, executor: ExecutorRun, pid: int | None) -> None:
        executor.pid = pid
        if executor.state is ExecutorRunState.LAUNCHING:  # it may have subscribed already
            executor.state = ExecutorRunState.REGISTERING

    def _registration_timeout(self, executor: ExecutorRun) -> None:
        executor.timer = None
        if executor.state in _WAITING:
            log.warning("executor %s of framework %s did not subscribe within %.0fs; killing it",
                        executor.id, executor.framework.id, self.core.flags.executor_registration_timeout)
            executor.termination_reason = Reason.REASON_EXECUTOR_REGISTRATION_TIMEOUT
            executor.state = ExecutorRunState.TERMINATING
            self.core.containerizer.kill(executor.container_id, 0)

    def _exited(self, executor: ExecutorRun, termination: Termination) -> None:
        core = self.core
        self._cancel_timer(executor)
        executor.peer = None
        if core.stopped:
            # A stopping slave leaves checkpointed executors running; their tokens
            # stay on disk for its next run.
            return
        self._tokens.pop(executor.container_id, None)  # an exited executor's token proves nothing more
        log.info("executor %s of framework %s ended: %s", executor.id, executor.framework.id, termination.message)
        for task in list(executor.tasks.values()):
            if task.terminal:
                continue
            if termination.launch_error is not None:
                core.send_status(task, pb.TASK_FAILED, termination.message,
                                 Reason.REASON_CONTAINER_LAUNCH_FAILED, source=SOURCE_SLAVE)
            elif termination.limitation is not None:
                core.send_status(task, pb.TASK_FAILED, termination.limitation.message,
                                 termination.limitation.reason, source=SOURCE_SLAVE)
            else:
                state = pb.TASK_KILLED if executor.shutdown_requested else pb.TASK_FAILED
                reason = executor.termination_reason or Reason.REASON_EXECUTOR_TERMINATED
                core.send_status(task, state, f"Executor terminated: {termination.message}", reason,
                                 source=SOURCE_SLAVE)
        exited = pb.SlaveCall(type=pb.SlaveCall.EXITED_EXECUTOR)
        exited.exited_executor.framework_id.value = executor.framework.id
        exited.exited_executor.executor_id.value = executor.id
        exited.exited_executor.status = termination.wait_status
        core.send_to_master(exited)
        core.executor_terminated(executor)

    # -- the executor protocol -------------------------------------------------------

    def on_call(self, peer: bytes, call: pb.ExecutorCall) -> None:
        framework_id, executor_id = call.framework_id.value, call.executor_id.value
        principal = self.server.principal(peer)
        if principal is None:
            # The endpoint always authenticates (the daemon gives it the tokens). Checked
            # before anything is looked up, so an unauthenticated peer learns nothing
            # about which executors exist.
            self._error(peer, "this connection has not authenticated: an executor proves itself with the "
                              f"token its slave gave it ({TOKEN_VARIABLE}) as principal MESOS_CONTAINER_ID")
            return
        executor = self.core.find_executor(framework_id, executor_id)
        if executor is None or executor.is_command:
            self._error(peer, f"unknown executor {executor_id!r} of framework {framework_id!r} on this slave")
            return
        handler = self._handlers.get(call.type)
        if handler is None:
            self._error(peer, f"unknown ExecutorCall type {call.type}")
            return
        if principal != executor.container_id:
            self._error(peer, f"this connection authenticated as container {principal}, which is not the "
                              f"container of executor {executor_id} of framework {framework_id}: an executor "
                              "may only speak for itself")
            return
        if call.type != Call.SUBSCRIBE and executor.peer != peer:
            self._error(peer, f"executor {executor_id} is not subscribed on this connection")
            return
        handler(peer, executor, call)

    def on_peer_lost(self, peer: bytes) -> None:
        # The process exit, seen by the reaper, decides the executor's fate; a
        # silent connection may yet come back.
        log.debug("executor connection %s went silent", peer.hex())

    def _subscribe(self, peer: bytes, executor: ExecutorRun, call: pb.ExecutorCall) -> None:
        if executor.state in (ExecutorRunState.TERMINATING, ExecutorRunState.TERMINATED):
            self._error(peer, f"executor {executor.id} is terminating")
            return
        if executor.peer not in (None, peer):
            # An HTTP executor's previous stream (a virtual peer) ends; nothing else does.
            self.server.end_virtual_peer(executor.peer)
        if executor.peer not in (None, peer) and self.server.knows(executor.peer):
            # on_call let through only the connection that proved this executor's token:
            # the executor itself, reconnecting before its old connection timed out
            # here. The old connection is dropped.
            log.info("executor %s of framework %s resubscribed on a new connection", executor.id,
                     executor.framework.id)
            self.server.forget(executor.peer)
        self._cancel_timer(executor)
        executor.peer = peer
        executor.state = ExecutorRunState.RUNNING
        log.info("executor %s of framework %s subscribed", executor.id, executor.framework.id)
        event = ExecEvent(type=ExecEvent.SUBSCRIBED)
        subscribed = event.subscribed
        subscribed.executor_info.CopyFrom(executor.info)
        subscribed.framework_info.CopyFrom(executor.framework.info)
        subscribed.slave_info.CopyFrom(self.core.slave_info())
        subscribed.container_id.value = executor.container_id
        self._send(executor, event)
        for task in executor.tasks.values():
            if not task.launched and not task.terminal:
                self._send_launch(executor, task)
        # After a slave restart, the updates the executor sent that were never acknowledged.
        for status in call.subscribe.unacknowledged_updates:
            update = pb.ExecutorCall(type=Call.UPDATE)
            update.update.status.CopyFrom(status)
            self._update(peer, executor, update)

    def _update(self, peer: bytes, executor: ExecutorRun, call: pb.ExecutorCall) -> None:
        status = call.update.status
        task_id = status.task_id.value
        task = executor.tasks.get(task_id)
        if task is None or not task.launched:
            if any(t.id == task_id for t in executor.completed_tasks):
                self._acknowledge(executor, status)  # a resend of an update already delivered
            else:
                self._error(peer, f"update for task {task_id!r}, which executor {executor.id} is not running")
            return
        if status.state == pb.TASK_STAGING:
            self._error(peer, "an executor may not send TASK_STAGING")
            return
        status.executor_id.value = executor.id
        status.slave_id.value = self.core.slave_id or ""
        status.source = pb.TaskStatus.SOURCE_EXECUTOR
        self.core.forward_status(task, status)
        self._acknowledge(executor, status)

    def _message(self, peer: bytes, executor: ExecutorRun, call: pb.ExecutorCall) -> None:
        out = pb.SlaveCall(type=pb.SlaveCall.EXECUTOR_MESSAGE)
        out.executor_message.framework_id.value = executor.framework.id
        out.executor_message.executor_id.value = executor.id
        out.executor_message.data = call.message.data
        self.core.send_to_master(out)

    # -- helpers -------------------------------------------------------------------------

    def _acknowledge(self, executor: ExecutorRun, status: pb.TaskStatus) -> None:
        event = ExecEvent(type=ExecEvent.ACKNOWLEDGED)
        event.acknowledged.task_id.CopyFrom(status.task_id)
        event.acknowledged.uuid = status.uuid
        self._send(executor, event)

    def _send_launch(self, executor: ExecutorRun, task: Task) -> None:
        task.launched = True
        self.core.checkpoint_task(task)
        event = ExecEvent(type=ExecEvent.LAUNCH)
        event.launch.task.CopyFrom(task.info)
        self._send(executor, event)

    def _send(self, executor: ExecutorRun, event: pb.ExecutorEvent) -> None:
        if executor.peer is not None:
            self.server.send(executor.peer, event)

    def _error(self, peer: bytes, message: str) -> None:
        self.core.stats["invalid_executor_calls"] += 1
        log.warning("refusing an executor call: %s", message)
        event = ExecEvent(type=ExecEvent.ERROR)
        event.error.message = message
        self.server.send(peer, event)

    @staticmethod
    def _cancel_timer(executor: ExecutorRun) -> None:
        if executor.timer is not None:
            executor.timer.cancel()
            executor.timer = None
