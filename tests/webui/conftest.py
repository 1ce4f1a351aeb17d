"""Fixtures for browser tests: headless Chromium driven by selenium.

The tests skip, saying why, when Chromium, chromedriver or selenium is missing
(`make system-deps` installs the first two as root; `pip install -e .[dev]`
the last).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from offerd.cli.local import LocalCluster, free_base_port
from tests.builders import RunningFramework, framework_info

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "test-artifacts")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "Chromium or chromedriver is missing (run 'make system-deps' as root: apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="offerd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


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
