"""The master's registry: what must survive a master restart.

Durable changes are operation objects with a pure ``apply(state)`` that returns
the next state or raises `RegistryError`, as Mesos'
``registry_operations.hpp``. A `Registrar` applies one to the current state
and stores the result through a backend, with a version check so two writers
cannot silently overwrite each other. Backends: in memory (tests, no
--work_dir) and a JSON file under --work_dir.

`RegistryState` holds role weights and quota, all a master without ``--zk``
keeps. With ``--zk`` the state is registry_membership's `ClusterRegistryState`
(admitted, unreachable and gone slaves, frameworks, the leader, besides weights
and quota), kept by registry_zookeeper's backends behind the same
`RegistryBackend` interface.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import Mapping

from offerd.common.durable import write_atomically
from offerd.common.resources import ResourceError, Resources, validate_role


class RegistryError(Exception):
    """An operation that cannot apply, or a store that lost a race."""


class VersionMismatch(RegistryError):
    """The stored registry moved on since it was read (another writer)."""


@dataclasses.dataclass(frozen=True)
class RegistryState:
    """An immutable registry value; `version` counts stores."""

    version: int = 0
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    # role -> {"guarantee": "cpus:2;mem:1024", "limit": "..." or None}
    quotas: Mapping[str, Mapping[str, str | None]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    # The maintenance schedule and the machines brought down, as Mesos' JSON
    # ({"windows": [...], "down_machines": [{"hostname", "ip"}]}; see
    # offerd.master.maintenance_schedule, whose operations are the only writers).
    maintenance: Mapping | None = None

    def to_json(self) -> dict:
        data = {"version": self.version, "weights": dict(self.weights),
                "quotas": {role: dict(q) for role, q in self.quotas.items()}}
        if self.maintenance:  # written only once used: older registries load unchanged
            data["maintenance"] = json.loads(json.dumps(dict(self.maintenance)))
        return data

    @classmethod
    def from_json(cls, data: dict) -> RegistryState:
        maintenance = data.get("maintenance")
        return cls(int(data.get("version", 0)), MappingProxyType(dict(data.get("weights", {}))),
                   MappingProxyType({r: MappingProxyType(dict(q)) for r, q in data.get("quotas", {}).items()}),
                   MappingProxyType(dict(maintenance)) if isinstance(maintenance, dict) else None)


# -- operations ------------------------------------------------------------------


class Operation(ABC):
    @abstractmethod
    def apply(self, state: RegistryState) -> RegistryState:
        """The next state (version unchanged); raise RegistryError if invalid."""


def _check_role(role: str) -> None:
    if not isinstance(role, str):  # from a JSON body: anything may come
        raise RegistryError(f"a role must be a string, not {role!r}")
    try:
        validate_role(role)
    except ResourceError as exc:
        raise RegistryError(str(exc)) from None
    if role == "*":
        raise RegistryError("role '*' cannot have a weight or quota")


@dataclasses.dataclass(frozen=True)
class UpdateWeights(Operation):
    weights: Mapping[str, float]

    def apply(self, state):
        for role, weight in self.weights.items():
            _check_role(role)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight < math.inf:
                raise RegistryError(f"weight of role {role!r} must be a positive finite number, not {weight!r}")
        merged = dict(state.weights)
        merged.update({role: float(w) for role, w in self.weights.items()})
        return dataclasses.replace(state, weights=MappingProxyType(merged))


def _quota_resources(text: str | None, what: str) -> Resources | None:
    if text is None:
        return None
    try:
        resources = Resources.parse(text)
    except ResourceError as exc:
        raise RegistryError(f"invalid quota {what}: {exc}") from None
    if resources.roles() - {"*"}:
        raise RegistryError(f"quota {what} must not name reserved resources: {text}")
    if resources.is_empty() or set(resources.names()) - set(resources.scalars()):
        raise RegistryError(f"quota {what} must be non-empty scalar resources (cpus, mem, disk, gpus): {text}")
    return resources


@dataclasses.dataclass(frozen=True)
class UpdateQuota(Operation):
    role: str
    guarantee: str | None
    limit: str | None = None

    def apply(self, state):
        _check_role(self.role)
        guarantee = _quota_resources(self.guarantee, "guarantee")
        limit = _quota_resources(self.limit, "limit")
        if guarantee is None and limit is None:
            raise RegistryError("quota needs a guarantee or a limit")
        if guarantee is not None and limit is not None and not limit.contains(guarantee):
            raise RegistryError(f"quota guarantee {guarantee} exceeds the limit {limit}")
        quotas = dict(state.quotas)
        quotas[self.role] = MappingProxyType({"guarantee": str(guarantee) if guarantee else None,
                                              "limit": str(limit) if limit else None})
        return dataclasses.replace(state, quotas=MappingProxyType(quotas))


@dataclasses.dataclass(frozen=True)
class RemoveQuota(Operation):
    role: str

    def apply(self, state):
        if self.role not in state.quotas:
            raise RegistryError(f"no quota set for role {self.role!r}")
        quotas = {r: q for r, q in state.quotas.items() if r != self.role}
        return dataclasses.replace(state, quotas=MappingProxyType(quotas))


# -- backends --------------------------------------------------------------------


class RegistryBackend(ABC):
    @abstractmethod
    def fetch(self) -> RegistryState:
        """The stored state (an empty one, version 0, if nothing is stored)."""

    @abstractmethod
    def store(self, state: RegistryState, expected_version: int) -> RegistryState:
        """Store `state` as version expected_version + 1, if the stored version
        is still `expected_version`; else raise VersionMismatch."""


class InMemoryBackend(RegistryBackend):
    def __init__(self):
        self._state = RegistryState()

    def fetch(self):
        return self._state

    def store(self, state, expected_version):
        if self._state.version != expected_version:
            raise VersionMismatch(f"registry is at version {self._state.version}, expected {expected_version}")
        self._state = dataclasses.replace(state, version=expected_version + 1)
        return self._state


class FileBackend(RegistryBackend):
    """``<work_dir>/registry.json``, replaced atomically (write, fsync, rename, fsync the directory)."""

    def __init__(self, path: str):
        self.path = path

    def fetch(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return RegistryState.from_json(json.load(f))
        except FileNotFoundError:
            return RegistryState()
        except (ValueError, TypeError, AttributeError) as exc:
            raise RegistryError(f"corrupt registry {self.path}: {exc}") from None

    def store(self, state, expected_version):
        current = self.fetch().version
        if current != expected_version:
            raise VersionMismatch(f"{self.path} is at version {current}, expected {expected_version}")
        state = dataclasses.replace(state, version=expected_version + 1)
        # Readable by the master's user only, as the file has always been.
        write_atomically(self.path, json.dumps(state.to_json(), indent=1, sort_keys=True), mode=0o600)
        return state


def backend_for(work_dir: str | None) -> RegistryBackend:
    if work_dir:
        return FileBackend(os.path.join(work_dir, "registry.json"))
    return InMemoryBackend()


class Registrar:
    """The current registry state and the one way to change it."""

    def __init__(self, backend: RegistryBackend):
        self.backend = backend
        self.state = backend.fetch()

    def apply(self, operation: Operation) -> RegistryState:
        """Apply and store; on any error the state is unchanged."""
        next_state = operation.apply(self.state)
        self.state = self.backend.store(next_state, self.state.version)
        return self.state
