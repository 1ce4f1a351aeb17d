"""A client's view of a secured cluster: ``client.conf``, found through ``OFFERD_CONFIG``.

Like a kubeconfig: one JSON file tells every offerd command and every SDK
driver where the master is and how to talk to it::

    {
      "master": "127.0.0.1:5050",
      "principal": "admin",
      "secret": "...",
      "ca_file": "/path/ca.pem",
      "master_public_key": "<40 Z85 characters>"
    }

``offerd local --secure --work_dir DIR`` writes ``DIR/client.conf``; point
``OFFERD_CONFIG`` at it. Relative paths in the file are relative to the file.
Every field is optional; explicit flags and arguments win over the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from offerd.common.credentials import Credential, CredentialError

ENV = "OFFERD_CONFIG"
FIELDS = ("master", "principal", "secret", "ca_file", "master_public_key", "zk")


class ClientConfigError(ValueError):
    """A client.conf that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ClientConfig:
    path: str | None = None
    master: str | None = None
    principal: str | None = None
    secret: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    master_public_key: str | None = None
    zk: str | None = None

    @property
    def credential(self) -> Credential | None:
        if not self.principal:
            return None
        if not self.secret:
            raise ClientConfigError(f"{self.path}: 'principal' is set but 'secret' is not")
        try:
            return Credential(self.principal, self.secret)
        except CredentialError as exc:
            raise ClientConfigError(f"{self.path}: {exc}") from None

    @property
    def master_url(self) -> str | None:
        """The master's base URL (https when a CA is configured)."""
        if not self.master:
            return None
        if "://" in self.master:
            return self.master.rstrip("/")
        return f"{'https' if self.ca_file else 'http'}://{self.master}"


def load(path: str) -> ClientConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ClientConfigError(f"cannot read {ENV}={path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ClientConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ClientConfigError(f"{path}: expected a JSON object with {', '.join(FIELDS)}")
    unknown = set(document) - set(FIELDS)
    if unknown:
        raise ClientConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}")
    values = {}
    for name in FIELDS:
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise ClientConfigError(f"{path}: '{name}' must be a string")
        values[name] = value
    base = os.path.dirname(os.path.abspath(path))
    if values["ca_file"] and not os.path.isabs(values["ca_file"]):
        values["ca_file"] = os.path.join(base, values["ca_file"])
    return ClientConfig(path=os.path.abspath(path), **values)


def from_environment(environ=None) -> ClientConfig:
    """The config ``OFFERD_CONFIG`` names, or an empty one when it is unset."""
    environ = os.environ if environ is None else environ
    path = environ.get(ENV)
    return load(path) if path else ClientConfig()
