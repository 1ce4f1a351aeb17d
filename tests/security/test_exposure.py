"""Secure by default off loopback: `offerd master` and `offerd slave` asked to listen
on 0.0.0.0 without authentication and encryption refuse to start and name the
flags that turn them on; --insecure starts them anyway; with everything on they
start without it. Real processes, real ports.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from offerd.cli import secure_setup
from offerd.cli.local import free_base_port
from offerd.common.tls import client_context
from tests.support import wait_for


def _offerd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offerd", *args], capture_output=True, text=True, timeout=timeout)


class Daemon:
    """An `offerd` process that is expected to keep running."""

    def __init__(self, tmp_path, name, *args):
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "offerd", *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def answers(url: str, ssl_context=None) -> bool:
    """Whether `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=ssl_context) as response:
            return response.status == 200
    except OSError:
        return False


def _healthy(url: str, daemon: Daemon, **kwargs) -> bool:
    assert daemon.proc.poll() is None, f"it exited ({daemon.proc.returncode}):\n{daemon.output()}"
    return answers(url, **kwargs)


@pytest.mark.timeout(60)
def test_master_off_loopback_without_security_refuses_and_names_the_flags(tmp_path):
    port = free_base_port(0)
    result = _offerd("master", "--ip=0.0.0.0", f"--port={port}", f"--work_dir={tmp_path / 'm'}")
    assert result.returncode != 0
    message = result.stderr
    assert "refusing to listen on 0.0.0.0" in message
    for flag in ("--authenticate_frameworks", "--authenticate_agents", "--credentials",
                 "--authenticate_http_readonly", "--authenticate_http_readwrite", "--zmq_key_file",
                 "--ssl_cert_file", "--insecure"):
        assert flag in message, f"{flag} not named in: {message}"
    assert not answers(f"http://127.0.0.1:{port}/health")


@pytest.mark.timeout(60)
def test_master_refusal_names_only_what_is_missing(tmp_path):
    files = secure_setup.prepare(str(tmp_path))
    port = free_base_port(0)
    result = _offerd("master", "--ip=0.0.0.0", f"--port={port}", f"--work_dir={tmp_path / 'm'}",
                     f"--zmq_key_file={files.master_key_secret}", f"--ssl_cert_file={files.cert_file}",
                     f"--ssl_key_file={files.key_file}")
    assert result.returncode != 0
    assert "--authenticate_http_readonly" in result.stderr
    assert "--zmq_key_file" not in result.stderr and "--ssl_cert_file" not in result.stderr


@pytest.mark.timeout(60)
def test_master_off_loopback_starts_with_insecure(tmp_path):
    port = free_base_port(0)
    master = Daemon(tmp_path, "master", "master", "--ip=0.0.0.0", f"--port={port}",
                    f"--work_dir={tmp_path / 'm'}", "--insecure")
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/health", master), 30, message="the master's /health")
        assert "--insecure" in master.output()  # it says loudly what it gave up
    finally:
        master.stop()


@pytest.mark.timeout(60)
def test_master_off_loopback_starts_with_everything_on(tmp_path):
    files = secure_setup.prepare(str(tmp_path))
    port = free_base_port(0)
    master = Daemon(tmp_path, "master", "master", "--ip=0.0.0.0", f"--port={port}", f"--work_dir={tmp_path / 'm'}",
                    "--authenticate_frameworks", "--authenticate_agents", "--authenticate_http_readonly",
                    "--authenticate_http_readwrite", f"--credentials={files.credentials_file}",
                    f"--zmq_key_file={files.master_key_secret}", f"--ssl_cert_file={files.cert_file}",
                    f"--ssl_key_file={files.key_file}")
    try:
        context = client_context(files.ca_file)
        wait_for(lambda: _healthy(f"https://127.0.0.1:{port}/health", master, ssl_context=context), 30,
                 message="the master's /health over https")
    finally:
        master.stop()


@pytest.mark.timeout(60)
def test_slave_off_loopback_without_security_refuses_and_names_the_flags(tmp_path):
    port = free_base_port(0)
    result = _offerd("slave", "--master=127.0.0.1:1", "--ip=0.0.0.0", f"--port={port}",
                     f"--work_dir={tmp_path / 's'}", "--resources=cpus:1;mem:128")
    assert result.returncode != 0
    message = result.stderr
    assert "refusing to listen on 0.0.0.0" in message
    for flag in ("--credential", "--master_public_key", "--http_credentials", "--authenticate_http_readonly",
                 "--ssl_cert_file", "--insecure"):
        assert flag in message, f"{flag} not named in: {message}"
    assert not answers(f"http://127.0.0.1:{port}/health")


@pytest.mark.timeout(60)
def test_agent_alias_refuses_too(tmp_path):
    result = _offerd("agent", "--master=127.0.0.1:1", "--ip=0.0.0.0", f"--port={free_base_port(0)}",
                     f"--work_dir={tmp_path / 's'}", "--resources=cpus:1;mem:128")
    assert result.returncode != 0 and "refusing to listen on 0.0.0.0" in result.stderr


@pytest.mark.timeout(60)
def test_slave_off_loopback_starts_with_insecure(tmp_path):
    port = free_base_port(0)
    # No master answers at 127.0.0.1:1: the slave keeps trying, and serves its endpoints meanwhile.
    slave = Daemon(tmp_path, "slave", "slave", "--master=127.0.0.1:1", "--ip=0.0.0.0", "--hostname=127.0.0.1",
                   f"--port={port}", f"--work_dir={tmp_path / 's'}", "--resources=cpus:1;mem:128",
                   "--containerizer=simulated", "--insecure")
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/health", slave), 30, message="the slave's /health")
    finally:
        slave.stop()
