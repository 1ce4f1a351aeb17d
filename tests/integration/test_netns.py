"""Nothing assumes one host: a master and two slaves in their own network namespaces."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework
from tests.netns import Capture, TestNetwork, netns_available
from tests.support import wait_for

reason = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(reason is not None, reason=reason or "")]


@pytest.fixture
def network():
    net = TestNetwork(subnet=7)
    yield net
    net.close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_master_and_slaves_on_separate_hosts(network, tmp_path):
    # Without security (--insecure: these addresses are not loopback). The same
    # cluster with everything on is in tests/security/test_netns_secure.py.
    master_ip = network.add_host("m")
    slave_ips = [network.add_host("s1"), network.add_host("s2")]
    logs = open(tmp_path / "daemons.log", "wb")
    procs = [network.popen("m", [sys.executable, "-m", "offerd", "master", f"--ip={master_ip}",
                                 "--hostname=master.test", f"--work_dir={tmp_path}/master",
                                 "--allocation_interval=0.2secs", "--insecure"], stdout=logs, stderr=logs)]
    try:
        wait_for(lambda: _reachable(f"http://{master_ip}:5050/master/info"), timeout=30, message="the master")
        for index, ip in enumerate(slave_ips, start=1):
            procs.append(network.popen(f"s{index}", [
                sys.executable, "-m", "offerd", "slave", f"--master={master_ip}:5050", f"--ip={ip}",
                f"--hostname=slave{index}.test", f"--work_dir={tmp_path}/slave{index}", "--insecure",
                "--resources=cpus:0.3;mem:1024;disk:1024;ports:[31000-32000]"], stdout=logs, stderr=logs))
        wait_for(lambda: get_json(f"http://{master_ip}:5050/master/state").get("activated_slaves") == 2,
                 timeout=30, message="two slaves to register")

        state = get_json(f"http://{master_ip}:5050/master/state")
        hostnames = sorted(s["hostname"] for s in state["slaves"])
        assert hostnames == ["slave1.test", "slave2.test"]
        assert sorted(s["pid"].split("@")[1].split(":")[0] for s in state["slaves"]) == sorted(slave_ips)

        with Capture(network) as tap, RunningFramework(f"{master_ip}:5050") as fw:
            # Three tasks fit on a slave at once and each lasts a while, so both slaves work.
            ids = [fw.scheduler.submit("ip -4 -o addr show dev eth0; sleep 1") for _ in range(6)]
            for task_id in ids:
                assert fw.scheduler.wait_state(task_id, [pb.TASK_FINISHED, pb.TASK_FAILED]).state == pb.TASK_FINISHED
            used = set(fw.scheduler.task_slaves.values())
        assert len(used) == 2
        # Open links carry every task in clear: a tap between the hosts reads the
        # command (the secure test checks the opposite with the same tap).
        assert tap.contains(b"ip -4 -o addr show dev eth0")

        # Each task ran on its slave's host: its stdout, read across the network
        # through the slave's own HTTP endpoint, shows that host's address.
        state = get_json(f"http://{master_ip}:5050/master/state")
        slaves = {s["id"]: s for s in state["slaves"]}
        checked = 0
        for fw in state["frameworks"] + state["completed_frameworks"]:
            for task in fw.get("completed_tasks", []) + fw.get("tasks", []):
                slave = slaves[task["slave_id"]]
                slave_ip = slave["pid"].split("@")[1].split(":")[0]
                slave_state = get_json(f"http://{slave_ip}:5051/state")
                directory = _task_directory(slave_state, task["id"])
                query = urllib.parse.urlencode({"path": f"{directory}/stdout", "offset": 0, "length": 4096})
                data = get_json(f"http://{slave_ip}:5051/files/read?{query}")["data"]
                assert slave_ip in data, (slave_ip, data)
                checked += 1
        assert checked == 6
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except Exception:
                proc.kill()
        logs.close()


def _reachable(url):
    try:
        get_json(url)
        return True
    except OSError:
        return False


def _task_directory(slave_state, task_id):
    for fw in slave_state.get("frameworks", []) + slave_state.get("completed_frameworks", []):
        for executor in fw.get("executors", []) + fw.get("completed_executors", []):
            tasks = executor.get("tasks", []) + executor.get("completed_tasks", [])
            if any(t["id"] == task_id for t in tasks) or executor.get("id") == task_id:
                return executor["directory"]
    raise AssertionError(f"task {task_id} not found in the slave's state")
