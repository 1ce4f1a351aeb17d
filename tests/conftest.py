"""Fixtures shared by the suites: real clusters of real processes on loopback."""

from __future__ import annotations

import time

import pytest

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

    def make(slaves: int = 2, ip: str = "127.0.0.1", **kwargs) -> LocalCluster:
        work_dir = tmp_path / f"cluster{len(started)}"
        kwargs.setdefault("resources", "cpus:4;mem:4096;disk:4096;ports:[31000-32000]")
        kwargs.setdefault("allocation_interval", 0.2)
        cluster = LocalCluster(slaves=slaves, ip=ip, port=free_base_port(slaves, ip), work_dir=str(work_dir),
                               log_dir=str(work_dir / "logs"), **kwargs)
        started.append(cluster)
        cluster.start(timeout=60)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def cluster(cluster_factory):
    """A running master with two posix slaves on loopback."""
    return cluster_factory(slaves=2)
