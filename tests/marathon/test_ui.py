"""The /ui/ page: served over real HTTP by the framework's Flask app, and driven in
headless Chromium (skipped, with the reason, when the browser pieces are missing)."""

from __future__ import annotations


import pytest
import requests

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.core import Config, Core
from offerd.common.http import HttpServer
from tests.browser import chromium
from tests.browser import skip_reason as _skip_reason
from tests.support import wait_for



@pytest.fixture
def served():
    """The API of a core with no cluster behind it (deployments stay open), on a real port."""
    core = Core(Config())
    server = HttpServer(create_app(core), "127.0.0.1", 0, name="marathon-ui-test").start()
    core.config.http_port = server.port
    yield core, f"http://127.0.0.1:{server.port}"
    server.close()


def test_page_and_assets_over_http(served):
    _, url = served
    response = requests.get(f"{url}/", timeout=5)
    assert response.status_code == 200 and response.url == f"{url}/ui/"
    page = response.text
    for marker in ('id="apps"', 'id="deployments"', 'id="create"', 'src="app.js"', 'href="style.css"'):
        assert marker in page
    assert "http://" not in page and "https://" not in page       # nothing from the network
    script = requests.get(f"{url}/ui/app.js", timeout=5)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    for call in ('"/v2/apps"', "/restart", '"DELETE"', '"PUT"', "/v2/deployments"):
        assert call in script.text
    assert requests.get(f"{url}/ui/style.css", timeout=5).headers["Content-Type"].startswith("text/css")
    assert requests.get(f"{url}/ui/missing.js", timeout=5).status_code == 404
    assert requests.get(f"{url}/ui/..%2fcore.py", timeout=5).status_code == 404


def test_bare_paths_redirect_to_the_page(served):
    """`/ui` and `/` answer 302 to `/ui/`, as Marathon does: served at `/ui` the page's
    relative app.js and style.css would resolve to `/app.js` and 404."""
    _, url = served
    for path in ("/ui", "/"):
        response = requests.get(f"{url}{path}", allow_redirects=False, timeout=5)
        assert response.status_code == 302 and response.headers["Location"] == "/ui/", path
    followed = requests.get(f"{url}/ui", timeout=5)
    assert followed.status_code == 200 and followed.url == f"{url}/ui/" and 'src="app.js"' in followed.text
    assert requests.get(f"{url}/ui/app.js", allow_redirects=False, timeout=5).status_code == 200


@pytest.fixture(scope="module")
def browser():
    if _skip_reason():
        pytest.skip(_skip_reason())
    with chromium("marathon-chromium-") as driver:
        yield driver


def _on(browser, selector, action):
    """Act on an element; the page redraws its tables every 2 s, so retry a stale one."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt():
        try:
            action(browser.find_element(By.CSS_SELECTOR, selector))
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    wait_for(attempt, 10, message=selector)


def _text(browser, selector) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return browser.find_element(By.CSS_SELECTOR, selector).text
    except (StaleElementReferenceException, NoSuchElementException):
        return None


def test_browser_creates_scales_restarts_and_deletes(served, browser):
    from selenium.webdriver.common.by import By

    core, url = served
    core.create_app({"id": "/existing", "cmd": "sleep 1", "instances": 0, "cpus": 0.1, "mem": 16})
    browser.get(f"{url}/ui/")
    text = wait_for(lambda: _text(browser, 'tr[data-app="/existing"]'), 10, message="the row's text")
    assert "Suspended" in text and "0 / 0" in text

    form = browser.find_element(By.ID, "create")
    form.find_element(By.NAME, "id").send_keys("/web/front")
    form.find_element(By.NAME, "cmd").send_keys("sleep 100")
    form.find_element(By.NAME, "instances").clear()
    form.find_element(By.NAME, "instances").send_keys("3")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "/web/front" in core.apps, 10, message="the app created through the form")
    assert core.apps["/web/front"]["instances"] == 3 and core.apps["/web/front"]["cmd"] == "sleep 100"
    row = wait_for(lambda: _text(browser, 'tr[data-app="/web/front"]'), 10, message="the new row")
    assert "Deploying" in row and "0 / 3" in row

    # Bad input shows Marathon's error message and changes nothing.
    form.find_element(By.NAME, "id").clear()
    form.find_element(By.NAME, "id").send_keys("/Bad_Id")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "Object is not valid" in browser.find_element(By.ID, "message").text, 10,
             message="the error message")
    assert set(core.apps) == {"/existing", "/web/front"}

    version = core.apps["/existing"]["version"]
    _on(browser, 'tr[data-app="/existing"] button.restart', lambda b: b.click())
    wait_for(lambda: core.apps["/existing"]["version"] != version, 10, message="the restart")

    def type_scale(field):
        field.clear()
        field.send_keys("2")
    _on(browser, 'tr[data-app="/existing"] input[type=number]', type_scale)
    _on(browser, 'tr[data-app="/existing"] button.scale', lambda b: b.click())
    wait_for(lambda: core.apps["/existing"]["instances"] == 2, 10, message="the scale")

    _on(browser, 'tr[data-app="/existing"] button.delete', lambda b: b.click())
    browser.switch_to.alert.accept()
    wait_for(lambda: "/existing" not in core.apps, 10, message="the delete")
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, 'tr[data-app="/existing"]'), 10,
             message="the row gone")
    assert browser.find_elements(By.CSS_SELECTOR, "#deployments tbody tr")
