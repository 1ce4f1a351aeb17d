"""The `offerd` command line: subcommands and their own flags do not collide."""

from __future__ import annotations

import subprocess
import sys

from tests.support import free_port


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


def test_malformed_master_addresses_fail_at_start():
    for argv in (("execute", "--command", "true", "--master", "127.0.0.1:notaport"),
                 ("slave", "--master", "127.0.0.1:notaport"),
                 ("execute", "--command", "true", "--master", "127.0.0.1:70000"),
                 ("agent", "--master", "zk://")):
        result = offerd(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "--master:" in result.stderr and ("invalid" in result.stderr or "port" in result.stderr), result.stderr


def test_unreachable_master_is_named_within_seconds():
    # Nothing listens on this port: the tool says so well before its timeout.
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "offerd.cli.main", "execute", "--command", "true",
                             "--master", f"127.0.0.1:{port}", "--timeout", "60secs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
    assert f"cannot reach the master at 127.0.0.1:{port}" in line and "Connection refused" in line, line
