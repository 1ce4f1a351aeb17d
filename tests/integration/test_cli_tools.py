"""The operator CLI (offerd state|frameworks|slaves|tasks|logs|top|teardown) on a real cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from offerd.cli.main import main
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def busy_cluster(tmp_path_factory):
    from offerd.cli.local import LocalCluster, free_base_port

    work = tmp_path_factory.mktemp("cli-cluster")
    cluster = LocalCluster(slaves=2, port=free_base_port(2), work_dir=str(work), log_dir=str(work / "logs"),
                           resources="cpus:4;mem:4096;disk:4096;ports:[31000-32000]", allocation_interval=0.2)
    cluster.start(timeout=60)
    framework = RunningFramework(cluster.master, framework_info(name="cli-framework"))
    framework.__enter__()
    s = framework.scheduler
    s.submit("echo out-line; echo err-line >&2", task_id="printer")
    s.submit("sleep 600", task_id="sleeper")
    s.wait_state("printer", pb.TASK_FINISHED)
    s.wait_state("sleeper", pb.TASK_RUNNING)
    yield cluster, framework
    framework.__exit__(None, None, None)
    cluster.stop()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_state_frameworks_slaves(busy_cluster, capsys):
    cluster, framework = busy_cluster
    code, out, _ = run(capsys, "state", "--master", cluster.master)
    assert code == 0
    assert "2 active" in out and "running 1" in out and "finished 1" in out
    assert out.splitlines()[-4].split()[:2] == ["cpus", "8"]
    code, out, _ = run(capsys, "state", "--master", cluster.master, "--json")
    assert json.loads(out)["activated_slaves"] == 2
    code, out, _ = run(capsys, "frameworks", "--master", cluster.master)
    header, row = out.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "USER"]
    assert row.split()[:2] == [framework.framework_id, "cli-framework"]
    code, out, _ = run(capsys, "slaves", "--master", cluster.master, "--json")
    assert len(json.loads(out)["slaves"]) == 2
    code, out, _ = run(capsys, "agents", "--master", cluster.master)
    assert code == 0 and len(out.splitlines()) == 3


def test_tasks_filters(busy_cluster, capsys):
    cluster, framework = busy_cluster
    code, out, _ = run(capsys, "tasks", "--master", cluster.master)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["sleeper"]
    code, out, _ = run(capsys, "tasks", "--master", cluster.master, "--all", "--json")
    assert sorted(t["id"] for t in json.loads(out)["tasks"]) == ["printer", "sleeper"]
    code, out, _ = run(capsys, "tasks", "--master", cluster.master, "--state", "finished", "--framework", "cli-framework")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["printer"]
    code, out, _ = run(capsys, "tasks", "--master", cluster.master, "--framework", "nope")
    assert out.strip().endswith("(none)")
    code, _, err = run(capsys, "tasks", "--master", cluster.master, "--state", "sleepy")
    assert code == 1 and "unknown state 'sleepy'" in err


def test_logs_stdout_and_stderr(busy_cluster, capsys):
    cluster, _ = busy_cluster
    code, out, _ = run(capsys, "logs", "printer", "--master", cluster.master)
    assert code == 0 and out == "out-line\n"
    code, out, _ = run(capsys, "logs", "printer", "--stderr", "--master", cluster.master)
    assert "err-line\n" in out
    code, _, err = run(capsys, "logs", "no-such-task", "--master", cluster.master)
    assert code == 1 and "no task 'no-such-task' is known to the master" in err and "/master/" not in err


def test_logs_follow_prints_lines_as_written_and_stops_at_the_end(busy_cluster):
    cluster, framework = busy_cluster
    framework.scheduler.submit("for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 0.3; done", task_id="ticker")
    framework.scheduler.wait_state("ticker", pb.TASK_RUNNING)
    proc = subprocess.Popen([sys.executable, "-m", "offerd", "logs", "ticker", "--follow", "--master", cluster.master],
                            stdout=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append((time.monotonic(), line.strip()))
    assert proc.wait(30) == 0
    assert [text for _, text in seen] == [f"line-{i}" for i in range(1, 9)]
    assert seen[-1][0] - seen[0][0] > 1.0, "lines arrived as the task wrote them, not all at the end"
    assert pb.TASK_FINISHED in framework.scheduler.states("ticker")


def test_top_once(busy_cluster, capsys):
    cluster, framework = busy_cluster
    code, out, _ = run(capsys, "top", "--master", cluster.master, "-n", "1", "--json")
    doc = json.loads(out)
    assert doc["total"]["cpus"] == 8
    (entry,) = doc["frameworks"]
    assert entry["name"] == "cli-framework" and entry["tasks"] >= 1 and entry["cpus"] > 0
    code, out, _ = run(capsys, "top", "--master", cluster.master, "-n", "1")
    assert "cli-framework" in out and "SHARE" in out


def test_teardown_and_errors(cluster_factory, capsys):
    cluster = cluster_factory(slaves=1)
    with RunningFramework(cluster.master, framework_info(name="doomed")) as framework:
        framework.scheduler.submit("sleep 600", task_id="victim")
        framework.scheduler.wait_state("victim", pb.TASK_RUNNING)
        code, out, _ = run(capsys, "teardown", framework.framework_id, "--master", cluster.master)
        assert code == 0 and "torn down" in out
        wait_for(lambda: not cluster.state()["frameworks"], message="framework removed")
        code, _, err = run(capsys, "teardown", "no-such-framework", "--master", cluster.master)
        assert code == 1 and "No framework found" in err
    code, _, err = run(capsys, "state", "--master", "127.0.0.1:1")
    assert code == 1 and "cannot reach the master" in err
    code, _, err = run(capsys, "state", "--master", "127.0.0.1:notaport")
    assert code == 1 and "invalid master address" in err
