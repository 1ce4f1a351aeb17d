"""Principals and their secrets, in Mesos' file formats, and the proofs built on them.

A master's ``--credentials`` file lists every principal it accepts, either as
Mesos' JSON::

    {"credentials": [{"principal": "sched", "secret": "s3cret"}]}

or as one ``principal secret`` pair per line. A slave's (or a scheduler's)
``--credential`` file holds its own single pair, in either form. A flag value may
also be ``file:///path``, as Mesos takes it.

The proof over ZeroMQ is a challenge-response in the manner of CRAM-MD5, with
HMAC-SHA256: the server sends a fresh random nonce, the client answers
``HMAC(secret, server nonce + client nonce + principal)``. The secret never
crosses the wire, and a captured answer is useless against the next nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field

NONCE_BYTES = 32


class CredentialError(ValueError):
    """A credentials file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Credential:
    """One principal and its secret. The secret never appears in ``repr``."""

    principal: str
    secret: str = field(repr=False)

    def __post_init__(self):
        if not self.principal or any(c.isspace() for c in self.principal):
            raise CredentialError(f"invalid principal {self.principal!r}: it must be non-empty, without spaces")
        if not self.secret:
            raise CredentialError(f"principal {self.principal!r} has an empty secret")


def _read(source: str) -> tuple[str, str]:
    """The text of a flag value that names a file (plain path or file://)."""
    path = source[len("file://"):] if source.startswith("file://") else source
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), path
    except OSError as exc:
        raise CredentialError(f"cannot read credentials file {path}: {exc.strerror or exc}") from None


def parse_credentials(text: str, where: str = "credentials") -> list[Credential]:
    """Every pair in Mesos' JSON or text form; raises CredentialError naming the problem."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError as exc:
            raise CredentialError(f"{where}: invalid JSON: {exc}") from None
        entries = document.get("credentials") if isinstance(document, dict) else None
        if entries is None and isinstance(document, dict) and "principal" in document:
            entries = [document]  # a single --credential in JSON
        if not isinstance(entries, list):
            raise CredentialError(f'{where}: expected {{"credentials": [{{"principal": ..., "secret": ...}}]}}')
        out = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("principal"), str) \
                    or not isinstance(entry.get("secret"), str):
                raise CredentialError(f"{where}: credentials[{index}] needs string 'principal' and 'secret'")
            out.append(Credential(entry["principal"], entry["secret"]))
        return out
    out = []
    for number, line in enumerate(stripped.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise CredentialError(f"{where}: line {number}: expected 'principal secret'")
        out.append(Credential(parts[0], parts[1].strip()))
    return out


def load_credentials(source: str) -> dict[str, str]:
    """principal -> secret from a ``--credentials`` file."""
    text, path = _read(source)
    credentials = parse_credentials(text, path)
    if not credentials:
        raise CredentialError(f"{path}: no credentials in the file")
    table: dict[str, str] = {}
    for credential in credentials:
        if credential.principal in table:
            raise CredentialError(f"{path}: principal {credential.principal!r} appears twice")
        table[credential.principal] = credential.secret
    return table


def load_credential(source: str) -> Credential:
    """A process's own ``--credential``: the file's first pair."""
    text, path = _read(source)
    credentials = parse_credentials(text, path)
    if not credentials:
        raise CredentialError(f"{path}: no credential in the file")
    return credentials[0]


# -- challenge-response ---------------------------------------------------------


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def prove(secret: str, server_nonce: bytes, client_nonce: bytes, principal: str) -> bytes:
    """The client's answer to a challenge (see the module docstring)."""
    message = server_nonce + client_nonce + principal.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def verify(secret: str | None, server_nonce: bytes, client_nonce: bytes, principal: str, proof: bytes) -> bool:
    """Whether `proof` answers the challenge; always as slow for unknown principals."""
    expected = prove(secret if secret is not None else "\0unknown", server_nonce, client_nonce, principal)
    return hmac.compare_digest(expected, proof) and secret is not None


# -- HTTP Basic -------------------------------------------------------------------


def basic_auth_principal(header: str | None, credentials: dict[str, str]) -> str | None:
    """The principal an ``Authorization: Basic`` header proves, or None."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    principal, sep, secret = decoded.partition(":")
    if not sep:
        return None
    expected = credentials.get(principal)
    # Compared even for unknown principals so timing does not tell which exist.
    ok = hmac.compare_digest((expected or "\0").encode(), secret.encode())
    return principal if ok and expected is not None else None


def basic_auth_header(principal: str, secret: str) -> str:
    token = base64.b64encode(f"{principal}:{secret}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"
