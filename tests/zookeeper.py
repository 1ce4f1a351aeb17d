"""A real ZooKeeper for the tests (after kazoo/testing/harness.py).

`ZooKeeperServer` runs one server, or a whole ensemble, from the system install
(Debian's ``zookeeper`` package: java + /usr/share/java/zookeeper.jar, whose
manifest names its dependencies), each member with its own zoo.cfg and data
dir on free loopback ports. Nothing is faked: session expiry is done the way
ZooKeeper itself does it (a second connection with the same session id and
password closes the session on the server), and a dropped connection is a
closed socket.

Fixtures: ``zk_server`` (session-wide single server) and ``zk_url`` (per test:
a fresh chroot ``zk://127.0.0.1:PORT/test-<uuid>``). `make system-deps`
installs the package; without it the tests that use these fixtures skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from offerd.common.election import close_shared
from tests.support import free_port

ZOOKEEPER_JAR = os.environ.get("OFFERD_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar")
JAVA = shutil.which("java")
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def zookeeper_missing() -> str | None:
    """Why a real ZooKeeper cannot run here, or None."""
    if JAVA is None:
        return "java is not installed (run `make system-deps` as root: apt-get install zookeeper)"
    if not os.path.exists(ZOOKEEPER_JAR):
        return f"{ZOOKEEPER_JAR} not found (run `make system-deps` as root: apt-get install zookeeper)"
    return None


class ZooKeeperServer:
    """One ZooKeeper server, or an ensemble of `size` servers, on loopback.

    ``hosts`` is the kazoo connection string of every member; ``stop_member`` /
    ``start_member`` take single members down and up (quorum-loss tests).
    """

    def __init__(self, size: int = 1, tick_ms: int = 200, host: str = "127.0.0.1"):
        self.size = size
        self.host = host  # e.g. a test bridge's address, for slaves in network namespaces
        self.tick_ms = tick_ms
        self.root = tempfile.mkdtemp(prefix="offerd-zk-")
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [(free_port(), free_port()) for _ in range(size)] if size > 1 else []
        self.procs: list[subprocess.Popen | None] = [None] * size

    @property
    def hosts(self) -> str:
        return ",".join(f"{self.host}:{p}" for p in self.client_ports)

    def url(self, path: str = "") -> str:
        return f"zk://{self.hosts}/{path.lstrip('/')}"

    def _config(self, index: int) -> str:
        data = os.path.join(self.root, f"member{index}")
        os.makedirs(data, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={data}",
            f"clientPort={self.client_ports[index]}",
            f"clientPortAddress={self.host}",
            "initLimit=20",
            "syncLimit=10",
            # Allow the short sessions the HA tests use (minimum is 2 ticks).
            "minSessionTimeout=400",
            "maxSessionTimeout=60000",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
        ]
        if self.size > 1:
            with open(os.path.join(data, "myid"), "w") as f:
                f.write(f"{index + 1}\n")
            for i, (quorum, election) in enumerate(self.peer_ports):
                lines.append(f"server.{i + 1}=127.0.0.1:{quorum}:{election}")
        path = os.path.join(data, "zoo.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_member(self, index: int) -> None:
        config = self._config(index)
        log = open(os.path.join(self.root, f"member{index}.log"), "ab")
        self.procs[index] = subprocess.Popen(
            [JAVA, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", ZOOKEEPER_JAR,
             "-Dzookeeper.jmx.log4j.disable=true", MAIN, config],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop_member(self, index: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(10)
        self.procs[index] = None

    def start(self, timeout: float = 30.0) -> "ZooKeeperServer":
        for index in range(self.size):
            self.start_member(index)
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 30.0) -> None:
        from kazoo.client import KazooClient

        deadline = time.monotonic() + timeout
        while True:
            client = KazooClient(self.hosts, timeout=2.0)
            try:
                client.start(timeout=2.0)
                client.get_children("/")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ZooKeeper did not serve on {self.hosts} within {timeout}s; "
                                       f"logs in {self.root}") from None
                time.sleep(0.2)
            finally:
                client.stop()
                client.close()

    def stop(self) -> None:
        # The in-process schedulers' detectors of this ensemble outlive their drivers (one per
        # URL and process); with the ensemble gone they would retry until the process exits.
        close_shared(self.hosts)
        for index in range(self.size):
            self.stop_member(index)
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, **kwargs):
        from kazoo.client import KazooClient

        client = KazooClient(self.hosts, **kwargs)
        client.start(timeout=10)
        return client


def expire_session(hosts: str, client_id: tuple[int, bytes], timeout: float = 10.0) -> None:
    """Expire the ZooKeeper session `client_id` (kazoo's ``client.client_id``).

    As ZooKeeper's own test harness does it: connect a second client with the
    same session id and password and close it; the server ends the session, and
    the owner hears SESSION_EXPIRED when it next talks to the server.
    """
    from kazoo.client import KazooClient

    twin = KazooClient(hosts, client_id=client_id, timeout=timeout)
    twin.start(timeout=timeout)
    twin.stop()
    twin.close()


def expire_client(client, timeout: float = 10.0) -> None:
    """Expire `client`'s session and wait until the client has seen it (LOST)."""
    from kazoo.client import KazooState

    lost = threading.Event()

    def listener(state):
        if state == KazooState.LOST:
            lost.set()
            return True
        return False

    client.add_listener(listener)
    expire_session(_hosts_of(client), client.client_id)
    if not lost.wait(timeout):
        raise AssertionError("the client did not see its session expire")


# kazoo's threads (its connection loop and its callback/completion workers) are unnamed;
# Python names them after their targets: "Thread-7 (zk_loop)", "Thread-8 (_thread_worker)".
KAZOO_THREAD = re.compile(r"\((zk_loop|_thread_worker)\)$")


def kazoo_threads() -> list[threading.Thread]:
    """The live threads of kazoo clients not stopped yet (a client leaks them until stop())."""
    return [t for t in threading.enumerate() if t.is_alive() and KAZOO_THREAD.search(t.name or "")]


def _hosts_of(client) -> str:
    return ",".join(f"{h}:{p}" for h, p in client.hosts)


def drop_connection(client) -> None:
    """Close `client`'s socket to ZooKeeper (the session survives; kazoo reconnects)."""
    connection = client._connection
    sock = getattr(connection, "_socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture(scope="session")
def zk_server():
    """A real single-node ZooKeeper for the whole test session."""
    why = zookeeper_missing()
    if why:
        pytest.skip(f"no real ZooKeeper: {why}")
    server = ZooKeeperServer(1).start()
    yield server
    server.stop()


@pytest.fixture
def zk_url(zk_server):
    """``zk://127.0.0.1:PORT/test-<uuid>``: this test's own chroot. The detectors the test's
    in-process schedulers shared for it are closed after it: a live kazoo client draws from
    `random` on every poll, which later hypothesis tests would see."""
    url = zk_server.url(f"test-{uuid.uuid4().hex[:12]}")
    yield url
    close_shared(under=url)
