"""An HA cluster of real processes: N masters on one ZooKeeper URL, slaves that
find the leader through it (``--master=zk://...``). Used by tests/ha and
bench/failover_bench.py.

With ``security=secure_setup.prepare(dir)`` every master shares one CURVE key
pair, credentials, ACLs and TLS certificate (as a real HA deployment does), the
slaves authenticate, and this object reads the masters over https as the
operator principal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request

from offerd.cli import secure_setup
from tests.support import free_port, wait_for


def get_json(url: str, timeout: float = 2.0, opener=urllib.request.urlopen) -> dict | None:
    try:
        with opener(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


class HACluster:
    def __init__(self, zk_url: str, masters: int = 3, slaves: int = 2, simulate: int = 0,
                 master_args=(), slave_args=(), work_dir: str | None = None,
                 resources: str = "cpus:8;mem:8192;disk:8192;ports:[31000-32000]", logging_level: str = "INFO",
                 ip: str = "127.0.0.1", security: secure_setup.SecureFiles | None = None):
        self.zk_url = zk_url
        self.security = security
        self.ip = ip  # the masters' address
        self.master_count = masters
        self.slave_count = slaves
        self.simulate = simulate
        self.master_args = list(master_args)
        self.slave_args = list(slave_args)
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="offerd-ha-")
        self.resources = resources
        self.logging_level = logging_level
        self.master_ports = [free_port() for _ in range(masters)]
        self.master_zmq_ports = [free_port() for _ in range(masters)]
        self.masters: list[subprocess.Popen | None] = [None] * masters
        self.slaves: list[subprocess.Popen | None] = [None] * (1 if simulate else slaves)
        self.slave_ports = [free_port() for _ in self.slaves]

    @property
    def scheme(self) -> str:
        return "https" if self.security is not None else "http"

    def urlopen(self, url: str, data: bytes | None = None, timeout: float = 5.0):
        """urllib's urlopen, as the operator principal and verifying the CA when secure."""
        return secure_setup.operator_urlopen(self.security, url, data, timeout)

    def driver_kwargs(self) -> dict:
        """MesosSchedulerDriver's keyword arguments for the operator principal ({} when open)."""
        return secure_setup.driver_kwargs(self.security)

    def _security_args(self, process: str) -> list[str]:
        if self.security is None:
            return []
        return secure_setup.daemon_args(self.security, "simulated" if process != "master" and self.simulate
                                        else process)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        os.makedirs(os.path.join(self.work_dir, "logs"), exist_ok=True)
        out = open(os.path.join(self.work_dir, "logs", f"{name}.log"), "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "offerd", *args], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            out.close()

    def start_master(self, index: int) -> None:
        self.masters[index] = self._spawn(f"master{index}", [
            "master", f"--ip={self.ip}", f"--port={self.master_ports[index]}",
            f"--zmq_port={self.master_zmq_ports[index]}", f"--zk={self.zk_url}",
            f"--work_dir={os.path.join(self.work_dir, f'master{index}')}",
            f"--logging_level={self.logging_level}", *self._security_args("master"), *self.master_args])

    def start_slave(self, index: int) -> None:
        args = ["slave", f"--master={self.zk_url}", "--ip=127.0.0.1", "--hostname=127.0.0.1",
                f"--port={self.slave_ports[index]}", f"--work_dir={os.path.join(self.work_dir, f'slave{index}')}",
                f"--resources={self.resources}", f"--logging_level={self.logging_level}"]
        if self.simulate:
            args += [f"--simulate={self.simulate}", "--containerizer=simulated"]
        else:
            args += ["--containerizer=posix"]
        self.slaves[index] = self._spawn(f"slave{index}", args + self._security_args("slave") + self.slave_args)

    def start(self, timeout: float = 60.0) -> "HACluster":
        for index in range(self.master_count):
            self.start_master(index)
        self.wait_leader(timeout)
        for index in range(len(self.slaves)):
            self.start_slave(index)
        self.wait_slaves(self.simulate or self.slave_count, timeout)
        return self

    def url(self, index: int) -> str:
        return f"{self.scheme}://{self.ip}:{self.master_ports[index]}"

    def elected(self, index: int) -> bool:
        if self.masters[index] is None or self.masters[index].poll() is not None:
            return False
        metrics = get_json(self.url(index) + "/metrics/snapshot", opener=self.urlopen)
        return bool(metrics and metrics.get("master/elected") == 1)

    def leader(self) -> int | None:
        for index in range(self.master_count):
            if self.elected(index):
                return index
        return None

    def leaders(self) -> list[int]:
        return [i for i in range(self.master_count) if self.elected(i)]

    def wait_leader(self, timeout: float, not_index: int | None = None) -> int:
        def leading() -> list[int]:
            index = self.leader()
            return [index] if index is not None and index != not_index else []  # [0] is truthy, 0 is not
        [index] = wait_for(leading, timeout, message=f"a master to lead (logs in {self.work_dir}/logs)")
        return index

    def state(self, index: int | None = None) -> dict:
        index = self.leader() if index is None else index
        if index is None:
            return {}
        return get_json(self.url(index) + "/master/state", timeout=5, opener=self.urlopen) or {}

    def wait_slaves(self, count: int, timeout: float) -> None:
        wait_for(lambda: self.state().get("activated_slaves", 0) >= count, timeout, interval=0.1,
                 message=f"{count} slaves to register (logs in {self.work_dir}/logs)")

    def kill_master(self, index: int, sig: int = signal.SIGKILL) -> None:
        proc = self.masters[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(10)

    def signal_slave(self, index: int, sig: int) -> None:
        proc = self.slaves[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def stop(self) -> None:
        procs = [p for p in [*self.slaves, *self.masters] if p is not None and p.poll() is None]
        for proc in procs:
            try:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
