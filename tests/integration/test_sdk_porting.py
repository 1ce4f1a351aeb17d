"""The porting promise on a real cluster: a framework and an executor
written for Mesos' Python bindings, with only their imports changed, run to the end.

tests/porting/porting_framework.py launches five tasks into its own executor
(tests/porting/porting_executor.py), checks that binary data with a NUL byte
survives status updates and framework messages both ways, and exits 0 only if
the driver ended in DRIVER_STOPPED.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_porting_framework(cluster, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, str(ROOT / "tests/porting/porting_framework.py"), cluster.master],
        cwd=cluster.work_dir, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("explicit", [False, True], ids=["implicit-acks", "explicit-acks"])
def test_a_mesos_framework_runs_with_only_its_imports_changed(cluster, explicit):
    env = {"MESOS_EXPLICIT_ACKNOWLEDGEMENTS": "1"} if explicit else {}
    result = run_porting_framework(cluster, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("is in state TASK_FINISHED") == 5, output
    assert "All tasks done, and all messages received, exiting" in output

    # stop() tore the framework down: nothing of it is left running.
    def torn_down():
        state = cluster.state()
        mine = [f for f in state["frameworks"] if f["name"] == "Test Framework (Python)"]
        return not mine or all(not f.get("tasks") for f in mine)

    wait_for(torn_down, timeout=30, message="the porting framework to be torn down")
