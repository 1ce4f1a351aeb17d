"""A daemon whose port is taken says which port, and exits, instead of a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import zmq

from tests.support import free_port


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offerd", *args], capture_output=True, text=True, timeout=60)


def test_a_taken_http_port_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("master", "--ip=127.0.0.1", f"--port={port}", f"--zmq_port={free_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1', {port}" in result.stderr and "Address already in use" in result.stderr


def test_a_taken_zeromq_port_is_named_for_master_and_slave(tmp_path):
    context = zmq.Context.instance()
    taken = context.socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        master = _run("master", "--ip=127.0.0.1", f"--port={free_port()}", f"--zmq_port={port}")
        slave = _run("slave", "--ip=127.0.0.1", "--master=127.0.0.1:5050", f"--port={free_port()}",
                     f"--executor_port={port}", f"--work_dir={tmp_path}")
    finally:
        taken.close(0)
    for result in (master, slave):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"cannot listen on tcp://127.0.0.1:{port}: Address already in use" in result.stderr
