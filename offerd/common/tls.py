"""TLS contexts for offerd's HTTP servers and clients.

One place builds every `ssl.SSLContext`, so servers and clients agree on the
floor (TLS 1.2) and every mistake in a certificate, key or CA file is reported
with the file's name and what to do, instead of an OpenSSL error code.
"""

from __future__ import annotations

import os
import ssl


class TlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names it."""


def _readable(path: str, what: str, flag: str) -> str:
    if not path:
        raise TlsError(f"{what}: no file given; pass {flag}=PATH")
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise TlsError(f"{what} {path}: no such file; check {flag}")
    if os.path.isdir(path):
        raise TlsError(f"{what} {path}: is a directory, expected a PEM file; check {flag}")
    if not os.access(path, os.R_OK):
        raise TlsError(f"{what} {path}: not readable by this user; fix its permissions")
    return path


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side context (TLS 1.2+) serving `cert_file` (PEM, the chain may
    follow the certificate) with the private key in `key_file` (PEM)."""
    if bool(cert_file) != bool(key_file):
        raise TlsError("TLS needs both --ssl_cert_file and --ssl_key_file (only one was given)")
    cert = _readable(cert_file, "TLS certificate", "--ssl_cert_file")
    key = _readable(key_file, "TLS private key", "--ssl_key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(_explain_cert_chain(cert, key, exc)) from None
    except OSError as exc:
        raise TlsError(f"TLS certificate {cert} / key {key}: cannot read: {exc}") from None
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client-side context (TLS 1.2+) that verifies the server's chain and
    hostname: against `ca_file` (PEM bundle) when given, else the system's CAs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        path = _readable(ca_file, "TLS CA file", "--ssl_ca_file")
        try:
            context.load_verify_locations(cafile=path)
        except ssl.SSLError as exc:
            raise TlsError(f"TLS CA file {path}: not a PEM certificate bundle ({exc.reason or exc}); "
                           "pass the CA certificate that signed the servers' certificates") from None
    # create_default_context already sets these; stated so nobody weakens them by accident.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _explain_cert_chain(cert: str, key: str, exc: ssl.SSLError) -> str:
    reason = str(exc.reason or exc).upper()
    if "KEY_VALUES_MISMATCH" in reason:
        return (f"TLS private key {key} does not belong to certificate {cert}: "
                "pass the key the certificate was issued for")
    if not _pem_has(cert, b"-----BEGIN CERTIFICATE-----"):
        return f"TLS certificate {cert}: not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
    if _pem_has(key, b"ENCRYPTED"):
        return f"TLS private key {key}: encrypted with a passphrase; pass an unencrypted PEM key"
    if not _pem_has(key, b"PRIVATE KEY-----"):
        return f"TLS private key {key}: not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')"
    return f"TLS certificate {cert} / key {key}: cannot be used ({exc.reason or exc}); check both are PEM and match"


def _pem_has(path: str, marker: bytes) -> bool:
    try:
        with open(path, "rb") as stream:
            return marker in stream.read(1024 * 1024)
    except OSError:
        return False
