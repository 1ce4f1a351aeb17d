"""Wire the pieces into one process: core, SDK driver, ticker, health checks, HTTP.

Without ``--zk`` this instance leads from the start. With it, it contends for
leadership (zk.Leadership); while it does not lead, the ticker idles and the API
proxies to the leader; when elected it reloads the state from ZooKeeper, registers
with the stored framework id (a failover: running tasks are adopted) and
reconciles. Losing the ZooKeeper session while leading ends the process, as
Marathon does, so a supervisor starts a clean standby.
"""

from __future__ import annotations

import logging

from offerd.common import exposure
from offerd.common.http import HttpServer
from offerd.proto import offerd_pb2 as pb

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.api.auth import check_config
from frameworks.marathon_like.core import Config, Core, NullDriver
from frameworks.marathon_like.health import HealthChecker
from frameworks.marathon_like.scheduler import Ticker, make_driver
from frameworks.marathon_like.storage import FileStorage, InMemoryStorage, Storage

log = logging.getLogger(__name__)


def exposure_missing(config: Config) -> list[str]:
    """The protections a Marathon reachable from other hosts must have and lacks."""
    missing = []
    if not config.http_credentials:
        missing.append("HTTP authentication (--http_credentials, optionally --http_operator_principals)")
    if not config.ssl_cert_file:
        missing.append("HTTPS (--ssl_cert_file, --ssl_key_file)")
    return missing


# Worker threads of the API's HTTP server when few event streams are allowed.
HTTP_THREADS = 16


def http_threads(config: Config) -> int:
    """Enough workers that the open /v2/events streams (each holds one) take at
    most half of them: the API answers however many clients listen."""
    return max(HTTP_THREADS, 2 * config.max_event_streams)


def make_storage(config: Config) -> Storage:
    """ZooKeeper with --zk, files under --work_dir otherwise, memory when neither is set."""
    if config.zk:
        from frameworks.marathon_like.zk import ZooKeeperStorage
        return ZooKeeperStorage.connect(config.zk, config.zk_session_timeout)
    if config.work_dir:
        return FileStorage(config.work_dir)
    return InMemoryStorage()


class MarathonService:
    def __init__(self, config: Config, storage=None, tick_interval: float = 0.2):
        self.core = Core(config, storage if storage is not None else make_storage(config))
        self.health = HealthChecker(self.core)
        self.ticker = Ticker(self.core, tick_interval, extra=[self.health.poll])
        self.app = create_app(self.core)
        self.http: HttpServer | None = None
        self.driver = None
        self.leadership = None

    def start(self) -> "MarathonService":
        config = self.core.config
        check_config(config)
        bind = config.hostname if exposure.is_loopback(config.hostname) else "0.0.0.0"
        exposure.check("Marathon", bind, exposure_missing(config), config.insecure)
        tls = {"ssl_cert_file": config.ssl_cert_file, "ssl_key_file": config.ssl_key_file} \
            if config.ssl_cert_file else {}
        self.http = HttpServer(self.app, bind, config.http_port, threads=http_threads(config), name="marathon-http",
                               **tls).start()
        self.core.config.http_port = self.http.port
        if self.core.config.zk:
            self._contend()
        else:
            self._start_driver()
        self.ticker.start()
        log.info("marathon API on %s://%s:%d/", "https" if config.ssl_cert_file else "http",
                 config.hostname, self.http.port)
        return self

    def _start_driver(self) -> None:
        self.driver = make_driver(self.core, self.core.config.master)
        if self.driver.start() == pb.DRIVER_ABORTED:
            # A setting the driver cannot use (its error() logged which): waiting would never register.
            self.core.fatal_reason = "the scheduler driver could not start"
            self.core.fatal.set()

    def _stop_driver(self, failover: bool) -> None:
        if self.driver is not None:
            self.driver.stop(failover)
            self.driver = None

    # -- high availability ---------------------------------------------------------------------

    def _contend(self) -> None:
        from frameworks.marathon_like.zk import Leadership

        storage = self.core.storage
        self.core.leading = False
        me = f"{self.core.config.hostname}:{self.core.config.http_port}"
        self.leadership = Leadership(storage.client, storage.base, me, self._lead, self._session_lost)
        storage.fence_with(self.leadership)  # a deposed leader's writes fail
        self.core.leader_address = self.leadership.leader
        self.core.extras["abdicate"] = self.leadership.abdicate
        self.leadership.start()

    def _lead(self, stop) -> None:
        """Runs on the election thread while this instance leads."""
        self.core.reload()
        self._start_driver()
        with self.core.lock:
            self.core.leading = True
        try:
            stop.wait()
        finally:
            with self.core.lock:
                self.core.leading = False
                self.core.connected = False
            # Keep the framework registered: the next leader fails over to it and adopts the tasks.
            self._stop_driver(failover=True)
            self.core.driver = NullDriver()

    def _session_lost(self) -> None:
        self.core.fatal_reason = "lost the ZooKeeper session while leading"
        self.core.fatal.set()

    def stop(self, failover: bool = True) -> None:
        """Stop this process. By default the framework stays registered (the master keeps
        its tasks for failover_timeout), as Marathon does; failover=False tears it down."""
        self.ticker.stop()
        self.health.close()
        if self.leadership is not None:
            self.leadership.close()
        self._stop_driver(failover)
        if self.http is not None:
            self.http.close()
        self.core.storage.close()
