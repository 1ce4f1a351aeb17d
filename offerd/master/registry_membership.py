"""What a new leading master needs to take over: the cluster's registry state
and the operations that change it.

`ClusterRegistryState` extends `registry.RegistryState` (weights, quota) with
the master's own bookkeeping: admitted slaves, unreachable slaves with the time
they were marked, slaves an operator marked gone, the frameworks' failover
timeouts (which Mesos loses on failover; offerd keeps them) and the leading
MasterInfo. Every change is an operation with a pure ``apply``, applied by the
same `registry.Registrar`; operations of registry.py (UpdateWeights,
UpdateQuota...) work on this state unchanged, since they use
``dataclasses.replace``. Where it is stored: offerd.master.registry_zookeeper.

Slaves are kept small (id, hostname, port, and the principal a slave proved
when it registered, so that a new leader refuses another principal's
reregistration under its id): a registry of 100,000 slaves must fit a ZooKeeper
znode (1 MB by default). A ``principal`` key is written only when there is one,
so registries written before it load unchanged.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Mapping

from offerd.master.registry import Operation, RegistryError, RegistryState

_EMPTY: Mapping = MappingProxyType({})


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


@dataclasses.dataclass(frozen=True)
class ClusterRegistryState(RegistryState):
    # slave_id -> {"hostname": ..., "port": ..., "principal": ... (when it proved one)}
    slaves: Mapping[str, Mapping] = dataclasses.field(default_factory=lambda: _EMPTY)
    # slave_id -> {"hostname", "port", "time"}: marked unreachable at time
    unreachable: Mapping[str, Mapping] = dataclasses.field(default_factory=lambda: _EMPTY)
    # slave_id -> time an operator marked it gone (it may never come back)
    gone: Mapping[str, float] = dataclasses.field(default_factory=lambda: _EMPTY)
    # framework_id -> {"failover_timeout": seconds, "name": ..., "principal": ... (when bound to one)}
    frameworks: Mapping[str, Mapping] = dataclasses.field(default_factory=lambda: _EMPTY)
    leader: Mapping | None = None

    def to_json(self) -> dict:
        data = super().to_json()
        data.update(slaves={k: dict(v) for k, v in self.slaves.items()},
                    unreachable={k: dict(v) for k, v in self.unreachable.items()},
                    gone=dict(self.gone), frameworks={k: dict(v) for k, v in self.frameworks.items()},
                    leader=dict(self.leader) if self.leader else None)
        return data

    @classmethod
    def from_json(cls, data: dict) -> ClusterRegistryState:
        base = super().from_json(data)
        return dataclasses.replace(
            base,
            slaves=_frozen({k: _frozen(v) for k, v in data.get("slaves", {}).items()}),
            unreachable=_frozen({k: _frozen(v) for k, v in data.get("unreachable", {}).items()}),
            gone=_frozen(data.get("gone", {})),
            frameworks=_frozen({k: _frozen(v) for k, v in data.get("frameworks", {}).items()}),
            leader=_frozen(data["leader"]) if data.get("leader") else None)


def _without(mapping: Mapping, key: str) -> Mapping:
    return _frozen({k: v for k, v in mapping.items() if k != key})


def _with(mapping: Mapping, key: str, value) -> Mapping:
    out = dict(mapping)
    out[key] = value
    return _frozen(out)


# -- operations ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SetLeader(Operation):
    """Written first by a new leader: moves the version on, fencing the old one."""

    info: Mapping

    def apply(self, state):
        return dataclasses.replace(state, leader=_frozen(self.info))


@dataclasses.dataclass(frozen=True)
class AdmitSlave(Operation):
    slave_id: str
    hostname: str
    port: int
    principal: str | None = None

    def apply(self, state):
        if self.slave_id in state.gone:
            raise RegistryError(f"slave {self.slave_id} was marked gone and cannot come back")
        entry = {"hostname": self.hostname, "port": self.port}
        if self.principal is not None:
            entry["principal"] = self.principal
        return dataclasses.replace(
            state, slaves=_with(state.slaves, self.slave_id, _frozen(entry)),
            unreachable=_without(state.unreachable, self.slave_id))


@dataclasses.dataclass(frozen=True)
class MarkSlaveUnreachable(Operation):
    slave_id: str
    time: float

    def apply(self, state):
        info = state.slaves.get(self.slave_id)
        if info is None:
            raise RegistryError(f"slave {self.slave_id} is not admitted")
        return dataclasses.replace(
            state, slaves=_without(state.slaves, self.slave_id),
            unreachable=_with(state.unreachable, self.slave_id, _frozen({**info, "time": self.time})))


@dataclasses.dataclass(frozen=True)
class MarkSlaveReachable(Operation):
    slave_id: str

    def apply(self, state):
        info = state.unreachable.get(self.slave_id)
        if info is None:
            raise RegistryError(f"slave {self.slave_id} is not unreachable")
        entry = {k: v for k, v in info.items() if k != "time"}
        return dataclasses.replace(state, unreachable=_without(state.unreachable, self.slave_id),
                                   slaves=_with(state.slaves, self.slave_id, _frozen(entry)))


@dataclasses.dataclass(frozen=True)
class RemoveSlave(Operation):
    """A slave that unregistered (shut down cleanly)."""

    slave_id: str

    def apply(self, state):
        return dataclasses.replace(state, slaves=_without(state.slaves, self.slave_id),
                                   unreachable=_without(state.unreachable, self.slave_id))


@dataclasses.dataclass(frozen=True)
class MarkSlaveGone(Operation):
    slave_id: str
    time: float

    def apply(self, state):
        if self.slave_id in state.gone:
            raise RegistryError(f"slave {self.slave_id} is already marked gone")
        if self.slave_id not in state.slaves and self.slave_id not in state.unreachable:
            raise RegistryError(f"unknown slave {self.slave_id}")
        return dataclasses.replace(state, slaves=_without(state.slaves, self.slave_id),
                                   unreachable=_without(state.unreachable, self.slave_id),
                                   gone=_with(state.gone, self.slave_id, self.time))


@dataclasses.dataclass(frozen=True)
class AddFramework(Operation):
    framework_id: str
    failover_timeout: float
    name: str = ""
    principal: str | None = None

    def apply(self, state):
        entry = {"failover_timeout": float(self.failover_timeout), "name": self.name}
        if self.principal is not None:
            entry["principal"] = self.principal
        return dataclasses.replace(state, frameworks=_with(state.frameworks, self.framework_id, _frozen(entry)))


@dataclasses.dataclass(frozen=True)
class RemoveFramework(Operation):
    framework_id: str

    def apply(self, state):
        return dataclasses.replace(state, frameworks=_without(state.frameworks, self.framework_id))
