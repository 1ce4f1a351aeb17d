"""Marathon-like framework security, attacked through a real `offerd marathon` process.

Each test passes only when the attack fails: no credentials (401), a reader changing
things (403), a cross-site page posting a form or text/plain body, a wrong secret to
the master, a ZooKeeper password shown in /v2/info, listening off loopback unprotected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from offerd.cli import secure_setup
from offerd.cli.local import LocalCluster, free_base_port
from tests.browser import chromium
from tests.browser import skip_reason as browser_missing
from tests.security.test_webui_auth import BrowserPrompt
from tests.support import free_port, wait_for

pytestmark = pytest.mark.timeout(180)

ADMIN = ("admin", "admin-secret-1")
VIEWER = ("viewer", "viewer-secret-2")
APP = {"id": "/secured", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1}


class MarathonProcess:
    """`python -m offerd marathon ...` with its output in a log file."""

    def __init__(self, tmp_path, *args: str, port: int | None = None, scheme: str = "http"):
        self.port = port or free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"marathon-{self.port}.log"
        self.work_dir = tmp_path / f"marathon-{self.port}"
        self.args = [f"--http_port={self.port}", "--hostname=127.0.0.1", f"--work_dir={self.work_dir}",
                     "--min_revive_offers_interval=0.2secs", *args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "offerd", "marathon", *self.args],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, verify=True) -> "MarathonProcess":
        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"offerd marathon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/ping", timeout=2, verify=verify).status_code == 200
            except requests.RequestException:
                return False
        wait_for(ready, timeout=30, message="the marathon API")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_credentials(path, *pairs) -> str:
    path.write_text("".join(f"{principal} {secret}\n" for principal, secret in pairs))
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A master and one slave, and Marathon with --http_credentials, 'admin' the only operator."""
    tmp = tmp_path_factory.mktemp("marathon-auth")
    cluster = LocalCluster(slaves=1, port=free_base_port(1), work_dir=str(tmp / "cluster"),
                           log_dir=str(tmp / "logs"), resources="cpus:2;mem:2048;disk:2048;ports:[31000-32000]",
                           allocation_interval=0.2)
    cluster.start(timeout=60)
    credentials = write_credentials(tmp / "http-credentials", ADMIN, VIEWER)
    marathon = MarathonProcess(tmp, f"--master={cluster.master}", f"--http_credentials={credentials}",
                               "--http_operator_principals=admin")
    try:
        marathon.wait_ready()
        yield marathon, cluster
    finally:
        marathon.stop()
        cluster.stop()


def app_ids(url) -> list[str]:
    response = requests.get(f"{url}/v2/apps", auth=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["apps"]]


def test_every_endpoint_but_ping_needs_credentials(guarded):
    marathon, _ = guarded
    for method, path in (("GET", "/v2/apps"), ("GET", "/v2/info"), ("GET", "/v2/tasks"), ("GET", "/ui/"),
                         ("GET", "/v2/whoami"), ("GET", "/metrics"), ("GET", "/v2/events"), ("POST", "/v2/apps"),
                         ("DELETE", "/v2/apps/secured")):
        response = requests.request(method, marathon.url + path, json=APP if method == "POST" else None, timeout=10)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="marathon"'
        assert "Not Authenticated" in response.json()["message"]
    assert requests.get(f"{marathon.url}/ping", timeout=10).text == "pong"


def test_wrong_secret_is_refused(guarded):
    marathon, _ = guarded
    for auth in (("admin", "wrong"), ("nobody", "admin-secret-1"), ("viewer", "admin-secret-1")):
        response = requests.post(f"{marathon.url}/v2/apps", json=APP, auth=auth, timeout=10)
        assert response.status_code == 401, auth
        assert "wrong principal or secret" in response.json()["message"]
    assert "/secured" not in app_ids(marathon.url)


def test_reader_reads_but_cannot_change_anything(guarded):
    marathon, _ = guarded
    assert requests.get(f"{marathon.url}/v2/apps", auth=VIEWER, timeout=10).status_code == 200
    assert requests.get(f"{marathon.url}/v2/info", auth=VIEWER, timeout=10).status_code == 200
    assert requests.get(f"{marathon.url}/ui/", auth=VIEWER, timeout=10).status_code == 200
    refused = [requests.post(f"{marathon.url}/v2/apps", json=APP, auth=VIEWER, timeout=10),
               requests.put(f"{marathon.url}/v2/apps/secured", json=APP, auth=VIEWER, timeout=10),
               requests.patch(f"{marathon.url}/v2/apps/secured", json={"instances": 3}, auth=VIEWER, timeout=10),
               requests.delete(f"{marathon.url}/v2/apps/secured", auth=VIEWER, timeout=10),
               requests.post(f"{marathon.url}/v2/groups", json={"id": "/g"}, auth=VIEWER, timeout=10)]
    for response in refused:
        assert response.status_code == 403, (response.request.method, response.text)
        body = response.json()
        assert "Not Authorized" in body["message"] and "'viewer'" in body["message"]
    assert "/secured" not in app_ids(marathon.url)
    who = requests.get(f"{marathon.url}/v2/whoami", auth=VIEWER, timeout=10).json()
    assert who == {"principal": "viewer", "authenticated": True, "authenticationRequired": True, "operator": False}


def test_cross_site_posts_never_create_an_app(guarded):
    """A page on another site makes the browser post with the cached credentials: refused."""
    marathon, _ = guarded
    attacks = [
        # A form post from another origin (what <form action=... method=post> sends).
        dict(data={"id": "/evil1", "cmd": "id"}, headers={"Origin": "http://evil.example"}),
        # fetch(..., {mode: "no-cors", body: JSON text}) is text/plain: no preflight, so no permission asked.
        dict(data=json.dumps({**APP, "id": "/evil2"}),
             headers={"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"}),
        dict(data=json.dumps({**APP, "id": "/evil3"}),
             headers={"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}),
        dict(data=json.dumps({**APP, "id": "/evil4"}), headers={"Origin": "null", "Content-Type": "text/plain"}),
    ]
    for attack in attacks:
        response = requests.post(f"{marathon.url}/v2/apps", auth=ADMIN, timeout=10, **attack)
        assert response.status_code == 403, (attack, response.text)
        assert "cross-site" in response.json()["message"]
    assert not [a for a in app_ids(marathon.url) if a.startswith("/evil")]


def test_non_json_bodies_are_not_read_as_apps(guarded):
    """Even without browser headers, a form or text/plain body is never an app definition."""
    marathon, _ = guarded
    text = json.dumps({**APP, "id": "/plain"})
    for content_type, data in (("text/plain", text), ("application/x-www-form-urlencoded", text),
                               ("multipart/form-data; boundary=x", text)):
        response = requests.post(f"{marathon.url}/v2/apps", data=data, auth=ADMIN, timeout=10,
                                 headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in response.json()["message"]
        response = requests.put(f"{marathon.url}/v2/apps/plain", data=data, auth=ADMIN, timeout=10,
                                headers={"Content-Type": content_type})
        assert response.status_code == 415
    assert "/plain" not in app_ids(marathon.url)


def test_operator_deploys_an_app_that_runs(guarded):
    marathon, _ = guarded
    who = requests.get(f"{marathon.url}/v2/whoami", auth=ADMIN, timeout=10).json()
    assert who["principal"] == "admin" and who["operator"] is True
    response = requests.post(f"{marathon.url}/v2/apps", json=APP, auth=ADMIN, timeout=10)
    assert response.status_code == 201, response.text

    def running():
        tasks = requests.get(f"{marathon.url}/v2/apps/secured/tasks", auth=VIEWER, timeout=10).json()["tasks"]
        return [t for t in tasks if t["state"] == "TASK_RUNNING"]
    wait_for(running, timeout=60, message="the operator's app to run")
    response = requests.delete(f"{marathon.url}/v2/apps/secured", auth=ADMIN, timeout=10)
    assert response.status_code == 200, response.text


def test_marathon_authenticates_to_the_master_and_runs_an_app(tmp_path):
    """--mesos_authentication_principal/secret_file against --authenticate_frameworks."""
    credentials = write_credentials(tmp_path / "master-credentials", ("marathon", "m4rathon-secret"))
    secret_file = tmp_path / "marathon.secret"
    secret_file.write_text("m4rathon-secret\n")
    cluster = LocalCluster(slaves=1, port=free_base_port(1), work_dir=str(tmp_path / "cluster"),
                           log_dir=str(tmp_path / "logs"), resources="cpus:2;mem:2048;disk:2048;ports:[31000-32000]",
                           allocation_interval=0.2,
                           master_args=[f"--credentials={credentials}", "--authenticate_frameworks"])
    cluster.start(timeout=60)
    marathon = MarathonProcess(tmp_path, f"--master={cluster.master}", "--mesos_authentication_principal=marathon",
                               f"--mesos_authentication_secret_file={secret_file}")
    try:
        marathon.wait_ready()
        assert requests.post(f"{marathon.url}/v2/apps", json=APP, timeout=10).status_code == 201

        def running():
            tasks = requests.get(f"{marathon.url}/v2/apps/secured/tasks", timeout=10).json()["tasks"]
            return [t for t in tasks if t["state"] == "TASK_RUNNING"]
        wait_for(running, timeout=60, message="the app to run through an authenticated framework")
        frameworks = [f for f in cluster.state()["frameworks"] if f["name"] == "marathon"]
        assert len(frameworks) == 1 and frameworks[0]["principal"] == "marathon"
        info = requests.get(f"{marathon.url}/v2/info", timeout=10).json()
        assert info["marathon_config"]["mesos_authentication_principal"] == "marathon"
        assert "m4rathon-secret" not in requests.get(f"{marathon.url}/v2/info", timeout=10).text
    finally:
        marathon.stop()
        cluster.stop()
    assert "m4rathon-secret" not in marathon.log()


REFUSE_MARATHON_ROLES = '{"register_frameworks": [{"principals": {"values": ["marathon"]}, "roles": {"type": "NONE"}}]}'


@pytest.mark.parametrize("secret, master_acls, reason", [
    ("not-the-right-one", None, "refused authentication"),     # the master refuses its proof
    ("the-right-one", REFUSE_MARATHON_ROLES, "register_frameworks"),   # authenticated, refused by the ACLs
], ids=["wrong-secret", "refused-by-acls"])
def test_marathon_refused_by_the_master_exits_saying_why(tmp_path, secret, master_acls, reason):
    """A Marathon the master will not have cannot schedule: it ends, with the reason in its log."""
    credentials = write_credentials(tmp_path / "master-credentials", ("marathon", "the-right-one"))
    secret_file = tmp_path / "marathon.secret"
    secret_file.write_text(f"{secret}\n")
    acls = [f"--acls={master_acls}"] if master_acls else []
    cluster = LocalCluster(slaves=0, port=free_base_port(0), work_dir=str(tmp_path / "cluster"),
                           log_dir=str(tmp_path / "logs"),
                           master_args=[f"--credentials={credentials}", "--authenticate_frameworks", *acls])
    cluster.start(timeout=60)
    marathon = MarathonProcess(tmp_path, f"--master={cluster.master}", "--mesos_authentication_principal=marathon",
                               f"--mesos_authentication_secret_file={secret_file}")
    try:
        wait_for(lambda: marathon.proc.poll() is not None, timeout=60, message="marathon to give up")
        assert marathon.proc.returncode != 0
        assert reason in marathon.log()
        assert not [f for f in cluster.state()["frameworks"] if f["name"] == "marathon"]
    finally:
        marathon.stop()
        cluster.stop()
    assert "not-the-right-one" not in marathon.log()


def test_info_hides_the_zookeeper_password(tmp_path, zk_url):
    """--zk and --master with user:password@: /v2/info and the log show neither password."""
    assert zk_url.startswith("zk://")
    secret_zk = zk_url.replace("zk://", "zk://marathon:zk-secretpw@", 1)
    secret_master = zk_url.replace("zk://", "zk://mesos:master-secretpw@", 1) + "-mesos"
    marathon = MarathonProcess(tmp_path, f"--zk={secret_zk}", f"--master={secret_master}")
    try:
        marathon.wait_ready()
        wait_for(lambda: requests.get(f"{marathon.url}/v2/info", timeout=10).json()["elected"], timeout=30,
                 message="the instance to lead")
        text = requests.get(f"{marathon.url}/v2/info", timeout=10).text
        info = requests.get(f"{marathon.url}/v2/info", timeout=10).json()
    finally:
        marathon.stop()
    assert "zk-secretpw" not in text and "master-secretpw" not in text
    assert info["zookeeper_config"]["zk"].startswith("zk://marathon:******@")
    assert info["marathon_config"]["master"] == secret_master.replace("master-secretpw", "******")
    assert info["marathon_config"]["mesos_leader_ui_url"] is None
    assert "zk-secretpw" not in marathon.log() and "master-secretpw" not in marathon.log()


def test_refuses_to_listen_off_loopback_unprotected(tmp_path):
    marathon = MarathonProcess(tmp_path, "--master=127.0.0.1:1", "--hostname=0.0.0.0")
    try:
        assert marathon.proc.wait(60) == 2
    finally:
        marathon.stop()
    log = marathon.log()
    assert "refusing to listen on 0.0.0.0" in log
    assert "--http_credentials" in log and "--ssl_cert_file" in log and "--insecure" in log


def test_insecure_lets_it_listen_off_loopback(tmp_path):
    marathon = MarathonProcess(tmp_path, "--master=127.0.0.1:1", "--hostname=0.0.0.0", "--insecure")
    try:
        marathon.wait_ready()
        assert requests.get(f"{marathon.url}/v2/apps", timeout=10).status_code == 200
    finally:
        marathon.stop()
    assert "--insecure" in marathon.log()


def test_operator_list_must_name_known_principals(tmp_path):
    credentials = write_credentials(tmp_path / "http-credentials", ADMIN)
    marathon = MarathonProcess(tmp_path, "--master=127.0.0.1:1", f"--http_credentials={credentials}",
                               "--http_operator_principals=admin,typo")
    try:
        assert marathon.proc.wait(60) == 2
    finally:
        marathon.stop()
    assert "typo" in marathon.log() and "not in --http_credentials" in marathon.log()


def test_fully_secured_marathon_deploys_over_https(tmp_path):
    """Everything on (offerd local --secure's files): the master with TLS, CURVE, framework
    authentication and ACLs; Marathon reaching it with --master_public_key, --ssl_ca_file
    and its principal, serving its own API over HTTPS with --http_credentials."""
    files = secure_setup.prepare(str(tmp_path / "security"))
    port = free_port()
    cluster = LocalCluster(slaves=1, port=free_base_port(1), work_dir=str(tmp_path / "cluster"),
                           log_dir=str(tmp_path / "logs"), resources="cpus:2;mem:2048;disk:2048;ports:[31000-32000]",
                           allocation_interval=0.2, marathon_port=port, security=files,
                           # The ACLs let 'marathon' run tasks as anyone but root.
                           marathon_args=["--min_revive_offers_interval=0.2secs", "--mesos_user=nobody"])
    cluster.start(timeout=90)
    url = f"https://127.0.0.1:{port}"
    admin = ("admin", files.secret("admin"))
    try:
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/ping", timeout=10)             # not trusted without the CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/apps", auth=admin, timeout=10)   # no plaintext
        assert requests.get(f"{url}/v2/apps", verify=files.ca_file, timeout=10).status_code == 401
        response = requests.post(f"{url}/v2/apps", json=APP, auth=admin, verify=files.ca_file, timeout=10)
        assert response.status_code == 201, response.text
        readonly = ("readonly", files.secret("readonly"))
        assert requests.delete(f"{url}/v2/apps/secured", auth=readonly, verify=files.ca_file,
                               timeout=10).status_code == 403

        def running():
            tasks = requests.get(f"{url}/v2/apps/secured/tasks", auth=readonly, verify=files.ca_file,
                                 timeout=10).json()["tasks"]
            return [t for t in tasks if t["state"] == "TASK_RUNNING"]
        wait_for(running, timeout=60, message="the app to run on the fully secured cluster")
        frameworks = [f for f in cluster.state()["frameworks"] if f["name"] == "marathon"]
        assert frameworks[0]["principal"] == "marathon"
        assert frameworks[0]["webui_url"] == f"https://127.0.0.1:{port}"
    finally:
        cluster.stop()


@pytest.mark.parametrize("who, operator", [(VIEWER, False), (ADMIN, True)])
def test_ui_shows_changes_only_to_operators(guarded, who, operator):
    """Marathon's page in headless Chromium, logged in through the browser's own Basic prompt."""
    if browser_missing():
        pytest.skip(browser_missing())
    marathon, _ = guarded
    shown = {"id": "/ui-shown", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0}
    response = requests.put(f"{marathon.url}/v2/apps/ui-shown", json=shown, auth=ADMIN, timeout=10)
    assert response.status_code in (200, 201), response.text
    with chromium("marathon-auth-") as driver:
        prompt = BrowserPrompt(driver)
        prompt.answer = who
        try:
            driver.get(f"{marathon.url}/ui/")
            wait_for(lambda: driver.find_elements("css selector", 'tr[data-app="/ui-shown"]'), timeout=20,
                     message="the app row")
            expected = f"signed in as {who[0]}" + ("" if operator else " (read-only)")
            wait_for(lambda: driver.find_element("css selector", "#whoami").text == expected, timeout=20,
                     message="who is signed in")
            row = driver.find_element("css selector", 'tr[data-app="/ui-shown"]')
            buttons = {b.get_attribute("class") for b in row.find_elements("css selector", "button")}
            create = driver.find_element("css selector", "#create-section")
            if operator:
                assert {"scale", "restart", "delete"} <= buttons
                assert create.is_displayed()
            else:
                assert not buttons and "read-only" in row.text
                assert not create.is_displayed()
        finally:
            prompt.close()


@pytest.mark.parametrize("flag, needle", [
    ("--master_public_key=not-a-key", "neither a 40-character Z85 public key nor a key file"),
    ("--ssl_ca_file=/nonexistent/ca.pem", "/nonexistent/ca.pem"),
    ("--mesos_authentication_principal=marathon", "go together"),
    ("--http_credentials=/nonexistent/credentials", "/nonexistent/credentials"),
])
def test_unusable_security_flags_stop_it_with_the_reason(tmp_path, flag, needle):
    marathon = MarathonProcess(tmp_path, "--master=127.0.0.1:1", flag)
    try:
        assert marathon.proc.wait(60) == 2
    finally:
        marathon.stop()
    assert needle in marathon.log()


def test_cross_site_posts_are_refused_without_credentials_too(tmp_path):
    """Plain `offerd local` (no --http_credentials): a page on another site still cannot deploy."""
    marathon = MarathonProcess(tmp_path, "--master=127.0.0.1:1")
    try:
        marathon.wait_ready()
        response = requests.post(f"{marathon.url}/v2/apps", data=json.dumps({**APP, "id": "/evil"}), timeout=10,
                                 headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert response.status_code == 403
        response = requests.post(f"{marathon.url}/v2/apps", data=json.dumps({**APP, "id": "/evil"}), timeout=10,
                                 headers={"Content-Type": "text/plain"})
        assert response.status_code == 415
        assert requests.get(f"{marathon.url}/v2/apps", timeout=10).json()["apps"] == []
        assert requests.post(f"{marathon.url}/v2/apps", json=APP, timeout=10).status_code == 201
    finally:
        marathon.stop()


def test_standby_checks_and_forwards_credentials_to_the_leader(tmp_path, zk_url):
    credentials = write_credentials(tmp_path / "http-credentials", ADMIN, VIEWER)
    common = ("--master=127.0.0.1:1", f"--zk={zk_url}", f"--http_credentials={credentials}",
              "--http_operator_principals=admin")
    first = MarathonProcess(tmp_path, *common)
    second = MarathonProcess(tmp_path, *common)
    try:
        first.wait_ready()
        second.wait_ready()

        def leader():
            answer = requests.get(f"{first.url}/v2/leader", auth=VIEWER, timeout=10)
            return answer.status_code == 200 and answer.json()["leader"]
        address = wait_for(leader, timeout=30, message="a leader")
        assert address in (f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}")
        standby = second if address == f"127.0.0.1:{first.port}" else first
        leading = first if standby is second else second
        assert requests.post(f"{standby.url}/v2/apps", json=APP, timeout=10).status_code == 401
        refused = requests.post(f"{standby.url}/v2/apps", json=APP, auth=VIEWER, timeout=10)
        assert refused.status_code == 403 and "'viewer'" in refused.json()["message"]
        created = requests.post(f"{standby.url}/v2/apps", json=APP, auth=ADMIN, timeout=10)
        assert created.status_code == 201, created.text
        on_leader = requests.get(f"{leading.url}/v2/apps/secured", auth=VIEWER, timeout=10)
        assert on_leader.status_code == 200 and on_leader.json()["app"]["id"] == "/secured"
        who = requests.get(f"{standby.url}/v2/whoami", auth=VIEWER, timeout=10).json()
        assert who["principal"] == "viewer" and who["operator"] is False
    finally:
        first.stop()
        second.stop()
