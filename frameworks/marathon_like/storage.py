"""Where the framework's state lives.

:class:`Storage` is what the core asks for: app versions, deployments, instances,
task failures and the framework id, as JSON-able dicts. :class:`KeyValueStorage`
implements it once over a tiny key-value backend, with Marathon's layout
(``<category>/<id with / → _>[/<version>]``):

    apps/<id>                   the current definition
    app-versions/<id>/<ts>      every version (the newest ``max_versions`` kept)
    deployments/<id>            running deployment plans
    instances/<task id>         the tasks we launched (adopted again after a restart)
    failures/<id>               lastTaskFailure
    groups/<id>                 group settings (dependencies; empty groups)
    framework-id/id

Backends: :class:`MemoryStore` (tests), :class:`FileStore` (the default: one file
per key under ``--work_dir``, written atomically), and the ZooKeeper one in
``zk.py`` (``--zk``).
"""

from __future__ import annotations

import json
import logging
import os
import threading

from offerd.common.durable import TEMPORARY_PREFIX, write_atomically

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The backend could not read or write."""


class Storage:
    """App versions, deployments, instances and the framework id. Values are JSON-able dicts."""

    max_versions = 50

    def save_app(self, app: dict) -> None:
        raise NotImplementedError

    def delete_app(self, app_id: str) -> None:
        raise NotImplementedError

    def apps(self) -> list[dict]:
        """The current definition of every app."""
        raise NotImplementedError

    def app_versions(self, app_id: str) -> list[str]:
        """Stored versions, newest first."""
        raise NotImplementedError

    def app_version(self, app_id: str, version: str) -> dict | None:
        raise NotImplementedError

    def save_deployment(self, record: dict) -> None:
        raise NotImplementedError

    def delete_deployment(self, deployment_id: str) -> None:
        raise NotImplementedError

    def deployments(self) -> list[dict]:
        raise NotImplementedError

    def save_instance(self, record: dict) -> None:
        raise NotImplementedError

    def delete_instance(self, task_id: str) -> None:
        raise NotImplementedError

    def instances(self) -> list[dict]:
        raise NotImplementedError

    def save_failure(self, app_id: str, failure: dict) -> None:
        raise NotImplementedError

    def failures(self) -> dict[str, dict]:
        raise NotImplementedError

    def save_group(self, group: dict) -> None:
        """Group settings ({"id", "dependencies", "version"}); apps hold the rest."""
        raise NotImplementedError

    def delete_group(self, group_id: str) -> None:
        raise NotImplementedError

    def groups(self) -> list[dict]:
        raise NotImplementedError

    def framework_id(self) -> str | None:
        raise NotImplementedError

    def save_framework_id(self, value: str | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# -- backends: bytes under "category/name" keys -------------------------------------------

class KeyValueBackend:
    """The contract every backend meets. `category` may hold slashes; `name` may not."""

    def get(self, category: str, name: str) -> bytes | None:
        raise NotImplementedError

    def put(self, category: str, name: str, data: bytes, sync: bool = True) -> None:
        """`sync=False`: atomic but not flushed to disk (state that reconciliation repairs)."""
        raise NotImplementedError

    def delete(self, category: str, name: str) -> None:
        raise NotImplementedError

    def delete_category(self, category: str) -> None:
        raise NotImplementedError

    def names(self, category: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryStore(KeyValueBackend):
    def __init__(self):
        self._data: dict[str, dict[str, bytes]] = {}

    def get(self, category, name):
        return self._data.get(category, {}).get(name)

    def put(self, category, name, data, sync=True):
        self._data.setdefault(category, {})[name] = bytes(data)

    def delete(self, category, name):
        self._data.get(category, {}).pop(name, None)

    def delete_category(self, category):
        for key in [k for k in self._data if k == category or k.startswith(category + "/")]:
            del self._data[key]

    def names(self, category):
        return list(self._data.get(category, {}))


class FileStore(KeyValueBackend):
    """One file per key under `root`: written to a temporary file, then renamed over.

    A reader (or a restart after SIGKILL) sees the old value or the new one, never
    half of one; `sync` adds an fsync of the file and its directory (power loss).
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _dir(self, category: str) -> str:
        return os.path.join(self.root, *category.split("/"))

    def get(self, category, name):
        try:
            with open(os.path.join(self._dir(category), name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, category, name, data, sync=True):
        # Readable by Marathon's user only: app definitions may hold secrets in their env.
        write_atomically(os.path.join(self._dir(category), name), data, mode=0o600, sync=sync)

    def delete(self, category, name):
        try:
            os.unlink(os.path.join(self._dir(category), name))
        except FileNotFoundError:
            pass

    def delete_category(self, category):
        import shutil

        shutil.rmtree(self._dir(category), ignore_errors=True)

    def names(self, category):
        try:
            return [n for n in os.listdir(self._dir(category))
                    if not n.startswith(TEMPORARY_PREFIX) and os.path.isfile(os.path.join(self._dir(category), n))]
        except FileNotFoundError:
            return []


# -- the one Storage over any backend ------------------------------------------------------

def key_of(app_id: str) -> str:
    """`/a/b` → `a_b` (ids never hold `_`, so this is reversible)."""
    return app_id.strip("/").replace("/", "_")


def _id_of(key: str) -> str:
    return "/" + key.replace("_", "/")


class KeyValueStorage(Storage):
    def __init__(self, backend: KeyValueBackend):
        self.backend = backend
        # The API threads read versions while the core writes; the backends are not all thread-safe.
        self._lock = threading.RLock()

    def _put(self, category, name, value, sync=True):
        with self._lock:
            self.backend.put(category, name, json.dumps(value, separators=(",", ":")).encode(), sync)

    def _get(self, category, name):
        with self._lock:
            data = self.backend.get(category, name)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            log.error("ignoring unreadable %s/%s in storage", category, name)
            return None

    def _all(self, category) -> list:
        with self._lock:
            names = self.backend.names(category)
        return [v for v in (self._get(category, n) for n in sorted(names)) if v is not None]

    def save_app(self, app):
        key = key_of(app["id"])
        with self._lock:
            self._put(f"app-versions/{key}", app["version"], app)
            self._put("apps", key, app)
            versions = sorted(self.backend.names(f"app-versions/{key}"))
            for old in versions[:-self.max_versions]:
                self.backend.delete(f"app-versions/{key}", old)

    def delete_app(self, app_id):
        key = key_of(app_id)
        with self._lock:
            self.backend.delete("apps", key)
            self.backend.delete_category(f"app-versions/{key}")
            self.backend.delete("failures", key)

    def apps(self):
        return self._all("apps")

    def app_versions(self, app_id):
        with self._lock:
            return sorted(self.backend.names(f"app-versions/{key_of(app_id)}"), reverse=True)

    def app_version(self, app_id, version):
        if "/" in version or version.startswith("."):
            return None
        return self._get(f"app-versions/{key_of(app_id)}", version)

    def save_deployment(self, record):
        self._put("deployments", record["id"], record)

    def delete_deployment(self, deployment_id):
        with self._lock:
            self.backend.delete("deployments", deployment_id)

    def deployments(self):
        return self._all("deployments")

    def save_instance(self, record):
        # Not fsynced: after a crash reconciliation with the master repairs states.
        self._put("instances", record["task_id"], record, sync=False)

    def delete_instance(self, task_id):
        with self._lock:
            self.backend.delete("instances", task_id)

    def instances(self):
        return self._all("instances")

    def save_failure(self, app_id, failure):
        self._put("failures", key_of(app_id), failure, sync=False)

    def failures(self):
        with self._lock:
            names = self.backend.names("failures")
        return {_id_of(n): v for n in names if (v := self._get("failures", n)) is not None}

    def save_group(self, group):
        self._put("groups", key_of(group["id"]) or "_", group)

    def delete_group(self, group_id):
        with self._lock:
            self.backend.delete("groups", key_of(group_id) or "_")

    def groups(self):
        return self._all("groups")

    def framework_id(self):
        value = self._get("framework-id", "id")
        return value.get("value") if isinstance(value, dict) else None

    def save_framework_id(self, value):
        if value:
            self._put("framework-id", "id", {"value": value})
        else:
            with self._lock:
                self.backend.delete("framework-id", "id")

    def close(self):
        self.backend.close()


class InMemoryStorage(KeyValueStorage):
    def __init__(self):
        super().__init__(MemoryStore())


class FileStorage(KeyValueStorage):
    def __init__(self, root: str):
        super().__init__(FileStore(root))
