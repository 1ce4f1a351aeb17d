"""Fixes from the review of the security change, each pinned by the input that broke it.

A real in-process Master serves real HTTP; a raw ZeroMQ peer plays a slave whose
HTTP server (a real one, on loopback) answers what a hostile slave could; a real
slave runs real tasks for the sandbox links.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from offerd.common import curve
from offerd.common.acls import ACLError, Authorizer
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from offerd.slave.daemon import Slave
from offerd.slave.flags import make_flags
from tests.builders import RunningFramework
from tests.integration.test_master_protocol import FakeSlave
from tests.support import wait_for

pytestmark = pytest.mark.timeout(60)

SECRETS = {"admin": "admin-secret"}
# Only alice's frameworks may be viewed; a framework whose user cannot be told is not hers.
ANY = {"type": "ANY"}
ACLS = {"permissive": False,
        "register_agents": [{"principals": ANY, "agents": ANY}],
        "view_frameworks": [{"principals": ANY, "users": {"values": ["alice"]}}],
        "view_executors": [{"principals": ANY, "users": ANY}],
        "view_tasks": [{"principals": ANY, "users": ANY}]}

# What no honest slave sends: entries that are not objects, ids and users that are not strings.
HOSTILE_STATE = {
    "frameworks": [
        "not an object",
        {"id": ["a", "list"], "user": {"an": "object"}, "executors": "not a list"},
        {"id": "fw-1", "user": "alice",
         "executors": [7, {"id": {"x": 1}, "user": ["u"], "tasks": [1, {"id": ["t"], "user": 2}]}]},
    ],
    "completed_frameworks": "not a list",
}


class _HostileSlaveHttp(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps(HOSTILE_STATE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # the test's output, not the request log


class _SlaveAt(FakeSlave):
    """A raw slave whose SlaveInfo names `http_port`: the master proxies there."""

    http_port = 0

    def info(self, resources="cpus:4;mem:4096", hostname="h1") -> pb.SlaveInfo:
        info = super().info(resources, hostname)
        info.port = self.http_port
        return info


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    work = tmp_path_factory.mktemp("review-fixes")
    credentials = work / "credentials.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in SECRETS.items()]}))
    master = Master(master_flags(port=0, work_dir=str(work), credentials=str(credentials),
                                 authenticate_http_readwrite=True, acls=json.dumps(ACLS),
                                 allocation_interval="50ms")).start()
    try:
        yield master
    finally:
        master.stop()


def url(master: Master, path: str) -> str:
    return f"http://127.0.0.1:{master.http_port}{path}"


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "https://[zz]:80"])
def test_malformed_origin_is_refused_as_cross_site(master, origin):
    """An Origin urllib cannot parse used to end in a 500 from the guard itself."""
    response = requests.post(url(master, "/master/teardown"), data={"frameworkId": "any"},
                             auth=("admin", SECRETS["admin"]), headers={"Origin": origin}, timeout=10)
    assert response.status_code == 403, response.text
    assert "cross-site request refused" in response.text
    # A read with the same header is served: only changes are guarded against forgery.
    assert requests.get(url(master, "/master/health"), headers={"Origin": origin}, timeout=10).status_code == 200


@pytest.mark.parametrize("header", ["Basic", "Basic é", "Basic " + "A" * 5000, "Basic YWRtaW4=", "Bearer x",
                                    "Basic " + "YWRtaW46" * 3])
def test_malformed_authorization_is_401(master, header):
    response = requests.post(url(master, "/master/teardown"), data={"frameworkId": "any"},
                             headers={"Authorization": header.encode("utf-8")}, timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_hostile_slave_state_is_filtered_not_a_500(master):
    """The proxied /state of a slave is filtered by the master's ACLs; a slave that
    sends malformed entries gets them dropped instead of crashing the filter."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileSlaveHttp)
    thread = threading.Thread(target=server.serve_forever, name="hostile-slave-http", daemon=True)
    thread.start()
    slave = _SlaveAt(master)
    slave.http_port = server.server_address[1]
    try:
        slave_id = slave.register()
        response = requests.get(url(master, f"/master/slaves/{slave_id}/state"), timeout=10)
        assert response.status_code == 200, response.text
        document = response.json()
        # Only alice's framework may be viewed, and only its well-formed entries remain.
        assert [f["id"] for f in document["frameworks"]] == ["fw-1"]
        executors = document["frameworks"][0]["executors"]
        assert len(executors) == 1 and executors[0]["tasks"] == [{"id": ["t"], "user": 2}]
        assert document["completed_frameworks"] == []
    finally:
        slave.close()
        server.shutdown()
        server.server_close()


def test_a_symlink_in_one_sandbox_does_not_open_another(tmp_path):
    """A task may plant a link to another task's sandbox in its own; whoever was
    allowed into its own sandbox (by the master's proxy check or the slave's) must
    not read the other through it. The slave follows no link in a sandbox, so a
    link within the sandbox is refused too."""
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
                             resources="cpus:2;mem:1024;disk:1024", registration_backoff_factor=0.2,
                             executor_shutdown_grace_period=1.0)).start()
    framework = RunningFramework(f"127.0.0.1:{master.http_port}").__enter__()
    try:
        planter = framework.scheduler.submit("sleep 60")
        victim = framework.scheduler.submit("echo victim-secret > secret.txt; sleep 60")
        for task_id in (planter, victim):
            framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        base = f"http://127.0.0.1:{slave.http_port}"
        executors = requests.get(base + "/state", timeout=10).json()["frameworks"][0]["executors"]
        sandbox = {e["id"]: e["directory"] for e in executors}
        victim_file = os.path.join(sandbox[victim], "secret.txt")
        wait_for(lambda: os.path.exists(victim_file) and b"victim-secret" in open(victim_file, "rb").read(),
                 timeout=30, message="the victim task to write its file")
        # What the planting task would do in its own sandbox (same user: the test does it).
        os.symlink(victim_file, os.path.join(sandbox[planter], "stolen"))
        os.symlink(os.path.join(sandbox[planter], "stdout"), os.path.join(sandbox[planter], "own-stdout"))

        def read(path, via_master=False):
            if via_master:
                return requests.get(f"http://127.0.0.1:{master.http_port}/files/read",
                                    params={"slave_id": slave.slave_id, "path": path, "offset": 0}, timeout=10)
            return requests.get(base + "/files/read", params={"path": path, "offset": 0}, timeout=10)

        for via_master in (False, True):
            refused = read(os.path.join(sandbox[planter], "stolen"), via_master)
            assert refused.status_code == 403, refused.text
            assert "victim-secret" not in refused.text
            assert read(os.path.join(sandbox[planter], "own-stdout"), via_master).status_code == 403
            assert "victim-secret" in read(victim_file, via_master).json()["data"]  # the real path is fine
    finally:
        framework.__exit__(None, None, None)
        slave.stop()
        master.stop()


def test_an_unreadable_acls_file_is_a_clear_error(tmp_path):
    path = tmp_path / "acls.json"
    path.write_bytes(b"\xff\xfe not UTF-8")
    with pytest.raises(ACLError, match=r"--acls: cannot read .*acls\.json"):
        Authorizer.from_flag(str(path))


def test_a_key_file_named_without_a_directory_is_made_in_the_current_one(tmp_path, monkeypatch):
    """--zmq_key_file=executor.key_secret (a bare name) used to fail making the directory ''."""
    monkeypatch.chdir(tmp_path)
    public, secret = curve.ensure_key_pair("executor.key_secret")
    assert (tmp_path / "executor.key_secret").exists()
    assert curve.load_key_pair(str(tmp_path / "executor.key_secret")) == (public, secret)
