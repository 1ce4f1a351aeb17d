"""How a scheduler driver finds and reaches its master safely.

The driver's arguments win; what they leave out comes from the client.conf that
``OFFERD_CONFIG`` names (as ``offerd`` commands read it) and, for the master's
CURVE public key, from ``OFFERD_MASTER_PUBLIC_KEY``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from offerd.common import client_config, curve, tls
from offerd.common import credentials as creds

MASTER_PUBLIC_KEY_VARIABLE = "OFFERD_MASTER_PUBLIC_KEY"


@dataclass(frozen=True)
class MasterLink:
    """Where the master is and how to reach it safely, once the arguments,
    OFFERD_CONFIG and OFFERD_MASTER_PUBLIC_KEY have been combined."""

    master: str
    credential: creds.Credential | None = None
    server_key: bytes | None = None
    ca_file: str | None = None

    @classmethod
    def resolve(cls, master, credential, master_public_key, ca_file, environ=None) -> "MasterLink":
        """Arguments win; then OFFERD_MASTER_PUBLIC_KEY (the key only); then
        client.conf. Raises ValueError saying what to fix."""
        environ = os.environ if environ is None else environ
        try:
            config = client_config.from_environment(environ)
        except client_config.ClientConfigError as exc:
            raise ValueError(f"{client_config.ENV}: {exc}") from None
        master = master or config.master or config.zk
        if not master:
            raise ValueError("no master to connect to: pass master='host:port' (or 'zk://...') to the driver, "
                             f"or set {client_config.ENV} to a client.conf that names one")
        if credential is not None:
            secret = credential.secret
            if isinstance(secret, bytes):
                secret = secret.decode("utf-8", "replace")
            try:
                found = creds.Credential(credential.principal, secret)
            except creds.CredentialError as exc:
                raise ValueError(f"credential: {exc}") from None
        else:
            try:
                found = config.credential
            except client_config.ClientConfigError as exc:
                raise ValueError(str(exc)) from None
        key_text = master_public_key or environ.get(MASTER_PUBLIC_KEY_VARIABLE) or config.master_public_key
        server_key = None
        if key_text:
            if isinstance(key_text, bytes):
                key_text = key_text.decode("ascii", "replace")
            try:
                server_key = curve.public_key(key_text)
            except curve.KeyFileError as exc:
                raise ValueError(f"master public key: {exc}") from None
        return cls(str(master), found, server_key, ca_file or config.ca_file)

    def ssl_context(self):
        """The TLS context for https master lookups, or None without a CA."""
        if not self.ca_file:
            return None
        try:
            return tls.client_context(self.ca_file)
        except (ValueError, OSError) as exc:  # tls names the file and what is wrong with it
            raise ValueError(f"ca_file {self.ca_file}: {exc}") from None
