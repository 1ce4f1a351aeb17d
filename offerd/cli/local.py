"""`offerd local`: a whole cluster on this machine, as a tree of real processes.

The master and each slave run as child processes, exactly as they would on
separate machines, so what works here works on a real cluster.

With ``--secure`` every link is locked as on a shared network: credentials,
ACLs, CURVE on ZeroMQ and HTTPS everywhere (offerd/cli/secure_setup.py makes
the files), and ``DIR/client.conf`` tells the offerd commands how to get in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from offerd.cli import secure_setup
from offerd.common.flags import Flag, FlagError, add_flags, boolean, duration, positive_int, resolve_flags
from offerd.common.logs import setup_logging

log = logging.getLogger("offerd.local")

# Marathon's default task user on a secure cluster started by root.

LOCAL_FLAGS = [
    Flag("slaves", 2, "Number of slaves to start.", positive_int, "N"),
    Flag("ip", "127.0.0.1", "Address every daemon binds and advertises."),
    Flag("port", 5050, "HTTP port of the master (web UI, endpoints); slaves take the next ports.", int),
    Flag("work_dir", None, "Directory for the master's and slaves' state (default: a new temporary directory)."),
    Flag("resources", None, "Resources of each slave in Mesos text format, e.g. 'cpus:4;mem:4096' "
                            "(default: detected from this machine and split between the slaves)."),
    Flag("containerizer", "posix", "Containerizer of the slaves: posix (real processes) or simulated.", str),
    Flag("isolation", None, "The slaves' --isolation, e.g. cgroups/cpu,cgroups/mem,namespaces/pid (needs root; "
                            "default: posix/cpu,posix/mem)."),
    Flag("allocation_interval", "1secs", "How often the master runs a full allocation.", duration),
    Flag("logging_level", "INFO", "INFO, WARNING or ERROR."),
    Flag("startup_timeout", "60secs", "How long to wait for every slave to register.", duration),
    Flag("marathon", True, "Also run the Marathon-like framework (--no-marathon to skip it).", boolean),
    Flag("marathon_port", 8080, "HTTP port of the Marathon-like framework's REST API.", int),
    Flag("secure", False, "Turn all security on: credentials and ACLs, encrypted ZeroMQ, HTTPS everywhere "
                          "(needs --work_dir, which keeps the keys, certificates and DIR/client.conf).", boolean),
]


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add_flags(parser, LOCAL_FLAGS)
    parser.set_defaults(handler=run)


def _default_slave_resources(count: int) -> str:
    """Split this machine between the slaves so offers do not promise it twice."""
    import psutil

    cpus = max(1.0, (os.cpu_count() or 1) / max(1, count))
    mem = max(256, int(psutil.virtual_memory().total / 2**20 * 0.75 / max(1, count)))
    return f"cpus:{cpus:g};mem:{mem};disk:10240"


PORTS_RANGE = re.compile(r"(^|;)\s*ports(\([^)]*\))?:\[(\d+)-(\d+)\]\s*(?=;|$)")


def slave_resources(resources: str, index: int, count: int) -> str:
    """Slave `index`'s share of the ports: every local slave runs on this one host, so
    two slaves offering the same port would start tasks that clash on it. One range
    (given, or Mesos' default [31000-32000] when none is) is split into disjoint
    slices; anything else about ports (several ranges, JSON) is kept as given."""
    if not re.search(r"(^|;)\s*ports", resources):
        resources = f"{resources};ports:[31000-32000]" if resources else "ports:[31000-32000]"
    match = PORTS_RANGE.search(resources)
    if match is None or count < 2:
        return resources
    low, high = int(match.group(3)), int(match.group(4))
    size = (high - low + 1) // count
    if size < 1:
        return resources
    first = low + index * size
    last = high if index == count - 1 else first + size - 1
    return (f"{resources[:match.start()]}{match.group(1)}ports{match.group(2) or ''}:[{first}-{last}]"
            f"{resources[match.end():]}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(slaves: int, host: str = "127.0.0.1") -> int:
    """A base port P such that P..P+slaves and the same +1000 (ZeroMQ) are free."""
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000)
        ports = [base + i for i in range(slaves + 1)]
        if all(port_is_free(p, host) and port_is_free(p + 1000, host) for p in ports):
            return base
    raise RuntimeError("no free block of ports for a local cluster")


def _wait_http(url: str, deadline: float, check=lambda doc: True, alive=lambda: True,
               opener=urllib.request.urlopen) -> dict | None:
    while time.monotonic() < deadline and alive():
        try:
            with opener(url, timeout=2) as response:
                doc = json.loads(response.read())
            if check(doc):
                return doc
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return None


class LocalCluster:
    """Start and stop the process tree; used by `offerd local`, tests and benchmarks."""

    def __init__(self, slaves=2, ip="127.0.0.1", port=5050, work_dir=None, resources=None,
                 containerizer="posix", allocation_interval=1.0, logging_level="INFO",
                 master_args=(), slave_args=(), log_dir=None, simulate=0, marathon_port=None,
                 marathon_args=(), security: secure_setup.SecureFiles | None = None):
        self.slave_count = slaves
        self.ip = ip
        self.port = port
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="offerd-local-")
        self.resources = resources or _default_slave_resources(slaves)
        self.containerizer = containerizer
        self.allocation_interval = allocation_interval
        self.logging_level = logging_level
        self.master_args = list(master_args)
        self.slave_args = list(slave_args)
        self.log_dir = log_dir
        # With simulate=N the slaves are N simulated ones hosted by one process.
        self.simulate = simulate
        self.master_proc: subprocess.Popen | None = None
        self.slave_procs: list[subprocess.Popen | None] = []
        # The Marathon-like framework, started after the slaves when a port is given.
        self.marathon_port = marathon_port
        self.marathon_args = list(marathon_args)
        self.marathon_proc: subprocess.Popen | None = None
        # With security every daemon gets its keys, certificates and credentials, and
        # this object talks to them over https as the operator principal.
        self.security = security

    @property
    def scheme(self) -> str:
        return "https" if self.security is not None else "http"

    @property
    def master(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def master_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    def urlopen(self, url: str, data: bytes | None = None, timeout: float = 5.0,
                headers: dict[str, str] | None = None):
        """urllib's urlopen, as the operator principal and verifying the CA when secure."""
        return secure_setup.operator_urlopen(self.security, url, data, timeout, headers)

    def driver_kwargs(self) -> dict:
        """MesosSchedulerDriver's keyword arguments that reach this cluster as the operator
        principal: credential, master_public_key, ca_file ({} when not secure)."""
        return secure_setup.driver_kwargs(self.security)

    def _security_args(self, process: str) -> list[str]:
        return secure_setup.daemon_args(self.security, process) if self.security is not None else []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        cmd = [sys.executable, "-P", "-m", "offerd", *args]   # -P: an offerd/ in the cwd must not shadow us
        out = None
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            out = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        # Each daemon leads its own session so a terminal's Ctrl-C reaches only us,
        # and we stop the children in order.
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)

    def start_master(self) -> None:
        self.master_proc = self._spawn("master", [
            "master", f"--ip={self.ip}", f"--hostname={self.ip}", f"--port={self.port}",
            f"--work_dir={os.path.join(self.work_dir, 'master')}",
            f"--allocation_interval={self.allocation_interval}",
            f"--logging_level={self.logging_level}", *self._security_args("master"), *self.master_args,
        ])

    def slave_port(self, index: int) -> int:
        return self.port + 1 + index

    def slave_work_dir(self, index: int) -> str:
        # Named by port, the one thing that names a slave before it registers: the
        # master hands out ids in registration order, which concurrent starts do not fix.
        return os.path.join(self.work_dir, f"slave-{self.slave_port(index)}")

    def start_slave(self, index: int) -> subprocess.Popen:
        proc = self._spawn(f"slave{index}", [
            "slave", f"--master={self.master}", f"--ip={self.ip}", f"--hostname={self.ip}",
            f"--port={self.slave_port(index)}",
            f"--work_dir={self.slave_work_dir(index)}",
            f"--resources={slave_resources(self.resources, index, self.slave_count)}",
            f"--containerizer={self.containerizer}",
            f"--logging_level={self.logging_level}", *self._security_args("slave"), *self.slave_args,
        ])
        while len(self.slave_procs) <= index:
            self.slave_procs.append(None)
        self.slave_procs[index] = proc
        return proc

    def start_simulated_fleet(self, count: int | None = None, index: int = 0) -> subprocess.Popen:
        """A process hosting `count` (default: all `simulate`) simulated slaves; more
        than one process (each its own `index`) when one cannot hold them all."""
        name = "simulated-slaves" if index == 0 else f"simulated-slaves-{index}"
        proc = self._spawn(name, [
            "slave", f"--master={self.master}", f"--ip={self.ip}", f"--port={self.slave_port(index)}",
            f"--work_dir={os.path.join(self.work_dir, 'simulated' if index == 0 else f'simulated-{index}')}",
            f"--simulate={count or self.simulate}",
            "--containerizer=simulated", f"--resources={self.resources}",
            f"--logging_level={self.logging_level}", *self._security_args("simulated"), *self.slave_args,
        ])
        if index == 0:
            self.slave_procs = [proc]
        else:
            self.slave_procs.append(proc)
        return proc

    @property
    def marathon_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.marathon_port}"

    def start_marathon(self) -> subprocess.Popen:
        self.marathon_proc = self._spawn("marathon", [
            "marathon", f"--master={self.master}", f"--hostname={self.ip}",
            f"--http_port={self.marathon_port}", f"--logging_level={self.logging_level}",
            f"--work_dir={os.path.join(self.work_dir, 'marathon')}", *self._security_args("marathon"),
            *self.marathon_args,
        ])
        return self.marathon_proc

    def start(self, timeout: float = 60.0) -> "LocalCluster":
        deadline = time.monotonic() + timeout
        self.start_master()
        master_alive = lambda: self.master_proc.poll() is None  # noqa: E731
        if _wait_http(f"{self.master_url}/master/info", deadline, alive=master_alive, opener=self.urlopen) is None:
            self.stop()
            if not master_alive():
                raise RuntimeError(f"the master exited with status {self.master_proc.returncode}")
            raise RuntimeError(f"the master did not start on {self.master_url} within {timeout:.0f}s")
        if self.simulate:
            self.start_simulated_fleet()
        else:
            for index in range(self.slave_count):
                self.start_slave(index)
        expected = self.simulate or self.slave_count
        if not self.wait_for_slaves(expected, deadline - time.monotonic()):
            statuses = [p.returncode for p in self.slave_procs if p is not None and p.poll() is not None]
            self.stop()
            if self.slave_procs and len(statuses) == len(self.slave_procs):
                where = f" (in {self.log_dir})" if self.log_dir else " (see the lines above)"
                raise RuntimeError(f"every slave process exited, with status {statuses}; their logs say why{where}")
            raise RuntimeError(f"not all {expected} slaves registered within {timeout:.0f}s")
        if self.marathon_port is not None:
            self.start_marathon()
            alive = lambda: self.marathon_proc.poll() is None  # noqa: E731
            if _wait_http(f"{self.marathon_url}/v2/info", deadline, alive=alive, opener=self.urlopen) is None:
                self.stop()
                raise RuntimeError(f"the marathon framework did not start on {self.marathon_url}")
        return self

    def state(self) -> dict:
        with self.urlopen(f"{self.master_url}/master/state", timeout=5) as response:
            return json.loads(response.read())

    def wait_for_slaves(self, count: int, timeout: float) -> bool:
        # No point waiting once every slave process has exited (e.g. refused a flag).
        alive = lambda: not self.slave_procs or any(p is not None and p.poll() is None  # noqa: E731
                                                    for p in self.slave_procs)
        doc = _wait_http(f"{self.master_url}/master/state", time.monotonic() + timeout,
                         lambda doc: doc.get("activated_slaves", 0) >= count, alive=alive, opener=self.urlopen)
        return doc is not None

    def kill_slave(self, index: int, sig=signal.SIGKILL) -> None:
        proc = self.slave_procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)

    def _teardown_marathon(self, timeout: float = 10.0) -> None:
        """End the marathon framework's tasks. Its process stops with failover (the master
        keeps its tasks for a restart to adopt) and slaves keep tasks across their own
        restarts, so without this a stopped cluster would leave the apps running."""
        try:
            frameworks = [f for f in self.state().get("frameworks", []) if f.get("name") == "marathon"]
            for framework in frameworks:
                data = urllib.parse.urlencode({"frameworkId": framework["id"]}).encode()
                self.urlopen(f"{self.master_url}/master/teardown", data=data, timeout=5).close()
            deadline = time.monotonic() + timeout
            while frameworks and time.monotonic() < deadline:
                if not any(f.get("name") == "marathon" and f.get("tasks") for f in self.state().get("frameworks", [])):
                    break
                time.sleep(0.1)
        except (OSError, ValueError) as exc:
            log.warning("could not tear down the marathon framework: %s", exc)

    def stop(self) -> None:
        if self.marathon_proc is not None and self.master_proc is not None and self.master_proc.poll() is None:
            self._teardown_marathon()
        if self.marathon_proc is not None and self.marathon_proc.poll() is None:
            self.marathon_proc.terminate()
            try:
                self.marathon_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.marathon_proc.kill()
        # Stopping a local cluster ends its tasks too: SIGUSR1 is the slave's
        # "shut down" (kill everything, unregister); SIGTERM would leave the
        # tasks of checkpointing frameworks running for a restarted slave.
        for proc in self.slave_procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        if self.master_proc is not None and self.master_proc.poll() is None:
            self.master_proc.terminate()
        for proc in [*self.slave_procs, self.master_proc]:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def offerd_command() -> str:
    """How to type `offerd` in this shell: plain `offerd` when it is on PATH and is this
    installation, else the path of this one (e.g. .venv/bin/offerd after `make run`)."""
    here = os.path.join(os.path.dirname(sys.executable), "offerd")
    on_path = shutil.which("offerd")
    if on_path and os.path.realpath(on_path) == os.path.realpath(here):
        return "offerd"
    if os.access(here, os.X_OK):
        return os.path.relpath(here) if not os.path.relpath(here).startswith("..") else here
    return f"{sys.executable} -P -m offerd"


def registered_slaves(cluster: LocalCluster) -> list[dict]:
    """The slaves this cluster started, as the master knows them (id, hostname, port)."""
    if cluster.simulate:
        return []
    try:
        slaves = cluster.state().get("slaves", [])
    except (OSError, ValueError):
        return []
    ours = {cluster.slave_port(index) for index in range(cluster.slave_count)}
    found = []
    for slave in slaves:
        port = int(slave.get("pid", "").rpartition(":")[2] or 0) or slave.get("port")
        if port in ours:
            found.append({"id": slave["id"], "hostname": slave.get("hostname", cluster.ip), "port": port})
    return sorted(found, key=lambda s: s["port"])


def banner(cluster: LocalCluster, flags, client_conf: str | None) -> str:
    offerd = offerd_command()
    run_task = (f"{offerd} execute --name hello --command 'echo hello'" if client_conf else
                f"{offerd} execute --master {cluster.master} --name hello --command 'echo hello'")
    lines = [
        f"\nofferd local cluster is up: 1 master, {flags.slaves} slave(s)"
        + (" with security on (authentication, ACLs, encryption)" if client_conf else ""),
        f"  web UI and endpoints   {cluster.master_url}/",
        f"  cluster state (JSON)   {cluster.master_url}/master/state",
        f"  metrics                {cluster.master_url}/metrics/snapshot",
        f"  run a task             {run_task}",
    ]
    if flags.marathon:
        lines.append(f"  marathon REST API      {cluster.marathon_url}/v2/apps")
        if client_conf and os.geteuid() == 0:
            lines.append(f"                         (apps run as '{secure_setup.NON_ROOT_USER}' unless they name a user; "
                         "never as root)")
    for number, slave in enumerate(registered_slaves(cluster)):
        label = "slaves" if number == 0 else ""
        lines.append(f"  {label:<22} {slave['id']} at {slave['hostname']}:{slave['port']}, sandboxes in "
                     f"{cluster.slave_work_dir(slave['port'] - cluster.port - 1)}")
    lines.append(f"  work directory         {cluster.work_dir}"
                 + ("" if flags.work_dir else " (removed when this cluster stops; --work_dir keeps one)"))
    if client_conf:
        files = cluster.security
        lines += [
            f"  principals, secrets    {files.credentials_file} (admin: everything; readonly: look only)",
            f"  CA certificate         {files.ca_file} (trust it in the browser, or curl --cacert it)",
            "For the offerd commands and the SDK to find and log in to this cluster:",
            f"  export OFFERD_CONFIG={client_conf}",
        ]
    lines.append("Press Ctrl-C to stop.\n")
    return "\n".join(lines)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    try:
        flags = resolve_flags(args, LOCAL_FLAGS, "local")
    except FlagError as exc:
        print(f"offerd local: {exc}", file=sys.stderr)
        return 2
    if flags.secure and not flags.work_dir:
        print("offerd local: --secure needs --work_dir DIR: the keys, certificates, credentials and "
              "DIR/client.conf it makes must outlive this run so clients keep working; "
              "e.g. offerd local --secure --work_dir ~/offerd-local", file=sys.stderr)
        return 2
    setup_logging(flags.logging_level)
    security = client_conf = None
    if flags.secure:
        try:
            security = secure_setup.prepare(flags.work_dir, flags.ip)
            client_conf = secure_setup.write_client_conf(
                os.path.join(flags.work_dir, "client.conf"), f"{flags.ip}:{flags.port}", security)
        except secure_setup.SetupError as exc:
            print(f"offerd local: {exc}", file=sys.stderr)
            return 1
    cluster = LocalCluster(
        slaves=flags.slaves, ip=flags.ip, port=flags.port, work_dir=flags.work_dir,
        resources=flags.resources, containerizer=flags.containerizer,
        allocation_interval=flags.allocation_interval, logging_level=flags.logging_level,
        marathon_port=flags.marathon_port if flags.marathon else None,
        slave_args=[f"--isolation={flags.isolation}"] if flags.isolation else (),
        security=security,
    )
    log.info("starting a local cluster: 1 master, %d slave(s); state in %s", flags.slaves, cluster.work_dir)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.start(flags.startup_timeout)
    except RuntimeError as exc:
        log.error("%s; see the log lines above", exc)
        return 1
    print(banner(cluster, flags, client_conf), flush=True)
    try:
        while True:
            for index, proc in enumerate(cluster.slave_procs):
                if proc is not None and proc.poll() is not None:
                    log.warning("slave %d exited with status %s; restarting it", index, proc.returncode)
                    cluster.start_slave(index)
            if cluster.marathon_proc is not None and cluster.marathon_proc.poll() is not None:
                # Its state is on disk (work_dir/marathon): the new process adopts the running tasks.
                log.warning("the marathon framework exited with status %s; restarting it",
                            cluster.marathon_proc.returncode)
                cluster.start_marathon()
            if cluster.master_proc.poll() is not None:
                log.error("the master exited with status %s; stopping", cluster.master_proc.returncode)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        log.info("stopping the local cluster")
    finally:
        cluster.stop()
        if not flags.work_dir:
            shutil.rmtree(cluster.work_dir, ignore_errors=True)
            log.info("removed %s (pass --work_dir to keep a cluster's state and sandboxes)", cluster.work_dir)
    return 0
