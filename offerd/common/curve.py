"""CURVE keys for encrypted ZeroMQ links, and the ZAP handler that names peers.

libzmq's CURVE (CurveZMQ: Curve25519 keys, an authenticated handshake, then
every frame encrypted) protects each ZeroMQ link. A server (the master, a
slave's executor endpoint) holds a key pair; a client knows the server's public
key before it connects, so a fake server cannot complete the handshake, and
brings a fresh key pair of its own for each connection.

Keys live in ZeroMQ's certificate files, as ``offerd keygen`` (and pyzmq's
``zmq.auth.create_certificates``) write them: ``NAME.key`` holds the public
key, ``NAME.key_secret`` both (mode 0600).

Every message a CURVE server receives carries the client's public key as its
``User-Id`` property, set by the ZAP handler here. The transport uses it to
bind a peer's routing id to the key that opened the connection.
"""

from __future__ import annotations

import os
import threading

import logging

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

ZAP_DOMAIN = b"offerd"


class KeyFileError(ValueError):
    """A key file or value that cannot be used; the message says what to do."""


def generate(directory: str, name: str) -> tuple[str, str]:
    """Write NAME.key and NAME.key_secret into `directory`; returns both paths."""
    os.makedirs(directory or ".", exist_ok=True)  # "" for a bare file name: the current directory
    old = os.umask(0o077)
    try:
        public_path, secret_path = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret_path, 0o600)
    os.chmod(public_path, 0o644)
    return public_path, secret_path


def load_key_pair(path: str) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}; make one with 'offerd keygen'") from None
    if secret is None:
        raise KeyFileError(f"{path} holds only a public key; give the .key_secret file made by 'offerd keygen'")
    _check_z85(public, path)
    _check_z85(secret, path)
    return public, secret


def public_key(value: str) -> bytes:
    """A server's public key from a flag: 40 Z85 characters, or a .key/.key_secret file."""
    text = value.strip()
    if len(text) == 40 and not os.path.exists(text):
        key = text.encode("ascii", "replace")
        _check_z85(key, "the key")
        return key
    path = text[len("file://"):] if text.startswith("file://") else text
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{value!r} is neither a 40-character Z85 public key nor a key file: {exc}") from None
    _check_z85(public, path)
    return public


def ensure_key_pair(path: str) -> tuple[bytes, bytes]:
    """Load the key pair at `path` (a .key_secret file), making it on first use."""
    if not os.path.exists(path):
        directory, filename = os.path.split(path)
        generate(directory, filename[: -len(".key_secret")] if filename.endswith(".key_secret") else filename)
        if not filename.endswith(".key_secret"):
            os.replace(os.path.join(directory, filename + ".key_secret"), path)
    return load_key_pair(path)


def _check_z85(key: bytes, where: str) -> None:
    try:
        if len(zmq.utils.z85.decode(key)) != 32:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{where}: not a CURVE key (40 Z85 characters)") from None


# -- ZAP: one handler per ZeroMQ context ----------------------------------------------

_zap_lock = threading.Lock()
_zap: dict[int, tuple[ThreadAuthenticator, int]] = {}


def acquire_zap(context: zmq.Context) -> None:
    """Make sure `context` has a ZAP handler that admits any CURVE client.

    Clients are admitted whatever their key: who they are is proven afterwards
    by the challenge-response over the encrypted link. What the handler adds
    is the client's key as each message's ``User-Id``. Reference-counted:
    every :func:`acquire_zap` needs one :func:`release_zap`.
    """
    with _zap_lock:
        entry = _zap.get(id(context))
        if entry is not None:
            _zap[id(context)] = (entry[0], entry[1] + 1)
            return
        authenticator = ThreadAuthenticator(context, log=logging.getLogger("offerd.zap"))
        authenticator.start()
        authenticator.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        _zap[id(context)] = (authenticator, 1)


def release_zap(context: zmq.Context) -> None:
    with _zap_lock:
        entry = _zap.get(id(context))
        if entry is None:
            return
        authenticator, count = entry
        if count > 1:
            _zap[id(context)] = (authenticator, count - 1)
            return
        del _zap[id(context)]
    authenticator.stop()
