"""The SDK examples (examples/) run against a real cluster, as examples/README.md says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(cluster, script, *args, timeout=150):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--master", cluster.master, *map(str, args)],
        cwd=cluster.work_dir, env=dict(os.environ), capture_output=True, text=True, timeout=timeout)


def test_shell_framework_runs_all_its_tasks(cluster):
    result = run_example(cluster, "shell_framework.py", "--tasks", 12, "--cpus", 0.5, "--mem", 64,
                         "--command", "echo hello from task", "--timeout", 120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 finished, 0 failed, 0 not run, of 12 task(s)" in result.stdout


def test_shell_framework_reports_failed_tasks(cluster):
    result = run_example(cluster, "shell_framework.py", "--tasks", 2, "--command", "exit 7", "--timeout", 120)
    assert result.returncode == 1
    assert "0 finished, 2 failed" in result.stdout


def test_custom_executor_example_runs_tasks_and_echoes_messages(cluster):
    result = run_example(cluster, "custom_executor/scheduler.py", "--tasks", 6, "--command", "echo task {n}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 of 6 task(s) finished" in result.stdout
    assert "echoed the greeting" in result.stdout
