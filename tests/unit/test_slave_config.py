"""Slave flags, resource detection and the small pure pieces of the containerizers."""

import signal

import pytest

from offerd.common.flags import FlagError
from offerd.common.resources import ResourceError, Resources
from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer.base import Termination
from offerd.slave.containerizer.posix import command_argv
from offerd.slave.containerizer.simulated import sleep_seconds
from offerd.slave.flags import make_flags, parse_slave_flags
from offerd.slave.machine import load_resources
from offerd.slave.tasks import valid_id


def test_defaults_are_mesos_defaults_and_typed():
    flags = make_flags(master="127.0.0.1:5050")
    assert (flags.port, flags.executor_port, flags.ip) == (5051, 0, "127.0.0.1")
    assert flags.executor_shutdown_grace_period == 5.0
    assert flags.executor_registration_timeout == 60.0
    assert (flags.status_update_retry_interval, flags.status_update_retry_max) == (10.0, 600.0)
    assert flags.heartbeat_interval == 1.0 and flags.containerizer == "posix"


def test_command_line_environment_and_units():
    flags = parse_slave_flags(["--master=m:5050", "--port=0", "--status_update_retry_interval=500ms"],
                              environ={"OFFERD_WORK_DIR": "relative/dir", "OFFERD_SIMULATE": "3"},
                              config_root="/nonexistent")
    assert flags.status_update_retry_interval == 0.5
    assert flags.simulate == 3 and flags.containerizer == "simulated"  # --simulate implies it
    assert flags.work_dir.startswith("/") and flags.work_dir.endswith("relative/dir")


@pytest.mark.parametrize("overrides, message", [
    ({"master": None}, "--master is required"),
    ({"containerizer": "docker"}, "unknown containerizer"),
    ({"isolation": "posix/cpu,gpu/magic"}, "unknown isolator"),
    ({"port": 70000}, "between 0 and 65535"),
    ({"heartbeat_interval": "soon"}, "invalid duration"),
    ({"status_update_retry_max": "1secs"}, "at least --status_update_retry_interval"),
])
def test_bad_flags_say_what_to_change(overrides, message):
    values = {"master": "m:5050", **overrides}
    with pytest.raises(FlagError, match=message):
        make_flags(**values)


def test_resources_not_given_are_detected(tmp_path):
    detected = load_resources("cpus:3;gpus:1", str(tmp_path / "not-yet-created"))
    assert detected.scalar("cpus") == 3 and detected.scalar("gpus") == 1
    assert detected.scalar("mem") > 0 and detected.scalar("disk") > 0
    assert detected.ranges("ports") == [(31000, 32000)]
    given = "cpus:1;mem:2;disk:3;ports:[1-2]"
    assert load_resources(given, str(tmp_path)) == Resources.parse(given)


def test_resources_from_a_file_and_errors(tmp_path):
    path = tmp_path / "resources"
    path.write_text('[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}}]')
    assert load_resources(f"file://{path}", str(tmp_path)).scalar("cpus") == 2
    with pytest.raises(ResourceError):
        load_resources("cpus:-1", str(tmp_path))


def test_termination_messages():
    assert Termination(returncode=0).message == "Command exited with status 0"
    assert Termination(returncode=3).message == "Command exited with status 3"
    assert Termination(returncode=-signal.SIGKILL).message == "Command terminated with signal SIGKILL"
    assert Termination(returncode=3).wait_status == 3 << 8
    assert Termination(returncode=-9).wait_status == 9
    assert not Termination(launch_error="no such file").succeeded


def test_commands():
    assert command_argv(pb.CommandInfo(value="echo hi")) == (["/bin/sh", "-c", "echo hi"], None)
    argv = pb.CommandInfo(value="/bin/echo", shell=False, arguments=["echo", "hi"])
    assert command_argv(argv) == (["echo", "hi"], "/bin/echo")
    assert sleep_seconds(pb.CommandInfo(value="sleep 2.5")) == 2.5
    assert sleep_seconds(pb.CommandInfo(value="  /bin/sleep 7 ")) == 7
    assert sleep_seconds(pb.CommandInfo(value="/bin/sleep", shell=False, arguments=["sleep", "4"])) == 4
    assert sleep_seconds(pb.CommandInfo(value="sleep 5 && rm -rf /")) == 0


@pytest.mark.parametrize("value, ok", [("web.1", True), ("", False), ("..", False), ("a/b", False), (".", False)])
def test_ids_that_would_escape_the_sandbox_are_refused(value, ok):
    assert valid_id(value) is ok
