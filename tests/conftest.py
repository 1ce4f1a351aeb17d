"""Fixtures shared by the suites: real clusters of real processes on loopback.

Fixture modules registered for every suite: tests/zookeeper.py (`zk_server`,
`zk_url`) and tests/fakes/master_for_slaves.py (`master`, `start_slave`,
`container_slave`: slaves under test against a fake master; a test module's own
`master` fixture takes precedence). Polling and free ports: tests/support.py.
"""

from __future__ import annotations

import os
import time

import pytest

from offerd.cli import secure_setup
from offerd.cli.local import LocalCluster, free_base_port

# Only the top-level conftest may name plugins; these hold fixtures, not tests.
pytest_plugins = ["tests.zookeeper", "tests.fakes.master_for_slaves"]


@pytest.fixture
def cluster_factory(tmp_path):
    """Build and start LocalClusters with chosen flags; all are stopped at teardown."""
    started: list[LocalCluster] = []

    def make(slaves: int = 2, ip: str = "127.0.0.1", secure: bool = False, **kwargs) -> LocalCluster:
        """`secure=True`: everything on, as `offerd local --secure` (credentials, ACLs, CURVE, HTTPS)."""
        work_dir = tmp_path / f"cluster{len(started)}"
        kwargs.setdefault("resources", "cpus:4;mem:4096;disk:4096;ports:[31000-32000]")
        kwargs.setdefault("allocation_interval", 0.2)
        # The master checks its accounting after every change; teardown fails the test on a violation.
        kwargs["master_args"] = [*kwargs.get("master_args", ()), "--check_invariants"]
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
    violations = [line for cluster in started for line in _invariant_violations(cluster)]
    if violations:
        pytest.fail("the master's accounting invariant was violated:\n" + "\n".join(violations[:20]))


def _invariant_violations(cluster: LocalCluster) -> list[str]:
    """The lines a --check_invariants master logged about its accounting."""
    path = os.path.join(cluster.log_dir, "master.log")
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as log:
        return [line.rstrip() for line in log if "accounting invariant violated" in line]


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


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a kazoo client outlived it: an unstopped client keeps retrying
    (and reconnecting to whichever ZooKeeper takes its port) for the rest of the process."""
    from tests.zookeeper import kazoo_threads

    deadline = time.monotonic() + 5.0  # kazoo's stop() is synchronous; allow a closing client to finish
    while kazoo_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    leaked = kazoo_threads()
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"{len(leaked)} kazoo client thread(s) still running at the end of the session "
                   f"({', '.join(sorted(t.name for t in leaked))}): a test or fixture started a KazooClient "
                   "and did not stop() and close() it")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "kazoo clients left running", red=True, bold=True)
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)
        else:
            print(f"ERROR: {message}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
