"""A real third-party v1 client against offerd, unchanged: the npm library
``mesos-framework`` (tests/thirdparty/package.json pins it; ``make test``
installs it with ``npm ci``), a JavaScript implementation of Mesos' v1 scheduler
and executor HTTP APIs written against Mesos, not against offerd.

The scripts next to this file use the library as its README documents and print
a JSON summary as their last stdout line; these tests run them against a real
local cluster and check the summary against the master's /master/state.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pytest

from tests.support import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node")
LIBRARY = os.path.join(HERE, "node_modules", "mesos-framework")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (make system-deps installs nodejs)"),
    pytest.mark.skipif(not os.path.isdir(LIBRARY),
                       reason="tests/thirdparty/node_modules is missing: run `make thirdparty` (npm ci)"),
]


def run_script(script: str, cluster, tmp_path, timeout: float = 150.0) -> tuple[int, dict, str]:
    """`node <script> <master> <log dir>`: its exit status, its summary and its whole output."""
    log_dir = tmp_path / f"{script}.logs"
    log_dir.mkdir()
    env = dict(os.environ, THIRDPARTY_DEADLINE_MS=str(int((timeout - 30) * 1000)))
    proc = subprocess.run([NODE, os.path.join(HERE, script), cluster.master, str(log_dir)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert lines, f"{script} printed no summary (exit {proc.returncode}):\n{output[-4000:]}"
    return proc.returncode, json.loads(lines[-1][len("SUMMARY "):]), output


def framework_in_state(cluster, framework_id: str) -> dict | None:
    state = cluster.state()
    for framework in state.get("frameworks", []) + state.get("completed_frameworks", []):
        if framework["id"] == framework_id:
            return framework
    return None


def test_scheduler_launches_kills_and_reconciles_command_tasks(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=2)
    code, summary, output = run_script("scheduler.js", cluster, tmp_path)
    assert code == 0, f"scheduler.js failed: {summary}\n{output[-4000:]}"
    assert summary["errors"] == [], summary["errors"]
    assert summary["framework_id"] and summary["stream_id"]

    tasks = summary["tasks"]
    hello = sorted(t for t, kind in summary["kind"].items() if kind == "hello")
    long_ = [t for t, kind in summary["kind"].items() if kind == "long"]
    assert len(hello) == 3 and len(long_) == 1, tasks
    for task_id in hello:
        states = tasks[task_id]
        assert states[-1] == "TASK_FINISHED" and "TASK_RUNNING" in states, (task_id, states)
        assert states.index("TASK_RUNNING") < states.index("TASK_FINISHED")
    assert tasks[long_[0]][-1] == "TASK_KILLED" and "TASK_RUNNING" in tasks[long_[0]]
    # The explicit reconciliation of the killed task answers its latest state.
    assert summary["reconciled"] == ["TASK_KILLED"]
    # The library acknowledges every update that carries a uuid (all but reconciliation's).
    assert summary["acknowledged"] >= 3 * 3 + 3, summary
    assert summary["torn_down"] is True

    # The master saw the same framework and the same ends; TEARDOWN completed it.
    framework = wait_for(lambda: (f := framework_in_state(cluster, summary["framework_id"])) and not f["active"] and f,
                         timeout=30)
    assert framework["name"] == "thirdparty-mesos-framework-js"
    ended = {t["id"]: t["state"] for t in framework["completed_tasks"]}
    assert {task_id: ended.get(task_id) for task_id in hello} == {task_id: "TASK_FINISHED" for task_id in hello}
    assert ended.get(long_[0]) == "TASK_KILLED"
    assert framework["tasks"] == []

    # What the Mesos CLI's `task list --all` asks: limit=-1 is every task, as in Mesos.
    with cluster.urlopen(f"{cluster.master_url}/tasks?order=asc&limit=-1") as response:
        listed = {t["id"]: t["state"] for t in json.loads(response.read())["tasks"]}
    assert {task_id: listed.get(task_id) for task_id in ended} == ended


def test_library_executor_subscribe_is_refused_as_mesos_refuses_it(cluster_factory, tmp_path):
    """The library's Executor sends SUBSCRIBE without the `subscribe` message that
    Mesos' executor call validation requires (src/slave/validation.cpp:
    "Expecting 'subscribe' to be present"), so Mesos answers 400 and so does
    offerd: the executor exits and the task fails. The scheduler side (a custom
    executor launched through the library's accept()) works end to end."""
    cluster = cluster_factory(slaves=1)
    code, summary, output = run_script("executor_scheduler.js", cluster, tmp_path)
    assert summary["framework_id"], output[-4000:]
    assert summary["errors"] == [], summary["errors"]
    assert summary["states"][-1] == "TASK_FAILED", summary
    assert code == 1

    # The executor ran, was refused for Mesos' reason, and said so in its sandbox.
    pattern = os.path.join(cluster.work_dir, "slave-*", "slaves", "*", "frameworks", summary["framework_id"],
                           "executors", summary["executor_id"], "runs", "*", "stdout")
    stdouts = glob.glob(pattern)
    assert len(stdouts) == 1, pattern
    with open(stdouts[0]) as f:
        assert "Expecting 'subscribe' to be present" in f.read()

    framework = wait_for(lambda: (f := framework_in_state(cluster, summary["framework_id"])) and not f["active"] and f,
                         timeout=30)
    assert framework["name"] == "thirdparty-mesos-framework-js-executor"
    assert {t["id"]: t["state"] for t in framework["completed_tasks"]} == {summary["task_id"]: "TASK_FAILED"}
