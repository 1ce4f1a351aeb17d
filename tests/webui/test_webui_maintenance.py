"""The web UI's Maintenance page and the slave list's modes, in a real headless Chromium."""

from __future__ import annotations

import time

import pytest
import requests

from tests.webui.conftest import screenshot
from tests.webui.test_webui import css, wait

pytestmark = pytest.mark.timeout(180)

HOUR_NS = 3600 * 10**9


def test_maintenance_page_and_slave_modes(browser, ui_cluster):
    cluster, framework = ui_cluster
    # Every slave of the local cluster is on machine 127.0.0.1: scheduling it drains them all.
    machine = {"hostname": cluster.ip, "ip": cluster.ip}
    schedule = {"windows": [{"machine_ids": [machine], "unavailability": {
        "start": {"nanoseconds": time.time_ns() + HOUR_NS}, "duration": {"nanoseconds": 2 * HOUR_NS}}}]}
    url = f"{cluster.master_url}/master/maintenance/schedule"
    assert requests.post(url, json=schedule, timeout=10).status_code == 200
    try:
        browser.get(cluster.master_url + "/#/maintenance")
        rows = wait(browser, lambda d: css(d, "table.maintenance-machines tbody tr td.mode-DRAINING"),
                    message="the draining machine on the Maintenance page")
        assert len(rows) == 1
        windows = wait(browser, lambda d: css(d, "table.maintenance-windows tbody tr"), message="the window")
        assert cluster.ip in windows[0].text and "2 h" in windows[0].text
        machines = css(browser, "table.maintenance-machines tbody tr")[0].text
        slave_ids = {s["id"] for s in requests.get(f"{cluster.master_url}/master/state", timeout=10).json()["slaves"]}
        assert all(slave_id in machines for slave_id in slave_ids)
        screenshot(browser, "maintenance")

        browser.get(cluster.master_url + "/#/slaves")
        marked = wait(browser, lambda d: len(css(d, "table.slaves td.mode-DRAINING")) == len(slave_ids)
                      and css(d, "table.slaves td.mode-DRAINING"), message="the slaves marked DRAINING")
        assert {td.text for td in marked} == {"DRAINING"}
    finally:
        # The session's cluster serves other tests: leave no maintenance behind.
        assert requests.post(url, json={"windows": []}, timeout=10).status_code == 200
