"""`offerd execute` explains a task it cannot place, on a real cluster, open and secure."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import OPEN_AND_SECURE, client_env


def _execute_until_explained(cluster, *argv: str) -> str:
    proc = subprocess.Popen([sys.executable, "-m", "offerd", "execute", f"--master={cluster.master}",
                             "--command", "true", "--timeout", "60secs", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(cluster))
    try:
        for line in proc.stderr:
            if "no offer" in line:
                return line
        return ""
    finally:
        proc.kill()
        proc.wait()


@OPEN_AND_SECURE
def test_a_task_no_slave_can_hold_names_the_largest_offer(cluster):
    line = _execute_until_explained(cluster, "--resources", "cpus:100;mem:32")
    assert "no offer can hold the task (cpus:100;mem:32)" in line, line
    assert "the largest so far, from slave" in line and "cpus:4" in line, line


def test_no_offers_at_all_gets_the_allocators_reason(cluster_factory):
    cluster = cluster_factory(slaves=0)
    line = _execute_until_explained(cluster, "--resources", "cpus:1")
    assert "no offers yet for the task (cpus:1)" in line, line
    assert "no slave has free resources" in line, line   # the allocator's own words


def test_a_master_that_stays_gone_ends_the_wait_at_the_timeout(cluster_factory):
    cluster = cluster_factory(slaves=1)
    proc = subprocess.Popen([sys.executable, "-m", "offerd", "execute", f"--master={cluster.master}",
                             "--command", "sleep 600", "--timeout", "6secs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "TASK_RUNNING" in line:
                break
        cluster.master_proc.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert f"the master at {cluster.master} has been gone for" in err and "giving up" in err, err
