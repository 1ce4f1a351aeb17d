"""`offerd keygen`: key files a real master uses, never overwritten by accident."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import zmq

from offerd.cli.local import free_base_port
from offerd.common import curve
from offerd.common.transport import HEARTBEAT, MAGIC
from tests.security.test_exposure import answers
from tests.support import wait_for


def _keygen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offerd", "keygen", *args], capture_output=True, text=True,
                          timeout=60)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_writes_the_pair_and_prints_where_each_goes(tmp_path):
    out = tmp_path / "keys"
    result = _keygen("--out", str(out))
    assert result.returncode == 0, result.stderr
    secret_path, public_path = out / "master.key_secret", out / "master.key"
    assert _mode(secret_path) == 0o600
    public, _ = curve.load_key_pair(str(secret_path))
    assert curve.public_key(str(public_path)) == public
    assert public.decode() in result.stdout
    assert f"--zmq_key_file={secret_path}" in result.stdout
    assert f"--master_public_key={public_path}" in result.stdout


def test_keygen_name_and_default_directory(tmp_path):
    result = subprocess.run([sys.executable, "-m", "offerd", "keygen", "--name", "executors"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "executors.key").exists() and (tmp_path / "executors.key_secret").exists()


def test_keygen_refuses_to_overwrite_a_secret_unless_forced(tmp_path):
    assert _keygen("--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "master.key_secret").read_bytes()
    again = _keygen("--out", str(tmp_path))
    assert again.returncode != 0
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "master.key_secret").read_bytes() == before
    forced = _keygen("--out", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "master.key_secret").read_bytes() != before
    assert _mode(tmp_path / "master.key_secret") == 0o600


def test_keygen_force_replaces_a_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "keys"
    out.mkdir()
    os.symlink(victim, out / "master.key_secret")
    assert _keygen("--out", str(out), "--force").returncode == 0
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(out / "master.key_secret")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_keygen_refuses_a_name_that_is_not_a_file_name(tmp_path, name):
    result = _keygen("--out", str(tmp_path), "--name", name)
    assert result.returncode == 2 and "--name" in result.stderr
    assert os.listdir(tmp_path) == []


def test_keygen_help_says_where_each_file_goes():
    result = subprocess.run([sys.executable, "-m", "offerd", "keygen", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "--zmq_key_file=NAME.key_secret" in result.stdout
    assert "--master_public_key=NAME.key" in result.stdout


@pytest.mark.timeout(60)
def test_a_real_master_serves_with_the_generated_key(tmp_path):
    """The printed public key is the one the master's encrypted port proves."""
    result = _keygen("--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    public = curve.public_key(str(tmp_path / "master.key"))
    port = free_base_port(0)
    log = open(tmp_path / "master.log", "wb")
    master = subprocess.Popen([sys.executable, "-m", "offerd", "master", f"--port={port}",
                               f"--zmq_port={port + 1000}", f"--work_dir={tmp_path / 'm'}",
                               f"--zmq_key_file={tmp_path / 'master.key_secret'}"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        wait_for(lambda: master.poll() is None and answers(f"http://127.0.0.1:{port}/health"), 30,
                 message="the master")
        client_public, client_secret = zmq.curve_keypair()
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = public, client_public, client_secret
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 10000)
        sock.connect(f"tcp://127.0.0.1:{port + 1000}")
        sock.send_multipart([MAGIC, HEARTBEAT])
        # The master echoes a heartbeat only through a completed CURVE handshake with its key.
        reply = sock.recv_multipart()
        assert reply[:2] == [MAGIC, HEARTBEAT]
    finally:
        sock.close()
        context.term()
        master.terminate()
        master.wait(30)
        log.close()
