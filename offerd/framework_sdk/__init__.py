"""The framework SDK: write offerd frameworks as you would for Mesos' Python bindings.

    from offerd.framework_sdk import Scheduler, Executor, MesosSchedulerDriver, MesosExecutorDriver
    from offerd.proto import offerd_pb2 as mesos_pb2

:class:`Scheduler` and :class:`Executor` are the callback base classes;
:class:`SchedulerDriver` and :class:`ExecutorDriver` (alias ``MesosSchedulerDriver``
and ``MesosExecutorDriver``) connect them to a master and a slave. See README.md
in this package. :class:`Resources` does offer and task arithmetic without
summing protobufs by hand::

    offered = Resources.from_protos(offer.resources)
    wanted = Resources.from_scalars({"cpus": 0.5, "mem": 64})
    if offered.contains(wanted):
        task.resources.extend(wanted.to_protos())

Importing it starts nothing and configures no logging.
"""

from offerd.common.resources import ResourceError, Resources
from offerd.framework_sdk.executor_driver import ExecutorDriver, MesosExecutorDriver
from offerd.framework_sdk.interface import Executor, Scheduler
from offerd.framework_sdk.scheduler_driver import MesosSchedulerDriver, SchedulerDriver

__all__ = [
    "Scheduler",
    "Executor",
    "SchedulerDriver",
    "ExecutorDriver",
    "MesosSchedulerDriver",
    "MesosExecutorDriver",
    "Resources",
    "ResourceError",
]
