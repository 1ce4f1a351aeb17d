"""The callback and driver interfaces of a framework, as in Mesos' Python bindings.

A framework is a :class:`Scheduler` (talks to the master, decides what runs where)
and optionally an :class:`Executor` (runs inside a slave's container, runs the
tasks). Subclass them and override the callbacks you care about; every callback
has an empty default, so a scheduler that only launches tasks needs only
``resourceOffers`` and ``statusUpdate``.

Callbacks are invoked one at a time on the driver's own thread. They may call any
driver method (those only queue work), but should not block for long: while a
callback runs, no other event of that driver is delivered. An exception escaping
a callback is logged and aborts the driver, as the Mesos bindings do.

The names, argument order and meaning follow ``mesos.interface`` exactly, so code
written for Mesos runs unchanged; the messages are ``offerd.proto.offerd_pb2``
messages, which keep Mesos' message and field names.
"""

from __future__ import annotations

__all__ = ["Scheduler", "SchedulerDriver", "Executor", "ExecutorDriver"]


class Scheduler:
    """Callbacks of a framework scheduler. Override what you need."""

    def registered(self, driver, frameworkId, masterInfo):
        """The driver subscribed to a master for the first time.

        `frameworkId` (FrameworkID) is the id the master assigned, or the one the
        framework passed in FrameworkInfo.id to fail over; `masterInfo` (MasterInfo)
        describes the leading master.
        """

    def reregistered(self, driver, masterInfo):
        """The driver subscribed again after a disconnection (same framework id).

        Offers held before the disconnection are no longer valid; status updates
        sent meanwhile are delivered again. A good moment to reconcile tasks.
        """

    def disconnected(self, driver):
        """The connection to the master is lost; the driver is looking for it.

        Calls made while disconnected are dropped, except that tasks launched
        meanwhile are reported TASK_LOST with REASON_MASTER_DISCONNECTED.
        """

    def resourceOffers(self, driver, offers):
        """Resources are offered: a list of Offer.

        Answer each offer with ``launchTasks``/``acceptOffers`` or ``declineOffer``.
        Until then its resources count against this framework's share.
        """

    def offerRescinded(self, driver, offerId):
        """An offer is withdrawn (timeout, slave lost); using it now fails."""

    def inverseOffers(self, driver, inverse_offers):
        """Maintenance is scheduled where this framework holds resources: a list of
        InverseOffer (one per slave, with the machine's ``unavailability``).

        Answer with ``acceptInverseOffers`` (it will comply) or ``declineInverseOffers``;
        the answer shows in the operator's maintenance status. Until answered, no other
        inverse offer for that slave comes; after an answer, one comes again once its
        filter (``refuse_seconds``, default 5 s) expires.
        """

    def inverseOfferRescinded(self, driver, inverseOfferId):
        """An inverse offer is withdrawn (the schedule changed, the slave is gone)."""

    def statusUpdate(self, driver, status):
        """A task changed state: `status` is a TaskStatus.

        With implicit acknowledgements (the default) the driver acknowledges the
        update once this returns; otherwise call ``driver.acknowledgeStatusUpdate``.
        Delivery is at least once: handle repeats idempotently.
        """

    def frameworkMessage(self, driver, executorId, slaveId, message):
        """An executor sent `message` (bytes, delivered best effort)."""

    def slaveLost(self, driver, slaveId):
        """A slave is gone; its tasks get their own status updates."""

    def executorLost(self, driver, executorId, slaveId, status):
        """An executor exited; `status` is its wait status."""

    def error(self, driver, message):
        """An unrecoverable error: the driver is already aborted when this runs."""


class SchedulerDriver:
    """What a scheduler can ask of its driver.

    Every method returns the driver's Status (``DRIVER_RUNNING``, ...); a method
    called when the driver is not running does nothing and returns that status.
    """

    def start(self):
        """Connect to the master and subscribe. Returns DRIVER_RUNNING."""
        raise NotImplementedError

    def stop(self, failover=False):
        """Stop the driver.

        ``failover=False`` unregisters the framework: the master kills its tasks.
        ``failover=True`` only disconnects: the master keeps the tasks for
        FrameworkInfo.failover_timeout so a new scheduler can take over.
        """
        raise NotImplementedError

    def abort(self):
        """Stop delivering callbacks at once; the framework stays registered."""
        raise NotImplementedError

    def join(self):
        """Block until the driver is stopped or aborted; returns that status."""
        raise NotImplementedError

    def run(self):
        """``start()`` then ``join()``."""
        raise NotImplementedError

    def requestResources(self, requests):
        """Hint the allocator about wanted resources (a list of Request)."""
        raise NotImplementedError

    def launchTasks(self, offerIds, tasks, filters=None):
        """Launch TaskInfos on one offer or a list of offers of the same slave.

        Unused resources return to the allocator under `filters`. No tasks
        declines the offers.
        """
        raise NotImplementedError

    def acceptOffers(self, offerIds, operations, filters=None):
        """Apply Offer.Operations (LAUNCH, ...) in order to offers of one slave."""
        raise NotImplementedError

    def declineOffer(self, offerId, filters=None):
        """Give an offer back; Filters.refuse_seconds (default 5) keeps it away."""
        raise NotImplementedError

    def acceptInverseOffers(self, inverseOfferIds, filters=None):
        """Tell the master this framework will comply with the maintenance."""
        raise NotImplementedError

    def declineInverseOffers(self, inverseOfferIds, filters=None):
        """Tell the master this framework cannot comply with the maintenance (yet)."""
        raise NotImplementedError

    def reviveOffers(self, roles=None):
        """Clear decline filters and suppression (for `roles`, or all)."""
        raise NotImplementedError

    def suppressOffers(self, roles=None):
        """Ask for no more offers (for `roles`, or all) until revived."""
        raise NotImplementedError

    def killTask(self, taskId):
        """Kill a task; its end comes as a status update. Best effort."""
        raise NotImplementedError

    def acknowledgeStatusUpdate(self, status):
        """Acknowledge a TaskStatus (only with implicitAcknowledgements=False)."""
        raise NotImplementedError

    def sendFrameworkMessage(self, executorId, slaveId, data):
        """Send bytes to an executor. Best effort, no retries."""
        raise NotImplementedError

    def reconcileTasks(self, tasks):
        """Ask for the latest state of TaskStatuses (empty list: of all tasks)."""
        raise NotImplementedError

    def updateFramework(self, frameworkInfo, suppressedRoles=None):
        """Change the FrameworkInfo (roles, capabilities, ...) of a running framework."""
        raise NotImplementedError


class Executor:
    """Callbacks of a framework executor. Override what you need."""

    def registered(self, driver, executorInfo, frameworkInfo, slaveInfo):
        """The executor subscribed to its slave for the first time."""

    def reregistered(self, driver, slaveInfo):
        """The executor subscribed again to a restarted or reconnected slave."""

    def disconnected(self, driver):
        """The connection to the slave is lost; the driver tries to get it back.

        If it stays lost past MESOS_RECOVERY_TIMEOUT, ``shutdown`` is called and
        the driver stops.
        """

    def launchTask(self, driver, task):
        """Run a TaskInfo. Do the work on another thread, not in this callback,
        and report progress with ``driver.sendStatusUpdate``."""

    def killTask(self, driver, taskId):
        """Kill a running task and send its terminal status (TASK_KILLED)."""

    def frameworkMessage(self, driver, message):
        """The scheduler sent `message` (bytes, delivered best effort)."""

    def shutdown(self, driver):
        """Kill all tasks and clean up: the slave ends this executor soon after."""

    def error(self, driver, message):
        """An unrecoverable error: the driver is already aborted when this runs."""


class ExecutorDriver:
    """What an executor can ask of its driver; methods return the driver Status."""

    def start(self):
        """Connect to the slave named by the environment and subscribe."""
        raise NotImplementedError

    def stop(self):
        """Stop the driver (after handing pending status updates to the slave)."""
        raise NotImplementedError

    def abort(self):
        """Stop delivering callbacks at once."""
        raise NotImplementedError

    def join(self):
        """Block until the driver is stopped or aborted; returns that status."""
        raise NotImplementedError

    def run(self):
        """``start()`` then ``join()``."""
        raise NotImplementedError

    def sendStatusUpdate(self, status):
        """Report a task's TaskStatus; delivered reliably through the slave."""
        raise NotImplementedError

    def sendFrameworkMessage(self, data):
        """Send bytes to the scheduler. Best effort, no retries."""
        raise NotImplementedError
