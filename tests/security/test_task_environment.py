"""Tasks start with a clean environment: what Mesos gives them (MESOS_*/OFFERD_*,
PATH, the user's HOME/USER/LOGNAME, LANG/LC_ALL), the operator's
--executor_environment_variables instead of that default when given, then the
task's own environment — never the slave's other variables.

A real slave (against the protocol-level fake master) started with secrets in
its own environment; real tasks print their environment.
"""

from __future__ import annotations

import glob
import os

import pytest

from offerd.common.flags import FlagError
from offerd.proto import offerd_pb2 as pb
from offerd.slave.flags import validate
from tests.fakes.master_for_slaves import command_task, run_task, slave_flags
from tests.support import wait_for

SECRETS = {"AWS_SECRET_ACCESS_KEY": "slave-aws-secret", "OFFERD_TEST_SLAVE_SECRET": "slave-offerd-secret",
           "DATABASE_PASSWORD": "slave-db-password"}


@pytest.fixture
def secret_environment(monkeypatch):
    """The slave process's own environment holds secrets (as a cloud machine's might)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")


def task_environment(master, slave, task_id: str, user: str | None = None, **variables) -> tuple[dict, str]:
    info = command_task(task_id, "env > env.txt")
    if user:
        info.command.user = user
    for name, value in variables.items():
        info.command.environment.variables.add(name=name, value=value)
    master.send(slave.slave_id, run_task(info))
    status = master.wait_terminal(task_id)
    assert status.state == pb.TASK_FINISHED, status.message
    pattern = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", "F1",
                           "executors", task_id, "runs", "*")
    directory = wait_for(lambda: glob.glob(pattern), 5)[0]
    lines = open(os.path.join(directory, "env.txt")).read().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line), directory


def started(start_slave, **flags):
    slave = start_slave(**flags)
    wait_for(lambda: slave.slave_id, 10)
    return slave


@pytest.mark.skipif(os.geteuid() != 0, reason="running the task as nobody needs root")
def test_a_task_gets_no_slave_secret_and_the_environment_mesos_gives(master, start_slave, secret_environment):
    slave = started(start_slave)
    env, directory = task_environment(master, slave, "clean", user="nobody", MINE="task-value")
    leaked = {name for name, value in env.items() if value in SECRETS.values() or name in SECRETS}
    assert not leaked, f"slave variables reached the task: {leaked}"
    assert env["PATH"] == os.environ["PATH"]
    assert env["MESOS_SANDBOX"] == env["MESOS_DIRECTORY"] == directory
    assert env["USER"] == env["LOGNAME"] == "nobody"
    assert env["HOME"] == directory   # nobody's home (/nonexistent) does not exist: the sandbox
    assert env["LANG"] == "C.UTF-8" and env["MINE"] == "task-value"
    assert env["MESOS_TASK_ID"] == env["OFFERD_TASK_ID"] == "clean"


def test_executor_environment_variables_replace_the_default_set(master, start_slave, secret_environment):
    slave = started(start_slave, executor_environment_variables='{"PATH": "/usr/bin:/bin", "ONLY": "operator", '
                                                                '"SHARED": "operator"}')
    env, _ = task_environment(master, slave, "configured", SHARED="task")
    assert env["PATH"] == "/usr/bin:/bin" and env["ONLY"] == "operator"
    assert env["SHARED"] == "task"   # the task's own environment wins
    assert "LANG" not in env and not set(SECRETS) & set(env)


def test_without_a_path_tasks_get_mesos_default_path(master, start_slave):
    slave = started(start_slave, executor_environment_variables="{}")
    env, _ = task_environment(master, slave, "default-path")
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize("value, says", [
    ("[1, 2]", "JSON object"),
    ('{"PATH": 3}', "string values"),
    ("{not json", "not a JSON object"),
    ("/no/such/file.json", "JSON object or the path of a file"),
])
def test_a_bad_executor_environment_variables_flag_says_what_to_fix(master, tmp_path, value, says):
    with pytest.raises(FlagError) as refused:
        validate(slave_flags(master, tmp_path, executor_environment_variables=value))
    assert "--executor_environment_variables" in str(refused.value) and says in str(refused.value)


def test_the_flag_can_name_a_file(master, tmp_path):
    path = tmp_path / "env.json"
    path.write_text('{"A": "1"}')
    flags = validate(slave_flags(master, tmp_path, executor_environment_variables=str(path)))
    assert flags.executor_environment_variables == {"A": "1"}
