"""Schedulers and slaves prove who they are to the master, over links only the
right master can answer (credentials, challenge-response, CURVE, HTTPS).

A real master runs in-process with --credentials, --authenticate_frameworks,
--authenticate_agents, a CURVE key and HTTPS (so slaves and schedulers find it
with a CA: --ssl_ca_file, client.conf's ca_file); slaves are in-process Slaves or real
`offerd slave` processes; schedulers use the SDK's driver. A fake master
(tests/fakes/master_for_slaves.py) stands in where the master must be an
impostor.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from offerd.common import curve
from offerd.common.transport import Server
from offerd.framework_sdk import MesosSchedulerDriver
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.flags import make_flags
from tests.builders import RecordingScheduler, framework_info
from tests.fakes.master_for_slaves import FakeMaster
from tests.security.certs import make_ca_and_cert
from tests.support import wait_for

RESOURCES = "cpus:2;mem:1024;disk:1024;ports:[31000-31010]"


@pytest.fixture
def keys(tmp_path):
    """The master's key pair, and another one (an impostor's)."""
    master_public, master_secret = curve.generate(str(tmp_path / "keys"), "master")
    other_public, other_secret = curve.generate(str(tmp_path / "keys"), "other")
    return {"master": master_public, "master_secret": master_secret,
            "other": other_public, "other_secret": other_secret}


@pytest.fixture
def secrets_dir(tmp_path):
    """The master's credentials, and one file per client credential (right and wrong)."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "credentials.json").write_text(json.dumps({"credentials": [
        {"principal": "scheduler", "secret": "scheduler-secret"},
        {"principal": "slave", "secret": "slave-secret"},
    ]}))
    (directory / "slave.credential").write_text("slave slave-secret\n")
    (directory / "wrong.credential").write_text("slave not-the-secret\n")
    return directory


@pytest.fixture
def tls(tmp_path):
    ca_file, cert_file, key_file = make_ca_and_cert(str(tmp_path / "tls"))
    return {"ca": ca_file, "cert": cert_file, "key": key_file}


@pytest.fixture
def secure_master(keys, secrets_dir, tls):
    master = Master(master_flags(
        port=0, allocation_interval="100ms", credentials=str(secrets_dir / "credentials.json"),
        authenticate_frameworks=True, authenticate_agents=True, zmq_key_file=keys["master_secret"],
        ssl_cert_file=tls["cert"], ssl_key_file=tls["key"],
    )).start()
    yield master
    master.stop()


@pytest.fixture
def start_slave(tmp_path):
    started = []

    def start(master_address: str, **flags) -> Slave:
        values = dict(master=master_address, port=0, work_dir=str(tmp_path / f"slave{len(started)}"),
                      resources=RESOURCES, heartbeat_interval=0.1, registration_backoff_factor=0.1)
        values.update(flags)
        slave = Slave(make_flags(**values)).start()
        started.append(slave)
        return slave

    yield start
    for slave in started:
        slave.stop()


def address(master: Master) -> str:
    return f"127.0.0.1:{master.http_port}"


class _Driven:
    """A RecordingScheduler under a driver, stopped at the end of the test."""

    def __init__(self):
        self.drivers = []

    def start(self, master: str | None, **kwargs):
        scheduler = RecordingScheduler()
        driver = MesosSchedulerDriver(scheduler, framework_info(name="secured"), master, **kwargs)
        self.drivers.append(driver)
        return driver, scheduler, driver.start()


@pytest.fixture
def driven():
    made = _Driven()
    yield made
    for driver in made.drivers:
        driver.stop()


# -- schedulers -----------------------------------------------------------------------


def test_a_scheduler_with_a_wrong_secret_is_refused_and_aborted(secure_master, keys, tls, driven):
    wrong = pb.Credential(principal="scheduler", secret=b"guessed")
    driver, scheduler, status = driven.start(address(secure_master), credential=wrong,
                                             master_public_key=keys["master"], ca_file=tls["ca"])
    assert status == pb.DRIVER_RUNNING
    scheduler.wait_for(lambda: scheduler.errors, what="error()")
    assert scheduler.errors[0].startswith("Master refused authentication: ")
    assert "'scheduler'" in scheduler.errors[0]
    assert driver.join() == pb.DRIVER_ABORTED
    assert scheduler.framework_ids == []  # never subscribed
    assert secure_master.actor.call(lambda: len(secure_master.state.frameworks)) == 0


def test_the_right_secret_runs_a_task_end_to_end(secure_master, keys, tls, secrets_dir, start_slave, driven,
                                                 tmp_path, monkeypatch):
    start_slave(address(secure_master), credential=str(secrets_dir / "slave.credential"),
                master_public_key=keys["master"], ssl_ca_file=tls["ca"])
    # Everything from client.conf, as `offerd local --secure` writes it: no arguments but the framework.
    config = tmp_path / "client.conf"
    config.write_text(json.dumps({"master": address(secure_master), "principal": "scheduler",
                                  "secret": "scheduler-secret", "master_public_key": keys["master"],
                                  "ca_file": tls["ca"]}))
    monkeypatch.setenv("OFFERD_CONFIG", str(config))
    driver, scheduler, status = driven.start(None)
    assert status == pb.DRIVER_RUNNING
    scheduler.wait_for(lambda: scheduler.framework_ids, what="registered()")
    task_id = scheduler.submit("echo secured")
    assert scheduler.wait_state(task_id, {pb.TASK_FINISHED, pb.TASK_FAILED}).state == pb.TASK_FINISHED
    assert scheduler.errors == []
    framework = secure_master.actor.call(lambda: secure_master.state.frameworks[scheduler.framework_ids[0]])
    assert framework.info.principal == "scheduler"  # the proven principal fills an empty one


def test_an_unreadable_client_conf_aborts_the_driver_with_the_reason(tmp_path, driven, monkeypatch):
    monkeypatch.setenv("OFFERD_CONFIG", str(tmp_path / "missing.conf"))
    driver, scheduler, status = driven.start("127.0.0.1:1")
    assert status == pb.DRIVER_ABORTED
    assert "OFFERD_CONFIG" in scheduler.errors[0] and "missing.conf" in scheduler.errors[0]
    assert driver.stop() == pb.DRIVER_ABORTED  # as after any abort


# -- slaves ------------------------------------------------------------------------------


def test_a_slave_with_a_wrong_credential_exits_with_the_masters_refusal(secure_master, keys, tls, secrets_dir,
                                                                       tmp_path):
    slave = subprocess.run(
        [sys.executable, "-m", "offerd", "slave", f"--master={address(secure_master)}", "--port=0",
         f"--work_dir={tmp_path / 'work'}", f"--resources={RESOURCES}",
         f"--credential={secrets_dir / 'wrong.credential'}", f"--master_public_key={keys['master']}",
         f"--ssl_ca_file={tls['ca']}"],
        capture_output=True, text=True, timeout=60)
    assert slave.returncode == 1, slave.stderr
    assert "Master refused authentication" in slave.stderr and "'slave'" in slave.stderr
    assert "not-the-secret" not in slave.stderr
    assert secure_master.actor.call(lambda: len(secure_master.state.slaves)) == 0


def test_a_slave_without_the_master_key_cannot_reach_an_encrypted_master(secure_master, secrets_dir, tls,
                                                                        start_slave, caplog):
    caplog.set_level(logging.INFO, logger="offerd.common.transport")
    slave = start_slave(address(secure_master), credential=str(secrets_dir / "slave.credential"),
                        ssl_ca_file=tls["ca"])
    wait_for(lambda: "it may require encryption (give its public key)" in caplog.text,
             message="the plaintext slave to give up on the encrypted master")
    assert slave.slave_id is None
    assert secure_master.actor.call(lambda: len(secure_master.state.slaves)) == 0


class _ImpostorMaster(FakeMaster):
    """A master that answers on the right address with its own key pair."""

    def __init__(self, key_pair):
        self.key_pair = key_pair
        super().__init__()

    def _new_server(self) -> Server:
        return Server(self.actor, "tcp://127.0.0.1:0", [pb.SlaveCall], self._on_message, peer_timeout=30,
                      curve_key=self.key_pair)


def test_a_slave_never_registers_with_a_master_holding_another_key(keys, start_slave, caplog):
    impostor = _ImpostorMaster(curve.load_key_pair(keys["other_secret"]))
    try:
        caplog.set_level(logging.INFO, logger="offerd.common.transport")
        slave = start_slave(impostor.address, master_public_key=keys["master"])
        wait_for(lambda: "with the public key this client was given" in caplog.text,
                 message="the slave to give up on the impostor")
        assert impostor.received() == []  # not even a REGISTER: nothing was decrypted
        assert slave.slave_id is None
    finally:
        impostor.close()
