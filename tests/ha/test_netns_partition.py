"""A slave on its own network-namespace host, cut off by taking its link down
(tests/netns.py): it becomes unreachable after the ping timeouts, and its tasks
come back as running when the link returns (partition-aware framework)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.ha.cluster import HACluster
from tests.netns import TestNetwork, netns_available
from tests.support import wait_for
from tests.zookeeper import ZooKeeperServer, zookeeper_missing

# The hosts talk over a bridge, off loopback: --insecure accepts an open cluster there.
reason = netns_available() or zookeeper_missing()
# The slave's link-level reconnection backs off 1 s at most (registration.MAX_RECONNECT_BACKOFF),
# so it is back moments after its link returns.
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

def test_partitioned_slave_becomes_unreachable_and_its_tasks_resume(tmp_path):
    network = TestNetwork(subnet=9)
    zk = procs = cluster = None
    try:
        slave_ip = network.add_host("s")
        outside_link = f"ov{network.tag}10"  # the first host's veth end on the bridge
        bridge_ip = f"{network.prefix}.1"
        zk = ZooKeeperServer(1, host=bridge_ip).start()
        cluster = HACluster(zk.url(f"offerd-{uuid.uuid4().hex[:6]}"), masters=2, slaves=0, ip=bridge_ip,
                            work_dir=str(tmp_path),
                            master_args=["--insecure", "--zk_session_timeout=2secs", "--allocation_interval=0.2secs",
                                         "--slave_ping_timeout=0.5secs", "--max_slave_ping_timeouts=2"]).start()
        log = open(tmp_path / "slave.log", "wb")
        procs = [network.popen("s", [sys.executable, "-m", "offerd", "slave", f"--master={cluster.zk_url}",
                                     f"--ip={slave_ip}", "--hostname=slave.test", f"--work_dir={tmp_path}/slave",
                                     "--resources=cpus:2;mem:1024;disk:1024;ports:[31000-32000]",
                                     "--heartbeat_interval=0.3secs", "--insecure"], stdout=log, stderr=log)]
        cluster.wait_slaves(1, 30)
        fw = RunningFramework(cluster.zk_url, info=framework_info(partition_aware=True, failover_timeout=60))
        fw.driver.heartbeat_interval = 0.3
        with fw:
            task_id = fw.scheduler.submit("sleep 600")
            fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
            slave_id = fw.scheduler.task_slaves[task_id]
            subprocess.run(["ip", "link", "set", outside_link, "down"], check=True)
            status = fw.scheduler.wait_state(task_id, pb.TASK_UNREACHABLE, timeout=20)
            assert status.reason == pb.TaskStatus.REASON_SLAVE_REMOVED
            subprocess.run(["ip", "link", "set", outside_link, "up"], check=True)
            link_up = time.monotonic()
            wait_for(lambda: cluster.state().get("activated_slaves") == 1, 40, message="the slave to come back")
            print(f"the slave was back {time.monotonic() - link_up:.1f}s after its link returned")
            seen = len(fw.scheduler.updates[task_id])
            fw.driver.reconcileTasks([pb.TaskStatus(task_id=pb.TaskID(value=task_id),
                                                    slave_id=pb.SlaveID(value=slave_id), state=pb.TASK_RUNNING)])
            fw.scheduler.wait_for(lambda: len(fw.scheduler.updates[task_id]) > seen, 20, what="reconciliation")
            assert fw.scheduler.last(task_id).state == pb.TASK_RUNNING
            assert pb.TASK_KILLED not in fw.scheduler.states(task_id)
    finally:
        for proc in procs or []:
            proc.kill()
            proc.wait(10)
        if cluster is not None:
            cluster.stop()
        if zk is not None:
            zk.stop()
        network.close()
