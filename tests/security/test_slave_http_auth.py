"""The slave's HTTP endpoints under authentication and ACLs: a real master, a
real slave running a real task, real HTTP requests."""

from __future__ import annotations

import getpass
import json
import os

import pytest
import requests

from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from offerd.slave.daemon import Slave
from offerd.slave.flags import make_flags
from tests.builders import RunningFramework
from tests.support import wait_for

USER = getpass.getuser()  # the framework's user, hence the task's and its sandbox's
OWNER = ("owner", "owner-secret")
OTHER = ("other", "other-secret")
AUDITOR = ("auditor", "auditor-secret")  # may read every user's sandbox

ACLS = {
    "permissive": False,
    "access_sandboxes": [{"principals": {"values": ["owner"]}, "users": {"values": [USER]}},
                         {"principals": {"values": ["other"]}, "users": {"values": ["somebody-else"]}},
                         {"principals": {"values": ["auditor"]}, "users": {"type": "ANY"}}],
    "view_flags": [{"principals": {"values": ["owner"]}, "flags": {"type": "ANY"}}],
    "view_frameworks": [{"principals": {"values": ["owner"]}, "users": {"values": [USER]}}],
    "view_executors": [{"principals": {"values": ["owner"]}, "users": {"values": [USER]}}],
    "view_tasks": [{"principals": {"values": ["owner"]}, "users": {"values": [USER]}}],
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A master, a slave with HTTP authentication and ACLs, and one running task."""
    directory = tmp_path_factory.mktemp("slave-http-auth")
    credentials = directory / "http_credentials"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in (OWNER, OTHER, AUDITOR)]}))
    master = Master(master_flags(port=0, allocation_interval="100ms")).start()
    slave = Slave(make_flags(
        master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(directory / "slave"),
        resources="cpus:2;mem:1024;disk:1024", http_credentials=str(credentials),
        authenticate_http_readonly=True, authenticate_http_readwrite=True, acls=json.dumps(ACLS),
        registration_backoff_factor=0.2, executor_shutdown_grace_period=1.0)).start()
    framework = RunningFramework(f"127.0.0.1:{master.http_port}").__enter__()
    try:
        task_id = framework.scheduler.submit("echo sandbox-secret; sleep 60")
        framework.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        base = f"http://127.0.0.1:{slave.http_port}"
        state = requests.get(base + "/state", auth=OWNER, timeout=10).json()
        directory_of_task = state["frameworks"][0]["executors"][0]["directory"]
        stdout = os.path.join(directory_of_task, "stdout")
        wait_for(lambda: os.path.exists(stdout) and b"sandbox-secret" in open(stdout, "rb").read(),
                 timeout=30, message="the task to write its stdout")
        yield {"base": base, "sandbox": directory_of_task, "stdout": stdout, "task_id": task_id,
               "framework_id": framework.framework_id}
    finally:
        framework.__exit__(None, None, None)
        slave.stop()
        master.stop()


def _get(guarded, endpoint, auth=None, **params):
    return requests.get(guarded["base"] + endpoint, params=params, auth=auth, timeout=10)


@pytest.mark.parametrize("endpoint", ["/state", "/flags", "/files/browse", "/metrics/snapshot",
                                      "/monitor/statistics"])
def test_no_credentials_get_401_with_the_agent_realm(guarded, endpoint):
    refused = _get(guarded, endpoint, path=guarded["sandbox"])
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="mesos-agent-readonly"'
    assert "authentication required" in refused.json()["message"]


def test_wrong_secret_gets_401_and_health_stays_open(guarded):
    assert _get(guarded, "/state", auth=("owner", "guess")).status_code == 401
    assert _get(guarded, "/state", auth=("nobody", "owner-secret")).status_code == 401
    assert _get(guarded, "/health").status_code == 200


def test_sandbox_reads_need_access_sandboxes_for_the_tasks_user(guarded):
    for path in ("/files/read", "/files/download"):
        refused = _get(guarded, path, auth=OTHER, path=guarded["stdout"], offset=0)
        assert refused.status_code == 403, path
        message = refused.json()["message"]
        assert "access_sandboxes" in message and "'other'" in message
        assert "sandbox-secret" not in refused.text
    refused_listing = _get(guarded, "/files/browse", auth=OTHER, path=guarded["sandbox"])
    assert refused_listing.status_code == 403
    allowed = _get(guarded, "/files/read", auth=OWNER, path=guarded["stdout"], offset=0)
    assert allowed.status_code == 200 and "sandbox-secret" in allowed.json()["data"]
    download = _get(guarded, "/files/download", auth=OWNER, path=guarded["stdout"])
    assert download.status_code == 200 and b"sandbox-secret" in download.content
    listing = _get(guarded, "/files/browse", auth=OWNER, path=guarded["sandbox"])
    assert "stdout" in {os.path.basename(entry["path"]) for entry in listing.json()}


def test_a_refused_principal_does_not_learn_which_files_exist(guarded):
    absent = os.path.join(guarded["sandbox"], "no-such-file")
    assert _get(guarded, "/files/read", auth=OTHER, path=absent, offset=0).status_code == 403
    assert _get(guarded, "/files/read", auth=OWNER, path=absent, offset=0).status_code == 404


def test_directories_above_the_sandboxes_are_refused(guarded):
    # Nothing to attribute them to, and a listing tells whose sandboxes exist: refused
    # even to a principal who may read every user's sandbox.
    slaves_root = os.path.dirname(guarded["sandbox"].split("/frameworks/")[0])
    executors = os.path.dirname(guarded["sandbox"].split("/runs/")[0])
    for path in (slaves_root, executors, guarded["sandbox"].split("/executors/")[0]):
        for auth in (OWNER, AUDITOR):
            refused = _get(guarded, "/files/browse", auth=auth, path=path)
            assert refused.status_code == 403 and "access_sandboxes" in refused.json()["message"], (path, auth)
    assert _get(guarded, "/files/browse", auth=AUDITOR, path=guarded["sandbox"]).status_code == 200


def test_flags_need_view_flags(guarded):
    refused = _get(guarded, "/flags", auth=OTHER)
    assert refused.status_code == 403 and "view_flags" in refused.json()["message"]
    allowed = _get(guarded, "/flags", auth=OWNER)
    assert allowed.status_code == 200 and "work_dir" in allowed.json()["flags"]
    # /state carries the flags too: only for those who may see them.
    assert "flags" in _get(guarded, "/state", auth=OWNER).json()
    assert "flags" not in _get(guarded, "/state", auth=OTHER).json()


def test_state_and_statistics_show_only_what_the_principal_may_view(guarded):
    mine = _get(guarded, "/state", auth=OWNER).json()
    assert [f["id"] for f in mine["frameworks"]] == [guarded["framework_id"]]
    assert [t["id"] for t in mine["frameworks"][0]["executors"][0]["tasks"]] == [guarded["task_id"]]
    theirs = _get(guarded, "/state", auth=OTHER).json()
    assert theirs["frameworks"] == [] and theirs["completed_frameworks"] == []
    assert theirs["id"] == mine["id"]  # the slave itself stays visible
    assert guarded["task_id"] not in json.dumps(theirs)
    assert [e["executor_id"] for e in _get(guarded, "/monitor/statistics", auth=OWNER).json()]
    assert _get(guarded, "/monitor/statistics", auth=OTHER).json() == []


def test_cross_site_form_post_is_refused_even_with_credentials(guarded):
    forged = requests.post(guarded["base"] + "/files/browse", data={"path": guarded["sandbox"]}, auth=OWNER,
                           headers={"Origin": "http://evil.example"}, timeout=10)
    assert forged.status_code == 403 and "cross-site" in forged.json()["message"]
    fetched = requests.post(guarded["base"] + "/files/browse", data={"path": guarded["sandbox"]}, auth=OWNER,
                            headers={"Sec-Fetch-Site": "cross-site"}, timeout=10)
    assert fetched.status_code == 403


def test_without_acls_nothing_is_filtered(tmp_path):
    # --acls unset: authentication alone, every proven principal sees everything.
    master = Master(master_flags(port=0)).start()
    credentials = tmp_path / "credentials"
    credentials.write_text("other other-secret\n")
    slave = Slave(make_flags(master=f"127.0.0.1:{master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
                             containerizer="simulated", http_credentials=str(credentials),
                             authenticate_http_readonly=True, resources="cpus:1;mem:128;disk:128")).start()
    try:
        base = f"http://127.0.0.1:{slave.http_port}"
        assert requests.get(base + "/flags", timeout=10).status_code == 401
        assert requests.get(base + "/flags", auth=OTHER, timeout=10).status_code == 200
    finally:
        slave.stop()
        master.stop()


def test_authentication_without_credentials_is_a_clear_error(tmp_path):
    flags = make_flags(master="127.0.0.1:1", port=0, work_dir=str(tmp_path / "slave"), containerizer="simulated",
                       authenticate_http_readonly=True)
    with pytest.raises(ValueError, match="--http_credentials"):
        Slave(flags).start()
