"""Flags: Mesos names, three sources in Mesos' order, clear errors."""

import argparse
import subprocess
import sys

import pytest

from offerd.common.flags import Flag, FlagError, add_flags, boolean, duration, resolve_flags

FLAGS = [
    Flag("port", 5050, "HTTP port.", int),
    Flag("allocation_interval", "1secs", "Batch allocation period.", duration),
    Flag("switch_user", True, "Run tasks as the framework's user.", boolean),
    Flag("cluster", None, "Name of the cluster."),
]


def parse(argv, environ=None, config_root="/nonexistent"):
    parser = argparse.ArgumentParser()
    add_flags(parser, FLAGS)
    return resolve_flags(parser.parse_args(argv), FLAGS, "master", environ or {}, config_root)


def test_defaults_go_through_the_flag_type():
    flags = parse([])
    assert flags.port == 5050 and flags.allocation_interval == 1.0
    assert flags.switch_user is True and flags.cluster is None


def test_command_line_beats_environment_beats_config_dir(tmp_path):
    (tmp_path / "master").mkdir()
    (tmp_path / "master" / "port").write_text("7000\n")
    (tmp_path / "master" / "cluster").write_text("from-config\n")
    (tmp_path / "master" / "allocation_interval").write_text("3secs")
    env = {"OFFERD_PORT": "6000", "OFFERD_ALLOCATION_INTERVAL": "500ms"}
    flags = parse(["--port=5555"], env, str(tmp_path))
    assert flags.port == 5555                      # command line
    assert flags.allocation_interval == 0.5        # environment over config dir
    assert flags.cluster == "from-config"          # config dir over default


@pytest.mark.parametrize("argv, expected", [
    (["--switch_user"], True), (["--no-switch_user"], False),
    (["--switch_user=false"], False), (["--switch_user=true"], True),
])
def test_boolean_spellings(argv, expected):
    assert parse(argv).switch_user is expected


@pytest.mark.parametrize("text, seconds", [
    ("15secs", 15), ("500ms", 0.5), ("10mins", 600), ("2hrs", 7200), ("1days", 86400), ("1.5", 1.5),
])
def test_mesos_durations(text, seconds):
    assert duration(text) == pytest.approx(seconds)


def test_bad_values_name_the_flag_and_the_source():
    with pytest.raises(FlagError, match=r"--allocation_interval=soon \(from environment variable "
                                        r"OFFERD_ALLOCATION_INTERVAL\)"):
        parse([], {"OFFERD_ALLOCATION_INTERVAL": "soon"})
    with pytest.raises(FlagError, match=r"--port=abc \(from command line\)"):
        parse(["--port=abc"])


@pytest.mark.parametrize("command", ["master", "slave", "agent", "local", "execute"])
def test_every_command_has_help(command):
    result = subprocess.run([sys.executable, "-m", "offerd", command, "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--" in result.stdout and "usage" in result.stdout.lower()


def test_bad_flag_value_exits_with_a_clear_message():
    result = subprocess.run([sys.executable, "-m", "offerd", "master", "--allocation_interval=soon"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--allocation_interval=soon" in result.stderr and "duration" in result.stderr
