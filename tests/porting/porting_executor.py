#!/usr/bin/env python3
"""An executor written for Mesos' Python bindings, ported by changing only imports.

Written the way Mesos' own test executor is (src/examples/python/test_executor.py).
With Mesos the imports were:

    from mesos.interface import Executor
    from mesos.interface import mesos_pb2
    from mesos.native import MesosExecutorDriver

Started by a slave, which sets its environment; porting_framework.py names it.
"""

import sys
import threading
import time

from offerd.framework_sdk import Executor, MesosExecutorDriver
from offerd.proto import offerd_pb2 as mesos_pb2


class MyExecutor(Executor):
    def launchTask(self, driver, task):
        # Create a thread to run the task. Tasks should always be run in new
        # threads or processes, rather than inside launchTask itself.
        def run_task():
            print("Running task %s" % task.task_id.value)
            update = mesos_pb2.TaskStatus()
            update.task_id.value = task.task_id.value
            update.state = mesos_pb2.TASK_RUNNING
            update.data = b"data with a \0 byte"
            driver.sendStatusUpdate(update)

            # This is where one would perform the requested task.
            time.sleep(1)

            print("Sending status update...")
            update = mesos_pb2.TaskStatus()
            update.task_id.value = task.task_id.value
            update.state = mesos_pb2.TASK_FINISHED
            update.data = b"data with a \0 byte"
            driver.sendStatusUpdate(update)
            print("Sent status update")

        thread = threading.Thread(target=run_task)
        thread.start()

    def frameworkMessage(self, driver, message):
        # Send it back to the scheduler.
        driver.sendFrameworkMessage(message)


if __name__ == "__main__":
    print("Starting executor")
    driver = MesosExecutorDriver(MyExecutor())
    sys.exit(0 if driver.run() == mesos_pb2.DRIVER_STOPPED else 1)
