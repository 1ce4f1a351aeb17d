"""Where the framework's state lives. In memory for now; a ZooKeeper store (the
HA issue) implements the same interface with Marathon's layout (§4.8)."""

from __future__ import annotations

import copy
from collections import OrderedDict


class Storage:
    """App versions, deployments and the framework id. Values are JSON-able dicts."""

    max_versions = 50

    def save_app(self, app: dict) -> None:
        raise NotImplementedError

    def delete_app(self, app_id: str) -> None:
        raise NotImplementedError

    def app_versions(self, app_id: str) -> list[str]:
        """Stored versions, newest first."""
        raise NotImplementedError

    def app_version(self, app_id: str, version: str) -> dict | None:
        raise NotImplementedError

    def save_deployment(self, plan: dict) -> None:
        raise NotImplementedError

    def delete_deployment(self, deployment_id: str) -> None:
        raise NotImplementedError

    def framework_id(self) -> str | None:
        raise NotImplementedError

    def save_framework_id(self, value: str) -> None:
        raise NotImplementedError


class InMemoryStorage(Storage):
    def __init__(self):
        self._apps: dict[str, OrderedDict] = {}
        self._deployments: dict[str, dict] = {}
        self._framework_id: str | None = None

    def save_app(self, app: dict) -> None:
        versions = self._apps.setdefault(app["id"], OrderedDict())
        versions[app["version"]] = copy.deepcopy(app)
        while len(versions) > self.max_versions:
            versions.popitem(last=False)

    def delete_app(self, app_id: str) -> None:
        self._apps.pop(app_id, None)

    def app_versions(self, app_id: str) -> list[str]:
        return list(reversed(self._apps.get(app_id, {})))

    def app_version(self, app_id: str, version: str) -> dict | None:
        app = self._apps.get(app_id, {}).get(version)
        return copy.deepcopy(app) if app else None

    def save_deployment(self, plan: dict) -> None:
        self._deployments[plan["id"]] = plan

    def delete_deployment(self, deployment_id: str) -> None:
        self._deployments.pop(deployment_id, None)

    def framework_id(self) -> str | None:
        return self._framework_id

    def save_framework_id(self, value: str) -> None:
        self._framework_id = value
