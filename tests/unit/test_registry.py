"""Registry operations (pure) and backends (contract over every backend)."""

import json

import pytest

from offerd.master.registry import (
    FileBackend,
    InMemoryBackend,
    Registrar,
    RegistryError,
    RegistryState,
    RemoveQuota,
    UpdateQuota,
    UpdateWeights,
    VersionMismatch,
)


@pytest.fixture(params=["memory", "file"])
def backend(request, tmp_path):
    return InMemoryBackend() if request.param == "memory" else FileBackend(str(tmp_path / "registry.json"))


def test_operations_are_pure():
    state = RegistryState()
    after = UpdateWeights({"prod": 3}).apply(state)
    assert dict(after.weights) == {"prod": 3.0} and dict(state.weights) == {}
    after = UpdateQuota("dev", "cpus:2;mem:1024").apply(after)
    assert after.quotas["dev"]["guarantee"] == "cpus:2;mem:1024"
    assert RemoveQuota("dev").apply(after).quotas == {}


@pytest.mark.parametrize("op, message", [
    (UpdateWeights({"prod": 0}), "positive"),
    (UpdateWeights({"*": 2}), "'\\*'"),
    (UpdateWeights({"bad role": 2}), "invalid character"),
    (UpdateQuota("dev", "ports:[1-2]"), "scalar"),
    (UpdateQuota("dev", "cpus(dev):1"), "reserved"),
    (UpdateQuota("dev", None, None), "guarantee or a limit"),
    (UpdateQuota("dev", "cpus:2", "cpus:1"), "exceeds"),
    (RemoveQuota("nope"), "no quota"),
])
def test_invalid_operations(op, message):
    with pytest.raises(RegistryError, match=message):
        op.apply(RegistryState())


def test_registrar_persists_with_versions(backend):
    registrar = Registrar(backend)
    registrar.apply(UpdateWeights({"prod": 2}))
    registrar.apply(UpdateQuota("dev", "cpus:1"))
    assert registrar.state.version == 2
    again = Registrar(backend)  # a restarted master reads it back
    assert dict(again.state.weights) == {"prod": 2.0}
    assert again.state.quotas["dev"]["guarantee"] == "cpus:1"


def test_version_check_refuses_a_stale_writer(backend):
    first, second = Registrar(backend), Registrar(backend)
    first.apply(UpdateWeights({"a": 1}))
    with pytest.raises(VersionMismatch):
        second.apply(UpdateWeights({"b": 1}))
    assert "b" not in second.state.weights  # unchanged on error


def test_failed_operation_changes_nothing(backend):
    registrar = Registrar(backend)
    with pytest.raises(RegistryError):
        registrar.apply(UpdateWeights({"x": -1}))
    assert registrar.state.version == 0 and backend.fetch().version == 0


def test_file_backend_is_json(tmp_path):
    path = tmp_path / "registry.json"
    Registrar(FileBackend(str(path))).apply(UpdateWeights({"prod": 3}))
    assert json.loads(path.read_text())["weights"] == {"prod": 3.0}
    path.write_text("{not json")
    with pytest.raises(RegistryError, match="corrupt"):
        FileBackend(str(path)).fetch()
