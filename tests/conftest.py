"""Fixtures shared by the suites: real clusters of real processes on loopback."""

from __future__ import annotations

import os
import time

import pytest

from offerd.cli import secure_setup
from offerd.cli.local import LocalCluster, free_base_port
from tests.zookeeper import zk_server, zk_url  # noqa: F401


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll until `predicate()` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def cluster_factory(tmp_path):
    """Build and start LocalClusters with chosen flags; all are stopped at teardown."""
    started: list[LocalCluster] = []

    def make(slaves: int = 2, ip: str = "127.0.0.1", secure: bool = False, **kwargs) -> LocalCluster:
        """`secure=True`: everything on, as `offerd local --secure` (credentials, ACLs, CURVE, HTTPS)."""
        work_dir = tmp_path / f"cluster{len(started)}"
        kwargs.setdefault("resources", "cpus:4;mem:4096;disk:4096;ports:[31000-32000]")
        kwargs.setdefault("allocation_interval", 0.2)
        if secure:
            kwargs["security"] = secure_setup.prepare(str(work_dir), ip)
        cluster = LocalCluster(slaves=slaves, ip=ip, port=free_base_port(slaves, ip), work_dir=str(work_dir),
                               log_dir=str(work_dir / "logs"), **kwargs)
        started.append(cluster)
        cluster.start(timeout=60)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


# Runs a test on an open cluster and again with all security on; the test passes
# `cluster.driver_kwargs()` to its drivers and reads endpoints through `cluster.urlopen`.
OPEN_AND_SECURE = pytest.mark.parametrize("cluster", ["open", "secure"], indirect=True)


@pytest.fixture
def cluster(request, cluster_factory):
    """A running master with two posix slaves on loopback; open unless parametrized "secure"."""
    mode = getattr(request, "param", "open")
    if mode not in ("open", "secure"):
        raise ValueError(f"cluster: unknown mode {mode!r}; use 'open' or 'secure'")
    return cluster_factory(slaves=2, secure=mode == "secure")


def client_env(cluster: LocalCluster) -> dict:
    """The environment for an `offerd` command against `cluster`: on a secure cluster,
    OFFERD_CONFIG names a client.conf of the operator principal."""
    env = dict(os.environ)
    env.pop("OFFERD_CONFIG", None)
    if cluster.security is not None:
        path = os.path.join(cluster.work_dir, "client.conf")
        env["OFFERD_CONFIG"] = secure_setup.write_client_conf(path, cluster.master, cluster.security)
    return env
