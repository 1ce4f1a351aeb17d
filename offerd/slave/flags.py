"""The slave's flags: Mesos' agent flag names and defaults where Mesos has them."""

from __future__ import annotations

import argparse
import os
from typing import Iterable

from offerd.common.flags import Flag, FlagError, add_flags, boolean, duration, positive_int, resolve_flags, tls_flags
from offerd.slave.sandbox import environment_variables

CONTAINERIZERS = ("posix", "simulated")

# What --isolation may name. The posix isolators report usage
# and enforce nothing, as in Mesos; the others need root (and cgroups).
KNOWN_ISOLATORS = frozenset({
    "posix/cpu", "posix/mem", "posix/disk",
    "cgroups/cpu", "cgroups/mem", "cgroups/pids", "cgroups/all",
    "namespaces/pid", "namespaces/uts", "namespaces/ipc", "namespaces/net",
    "filesystem/posix", "filesystem/linux",
})
IMPLEMENTED_ISOLATORS = KNOWN_ISOLATORS - {"posix/disk"}
RECOVER_MODES = ("reconnect", "cleanup")


def recover_mode(text: str) -> str:
    value = str(text).strip().lower()
    if value not in RECOVER_MODES:
        raise ValueError(f"use one of {', '.join(RECOVER_MODES)}")
    return value


def byte_size(text) -> int:
    """'2GB', '512MB', '100KB' or a number of bytes."""
    value = str(text).strip().upper()
    for suffix, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024), ("B", 1)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def fraction(text) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def containerizer(text: str) -> str:
    value = str(text).strip().lower()
    if value not in CONTAINERIZERS:
        raise ValueError(f"unknown containerizer {text!r}: use one of {', '.join(CONTAINERIZERS)}")
    return value


def isolation(text: str) -> str:
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN_ISOLATORS]
    if unknown:
        raise ValueError(f"unknown isolator(s) {', '.join(unknown)}: known are {', '.join(sorted(KNOWN_ISOLATORS))}")
    return ",".join(names)


SLAVE_FLAGS: list[Flag] = [
    Flag("master", None,
         "HOST:PORT of the leading master's HTTP address, e.g. 127.0.0.1:5050 (required). "
         "The slave learns the master's ZeroMQ endpoint from GET /master/info.",
         metavar="HOST:PORT"),
    Flag("ip", "127.0.0.1",
         "IP address to listen on, and the address the master and executors use to reach this slave."),
    Flag("hostname", None,
         "Hostname advertised to the master and shown in offers "
         "(default: the name --ip resolves to, else the system's hostname)."),
    Flag("port", 5051, "Port of the HTTP server (state, sandbox files, usage); 0 picks a free port.",
         positive_int, "PORT"),
    Flag("executor_port", 0,
         "ZeroMQ port that executors connect to; 0 means --port + 1000 (6051), or a free port when --port is 0.",
         positive_int, "PORT"),
    Flag("work_dir", "/tmp/offerd/slave",
         "Directory for sandboxes (work_dir/slaves/...) and checkpoints (work_dir/meta/...)."),
    Flag("resources", None,
         "Total consumable resources, e.g. 'cpus:4;mem:8192;disk:40000;ports:[31000-32000]', a JSON array of "
         "Resource objects, or file:///path holding either. Resources not named here are detected: "
         "cpus = cores, mem = total - 1GB (50%% below 2GB), disk = work_dir filesystem - 5GB (50%% below 10GB), "
         "ports = [31000-32000]."),
    Flag("attributes", None, "Attributes of this machine for placement, e.g. 'rack:2;zone:us-east-1a;ssd:true'."),
    Flag("containerizer", "posix",
         "How tasks run: 'posix' runs real processes; 'simulated' runs none (a task running 'sleep N' "
         "finishes after N seconds, any other at once), for benchmarks.",
         containerizer),
    Flag("isolation", "posix/cpu,posix/mem",
         "Comma-separated isolators. posix/cpu and posix/mem report usage and enforce nothing; "
         "cgroups/cpu, cgroups/mem, cgroups/pids (or cgroups/all), namespaces/pid, namespaces/uts, "
         "namespaces/ipc and filesystem/linux isolate (root; cgroup v1 or v2).", isolation),
    Flag("cgroups_hierarchy", "/sys/fs/cgroup",
         "Where the cgroup hierarchies are mounted: a cgroup2 mount here means cgroup v2, else the v1 "
         "controller mounts below it are used."),
    Flag("cgroups_root", "offerd",
         "Name of the cgroup, in each hierarchy, under which every container's cgroup is made."),
    Flag("cgroups_enable_cfs", False,
         "Hold each container's CPU use at its cpus with a CFS quota (cgroups/cpu), not just shares.", boolean),
    Flag("cgroups_limit_swap", False,
         "Limit memory plus swap, not just memory, to the container's mem (cgroups/mem).", boolean),
    Flag("switch_user", True,
         "Run tasks as CommandInfo.user or the framework's user (which must exist here); false runs them "
         "as the slave's user. Only takes effect when the slave runs as root.", boolean),
    Flag("executor_environment_variables", None,
         "A JSON object (or the path of a file holding one) of the environment variables every executor "
         "and task starts with, instead of the default taken from the slave (PATH, LANG, LC_ALL, and "
         "PYTHONPATH and VIRTUAL_ENV for executors written with offerd's SDK). The "
         "slave's other variables never reach tasks; a task's own CommandInfo environment wins.",
         environment_variables, "JSON"),
    Flag("fetcher_cache_dir", "/tmp/offerd/fetch",
         "Directory of the fetcher's cache of URIs that ask for caching."),
    Flag("fetcher_cache_size", "2GB", "Largest size of the fetcher's cache (LRU eviction).", byte_size, "BYTES"),
    Flag("recover", "reconnect",
         "After a restart: 'reconnect' finds the containers of checkpointing frameworks still running and "
         "keeps them; 'cleanup' kills them and reports their tasks.", recover_mode),
    Flag("gc_delay", "1weeks",
         "How long a finished sandbox is kept before it is removed (sooner when the disk fills).",
         duration, "DURATION"),
    Flag("gc_disk_headroom", 0.1,
         "Fraction of the work_dir disk to keep free: a fuller disk removes sandboxes sooner "
         "(max age = gc_delay x max(0, 1 - headroom - disk use)).", fraction),
    Flag("disk_watch_interval", "1mins", "How often disk use is checked for sandbox GC.", duration, "DURATION"),
    Flag("executor_shutdown_grace_period", "5secs",
         "Time a custom executor has to exit after it is told to shut down, before it is killed "
         "(ExecutorInfo.shutdown_grace_period overrides it).", duration, "DURATION"),
    Flag("executor_registration_timeout", "1mins",
         "Time a custom executor has to subscribe after it is launched before it is killed.",
         duration, "DURATION"),
    Flag("status_update_retry_interval", "10secs",
         "First interval before an unacknowledged status update is sent again; it doubles on each retry "
         "up to --status_update_retry_max.", duration, "DURATION"),
    Flag("status_update_retry_max", "10mins", "Longest interval between resends of a status update.",
         duration, "DURATION"),
    Flag("registration_backoff_factor", "1secs",
         "Registration with the master is retried after a random delay up to this factor doubled per "
         "attempt, capped at 1 minute.", duration, "DURATION"),
    Flag("simulate", 0,
         "Host this many simulated slaves in this process (one connection, id and work_dir/sim-<i> each); "
         "implies --containerizer=simulated.", positive_int, "N"),
    Flag("heartbeat_interval", "1secs",
         "Interval of heartbeats to the master; 5 missed echoes mean the master is gone.", duration,
         "DURATION"),
    # -- security (docs/security.md) --
    Flag("credential", None, "File with this slave's principal and secret (one 'principal secret' line, or "
         'JSON {"principal": ..., "secret": ...}), proven to a master that authenticates slaves.',
         metavar="PATH"),
    Flag("master_public_key", None, "The master's CURVE public key (40 Z85 characters, or its .key file from "
         "'offerd keygen'): the link to the master is encrypted and only that master is accepted.",
         metavar="KEY|PATH"),
    Flag("zmq_key_file", None, "CURVE key pair of the executor endpoint (made on first start; "
         "default: work_dir/meta/executor.key_secret). Executors get its public key in their environment."),
    Flag("http_credentials", None, "Principals and secrets for the slave's HTTP Basic authentication "
         "(the master's --credentials format).", metavar="PATH"),
    Flag("authenticate_http_readonly", False, "HTTP Basic authentication for the read-only endpoints "
         "(state, files, usage).", boolean),
    Flag("authenticate_http_readwrite", False, "HTTP Basic authentication for the endpoints that change "
         "something.", boolean),
    Flag("acls", None, "Authorization rules in Mesos' ACL JSON (or a file): access_sandboxes, view_*, "
         "view_flags.", metavar="JSON|PATH"),
    *tls_flags("the slave's HTTP endpoints", "the master's HTTPS (the master's address is then reached over https)",
               "authentication and encryption"),
    Flag("logging_level", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR."),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offerd slave",
        description="Run an offerd slave (agent): offers this machine's resources to the master and runs tasks.",
    )
    add_flags(parser, SLAVE_FLAGS)
    return parser


def validate(flags: argparse.Namespace) -> argparse.Namespace:
    """Typed values (defaults are Mesos-style text such as "5secs") and the
    cross-flag rules; raises FlagError with what to change. Idempotent."""
    for flag in SLAVE_FLAGS:
        value = getattr(flags, flag.name, flag.default)
        try:
            setattr(flags, flag.name, None if value is None else flag.type(value))
        except (TypeError, ValueError) as exc:
            raise FlagError(f"--{flag.name}={value}: {exc}") from None
    if not flags.master:
        raise FlagError("--master is required: the master's HOST:PORT, e.g. --master=127.0.0.1:5050")
    if flags.simulate:
        flags.containerizer = "simulated"
    if not 0 <= flags.port <= 65535 or not 0 <= flags.executor_port <= 65535:
        raise FlagError("--port and --executor_port must be between 0 and 65535")
    if flags.status_update_retry_interval <= 0:
        raise FlagError("--status_update_retry_interval must be positive")
    if flags.status_update_retry_max < flags.status_update_retry_interval:
        raise FlagError("--status_update_retry_max must be at least --status_update_retry_interval")
    if flags.heartbeat_interval <= 0:
        raise FlagError("--heartbeat_interval must be positive")
    flags.work_dir = os.path.abspath(flags.work_dir)
    return flags


def parse_slave_flags(argv: Iterable[str] | None = None, environ: dict[str, str] | None = None,
                      config_root: str | None = None) -> argparse.Namespace:
    """Flags from the command line, OFFERD_* variables, /etc/offerd/slave/<flag>, defaults."""
    namespace = build_parser().parse_args(list(argv) if argv is not None else None)
    return validate(resolve_flags(namespace, SLAVE_FLAGS, "slave", environ, config_root))


def make_flags(**values) -> argparse.Namespace:
    """Defaults overridden by `values`, without reading the environment: for
    embedding a slave (tests, `offerd local`)."""
    namespace = resolve_flags(argparse.Namespace(), SLAVE_FLAGS, "slave", environ={}, config_root="/nonexistent")
    for name, value in values.items():
        if not any(flag.name == name for flag in SLAVE_FLAGS):
            raise FlagError(f"unknown slave flag --{name}")
        setattr(namespace, name, value)
    return validate(namespace)


def unimplemented_isolators(flags: argparse.Namespace) -> list[str]:
    return [name for name in flags.isolation.split(",") if name and name not in IMPLEMENTED_ISOLATORS]
