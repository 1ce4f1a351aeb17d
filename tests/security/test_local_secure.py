"""`offerd local --secure --work_dir DIR` end to end, with real processes and real clients.

One secure cluster (master, one slave, Marathon) serves the whole module; each
test uses it as an operator or an attacker would: curl with and without the CA
and the credentials, `offerd execute` and `offerd teardown` through
OFFERD_CONFIG, Marathon over https.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import requests

from offerd.cli import secure_setup
from offerd.cli.local import free_base_port
from tests.support import free_port, wait_for

RESOURCES = "cpus:2;mem:1024;disk:1024;ports:[31000-31100]"


def local_command(work_dir, port: int, marathon_port: int | None) -> list[str]:
    marathon = [f"--marathon_port={marathon_port}"] if marathon_port else ["--no-marathon"]
    return [sys.executable, "-m", "offerd", "local", "--secure", f"--work_dir={work_dir}", "--slaves=1",
            f"--port={port}", *marathon, f"--resources={RESOURCES}", "--allocation_interval=0.2"]


class SecureLocal:
    def __init__(self, work_dir, port: int, marathon_port: int, log_path):
        self.work_dir = str(work_dir)
        self.port = port
        self.marathon_port = marathon_port
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(local_command(self.work_dir, port, marathon_port), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def up(self) -> bool:
        assert self.proc.poll() is None, f"offerd local exited ({self.proc.returncode}):\n{self.output()}"
        return "cluster is up" in self.output()

    @property
    def security(self) -> str:
        return os.path.join(self.work_dir, "security")

    @property
    def ca(self) -> str:
        return os.path.join(self.security, "ca.pem")

    @property
    def client_conf(self) -> str:
        return os.path.join(self.work_dir, "client.conf")

    def secret(self, principal: str) -> str:
        with open(os.path.join(self.security, "credentials.json")) as handle:
            return {c["principal"]: c["secret"] for c in json.load(handle)["credentials"]}[principal]

    @property
    def master(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def marathon(self) -> str:
        return f"https://127.0.0.1:{self.marathon_port}"

    def get(self, url: str, principal: str = "admin", **kwargs):
        return requests.get(url, auth=(principal, self.secret(principal)), verify=self.ca, timeout=10, **kwargs)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # `offerd local` stops its whole tree on SIGTERM
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    base = tmp_path_factory.mktemp("secure-local")
    cluster = SecureLocal(base / "work", free_base_port(1), free_port(), base / "local.log")
    try:
        wait_for(cluster.up, 90, interval=0.2, message="the secure local cluster's banner")
        yield cluster
    finally:
        cluster.stop()


def _offerd(*args: str, config: str | None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("OFFERD_MASTER", None)
    env.pop("OFFERD_CONFIG", None)
    if config:
        env["OFFERD_CONFIG"] = config
    return subprocess.run([sys.executable, "-m", "offerd", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "--silent", "--show-error", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=30)


def _conf_as(local: SecureLocal, principal: str, path) -> str:
    with open(local.client_conf) as handle:
        document = json.load(handle)
    document.update(principal=principal, secret=local.secret(principal))
    path.write_text(json.dumps(document))
    return str(path)


def test_secure_needs_a_work_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "offerd", "local", "--secure"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "--secure needs --work_dir" in result.stderr
    assert os.listdir(tmp_path) == []


def test_client_conf_and_the_banner(local):
    with open(local.client_conf) as handle:
        conf = json.load(handle)
    assert conf["master"] == f"127.0.0.1:{local.port}"
    assert conf["principal"] == "admin" and conf["secret"] == local.secret("admin")
    assert conf["ca_file"] == local.ca
    assert len(conf["master_public_key"]) == 40
    assert stat.S_IMODE(os.stat(local.client_conf).st_mode) == 0o600
    for name in ("ca.key", "server.key", "master.key_secret", "credentials.json", "slave.credential",
                 "marathon.secret"):
        assert stat.S_IMODE(os.stat(os.path.join(local.security, name)).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(local.security).st_mode) == 0o700
    banner = local.output()
    assert f"export OFFERD_CONFIG={local.client_conf}" in banner
    assert f"https://127.0.0.1:{local.port}/" in banner and f"https://127.0.0.1:{local.marathon_port}/" in banner
    assert "http://" not in banner.split("cluster is up", 1)[1]
    assert local.secret("admin") not in banner, "the banner points to the secrets, it does not print them"


def test_curl_needs_the_ca_and_credentials_and_https(local):
    state_url = f"{local.master}/master/state"
    good = _curl("--cacert", local.ca, "-u", f"admin:{local.secret('admin')}", state_url)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["activated_slaves"] == 1
    anonymous = _curl("--cacert", local.ca, "-o", "/dev/null", "-w", "%{http_code}", state_url)
    assert anonymous.stdout == "401"
    wrong = _curl("--cacert", local.ca, "-u", "admin:not-the-secret", "-o", "/dev/null", "-w", "%{http_code}",
                  state_url)
    assert wrong.stdout == "401"
    # Without our CA the certificate does not verify (curl's exit 60).
    unverified = _curl("-u", f"admin:{local.secret('admin')}", state_url)
    assert unverified.returncode == 60, unverified
    plain = _curl("-u", f"admin:{local.secret('admin')}", "-o", "/dev/null", "-w", "%{http_code}",
                  f"http://127.0.0.1:{local.port}/master/state")
    assert plain.returncode != 0 and plain.stdout in ("", "000")


def test_the_tools_use_offerd_config(local, tmp_path):
    result = _offerd("state", "--json", config=local.client_conf)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["activated_slaves"] == 1
    refused = _offerd("state", f"--master=127.0.0.1:{local.port}", config=None)
    assert refused.returncode == 1
    assert "https" in refused.stderr and "OFFERD_CONFIG" in refused.stderr
    anonymous = _offerd("state", f"--master=https://127.0.0.1:{local.port}", config=None)
    assert anonymous.returncode == 1 and "certificate" in anonymous.stderr
    no_credentials = tmp_path / "no-credentials.conf"
    no_credentials.write_text(json.dumps({"master": f"127.0.0.1:{local.port}", "ca_file": local.ca}))
    unauthenticated = _offerd("state", config=str(no_credentials))
    assert unauthenticated.returncode == 1
    assert "401" in unauthenticated.stderr and "set OFFERD_CONFIG" in unauthenticated.stderr


def test_offerd_execute_runs_a_task_and_offerd_logs_reads_it(local, tmp_path):
    result = _offerd("execute", "--name=secure-hello", "--command=echo hello-from-the-sandbox",
                     config=local.client_conf)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TASK_FINISHED" in result.stdout
    tasks = _offerd("tasks", "--all", "--json", config=local.client_conf)
    assert tasks.returncode == 0, tasks.stderr
    task_id = [t["id"] for t in json.loads(tasks.stdout)["tasks"] if t["name"] == "secure-hello"][0]
    # Through the master's proxy to the slave's https endpoint; readonly may read sandboxes.
    readonly = _conf_as(local, "readonly", tmp_path / "readonly.conf")
    logs = _offerd("logs", task_id, config=readonly)
    assert logs.returncode == 0, logs.stderr
    assert "hello-from-the-sandbox" in logs.stdout


def test_offerd_execute_as_readonly_is_refused_by_the_acls(local, tmp_path):
    readonly = _conf_as(local, "readonly", tmp_path / "readonly.conf")
    result = _offerd("execute", "--name=not-allowed", "--command=echo hello", config=readonly)
    assert result.returncode == 1
    assert "register_frameworks" in result.stderr and "'readonly'" in result.stderr


def test_offerd_execute_with_a_wrong_secret_is_refused(local, tmp_path):
    conf = tmp_path / "wrong.conf"
    document = json.loads(open(local.client_conf).read())
    document["secret"] = "not-the-secret"
    conf.write_text(json.dumps(document))
    result = _offerd("execute", "--name=not-allowed", "--command=echo hello", config=str(conf))
    assert result.returncode == 1
    assert "refused authentication" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout


def test_readonly_may_look_but_not_tear_down(local, tmp_path):
    readonly = _conf_as(local, "readonly", tmp_path / "readonly.conf")
    frameworks = _offerd("frameworks", "--json", config=readonly)
    assert frameworks.returncode == 0, frameworks.stderr
    marathon = [f for f in json.loads(frameworks.stdout)["frameworks"] if f["name"] == "marathon"]
    assert marathon, "marathon is registered"
    refused = _offerd("teardown", marathon[0]["id"], config=readonly)
    assert refused.returncode == 1
    assert "403" in refused.stderr and "teardown_frameworks" in refused.stderr and "'readonly'" in refused.stderr
    state = local.get(f"{local.master}/master/state").json()
    assert marathon[0]["id"] in [f["id"] for f in state["frameworks"]], "the framework survived"


def test_marathon_over_https_with_credentials_deploys_an_app(local):
    # No "user": run by root, offerd local gives marathon a non-root default the ACLs accept.
    app = {"id": "/secure-web", "cmd": "sleep 300", "cpus": 0.1, "mem": 16}
    assert requests.get(f"{local.marathon}/v2/apps", verify=local.ca, timeout=10).status_code == 401
    readonly = requests.post(f"{local.marathon}/v2/apps", json=app, verify=local.ca, timeout=10,
                             auth=("readonly", local.secret("readonly")))
    assert readonly.status_code == 403
    created = requests.post(f"{local.marathon}/v2/apps", json=app, verify=local.ca, timeout=10,
                            auth=("admin", local.secret("admin")))
    assert created.status_code == 201, created.text
    try:
        tasks = wait_for(lambda: [t for t in local.get(f"{local.marathon}/v2/apps/secure-web/tasks").json()["tasks"]
                                  if t["state"] == "TASK_RUNNING"], 60, interval=0.2, message="a running app task")
        assert len(tasks) == 1
    finally:
        requests.delete(f"{local.marathon}/v2/apps/secure-web", verify=local.ca, timeout=10,
                        auth=("admin", local.secret("admin")))


def test_marathon_cannot_run_an_app_as_root(local):
    app = {"id": "/as-root", "cmd": "sleep 300", "cpus": 0.1, "mem": 16, "user": "root"}
    auth = ("admin", local.secret("admin"))
    created = requests.post(f"{local.marathon}/v2/apps", json=app, verify=local.ca, timeout=10, auth=auth)
    assert created.status_code == 201, created.text
    try:
        failure = wait_for(lambda: local.get(f"{local.marathon}/v2/apps/as-root").json()["app"].get("lastTaskFailure"),
                           60, interval=0.2, message="the refused launch")
        assert "run_tasks" in failure["message"] and "root" in failure["message"]
        assert local.get(f"{local.marathon}/v2/apps/as-root").json()["app"]["tasksRunning"] == 0
    finally:
        requests.delete(f"{local.marathon}/v2/apps/as-root", verify=local.ca, timeout=10, auth=auth)


def test_slave_endpoints_are_https_and_authenticated(local):
    slave = f"https://127.0.0.1:{local.port + 1}"
    assert local.get(f"{slave}/state").status_code == 200
    assert requests.get(f"{slave}/state", verify=local.ca, timeout=10).status_code == 401


def test_a_second_start_reuses_every_file(local):
    """What a restart with the same --work_dir does first: nothing that clients hold changes."""
    names = sorted(os.listdir(local.security))
    before = {name: open(os.path.join(local.security, name), "rb").read() for name in names}
    conf = open(local.client_conf, "rb").read()
    files = secure_setup.prepare(local.work_dir)
    secure_setup.write_client_conf(local.client_conf, f"127.0.0.1:{local.port}", files)
    assert sorted(os.listdir(local.security)) == names
    assert {name: open(os.path.join(local.security, name), "rb").read() for name in names} == before
    assert open(local.client_conf, "rb").read() == conf


def test_a_lost_server_certificate_is_made_again_under_the_same_ca(tmp_path):
    files = secure_setup.prepare(str(tmp_path))
    ca, secrets = open(files.ca_file, "rb").read(), dict(files.secrets)
    os.unlink(files.key_file)
    again = secure_setup.prepare(str(tmp_path), ip="127.0.0.2")
    assert open(again.ca_file, "rb").read() == ca and again.secrets == secrets
    assert again.master_public_key == files.master_public_key
    result = subprocess.run(["openssl", "verify", "-CAfile", again.ca_file, again.cert_file], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    text = subprocess.run(["openssl", "x509", "-in", again.cert_file, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, timeout=30).stdout
    assert "127.0.0.2" in text and "127.0.0.1" in text and "localhost" in text


def test_a_damaged_credentials_file_is_replaced_not_trusted(tmp_path):
    files = secure_setup.prepare(str(tmp_path))
    with open(files.credentials_file, "w") as handle:
        handle.write("{not json")
    again = secure_setup.prepare(str(tmp_path))
    assert set(again.secrets) == set(secure_setup.PRINCIPALS)
    assert stat.S_IMODE(os.stat(again.credentials_file).st_mode) == 0o600


def test_the_acls_give_each_principal_only_its_part(tmp_path):
    from offerd.common.acls import Authorizer

    authorizer = Authorizer.from_flag(secure_setup.prepare(str(tmp_path)).acls_file)
    for action in ("teardown_frameworks", "update_quotas", "update_weights", "mark_agents_gone",
                   "register_frameworks", "run_tasks", "register_agents"):
        assert not authorizer.allowed("readonly", action, "x"), action
    for action in ("view_frameworks", "view_tasks", "view_executors", "access_sandboxes", "get_quotas"):
        assert authorizer.allowed("readonly", action, "alice"), action
    assert authorizer.allowed("readonly", "view_flags", None)
    assert authorizer.allowed("slave", "register_agents", "host1")
    assert not authorizer.allowed("slave", "register_frameworks", "*")
    assert authorizer.allowed("marathon", "register_frameworks", "*")
    assert authorizer.allowed("marathon", "run_tasks", "nobody")
    assert not authorizer.allowed("marathon", "run_tasks", "root")
    assert not authorizer.allowed("marathon", "teardown_frameworks", "marathon")
    assert authorizer.allowed("admin", "run_tasks", "root") and authorizer.allowed("admin", "mark_agents_gone", "a")
    assert not authorizer.allowed(None, "view_frameworks", "alice"), "not permissive"
    assert not authorizer.allowed("stranger", "view_frameworks", "alice")


@pytest.mark.timeout(180)
def test_a_client_conf_outlives_a_restart_of_the_cluster(tmp_path):
    command = local_command(tmp_path / "work", free_base_port(1), None)
    kept = tmp_path / "client.conf.first"
    for run in ("first", "second"):
        log_path = tmp_path / f"{run}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(lambda: proc.poll() is None and "cluster is up" in log_path.read_text(errors="replace"),
                         90, interval=0.2, message=f"the {run} run's banner")
                if run == "first":
                    kept.write_bytes((tmp_path / "work" / "client.conf").read_bytes())
                result = _offerd("state", "--json", config=str(kept))
                assert result.returncode == 0, result.stderr
                assert json.loads(result.stdout)["activated_slaves"] == 1
            finally:
                proc.terminate()
                proc.wait(60)


def test_the_tools_never_send_a_secret_over_plain_http_to_another_machine():
    from offerd.cli.tools import MasterClient
    from offerd.common.credentials import Credential

    credential = Credential("admin", "s3cret")
    remote = MasterClient("http://192.0.2.10:5050", credential=credential)
    assert remote.headers == {} and remote.withheld
    assert "was not sent" in remote._advice(401)
    local = MasterClient("127.0.0.1:5050", credential=credential)
    assert local.headers["Authorization"].startswith("Basic ")
