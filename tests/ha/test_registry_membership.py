"""The cluster's registry: pure operations, and one contract over its backends
(in memory and a real ZooKeeper)."""

from __future__ import annotations

import uuid

import pytest

from offerd.master.registry import Registrar, RegistryError, UpdateQuota, UpdateWeights, VersionMismatch
from offerd.master.registry_membership import (AddFramework, AdmitSlave, ClusterRegistryState, MarkSlaveGone,
                                               MarkSlaveReachable, MarkSlaveUnreachable, RemoveFramework,
                                               RemoveSlave, SetLeader)
from offerd.master.registry_zookeeper import HAInMemoryBackend, ZooKeeperBackend


@pytest.fixture(params=["in_memory", "zk"])
def backends(request, zk_server):
    """A factory of backends over one store: each call is another master's view."""
    if request.param == "in_memory":
        backend = HAInMemoryBackend()
        yield lambda: backend
        return
    clients = []
    path = f"/test-{uuid.uuid4().hex[:12]}/registry"

    def make():
        clients.append(zk_server.client())
        return ZooKeeperBackend(clients[-1], path)

    yield make
    for client in clients:
        client.stop()
        client.close()


def test_slave_lifecycle_operations_are_pure():
    empty = ClusterRegistryState()
    admitted = AdmitSlave("S1", "h1", 5051).apply(empty)
    assert dict(admitted.slaves["S1"]) == {"hostname": "h1", "port": 5051} and not empty.slaves
    unreachable = MarkSlaveUnreachable("S1", 100.0).apply(admitted)
    assert "S1" not in unreachable.slaves and unreachable.unreachable["S1"]["time"] == 100.0
    back = MarkSlaveReachable("S1").apply(unreachable)
    assert dict(back.slaves["S1"]) == {"hostname": "h1", "port": 5051} and not back.unreachable
    gone = MarkSlaveGone("S1", 200.0).apply(back)
    assert gone.gone["S1"] == 200.0 and not gone.slaves
    assert not RemoveSlave("S1").apply(admitted).slaves
    with pytest.raises(RegistryError, match="gone"):
        AdmitSlave("S1", "h1", 5051).apply(gone)
    with pytest.raises(RegistryError, match="not admitted"):
        MarkSlaveUnreachable("S9", 1.0).apply(empty)
    with pytest.raises(RegistryError, match="unknown slave"):
        MarkSlaveGone("S9", 1.0).apply(empty)


def test_json_round_trip_keeps_everything():
    state = ClusterRegistryState()
    for op in (UpdateWeights({"prod": 2}), UpdateQuota("dev", "cpus:1"), AdmitSlave("S1", "h", 1),
               AdmitSlave("S2", "h2", 2), MarkSlaveUnreachable("S2", 5.0), AddFramework("F1", 60.0, "f"),
               SetLeader({"id": "m1", "pid": "master@127.0.0.1:5050"})):
        state = op.apply(state)
    again = ClusterRegistryState.from_json(state.to_json())
    assert again.to_json() == state.to_json()


def test_registrar_persists_every_kind_of_change(backends):
    registrar = Registrar(backends())
    registrar.apply(SetLeader({"id": "m1"}))
    registrar.apply(UpdateWeights({"prod": 3}))
    registrar.apply(UpdateQuota("dev", "cpus:2"))
    registrar.apply(AdmitSlave("S1", "h1", 5051))
    registrar.apply(AdmitSlave("S2", "h2", 5051))
    registrar.apply(MarkSlaveUnreachable("S2", 12.5))
    registrar.apply(AddFramework("F1", 3600.0, "marathon"))
    registrar.apply(AddFramework("F2", 0.0))
    registrar.apply(RemoveFramework("F2"))
    recovered = Registrar(backends()).state  # the next leader reads it back
    assert recovered.version == 9
    assert dict(recovered.weights) == {"prod": 3.0} and recovered.quotas["dev"]["guarantee"] == "cpus:2"
    assert set(recovered.slaves) == {"S1"} and recovered.unreachable["S2"]["time"] == 12.5
    assert dict(recovered.frameworks) == {"F1": {"failover_timeout": 3600.0, "name": "marathon"}}
    assert recovered.leader["id"] == "m1"


def test_a_fenced_leader_cannot_write(backends):
    old = Registrar(backends())
    old.apply(AdmitSlave("S1", "h1", 5051))
    new = Registrar(backends())
    new.apply(SetLeader({"id": "new"}))
    with pytest.raises(VersionMismatch):
        old.apply(AdmitSlave("S2", "h2", 5051))
    assert "S2" not in old.state.slaves  # unchanged on failure
    assert set(Registrar(backends()).state.slaves) == {"S1"}


def test_failed_operation_changes_nothing(backends):
    registrar = Registrar(backends())
    with pytest.raises(RegistryError):
        registrar.apply(MarkSlaveReachable("S1"))
    assert registrar.state.version == 0
