"""Everything `offerd local --secure` needs to turn security on, in DIR/security/.

A private CA and a server certificate (for 127.0.0.1, localhost and the
cluster's --ip) that every daemon serves HTTPS with; the master's CURVE key
pair; a Mesos credentials file with random secrets for four principals; an ACL
file that gives each principal only what it needs; and DIR/client.conf for the
offerd commands and the SDK (``export OFFERD_CONFIG=DIR/client.conf``).

Principals:
  admin     the operator: may do everything (client.conf uses it)
  readonly  may look (state, flags, quotas, sandboxes) and change nothing
  slave     the slaves' own principal: may register slaves
  marathon  the Marathon-like framework: may register and run tasks, not as root

A second start with the same DIR reuses every file that is still good, so a
client.conf handed out earlier keeps working. Private files are mode 0600 in a
0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import functools
import secrets
import urllib.request
from dataclasses import dataclass

from offerd.common import curve
from offerd.common.acls import ACTIONS
from offerd.common.credentials import CredentialError, basic_auth_header, load_credentials
from offerd.common.durable import write_atomically
from offerd.common.tls import client_context
from offerd.proto import offerd_pb2 as pb

PRINCIPALS = ("admin", "readonly", "slave", "marathon")
OPERATOR = "admin"
# Marathon's tasks run as this user when it is started by root: the ACLs keep them off root.
NON_ROOT_USER = "nobody"
READONLY_ACTIONS = ("view_frameworks", "view_tasks", "view_executors", "view_roles", "view_flags",
                    "access_sandboxes", "get_quotas")
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)
CA_DAYS = 3650
SERVER_DAYS = 825
# A certificate this close to its end is made again at the next start.
RENEW_BEFORE = datetime.timedelta(days=7)


class SetupError(RuntimeError):
    """A file in DIR/security that cannot be read or written; the message says which."""


@dataclass(frozen=True)
class SecureFiles:
    directory: str
    ca_file: str
    cert_file: str
    key_file: str
    master_key_secret: str  # the master's --zmq_key_file
    master_public_key_file: str  # what clients give as --master_public_key
    master_public_key: str  # the same, as its 40 Z85 characters
    credentials_file: str  # the master's --credentials; also the slaves' and Marathon's HTTP credentials
    acls_file: str
    slave_credential_file: str  # the slaves' --credential
    marathon_secret_file: str  # Marathon's --mesos_authentication_secret_file
    secrets: dict

    def secret(self, principal: str) -> str:
        return self.secrets[principal]


# -- small file helpers ---------------------------------------------------------------


def _write_private(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically, created with `mode` from the start."""
    write_atomically(path, data, mode=mode)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


# -- the CA and the server certificate --------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(ca_file: str, ca_key_file: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offerd local CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "offerd")])
    now = _now()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key_file, _key_pem(key))
    _write_private(ca_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_pair(cert_file: str, key_file: str):
    """(certificate, key) from PEM files when both load, belong together and the
    certificate is not about to expire; else None (it is then made again)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem, key_pem = _read(cert_file), _read(key_file)
    if not cert_pem or not key_pem:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError:
        return None
    if certificate.public_key().public_numbers() != key.public_key().public_numbers():
        return None
    if certificate.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    return certificate, key


def _server_names(ip: str) -> tuple[list[str], list[str]]:
    names, ips = list(SERVER_NAMES), list(SERVER_IPS)
    try:
        if str(ipaddress.ip_address(ip)) not in ips:
            ips.append(str(ipaddress.ip_address(ip)))
    except ValueError:
        if ip and ip not in names:
            names.append(ip)  # a host name
    return names, ips


def _server_cert_ok(cert_file: str, key_file: str, ca, names: list[str], ips: list[str]) -> bool:
    from cryptography import x509

    pair = _load_pair(cert_file, key_file)
    if pair is None:
        return False
    certificate = pair[0]
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    covered_ips = {str(a) for a in alternative.get_values_for_type(x509.IPAddress)}
    covered_names = set(alternative.get_values_for_type(x509.DNSName))
    return certificate.issuer == ca[0].subject and set(ips) <= covered_ips and set(names) <= covered_names


def _make_server_cert(cert_file: str, key_file: str, ca, names: list[str], ips: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = _new_key()
    now = _now()
    alternative = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_file, _key_pem(key))
    _write_private(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


# -- credentials and ACLs ---------------------------------------------------------------


def _credentials(path: str) -> dict[str, str]:
    """principal -> secret: the file's pairs, plus fresh secrets for missing principals."""
    table: dict[str, str] = {}
    if os.path.exists(path):
        try:
            table = load_credentials(path)
        except CredentialError:
            table = {}  # unusable: start over (every secret is ours to make)
    changed = False
    for principal in PRINCIPALS:
        if principal not in table:
            table[principal] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        document = {"credentials": [{"principal": p, "secret": s} for p, s in table.items()]}
        _write_private(path, (json.dumps(document, indent=2) + "\n").encode())
    os.chmod(path, 0o600)
    return table


def acl_document() -> dict:
    """The ACLs of a secure local cluster (see the module docstring)."""
    document: dict = {"permissive": False}
    for action, object_field in ACTIONS.items():
        rules = [{"principals": {"values": [OPERATOR]}, object_field: {"type": "ANY"}}]
        if action in READONLY_ACTIONS:
            rules.append({"principals": {"values": ["readonly"]}, object_field: {"type": "ANY"}})
        if action == "register_agents":
            rules.append({"principals": {"values": ["slave"]}, object_field: {"type": "ANY"}})
        if action == "register_frameworks":
            rules.append({"principals": {"values": ["marathon"]}, object_field: {"type": "ANY"}})
        if action == "run_tasks":
            # First match decides: nobody below the operator runs tasks as root.
            rules.append({"principals": {"type": "NONE"}, object_field: {"values": ["root"]}})
            rules.append({"principals": {"values": ["marathon"]}, object_field: {"type": "ANY"}})
        document[action] = rules
    return document


def _write_if_changed(path: str, data: bytes, mode: int) -> None:
    if _read(path) != data:
        _write_private(path, data, mode)
    os.chmod(path, mode)


# -- the whole set ----------------------------------------------------------------------


def prepare(work_dir: str, ip: str = "127.0.0.1") -> SecureFiles:
    """Make (or reuse) every file of DIR/security; raises SetupError naming the file."""
    directory = os.path.join(os.path.abspath(work_dir), "security")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        ca = _load_pair(path("ca.pem"), path("ca.key"))
        fresh_ca = ca is None
        if fresh_ca:
            _make_ca(path("ca.pem"), path("ca.key"))
            ca = _load_pair(path("ca.pem"), path("ca.key"))
        names, ips = _server_names(ip)
        if fresh_ca or not _server_cert_ok(path("server.pem"), path("server.key"), ca, names, ips):
            _make_server_cert(path("server.pem"), path("server.key"), ca, names, ips)
        try:
            public, _ = curve.load_key_pair(path("master.key_secret"))
        except curve.KeyFileError:
            for stale in (path("master.key"), path("master.key_secret")):
                if os.path.lexists(stale):
                    os.unlink(stale)
            curve.generate(directory, "master")
            public, _ = curve.load_key_pair(path("master.key_secret"))
        table = _credentials(path("credentials.json"))
        _write_if_changed(path("slave.credential"), f"slave {table['slave']}\n".encode(), 0o600)
        _write_if_changed(path("marathon.secret"), table["marathon"].encode(), 0o600)
        _write_if_changed(path("acls.json"), (json.dumps(acl_document(), indent=2) + "\n").encode(), 0o644)
    except OSError as exc:
        raise SetupError(f"cannot prepare {directory}: {exc}; check that the --work_dir is writable") from None
    return SecureFiles(
        directory=directory, ca_file=path("ca.pem"), cert_file=path("server.pem"), key_file=path("server.key"),
        master_key_secret=path("master.key_secret"), master_public_key_file=path("master.key"),
        master_public_key=public.decode("ascii"), credentials_file=path("credentials.json"),
        acls_file=path("acls.json"), slave_credential_file=path("slave.credential"),
        marathon_secret_file=path("marathon.secret"), secrets=table,
    )


def write_client_conf(path: str, master: str, files: SecureFiles, principal: str = OPERATOR) -> str:
    """DIR/client.conf (mode 0600: it holds a secret); returns its absolute path."""
    document = {
        "master": master, "principal": principal, "secret": files.secret(principal),
        "ca_file": files.ca_file, "master_public_key": files.master_public_key,
    }
    path = os.path.abspath(path)
    try:
        _write_if_changed(path, (json.dumps(document, indent=2) + "\n").encode(), 0o600)
    except OSError as exc:
        raise SetupError(f"cannot write {path}: {exc}") from None
    return path


def daemon_args(files: SecureFiles, process: str) -> list[str]:
    """The security flags of one daemon of the cluster: `process` is master, slave,
    simulated (a fleet of simulated slaves) or marathon."""
    tls = [f"--ssl_cert_file={files.cert_file}", f"--ssl_key_file={files.key_file}", f"--ssl_ca_file={files.ca_file}"]
    if process == "master":
        # Every master of a cluster holds the same key pair: clients know one public key.
        return ["--authenticate_frameworks", "--authenticate_agents", "--authenticate_http_readonly",
                "--authenticate_http_readwrite", f"--credentials={files.credentials_file}",
                f"--acls={files.acls_file}", f"--zmq_key_file={files.master_key_secret}", *tls]
    if process in ("slave", "simulated"):
        # A simulated fleet runs no tasks and has no sandboxes: it takes no --acls.
        acls = [f"--acls={files.acls_file}"] if process == "slave" else []
        return [f"--credential={files.slave_credential_file}", f"--master_public_key={files.master_public_key_file}",
                f"--http_credentials={files.credentials_file}", "--authenticate_http_readonly",
                "--authenticate_http_readwrite", *acls, *tls]
    if process != "marathon":
        raise ValueError(f"unknown process {process!r}")
    user = [f"--mesos_user={NON_ROOT_USER}"] if os.geteuid() == 0 else []
    return [f"--http_credentials={files.credentials_file}", f"--http_operator_principals={OPERATOR}",
            "--mesos_authentication_principal=marathon",
            f"--mesos_authentication_secret_file={files.marathon_secret_file}",
            f"--master_public_key={files.master_public_key_file}", *user, *tls]


def driver_kwargs(files: SecureFiles | None) -> dict:
    """MesosSchedulerDriver's keyword arguments that reach the cluster as the operator
    principal: credential, master_public_key, ca_file ({} for an open cluster)."""
    if files is None:
        return {}
    credential = pb.Credential(principal=OPERATOR, secret=files.secret(OPERATOR).encode())
    return {"credential": credential, "master_public_key": files.master_public_key, "ca_file": files.ca_file}


@functools.lru_cache(maxsize=None)
def _context(ca_file: str):
    return client_context(ca_file)


def operator_urlopen(files: SecureFiles | None, url: str, data: bytes | None = None, timeout: float = 5.0,
                     headers: dict[str, str] | None = None):
    """urllib's urlopen as the operator principal, verifying the cluster's CA (plain
    urlopen for an open cluster)."""
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    if files is None:
        return urllib.request.urlopen(request, timeout=timeout)
    request.add_header("Authorization", basic_auth_header(OPERATOR, files.secret(OPERATOR)))
    return urllib.request.urlopen(request, timeout=timeout, context=_context(files.ca_file))
