"""Task traffic: status updates, acknowledgements, reconciliation, kills, messages.

Status updates are at-least-once end to end: the slave resends an update
until the scheduler's ACKNOWLEDGE comes back through the master. The master
records the latest state, frees a task's resources as soon as the slave says
it is terminal, and forgets the task (moves it to completed) only once the
terminal update has been acknowledged.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from offerd.master import events
from offerd.master.state import Framework, Slave, Task, is_terminal, state_name
from offerd.master.validation import validate_acknowledge
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)

Reason = pb.TaskStatus


class Updates:
    def __init__(self, master: Master):
        self.master = master
        self.state = master.state

    # -- from slaves --------------------------------------------------------------

    def on_update(self, slave: Slave, call: pb.SlaveCall) -> None:
        master = self.master
        update = call.update
        status = update.status
        framework_id = update.framework_id.value
        task_id = status.task_id.value
        latest = update.latest_state if update.HasField("latest_state") else status.state
        framework = self.state.frameworks.get(framework_id)
        if framework is None:
            # Nobody will ever acknowledge this: do it for the framework and
            # tell the slave to drop what is left of it.
            master.metrics.inc("master/invalid_status_updates")
            log.info("status update for task %s of unknown framework %s from slave %s; shutting it down",
                     task_id, framework_id, slave.slave_id)
            if status.uuid:
                master.send_slave(slave, events.acknowledge(framework_id, task_id, status.uuid))
            master.send_slave(slave, events.shutdown_framework(framework_id))
            return
        task = slave.tasks.get((framework_id, task_id))
        if task is None:
            self._not_held(slave, framework, update)
            return
        master.metrics.inc("master/valid_status_updates")
        if status.uuid and status.uuid == task.status_update_uuid:
            pass  # a resend: nothing new to record
        else:
            self.state.set_task_state(task, latest)
            # Health (a third element) only when the update says it, as Mesos' /state shows it.
            task.statuses.append((status.state, status.timestamp or time.time(), status.healthy)
                                 if status.HasField("healthy") else (status.state, status.timestamp or time.time()))
            task.status_update_state = status.state
            task.status_update_uuid = status.uuid or None
            if is_terminal(latest):
                master.metrics.count_terminal(status)
            master.operator_events.task_updated(task, status)
        if is_terminal(latest):
            self.recover(task)
        if framework.connected:
            # The sender is the slave the task is on, whatever the status says.
            status.slave_id.value = slave.slave_id
            master.send_event(framework, events.update(status))

    def _not_held(self, slave: Slave, framework: Framework, update: pb.SlaveCall.Update) -> None:
        """An update for a task the sending slave does not hold: never forwarded
        and nothing recorded, so a slave can speak only for its own tasks.

        A task the master already completed on this very slave is the one legitimate
        case (a resend crossing the acknowledgement, or the slave finishing it while
        the master decided its end): the slave is acknowledged so that it stops
        resending. Tasks the master lost track of come back through REREGISTER first.
        """
        master = self.master
        status = update.status
        task_id = status.task_id.value
        master.metrics.inc("master/invalid_status_updates")
        done = framework.completed_tasks.get(task_id)
        if done is not None and done.slave_id == slave.slave_id:
            log.info("status update %s for task %s of framework %s from slave %s: the task is already "
                     "completed; acknowledged, not forwarded", state_name(status.state), task_id,
                     framework.framework_id, slave.slave_id)
            if status.uuid:
                master.send_slave(slave, events.acknowledge(framework.framework_id, task_id, status.uuid))
            return
        holder = framework.tasks.get(task_id)
        where = f"it is on slave {holder.slave_id}" if holder is not None else "the master knows no such task"
        log.warning("refused status update %s for task %s of framework %s from slave %s (principal %s): %s",
                    state_name(status.state), task_id, framework.framework_id, slave.slave_id,
                    repr(slave.principal) if slave.principal is not None else "(none)", where)
        master.send_slave(slave, events.slave_error(
            f"Status update for task {task_id} of framework {framework.framework_id} refused: slave "
            f"{slave.slave_id} does not hold that task; a slave reports its tasks by reregistering"))

    def on_executor_message(self, slave: Slave, call: pb.SlaveCall) -> None:
        message = call.executor_message
        framework = self.state.frameworks.get(message.framework_id.value)
        if slave.executor(message.framework_id.value, message.executor_id.value) is None:
            # Only an executor this slave runs may speak for itself to its framework.
            self.master.metrics.inc("master/invalid_executor_to_framework_messages")
            log.warning("refused a message from executor %s of framework %s: slave %s (principal %s) does not "
                        "run that executor", message.executor_id.value, message.framework_id.value,
                        slave.slave_id, repr(slave.principal) if slave.principal is not None else "(none)")
            return
        if framework is None or not framework.connected:
            self.master.metrics.inc("master/invalid_executor_to_framework_messages")
            return
        event = pb.Event(type=pb.Event.MESSAGE)
        event.message.slave_id.value = slave.slave_id
        event.message.executor_id.CopyFrom(message.executor_id)
        event.message.data = message.data
        self.master.metrics.inc("master/valid_executor_to_framework_messages")
        self.master.send_event(framework, event)

    def on_exited_executor(self, slave: Slave, call: pb.SlaveCall) -> None:
        master = self.master
        exited = call.exited_executor
        framework_id = exited.framework_id.value
        executor_id = exited.executor_id.value
        executors = slave.executors.get(framework_id, {})
        executor = executors.pop(executor_id, None)
        if executor is None:
            # Not (or no longer) an executor of this slave: the framework hears
            # nothing, as a slave may report only its own executors' ends.
            master.metrics.inc("master/invalid_exited_executors")
            log.info("ignored EXITED_EXECUTOR for executor %s of framework %s from slave %s (principal %s): "
                     "the slave does not run that executor", executor_id, framework_id, slave.slave_id,
                     repr(slave.principal) if slave.principal is not None else "(none)")
            return
        if not executors:
            slave.executors.pop(framework_id, None)
        if not executor.resources.is_empty():
            master.allocator.recover_resources(framework_id, slave.slave_id, executor.resources, None,
                                          time.monotonic())
            master.request_allocation([slave.slave_id])
        framework = self.state.frameworks.get(framework_id)
        if framework is not None and framework.connected:
            master.send_event(framework, events.failure(slave.slave_id, executor_id,
                                                   exited.status if exited.HasField("status") else None))

    # -- task bookkeeping -------------------------------------------------------

    def recover(self, task: Task) -> None:
        """Give a task's resources back to the allocator (once)."""
        if task.recovered:
            return
        task.recovered = True
        if not task.resources.is_empty():
            self.master.allocator.recover_resources(task.framework_id, task.slave_id, task.resources, None,
                                               time.monotonic())
            self.master.request_allocation([task.slave_id])

    def complete(self, task: Task) -> None:
        """The task leaves the active records for the framework's completed list."""
        self.recover(task)
        framework = self.state.frameworks.get(task.framework_id)
        slave = self.state.slaves.get(task.slave_id)
        if slave is not None:
            slave.tasks.pop((task.framework_id, task.task_id), None)
        if framework is not None:
            framework.tasks.pop(task.task_id, None)
            framework.add_completed(task)

    def end_task(self, task: Task, state: int, reason: int, message: str) -> None:
        """The master decides a task is over (slave gone, not reported): tell the
        framework with a master-made update and complete the task."""
        self.state.set_task_state(task, state)
        task.statuses.append((state, time.time()))
        status = events.master_status(task.task_id, state, reason, message, task.slave_id,
                                      task.executor_id or None)
        self.master.metrics.count_terminal(status)
        self.master.operator_events.task_updated(task, status)
        framework = self.state.frameworks.get(task.framework_id)
        if framework is not None and framework.connected:
            self.master.send_event(framework, events.update(status))
        self.complete(task)

    # -- from schedulers --------------------------------------------------------

    def on_acknowledge(self, framework: Framework, call: pb.Call) -> None:
        master = self.master
        ack = call.acknowledge
        error = validate_acknowledge(ack, self.state.slaves)
        if error is not None:
            # Mesos drops a bad acknowledgement with a log line; the slave resends.
            master.metrics.inc("master/invalid_status_update_acknowledgements")
            log.info("framework %s: dropping acknowledgement for task %s: %s", framework.framework_id,
                     ack.task_id.value, error)
            return
        slave = self.state.slaves[ack.slave_id.value]
        task = slave.tasks.get((framework.framework_id, ack.task_id.value))
        if (task is not None and task.status_update_uuid == ack.uuid
                and task.status_update_state is not None and is_terminal(task.status_update_state)):
            self.complete(task)
        master.metrics.inc("master/valid_status_update_acknowledgements")
        master.send_slave(slave, events.acknowledge(framework.framework_id, ack.task_id.value, ack.uuid))

    def on_reconcile(self, framework: Framework, call: pb.Call) -> None:
        master = self.master
        wanted = call.reconcile.tasks
        if not len(wanted):
            for task in framework.tasks.values():
                if not is_terminal(task.state):
                    master.send_event(framework, events.update(self._latest(task)))
            return
        for item in wanted:
            status = self.reconcile_one(framework, item.task_id.value, item.slave_id.value,
                                        "Reconciliation: Latest task state")
            master.send_event(framework, events.update(status))

    def _latest(self, task: Task, message: str = "Reconciliation: Latest task state") -> pb.TaskStatus:
        return events.master_status(task.task_id, task.state, Reason.REASON_RECONCILIATION, message,
                                    task.slave_id, task.executor_id or None)

    def reconcile_one(self, framework: Framework, task_id: str, slave_id: str, message: str) -> pb.TaskStatus:
        """What the master can say about one task."""
        task = framework.tasks.get(task_id) or framework.completed_tasks.get(task_id)
        if task is not None:
            return self._latest(task, message)
        unreachable = framework.unreachable_tasks.get(task_id)
        if unreachable is not None:
            state = pb.TASK_UNREACHABLE if framework.partition_aware else pb.TASK_LOST
            return events.master_status(task_id, state, Reason.REASON_RECONCILIATION,
                                        f"{message}: task is on an unreachable slave", unreachable.slave_id)
        if not framework.partition_aware:
            state, why = pb.TASK_LOST, "task is unknown to the master"
        elif slave_id in self.state.slaves:
            state, why = pb.TASK_GONE, f"task is unknown to registered slave {slave_id}"
        elif slave_id in self.state.unreachable_slaves:
            state, why = pb.TASK_UNREACHABLE, f"slave {slave_id} is unreachable"
        else:
            state, why = pb.TASK_UNKNOWN, "task and slave are unknown to the master"
        return events.master_status(task_id, state, Reason.REASON_RECONCILIATION, f"{message}: {why}",
                                    slave_id or None)

    def on_kill(self, framework: Framework, call: pb.Call) -> None:
        master = self.master
        kill = call.kill
        task_id = kill.task_id.value
        task = framework.tasks.get(task_id)
        if task is None:
            # Mesos answers a kill of a task it does not know by reconciling it.
            status = self.reconcile_one(framework, task_id, kill.slave_id.value,
                                        f"Cannot kill task {task_id}")
            master.send_event(framework, events.update(status))
            return
        policy = kill.kill_policy if kill.HasField("kill_policy") else None
        message = events.kill_task(framework.framework_id, task_id, policy)
        slave = self.state.slaves.get(task.slave_id)
        if slave is not None and slave.connected:
            master.send_slave(slave, message)
        else:
            # Delivered when the slave reregisters.
            task.pending_kill = message
        log.debug("framework %s kills task %s (%s)", framework.framework_id, task_id, state_name(task.state))

    def on_shutdown(self, framework: Framework, call: pb.Call) -> None:
        shutdown = call.shutdown
        slave = self.state.slaves.get(shutdown.slave_id.value)
        if slave is None or not slave.connected:
            self.master.metrics.inc("master/dropped_messages")
            log.info("framework %s: cannot shut down executor %s on slave %s: slave not connected",
                     framework.framework_id, shutdown.executor_id.value, shutdown.slave_id.value)
            return
        event = pb.SlaveEvent(type=pb.SlaveEvent.SHUTDOWN_EXECUTOR)
        event.shutdown_executor.framework_id.value = framework.framework_id
        event.shutdown_executor.executor_id.CopyFrom(shutdown.executor_id)
        self.master.send_slave(slave, event)

    def on_message(self, framework: Framework, call: pb.Call) -> None:
        message = call.message
        slave = self.state.slaves.get(message.slave_id.value)
        if slave is None or not slave.connected:
            self.master.metrics.inc("master/invalid_framework_to_executor_messages")
            log.debug("framework %s: message for slave %s dropped: slave not connected",
                      framework.framework_id, message.slave_id.value)
            return
        event = pb.SlaveEvent(type=pb.SlaveEvent.FRAMEWORK_MESSAGE)
        event.framework_message.framework_id.value = framework.framework_id
        event.framework_message.executor_id.CopyFrom(message.executor_id)
        event.framework_message.data = message.data
        self.master.metrics.inc("master/valid_framework_to_executor_messages")
        self.master.send_slave(slave, event)
