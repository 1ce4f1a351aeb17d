"""A standby master's web UI points to the leader (a fake standby's state)."""

from __future__ import annotations

import pytest

from offerd.common.http import HttpServer
from offerd.master.http_api import create_app
from offerd.master.snapshot import Snapshot
from tests.webui.conftest import screenshot
from tests.webui.test_webui import css, wait


class StandbyView:
    """What a standby's HTTP side would see: it knows the leader, leads nothing."""

    def __init__(self):
        self.state = {
            "version": "0.1.0", "id": "standby-id", "pid": "master@127.0.0.1:5999", "hostname": "standby",
            "leader": "master@10.0.0.7:5050",
            "leader_info": {"id": "leader-id", "pid": "master@10.0.0.7:5050", "hostname": "leader-host", "port": 5050,
                            "address": {"hostname": "leader-host", "ip": "10.0.0.7", "port": 5050}},
            "start_time": 0, "elected_time": 0, "activated_slaves": 0, "deactivated_slaves": 0,
            "unreachable_slaves": 0, "flags": {}, "slaves": [], "recovered_slaves": [], "frameworks": [],
            "completed_frameworks": [], "orphan_tasks": [], "unregistered_frameworks": [],
        }

    def read_snapshot(self):
        return Snapshot(self.state)

    def read_metrics(self):
        return {"master/elected": 0}


@pytest.fixture
def standby():
    server = HttpServer(create_app(StandbyView()), "127.0.0.1", 0, name="standby-http").start()
    yield f"http://127.0.0.1:{server.port}"
    server.close()


def test_standby_links_to_the_leader(browser, standby):
    browser.get(standby + "/#/")
    link = wait(browser, lambda d: css(d, "#standby:not([hidden]) a#leader-link"), message="a link to the leader")
    assert link[0].get_attribute("href") == "http://10.0.0.7:5050/"
    assert "standby" in css(browser, "#standby")[0].text
    screenshot(browser, "standby")
