"""Test certificates: a throwaway CA and a server certificate it signed.

`make_ca_and_cert(dir)` writes PEM files for servers on 127.0.0.1/localhost;
`make_self_signed(dir)` a certificate no test CA vouches for (an impostor).
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: str, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(pem)


def _write_cert(path: str, cert) -> None:
    with open(path, "wb") as stream:
        stream.write(cert.public_bytes(serialization.Encoding.PEM))


def _validity(builder):
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=2))


def _server_cert(key, subject_cn: str, issuer_name, issuer_key, hosts):
    names = [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
    builder = _validity(x509.CertificateBuilder()
                        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
                        .issuer_name(issuer_name)
                        .public_key(key.public_key())
                        .serial_number(x509.random_serial_number()))
    builder = (builder
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def make_ca_and_cert(directory: str, hosts: tuple[str, ...] = ("127.0.0.1",)) -> tuple[str, str, str]:
    """Write ca.pem, server.pem, server.key into `directory`; returns their paths
    (ca_file, cert_file, key_file). The server certificate names localhost and `hosts`."""
    os.makedirs(directory, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offerd test CA")])
    ca_cert = (_validity(x509.CertificateBuilder()
                         .subject_name(ca_name).issuer_name(ca_name)
                         .public_key(ca_key.public_key())
                         .serial_number(x509.random_serial_number()))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    server_key = _key()
    server_cert = _server_cert(server_key, "offerd test server", ca_name, ca_key, hosts)
    ca_file = os.path.join(directory, "ca.pem")
    cert_file = os.path.join(directory, "server.pem")
    key_file = os.path.join(directory, "server.key")
    _write_cert(ca_file, ca_cert)
    _write_cert(cert_file, server_cert)
    _write_key(key_file, server_key)
    return ca_file, cert_file, key_file


def make_self_signed(directory: str, hosts: tuple[str, ...] = ("127.0.0.1",)) -> tuple[str, str]:
    """A self-signed server certificate for the same names (cert_file, key_file):
    what an impostor on the same address would present."""
    os.makedirs(directory, exist_ok=True)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")])
    cert = _server_cert(key, "impostor", name, key, hosts)
    cert_file = os.path.join(directory, "impostor.pem")
    key_file = os.path.join(directory, "impostor.key")
    _write_cert(cert_file, cert)
    _write_key(key_file, key)
    return cert_file, key_file
