"""The SDK side: a :class:`Scheduler` that hands offers and updates to the core.

Uses only the public ``offerd.framework_sdk``; every callback takes the core's
lock, so the callback thread, the API threads and the ticker never race.
"""

from __future__ import annotations

import getpass
import logging
import threading

from offerd.framework_sdk import MesosSchedulerDriver, Scheduler
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)


class MarathonScheduler(Scheduler):
    def __init__(self, core):
        self.core = core

    def registered(self, driver, frameworkId, masterInfo):
        with self.core.lock:
            self.core.framework_id = frameworkId.value
            self.core.storage.save_framework_id(frameworkId.value)
            self.core.master_info = f"{masterInfo.hostname}:{masterInfo.port}"
            self.core.events.publish("scheduler_registered_event", frameworkId=frameworkId.value,
                                     master=self.core.master_info)
            self.core.on_connected()

    def reregistered(self, driver, masterInfo):
        with self.core.lock:
            self.core.events.publish("scheduler_reregistered_event", master=f"{masterInfo.hostname}:{masterInfo.port}")
            self.core.on_connected()

    def disconnected(self, driver):
        with self.core.lock:
            self.core.connected = False
            self.core.events.publish("scheduler_disconnected_event")

    def resourceOffers(self, driver, offers):
        with self.core.lock:
            self.core.on_offers(offers)

    def statusUpdate(self, driver, status):
        with self.core.lock:
            self.core.on_status(status)

    def error(self, driver, message):
        # The driver is aborted once it reports an error (as Mesos' is): whatever the
        # reason, this process can no longer schedule, so it ends saying why and its
        # supervisor (or an operator) starts a fresh one.
        log.error("driver error: %s", message)
        reason = message
        if "refused authentication" in message:
            reason = (f"{message} (check --mesos_authentication_principal and "
                      "--mesos_authentication_secret_file against the master's --credentials)")
        elif "has been removed" in message:
            # Our framework id is dead for good: forget it and the tasks it owned, so
            # the next start registers anew.
            with self.core.lock:
                self.core.storage.save_framework_id(None)
                for task_id in list(self.core.instances):
                    self.core.storage.delete_instance(task_id)
        self.core.fatal_reason = reason
        self.core.fatal.set()


class Ticker:
    """Calls core.tick (and the health checker) every `interval` seconds."""

    def __init__(self, core, interval: float = 0.2, extra=()):
        self.core, self.interval, self.extra = core, interval, list(extra)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marathon-tick", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            if not self.core.leading:
                continue   # a standby: the leader does the work
            try:
                with self.core.lock:
                    self.core.tick()
                for fn in self.extra:
                    fn()
            except Exception:  # a bad tick must not stop the framework
                log.exception("tick failed")

    def stop(self):
        self._stop.set()


def make_driver(core, master: str) -> MesosSchedulerDriver:
    config = core.config
    scheme = "https" if config.ssl_cert_file else "http"
    info = pb.FrameworkInfo(name=config.framework_name, user=config.mesos_user or getpass.getuser(),
                            failover_timeout=config.failover_timeout, checkpoint=True,
                            hostname=config.hostname,
                            webui_url=f"{scheme}://{config.hostname}:{config.http_port}")
    # As Marathon: a task on a slave that stops answering is TASK_UNREACHABLE, not
    # TASK_LOST, and the app's unreachableStrategy decides what happens to it.
    info.capabilities.add(type=pb.FrameworkInfo.Capability.PARTITION_AWARE)
    if core.config.mesos_role != "*":
        info.roles.append(core.config.mesos_role)
        info.capabilities.add(type=pb.FrameworkInfo.Capability.MULTI_ROLE)
    stored = core.storage.framework_id()
    if stored:
        info.id.value = stored
    credential = None
    if config.mesos_authentication_principal:
        # Marathon's --mesos_authentication_principal: proven to the master, and the
        # principal the master's ACLs (register_frameworks, run_tasks) judge.
        info.principal = config.mesos_authentication_principal
        credential = pb.Credential(principal=config.mesos_authentication_principal,
                                   secret=config.mesos_authentication_secret.encode("utf-8"))
    security = {}
    if config.master_public_key:
        security["master_public_key"] = config.master_public_key
    if config.ssl_ca_file:
        security["ca_file"] = config.ssl_ca_file
    driver = MesosSchedulerDriver(MarathonScheduler(core), info, master, True, credential, **security)
    core.driver = driver
    return driver
