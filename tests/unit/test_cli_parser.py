"""The `offerd` command line: subcommands and their own flags do not collide."""

from __future__ import annotations

import subprocess
import sys


def offerd(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offerd.cli.main", *argv], capture_output=True, text=True,
                          timeout=60)


def test_execute_without_command_names_the_missing_flag():
    result = offerd("execute")
    assert result.returncode == 2
    assert "--command is required" in result.stderr
    assert "positional arguments" not in result.stdout   # not the top-level help


def test_no_subcommand_prints_the_command_list():
    result = offerd()
    assert result.returncode == 2
    assert "execute" in result.stdout and "==SUPPRESS==" not in result.stdout


def test_slave_without_master_is_refused_by_its_own_name():
    result = offerd("agent")
    assert result.returncode == 2
    assert "offerd agent: --master HOST:PORT is required" in result.stderr
