"""A master and two slaves on separate hosts with every protection on, and a
wire tap between the hosts that must learn nothing.

The hosts are network namespaces joined by a bridge (tests/netns.py); the tap
reads every frame on their links, as someone on the network would. The open
cluster in tests/integration/test_netns.py shows the same tap reading a task's
command in clear, so a tap that sees nothing here is not a broken tap.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from offerd.common import curve
from offerd.common.credentials import basic_auth_header
from offerd.common.tls import client_context
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework
from tests.netns import Capture, TestNetwork, netns_available
from tests.security.certs import make_ca_and_cert
from tests.support import wait_for

reason = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(reason is not None, reason=reason or "")]

SECRETS = {"admin": "admin-secret-1", "slave": "slave-secret-2"}


@pytest.fixture
def network():
    net = TestNetwork(subnet=9)
    yield net
    net.close()


def test_an_open_master_refuses_a_network_address(network, tmp_path):
    ip = network.add_host("m")
    proc = network.popen("m", [sys.executable, "-m", "offerd", "master", f"--ip={ip}",
                               f"--work_dir={tmp_path}/master"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    text = out.decode()
    assert f"refusing to listen on {ip}" in text and "--insecure" in text
    for flag in ("--authenticate_frameworks", "--zmq_key_file", "--ssl_cert_file", "--authenticate_http_readwrite"):
        assert flag in text


def _get(url: str, context: ssl.SSLContext, principal: str | None = "admin"):
    request = urllib.request.Request(url)
    if principal:
        request.add_header("Authorization", basic_auth_header(principal, SECRETS[principal]))
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return json.loads(response.read())


def _reachable(url, context) -> bool:
    try:
        _get(url, context)
        return True
    except OSError:
        return False


def test_secure_cluster_across_hosts_shows_nothing_on_the_wire(network, tmp_path):
    master_ip = network.add_host("m")
    slave_ips = [network.add_host("s1"), network.add_host("s2")]
    ca, cert, key = make_ca_and_cert(str(tmp_path / "tls"), hosts=(master_ip, *slave_ips))
    public_key_file, secret_key_file = curve.generate(str(tmp_path / "keys"), "master")
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in SECRETS.items()]}))
    slave_credential = tmp_path / "slave.credential"
    slave_credential.write_text(f"slave {SECRETS['slave']}\n")
    tls = [f"--ssl_cert_file={cert}", f"--ssl_key_file={key}", f"--ssl_ca_file={ca}"]
    http_auth = ["--authenticate_http_readonly", "--authenticate_http_readwrite"]
    logs = open(tmp_path / "daemons.log", "wb")
    # No --insecure anywhere: with everything on, network addresses are allowed.
    procs = [network.popen("m", [
        sys.executable, "-m", "offerd", "master", f"--ip={master_ip}", f"--work_dir={tmp_path}/master",
        "--allocation_interval=0.2secs", f"--credentials={credentials}", "--authenticate_frameworks",
        "--authenticate_agents", *http_auth, f"--zmq_key_file={secret_key_file}", *tls], stdout=logs, stderr=logs)]
    context = client_context(ca)
    base = f"https://{master_ip}:5050"
    try:
        wait_for(lambda: _reachable(f"{base}/master/state", context), timeout=30, message="the master over https")
        for index, ip in enumerate(slave_ips, start=1):
            procs.append(network.popen(f"s{index}", [
                sys.executable, "-m", "offerd", "slave", f"--master={master_ip}:5050", f"--ip={ip}",
                f"--work_dir={tmp_path}/slave{index}", "--resources=cpus:1;mem:1024;disk:1024",
                f"--credential={slave_credential}", f"--master_public_key={public_key_file}",
                f"--http_credentials={credentials}", *http_auth, *tls], stdout=logs, stderr=logs))
        wait_for(lambda: _get(f"{base}/master/state", context).get("activated_slaves") == 2,
                 timeout=30, message="two slaves to register over encrypted links")

        marker = f"wiretap-{uuid.uuid4().hex}"
        driver_kwargs = {"credential": pb.Credential(principal="admin", secret=SECRETS["admin"].encode()),
                         "master_public_key": public_key_file, "ca_file": ca}
        with Capture(network) as tap:
            with RunningFramework(f"{master_ip}:5050", driver_kwargs=driver_kwargs) as fw:
                task_id = fw.scheduler.submit(f"echo {marker}")
                status = fw.scheduler.wait_state(task_id, [pb.TASK_FINISHED, pb.TASK_FAILED])
                assert status.state == pb.TASK_FINISHED, status.message
            # The task's stdout, read through the master's sandbox proxy (https to the slave).
            state = _get(f"{base}/master/state", context)
            task = next(t for f in state["frameworks"] + state["completed_frameworks"]
                        for t in f.get("completed_tasks", []) + f.get("tasks", []) if t["id"] == task_id)
            sandbox = _get(f"{base}/master/sandbox?" + urllib.parse.urlencode(
                {"framework_id": task["framework_id"], "task_id": task_id}), context)
            query = urllib.parse.urlencode({"slave_id": task["slave_id"], "path": sandbox["directory"] + "/stdout",
                                            "offset": 0, "length": 4096})
            assert marker in _get(f"{base}/files/read?{query}", context)["data"]
        # The tap heard the ZeroMQ and HTTPS traffic of all of that...
        assert tap.bytes_to_port(6050) > 0 and tap.bytes_to_port(5050) > 0 and tap.bytes_to_port(5051) > 0
        # ...and read neither the task's command nor its output, nor a secret.
        assert not tap.contains(marker.encode())
        for secret in SECRETS.values():
            assert not tap.contains(secret.encode())

        # Plain http to the master's port gets no HTTP answer.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://{master_ip}:5050/master/state", timeout=5).read()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
