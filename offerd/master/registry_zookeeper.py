"""Where the cluster's registry (offerd.master.registry_membership) is kept,
behind registry.py's `RegistryBackend`:

* `ZooKeeperBackend` (``--registry=zk``, the default with ``--zk``): the state
  as JSON in the znode ``<zk path>/registry``, each store a ``set`` with the
  znode version read last (compare-and-set), so a master that lost leadership
  can never overwrite what the new leader wrote: its store fails with
  `VersionMismatch` and it abdicates.
* `HAInMemoryBackend` (``--registry=in_memory``): the same state, in memory
  (tests; a failover then forgets everything, as with Mesos' in_memory).
"""

from __future__ import annotations

import dataclasses
import json

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from offerd.master.registry import InMemoryBackend, RegistryBackend, RegistryError, VersionMismatch
from offerd.master.registry_membership import ClusterRegistryState


class HAInMemoryBackend(InMemoryBackend):
    """The cluster's registry in this process only: a new leader starts empty."""

    def __init__(self):
        super().__init__()
        self._state = ClusterRegistryState()


class ZooKeeperBackend(RegistryBackend):
    """The state as JSON in one znode; stores compare-and-set its version."""

    def __init__(self, client, path: str, acl=None):
        self.client = client
        self.path = path
        self.acl = acl  # with --zk credentials: writable by them only
        self._znode_version: int | None = None  # None: no znode read yet / none exists

    def fetch(self):
        try:
            data, stat = self.client.get(self.path)
        except NoNodeError:
            self._znode_version = None
            return ClusterRegistryState()
        self._znode_version = stat.version
        try:
            return ClusterRegistryState.from_json(json.loads(data.decode()))
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"corrupt registry in ZooKeeper {self.path}: {exc}") from None

    def store(self, state, expected_version):
        state = dataclasses.replace(state, version=expected_version + 1)
        data = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":")).encode()
        try:
            if self._znode_version is None:
                self.client.create(self.path, data, acl=self.acl, makepath=True)
                self._znode_version = 0
            else:
                stat = self.client.set(self.path, data, version=self._znode_version)
                self._znode_version = stat.version
        except (BadVersionError, NodeExistsError, NoNodeError):
            raise VersionMismatch(f"registry {self.path} was written by another master "
                                  f"since version {expected_version}") from None
        return state
