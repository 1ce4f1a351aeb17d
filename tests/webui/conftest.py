"""Fixtures for browser tests: headless Chromium driven by selenium.

The tests skip, saying why, when Chromium, chromedriver or selenium is missing
(`make system-deps` installs the first two as root; `pip install -e .[dev]`
the last).
"""

from __future__ import annotations

import os

import pytest

from offerd.cli.local import LocalCluster, free_base_port
from tests.browser import chromium
from tests.browser import skip_reason as _skip_reason
from tests.builders import RunningFramework, framework_info

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "test-artifacts")
@pytest.fixture(scope="session")
def browser():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with chromium("offerd-chromium-") as driver:
        yield driver


@pytest.fixture(scope="session")
def ui_cluster(tmp_path_factory):
    """A master, two posix slaves and a framework with finished and running tasks."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    work = tmp_path_factory.mktemp("webui-cluster")
    cluster = LocalCluster(slaves=2, port=free_base_port(2), work_dir=str(work), log_dir=str(work / "logs"),
                           resources="cpus:4;mem:4096;disk:4096;ports:[31000-32000]", allocation_interval=0.2,
                           master_args=["--cluster=webui-test"])
    cluster.start(timeout=60)
    framework = RunningFramework(cluster.master, framework_info(name="webui-framework"))
    try:
        framework.__enter__()
        yield cluster, framework
    finally:
        framework.__exit__(None, None, None)
        cluster.stop()


def screenshot(driver, name: str) -> str:
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.abspath(os.path.join(ARTIFACTS, f"{name}.png"))
    driver.save_screenshot(path)
    return path
