"""Many simulated slaves in one process (`--simulate N`), for benchmarks and scale tests.

All of them share one actor thread and one HTTP server, but each is a full
SlaveCore with its own master connection, slave id, work directory
(work_dir/sim-<i>) and hostname (sim-<i>), so the master sees N machines. Tasks
run in the simulated containerizer: no processes, only the protocol.
"""

from __future__ import annotations

import collections
import logging
import os
import threading

from offerd.common import exposure
from offerd.common.actor import Actor
from offerd.common.flags import flags_as_dict
from offerd.common.http import HttpServer
from offerd.common.redact import redact_flags
from offerd.slave import state as slave_state
from offerd.slave.containerizer.posix import process_statistics
from offerd.slave.containerizer.simulated import SimulatedContainerizer
from offerd.slave.core import MasterLink, SlaveCore, exposure_gaps
from offerd.slave.flags import SLAVE_FLAGS, validate
from offerd.common.flags import FlagError
from offerd.slave.http_api import create_app, http_security
from offerd.slave.machine import load_attributes, load_resources
from offerd.slave.registration import build_slave_info

log = logging.getLogger(__name__)


class SimulatedFleet:
    """`count` simulated slaves (default --simulate); `start()` / `stop()` as a Slave."""

    def __init__(self, flags, count: int | None = None):
        self.flags = flags
        self.count = count if count is not None else flags.simulate
        if self.count < 1:
            raise ValueError("a simulated fleet needs at least one slave")
        self.http_port: int | None = None
        self.failure: str | None = None
        self.actor: Actor | None = None
        self.cores: list[SlaveCore] = []
        self._ids: dict[int, str] = {}
        self._http: HttpServer | None = None
        self._running = False
        self._stop_lock = threading.Lock()
        self._stopping = False
        self.stopped = threading.Event()

    @property
    def slave_ids(self) -> list[str]:
        """Ids of the simulated slaves registered so far, in slave order."""
        return [self._ids[i] for i in sorted(self._ids)]

    def start(self) -> "SimulatedFleet":
        flags = validate(self.flags)
        if flags.acls:
            # Its /state nests many slaves, which the ACL filtering of a slave's /state does not reach.
            raise FlagError("--acls is not applied by a simulated fleet (--simulate); run real slaves to use ACLs")
        exposure.check("slave", flags.ip, exposure_gaps(flags), flags.insecure)
        # One credential, master key and TLS context for every simulated slave.
        link = MasterLink.from_flags(flags)
        resources = load_resources(flags.resources, flags.work_dir)
        attributes = load_attributes(flags.attributes)
        self.actor = actor = Actor("slave-fleet")
        auth, _ = http_security(flags)
        self._http = HttpServer(create_app(_FleetView(self), auth), flags.ip, flags.port, name="fleet-http",
                                ssl_cert_file=flags.ssl_cert_file, ssl_key_file=flags.ssl_key_file)
        self.http_port = self._http.port
        for i in range(self.count):
            work_dir = os.path.join(flags.work_dir, f"sim-{i}")
            os.makedirs(work_dir, exist_ok=True)
            info = build_slave_info(f"sim-{i}", flags.ip, self.http_port, resources, attributes)
            core = SlaveCore(
                actor, flags, info, work_dir, SimulatedContainerizer(actor), name=f"sim-{i}",
                on_shutdown=lambda reason, i=i: self._shut_down_by_master(i, reason),
                on_registered=lambda slave_id, i=i: self._ids.__setitem__(i, slave_id),
                link=link, on_auth_refused=self._auth_refused, resources=resources,
            )
            core.start()
            self.cores.append(core)
        actor.start()
        self._running = True
        self._http.start()
        log.info("%d simulated slaves, HTTP on %s:%d, each with %s", self.count, flags.ip, self.http_port, resources)
        return self

    def stop(self) -> None:
        if self._running and self.actor.in_actor_thread():
            threading.Thread(target=self.stop, name="fleet-stop", daemon=True).start()
            return
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            if self._running:
                try:
                    self.actor.call(lambda: [core.stop() for core in self.cores], timeout=10.0)
                except TimeoutError:
                    log.warning("the fleet's actor did not answer; stopping anyway")
                self.actor.stop()
                self.actor.join(5.0)
            if self._http is not None:
                self._http.close()
        finally:
            self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    def _auth_refused(self, message: str) -> None:
        # They all share one credential: the master refuses every one of them.
        if self.failure is None:
            self.failure = message
            self.stop()

    def _shut_down_by_master(self, index: int, reason: str) -> None:
        self._ids.pop(index, None)
        log.warning("simulated slave sim-%d was shut down by the master (%s)", index, reason)
        if all(core.stopped for core in self.cores):
            log.warning("every simulated slave has been shut down; stopping the fleet")
            self.stop()


class _FleetView:
    def __init__(self, fleet: SimulatedFleet):
        self._fleet = fleet
        self.work_dir = fleet.flags.work_dir

    def _call(self, fn):
        return self._fleet.actor.call(fn)

    def _states(self) -> list[dict]:
        port = self._fleet.http_port
        return [slave_state.slave_state(core, port, index=i + 1) for i, core in enumerate(self._fleet.cores)]

    def state(self, index: int | None) -> dict | None:
        if index is None:
            return {"flags": self.flags(), "slaves": self._call(self._states)}
        if not 1 <= index <= len(self._fleet.cores):
            return None
        core = self._fleet.cores[index - 1]
        return self._call(lambda: slave_state.slave_state(core, self._fleet.http_port, self.flags(), index))

    def flags(self) -> dict:
        # As a slave's: /flags and /state never show a zk password or a secret.
        return redact_flags(flags_as_dict(self._fleet.flags, SLAVE_FLAGS))

    def metrics(self) -> dict:
        def summed():
            total = collections.Counter()
            uptime = 0.0
            for core in self._fleet.cores:
                metrics = slave_state.metrics(core)
                uptime = max(uptime, metrics.pop("slave/uptime_secs"))
                total.update(metrics)
            return {**total, "slave/uptime_secs": uptime}
        return self._call(summed)

    def statistics(self) -> list[dict]:
        targets = self._call(lambda: [t for core in self._fleet.cores for t in slave_state.usage_targets(core)])
        for target in targets:
            target.pop("pid")
            target.pop("container_id")
            target["statistics"] = process_statistics(None)
        return targets
