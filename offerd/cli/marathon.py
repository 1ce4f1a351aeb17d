"""`offerd marathon`: the Marathon-like framework with its REST API on :8080."""

from __future__ import annotations

import argparse
import sys

from offerd.common.flags import Flag, FlagError, add_flags, duration, positive_int, resolve_flags, tls_flags
from offerd.common.logs import setup_logging

MARATHON_FLAGS = [
    Flag("master", "127.0.0.1:5050", "The master: host:port or zk://host:port/path."),
    Flag("http_port", 8080, "Port of the REST API (0 picks a free one).", int),
    Flag("hostname", "127.0.0.1", "Address the API binds and advertises."),
    Flag("zk", "", "ZooKeeper URL for state and leader election, zk://host:port/marathon."),
    Flag("zk_session_timeout", "10secs", "ZooKeeper session timeout: how soon a standby takes over "
         "from a leader that died.", duration),
    Flag("work_dir", "/tmp/offerd/marathon",
         "Directory of the local state store (apps, versions, deployments, tasks, framework id) "
         "when --zk is not given; '' keeps state in memory only."),
    Flag("framework_name", "marathon", "Name of the framework."),
    Flag("mesos_role", "*", "Role to receive resources in."),
    Flag("mesos_user", "", "The user tasks run as unless an app names one (FrameworkInfo.user); default: "
         "the user running this process. Masters whose ACLs refuse root (run_tasks) need a non-root one."),
    Flag("decline_offer_duration", "120secs", "How long declined offers stay away.", duration),
    Flag("min_revive_offers_interval", "2secs", "Least time between two revives.", duration),
    Flag("max_instances_per_offer", 100, "Most instances launched on one offer.", positive_int),
    Flag("reconciliation_interval", "10mins", "How often to reconcile tasks with the master.", duration),
    Flag("kill_retry_timeout", "10secs", "How long a kill may go unanswered before it is sent again (a kill "
         "sent while the master was away, or lost with a slave, is not the end of it).", duration),
    Flag("failover_timeout", "1weeks", "How long the master keeps our tasks while we are gone "
         "(a restart within it adopts them).", duration),
    Flag("max_event_streams", 8, "Most /v2/events streams open at once; one more gets 503. Each holds one of "
         "the API's worker threads, and the API keeps at least as many for itself.", positive_int),
    Flag("event_stream_max_outstanding_messages", 1024, "Events a /v2/events client may fall behind before "
         "it is disconnected (a slow consumer is dropped, not buffered without bound). Above Marathon's 50: "
         "a burst (reconciling many tasks) is published faster than a stream's thread gets to run.",
         positive_int),
    Flag("logging_level", "INFO", "INFO, WARNING or ERROR."),
    # Security, with Marathon's flag names where Marathon has them.
    Flag("http_credentials", None, "Principals and secrets for HTTP Basic authentication of the REST API and UI "
         "(Mesos' credentials file: JSON or one 'principal secret' per line). When set, every endpoint but "
         "/ping needs credentials.", metavar="PATH"),
    Flag("http_operator_principals", None, "Comma-separated principals that may change things (POST, PUT, "
         "PATCH, DELETE); the others may only read. Unset: every authenticated principal.", metavar="P1,P2"),
    Flag("mesos_authentication_principal", None, "The principal this framework proves to the master (and its "
         "FrameworkInfo.principal).", metavar="PRINCIPAL"),
    Flag("mesos_authentication_secret_file", None, "File holding the secret of "
         "--mesos_authentication_principal.", metavar="PATH"),
    Flag("master_public_key", None, "The master's CURVE public key (z85 text or a NAME.key file from "
         "'offerd keygen'): the link to the master is encrypted and a fake master is refused.", metavar="KEY|PATH"),
    *tls_flags("the REST API and UI", "an https master (and the leading instance when proxying)",
               "--http_credentials and HTTPS (anyone who reaches the port can then deploy anything)"),
]


def security_settings(flags) -> dict:
    """Config fields from the security flags; raises ValueError saying what to fix."""
    from offerd.common.credentials import load_credentials

    out: dict = {"insecure": flags.insecure}
    if flags.http_credentials:
        out["http_credentials"] = load_credentials(flags.http_credentials)
    if flags.http_operator_principals is not None:
        names = frozenset(n.strip() for n in flags.http_operator_principals.split(",") if n.strip())
        if not names:
            raise ValueError("--http_operator_principals is empty: name at least one principal, or leave it unset")
        out["http_operator_principals"] = names
    principal, secret_file = flags.mesos_authentication_principal, flags.mesos_authentication_secret_file
    if bool(principal) != bool(secret_file):
        raise ValueError("--mesos_authentication_principal and --mesos_authentication_secret_file go together")
    if principal:
        out["mesos_authentication_principal"] = principal
        out["mesos_authentication_secret"] = _read_secret(secret_file)
    if bool(flags.ssl_cert_file) != bool(flags.ssl_key_file):
        raise ValueError("--ssl_cert_file and --ssl_key_file go together (the certificate and its private key)")
    # Unusable key or CA files are refused here, before anything starts, with what to fix.
    if flags.master_public_key:
        from offerd.common.curve import public_key

        public_key(flags.master_public_key)
    if flags.ssl_ca_file:
        from offerd.common.tls import client_context

        client_context(flags.ssl_ca_file)
    for name in ("master_public_key", "ssl_cert_file", "ssl_key_file", "ssl_ca_file"):
        if getattr(flags, name):
            out[name] = getattr(flags, name)
    return out


def _read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read --mesos_authentication_secret_file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ValueError(f"--mesos_authentication_secret_file {path} is empty")
    return secret


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add_flags(parser, MARATHON_FLAGS)
    parser.set_defaults(handler=run)


def run(args) -> int:
    try:
        flags = resolve_flags(args, MARATHON_FLAGS, "marathon")
    except FlagError as exc:
        print(f"offerd marathon: {exc}", file=sys.stderr)
        return 2
    setup_logging(flags.logging_level)
    try:
        security = security_settings(flags)
    except ValueError as exc:   # CredentialError, KeyFileError and TlsError are ValueErrors
        print(f"offerd marathon: {exc}", file=sys.stderr)
        return 2
    from frameworks.marathon_like.core import Config
    from frameworks.marathon_like.service import MarathonService
    from offerd.cli.daemons import wait_for_signal

    config = Config(master=flags.master, hostname=flags.hostname, http_port=flags.http_port, zk=flags.zk,
                    framework_name=flags.framework_name, mesos_role=flags.mesos_role, mesos_user=flags.mesos_user,
                    decline_offer_duration=flags.decline_offer_duration,
                    min_revive_offers_interval=flags.min_revive_offers_interval,
                    max_instances_per_offer=flags.max_instances_per_offer,
                    reconciliation_interval=flags.reconciliation_interval,
                    kill_retry_timeout=flags.kill_retry_timeout,
                    failover_timeout=flags.failover_timeout, work_dir=flags.work_dir,
                    zk_session_timeout=flags.zk_session_timeout, max_event_streams=flags.max_event_streams,
                    event_stream_max_outstanding_messages=flags.event_stream_max_outstanding_messages,
                    **security)
    from frameworks.marathon_like.api.auth import AuthConfigError
    from frameworks.marathon_like.storage import StorageError
    from offerd.common.exposure import ExposureError

    service = None
    try:
        service = MarathonService(config)
        service.start()
    except (ExposureError, AuthConfigError) as exc:
        print(f"offerd marathon: {exc}", file=sys.stderr)
        if service is not None:
            service.stop()
        return 2
    except (StorageError, OSError, ValueError) as exc:   # also unreadable TLS or key files
        print(f"offerd marathon: {exc}", file=sys.stderr)
        if service is not None:
            service.stop()
        return 1
    try:
        wait_for_signal(service.core.fatal)
    finally:
        service.stop()
    if service.core.fatal_reason:
        print(f"offerd marathon: {service.core.fatal_reason}", file=sys.stderr)
        return 1
    return 0
