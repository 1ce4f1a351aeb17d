"""Wire the pieces into one process: core, SDK driver, ticker, health checks, HTTP."""

from __future__ import annotations

import logging

from offerd.common.http import HttpServer

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.core import Config, Core
from frameworks.marathon_like.health import HealthChecker
from frameworks.marathon_like.scheduler import Ticker, make_driver

log = logging.getLogger(__name__)


class MarathonService:
    def __init__(self, config: Config, storage=None, tick_interval: float = 0.2):
        self.core = Core(config, storage)
        self.health = HealthChecker(self.core)
        self.ticker = Ticker(self.core, tick_interval, extra=[self.health.poll])
        self.app = create_app(self.core)
        self.http: HttpServer | None = None
        self.driver = None

    def start(self) -> "MarathonService":
        self.http = HttpServer(self.app, "0.0.0.0" if self.core.config.hostname != "127.0.0.1" else "127.0.0.1",
                               self.core.config.http_port, threads=16, name="marathon-http").start()
        self.core.config.http_port = self.http.port
        self.driver = make_driver(self.core, self.core.config.master)
        self.driver.start()
        self.ticker.start()
        log.info("marathon API on http://%s:%d/", self.core.config.hostname, self.http.port)
        return self

    def stop(self, failover: bool = False) -> None:
        self.ticker.stop()
        self.health.close()
        if self.driver is not None:
            self.driver.stop(failover)
        if self.http is not None:
            self.http.close()
