"""The master's web UI in a real headless Chromium against a master that serves
HTTPS, requires HTTP authentication and has ACLs.

Chromium is told to trust exactly the test certificate (by its public key's
hash), as a user would trust the cluster's CA; nothing else about TLS is relaxed.

Logging in is the browser's own Basic prompt: the master answers 401 with
WWW-Authenticate, Chromium raises its challenge, and the test answers it over
the DevTools protocol (Fetch.authRequired -> continueWithAuth) as a user would
type into the dialog, or cancels it. Chromium then caches the credentials and
sends them with the page's own requests, so the XHRs are checked too. The
attacks: a read-only principal must get no teardown button (and the master
refuses the POST anyway), a framework's `javascript:` webui_url must not become
a link, and a page without credentials must say why it shows nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
import requests

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from offerd.common.credentials import basic_auth_header
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from tests.browser import chromium
from tests.browser import skip_reason as browser_missing
from tests.builders import RunningFramework, framework_info
from tests.security.certs import make_ca_and_cert
from tests.support import wait_for

pytestmark = pytest.mark.timeout(180)

ADMIN = ("admin", "admin-pw-1")
READONLY = ("readonly", "readonly-pw-2")
# Mesos ACLs: 'readonly' may tear down no framework, nor change quota or weights.
ACLS = {"permissive": True,
        "teardown_frameworks": [{"principals": {"values": ["readonly"]}, "framework_principals": {"type": "NONE"}}],
        "update_quotas": [{"principals": {"values": ["readonly"]}, "roles": {"type": "NONE"}}],
        "update_weights": [{"principals": {"values": ["readonly"]}, "roles": {"type": "NONE"}}]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A master with --authenticate_http_readonly/readwrite and ACLs, and two frameworks:
    one with an http web UI, one whose webui_url is a `javascript:` URL."""
    if browser_missing():
        pytest.skip(browser_missing())
    tmp = tmp_path_factory.mktemp("webui-auth")
    credentials = tmp / "credentials"
    credentials.write_text(f"{ADMIN[0]} {ADMIN[1]}\n{READONLY[0]} {READONLY[1]}\n")
    ca, cert, key = make_ca_and_cert(str(tmp / "tls"))
    TLS["ca"], TLS["spki"] = ca, _spki_hash(cert)
    master = Master(master_flags(port=0, ip="127.0.0.1", work_dir=str(tmp / "master"), allocation_interval="100ms",
                                 credentials=str(credentials), authenticate_http_readonly=True,
                                 authenticate_http_readwrite=True, acls=json.dumps(ACLS),
                                 ssl_cert_file=cert, ssl_key_file=key)).start()
    address = f"127.0.0.1:{master.http_port}"
    tls = {"ca_file": ca}
    frameworks = [RunningFramework(address, framework_info(name="plain-ui", webui_url="http://127.0.0.1:1/plain"),
                                   driver_kwargs=tls),
                  RunningFramework(address, framework_info(name="hostile-ui", webui_url="javascript:alert(document.cookie)"),
                                   driver_kwargs=tls)]
    try:
        for framework in frameworks:
            framework.__enter__()
        yield f"https://{address}", frameworks
    finally:
        for framework in frameworks:
            framework.__exit__(None, None, None)
        master.stop()


class BrowserPrompt:
    """Answers Chromium's HTTP authentication prompts of one page, as its user would.

    `answer` is (principal, secret) to log in, or None to cancel the dialog. Runs
    its own DevTools session on the page (websocket-client, which selenium brings):
    Fetch with handleAuthRequests pauses requests, which are let through as they are.
    """

    def __init__(self, driver):
        import websocket

        self.answer = None
        address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        page = next(t for t in requests.get(f"http://{address}/json", timeout=10).json() if t["type"] == "page")
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._ids = iter(range(1, 1 << 30))
        self._send("Fetch.enable", handleAuthRequests=True)
        self._thread = threading.Thread(target=self._serve, name="browser-prompt", daemon=True)
        self._thread.start()

    def _send(self, method, **params):
        self._ws.send(json.dumps({"id": next(self._ids), "method": method, "params": params}))

    def _serve(self):
        while True:
            try:
                message = json.loads(self._ws.recv())
            except Exception:  # closed at the end of the test
                return
            event, params = message.get("method"), message.get("params", {})
            if event == "Fetch.requestPaused":
                self._send("Fetch.continueRequest", requestId=params["requestId"])
            elif event == "Fetch.authRequired":
                if self.answer is None:
                    response = {"response": "CancelAuth"}
                else:
                    response = {"response": "ProvideCredentials", "username": self.answer[0],
                                "password": self.answer[1]}
                self._send("Fetch.continueWithAuth", requestId=params["requestId"], authChallengeResponse=response)

    def close(self):
        self._ws.close()


TLS: dict[str, str] = {}


def _spki_hash(cert_file: str) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the key."""
    with open(cert_file, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def browser(secured):
    """A fresh Chromium per test: its credential cache is the logged-in user."""
    with chromium("offerd-webui-auth-", (f"--ignore-certificate-errors-spki-list={TLS['spki']}",)) as driver:
        driver.prompt = BrowserPrompt(driver)
        try:
            yield driver
        finally:
            driver.prompt.close()


def log_in(driver, principal_secret) -> None:
    """What the user types into the next login dialog (None: cancel it)."""
    driver.prompt.answer = principal_secret


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def text_of(driver, selector) -> str:
    try:
        found = css(driver, selector)
        return found[0].text if found else ""
    except Exception:  # the page redraws under us: ask again
        return ""


def wait(driver, predicate, message, timeout=20.0):
    return wait_for(lambda: predicate(driver), timeout=timeout, interval=0.2, message=message)


def open_framework(driver, url, framework) -> None:
    driver.get(f"{url}/#/frameworks/{framework.framework_id}")
    wait(driver, lambda d: framework.info.name in text_of(d, "#detail"), f"the page of {framework.info.name}")


def test_without_credentials_the_page_shows_the_auth_error(browser, secured):
    url, _ = secured
    log_in(browser, None)
    browser.get(f"{url}/")
    body = text_of(browser, "body")
    assert "Unauthorized" in body and "authentication required" in body, body
    assert not css(browser, "#view")   # the master served its refusal, not the page


def test_page_and_its_requests_carry_the_credentials_once_given(browser, secured):
    url, frameworks = secured
    log_in(browser, READONLY)
    browser.get(f"{url}/#/frameworks")
    wait(browser, lambda d: frameworks[0].framework_id in text_of(d, "#active"), "the frameworks, read with credentials")
    wait(browser, lambda d: text_of(d, "#whoami") == "signed in as readonly", "whoami")
    assert css(browser, "#error")[0].is_displayed() is False


def test_credentials_that_stop_working_give_a_clear_message(browser, secured):
    """A request of the page refused with 401 (e.g. the secret was rotated while the page
    was open, and the user cancels the new prompt) says so instead of going blank."""
    url, frameworks = secured
    log_in(browser, None)
    # Sent by the browser on every request without entering its credential cache, so
    # taking it away takes the credentials away.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                            {"headers": {"Authorization": basic_auth_header(*READONLY)}})
    browser.get(f"{url}/#/frameworks")
    wait(browser, lambda d: frameworks[0].framework_id in text_of(d, "#active"), "the frameworks, read with credentials")
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    wait(browser, lambda d: "Not authenticated" in text_of(d, "#error"), "the authentication error banner")
    assert "log in" in text_of(browser, "#error")
    # The last good view stays, rather than a blank page.
    assert frameworks[0].framework_id in text_of(browser, "#active")


def test_readonly_principal_gets_no_teardown_button(browser, secured):
    url, frameworks = secured
    log_in(browser, READONLY)
    open_framework(browser, url, frameworks[0])
    wait(browser, lambda d: d.execute_script("return app.whoami !== null"), "whoami")
    assert browser.execute_script("return app.whoami.permissions.teardown_frameworks") is False
    before = text_of(browser, "#updated")
    wait(browser, lambda d: text_of(d, "#updated") not in ("", before), "a poll that redraws the toolbar")
    assert not css(browser, "#teardown")
    # The button is only honesty: the master refuses the same request from this principal.
    refused = requests.post(f"{url}/master/teardown", data={"frameworkId": frameworks[0].framework_id},
                            auth=READONLY, timeout=10, verify=TLS["ca"])
    assert refused.status_code == 403


def test_hostile_webui_url_is_not_a_link(browser, secured):
    url, frameworks = secured
    log_in(browser, READONLY)
    open_framework(browser, url, frameworks[1])
    cell = css(browser, "#webui-url")[0]
    assert "javascript:alert" in cell.text
    assert not cell.find_elements("css selector", "a")
    open_framework(browser, url, frameworks[0])
    links = css(browser, "#webui-url a")
    assert len(links) == 1 and links[0].get_attribute("href") == "http://127.0.0.1:1/plain"


def test_admin_sees_and_uses_the_teardown_button(browser, secured):
    url, _ = secured
    with RunningFramework(url.replace("https://", ""), framework_info(name="to-tear-down"),
                          driver_kwargs={"ca_file": TLS["ca"]}) as victim:
        log_in(browser, ADMIN)
        open_framework(browser, url, victim)
        wait(browser, lambda d: css(d, "#teardown"), "the teardown button for admin")
        assert text_of(browser, "#whoami") == "signed in as admin"
        browser.execute_script("window.confirm = () => true;")
        css(browser, "#teardown")[0].click()
        wait(browser, lambda d: "torn down" in text_of(d, "#action-status"), "the teardown to be confirmed")

        def completed():
            state = requests.get(f"{url}/master/state", auth=ADMIN, timeout=10, verify=TLS["ca"]).json()
            return victim.framework_id in [f["id"] for f in state["completed_frameworks"]]
        wait_for(completed, timeout=20, message="the framework among the completed ones")
        wait(browser, lambda d: not css(d, "#teardown"), "the button to go once the framework is gone")
