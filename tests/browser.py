"""Headless Chromium for the browser tests (web UI and Marathon's /ui/).

The flags are what a closed-network root machine needs: no sandbox, no
background networking, a fresh profile per session.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "Chromium or chromedriver is missing (run 'make system-deps' as root: apt-get install chromium chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(profile_prefix: str = "offerd-chromium-", extra_flags: tuple[str, ...] = ()):
    """A selenium driver on headless Chromium, quit and cleaned up on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix=profile_prefix)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}",
                 *extra_flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
