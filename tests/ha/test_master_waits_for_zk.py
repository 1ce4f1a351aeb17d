"""A master started before its ZooKeeper waits for it instead of exiting.

Real processes: the master runs as `offerd master --zk=...` against the
address of a ZooKeeper that is not running yet; the ZooKeeper is started
afterwards and the master must then contend and lead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.support import free_port, wait_for
from tests.zookeeper import ZooKeeperServer, zookeeper_missing


def _metrics(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/snapshot", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def _log_text(path) -> str:
    with open(path, errors="replace") as log:
        return log.read()


@pytest.mark.skipif(zookeeper_missing() is not None, reason=f"no real ZooKeeper: {zookeeper_missing()}")
def test_master_started_before_zookeeper_waits_then_leads(tmp_path):
    zk = ZooKeeperServer(1)  # ports chosen, nothing listening yet
    port = free_port()
    log_path = tmp_path / "master.log"
    url = zk.url("/offerd")
    with open(log_path, "ab") as out:
        master = subprocess.Popen(
            [sys.executable, "-m", "offerd", "master", "--ip=127.0.0.1", f"--port={port}",
             f"--zmq_port={free_port()}", f"--work_dir={tmp_path / 'master'}", f"--zk={url}",
             "--zk_session_timeout=2secs"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "waiting for ZooKeeper at" in _log_text(log_path), timeout=30,
                 message="the master's 'waiting for ZooKeeper' line")
        # It keeps waiting (and serving HTTP as a standby) rather than exiting.
        wait_for(lambda: _metrics(port).get("master/elected") == 0, timeout=30, message="the standby's metrics")
        assert master.poll() is None, _log_text(log_path)
        zk.start()
        wait_for(lambda: _metrics(port).get("master/elected") == 1, timeout=60,
                 message="the master to lead once ZooKeeper is up")
        assert master.poll() is None
        lines = [line for line in _log_text(log_path).splitlines() if "waiting for ZooKeeper at" in line]
        assert lines and "retrying every" in lines[0], lines
        assert "127.0.0.1" in lines[0]
    finally:
        if master.poll() is None:
            master.terminate()
            try:
                master.wait(15)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait(5)
        zk.stop()
