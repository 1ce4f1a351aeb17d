"""`offerd local` restarts the marathon process when it dies; the new one adopts the tasks."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest
import requests

from offerd.cli.local import free_base_port
from tests.support import free_port, wait_for


def _get(url):
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def _marathon_child(pid: int):
    for child in psutil.Process(pid).children():
        try:
            if "marathon" in child.cmdline():
                return child
        except psutil.Error:
            continue  # the killed one, a zombie until `offerd local` reaps it
    return None


@pytest.mark.timeout(120)
def test_offerd_local_restarts_a_dead_marathon(tmp_path):
    port, api_port = free_base_port(1), free_port()
    api = f"http://127.0.0.1:{api_port}"
    log = open(tmp_path / "local.log", "wb")
    local = subprocess.Popen([sys.executable, "-m", "offerd", "local", "--slaves=1", f"--port={port}",
                              f"--marathon_port={api_port}", f"--work_dir={tmp_path / 'work'}",
                              "--resources=cpus:2;mem:1024;disk:1024;ports:[31000-31100]"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Wait for `offerd local` itself to finish starting (its banner), not only for
        # marathon to answer: a kill before that is a failed start, not a crash.
        wait_for(lambda: b"cluster is up" in (tmp_path / "local.log").read_bytes(), 60,
                 message="the local cluster's banner")
        wait_for(lambda: _get(f"{api}/v2/info"), 60, message="the local cluster's marathon")
        requests.post(f"{api}/v2/apps", json={"id": "/kept", "cmd": "sleep 600", "cpus": 0.1, "mem": 16},
                      timeout=5).raise_for_status()
        tasks = wait_for(lambda: [t for t in (_get(f"{api}/v2/apps/kept/tasks") or {"tasks": []})["tasks"]
                                  if t["state"] == "TASK_RUNNING"], 30, message="a running task")
        child = _marathon_child(local.pid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_for(lambda: (c := _marathon_child(local.pid)) is not None and c.pid != child.pid, 15,
                 message="a new marathon process")
        after = wait_for(lambda: (_get(f"{api}/v2/apps/kept/tasks") or {}).get("tasks"), 30,
                         message="the API back")
        assert [t["id"] for t in after] == [tasks[0]["id"]]
    finally:
        if local.poll() is None:
            local.terminate()   # `offerd local` stops its whole tree on SIGTERM
        local.wait(60)
        log.close()
