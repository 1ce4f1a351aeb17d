"""The master's flags, with Mesos' names and defaults."""

from __future__ import annotations

import argparse
import re

from offerd.allocator.sorter import SORTERS
from offerd.common.flags import Flag, boolean, duration, positive_int, resolve_flags, tls_flags
from offerd.common.resources import DEFAULT_MIN_ALLOCATABLE, ResourceError, parse_min_allocatable

_SIZE = re.compile(r"^\s*([0-9]+)\s*([a-z]*)\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*(.+)$")


def byte_size(text: str | int) -> int:
    """Bytes from ``16MB``, ``512KB`` or a plain number (Mesos' Bytes flags: 1 KB = 1024 B)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text).lower())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r}: use a number with a unit, e.g. 16MB, 512KB")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def optional_duration(text: str | float | None) -> float | None:
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none")):
        return None
    return duration(text)


def parse_weights(text: str | None) -> dict[str, float]:
    """``prod=3,dev=1`` -> {"prod": 3.0, "dev": 1.0} (--weights)."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        role, eq, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not eq or not role.strip() or not weight > 0:
            raise ValueError(f"invalid weight {item!r}: use ROLE=WEIGHT with a positive weight, e.g. prod=3,dev=1")
        out[role.strip()] = weight
    return out


def removal_rate(text: str | None) -> tuple[int, float] | None:
    """``1/10mins`` -> (1, 600.0): at most N slaves removed per period."""
    if text is None or (isinstance(text, tuple)):
        return text
    if not str(text).strip() or str(text).strip().lower() == "none":
        return None
    match = _RATE.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"invalid rate {text!r}: use N/DURATION, e.g. 1/10mins")
    return int(match.group(1)), duration(match.group(2))


def min_allocatable(text: str) -> str:
    # Checked at startup so a typo fails the command line, not the first allocation.
    try:
        parse_min_allocatable(text)
    except ResourceError as exc:
        raise ValueError(str(exc)) from None
    return text


def weights_flag(text: str) -> str:
    parse_weights(text)  # checked at startup, kept as text
    return text


def sorter_name(text: str) -> str:
    if text not in SORTERS:
        raise ValueError(f"unknown sorter {text!r}; known sorters: {', '.join(sorted(SORTERS))}")
    return text


def registry_flag(text: str) -> str:
    text = text.strip().lower()
    if text == "replicated_log":
        return "zk"
    if text not in ("zk", "in_memory"):
        raise ValueError(f"unknown registry {text!r}: use zk or in_memory")
    return text


def rate_flag(text: str) -> str:
    removal_rate(text)  # checked at startup, kept as text
    return text


MASTER_FLAGS: list[Flag] = [
    Flag("ip", "127.0.0.1", "IP address to listen on (HTTP and ZeroMQ).", metavar="IP"),
    Flag("hostname", None, "Hostname to advertise in MasterInfo and /master/state; "
         "defaults to the machine's hostname."),
    Flag("port", 5050, "HTTP port (web UI, state, metrics, operator API); 0 picks a free port.",
         positive_int, "PORT"),
    Flag("zmq_port", 0, "ZeroMQ port schedulers and slaves connect to; 0 means the HTTP port + 1000 "
         "(or a free port when --port=0).", positive_int, "PORT"),
    Flag("work_dir", None, "Directory for the master's persistent data (registry)."),
    Flag("cluster", None, "Human readable name of the cluster, shown in the web UI."),
    Flag("allocator", "hierarchical", "Name of the allocator to use."),
    Flag("roles", None, "Comma-separated whitelist of roles frameworks may subscribe with "
         "(deprecated in Mesos; unset means any role).", metavar="ROLES"),
    Flag("weights", None, "Initial role weights, e.g. prod=3,dev=1 (the registry's weights, set with "
         "PUT /weights, take precedence).", weights_flag, "ROLE=WEIGHT,..."),
    Flag("role_sorter", "drf", "Order in which roles are offered: drf or random.", sorter_name, "NAME"),
    Flag("framework_sorter", "drf", "Order in which the frameworks of a role are offered: drf or random.",
         sorter_name, "NAME"),
    Flag("allocation_interval", "1secs", "How often the allocator makes offers from all free resources "
         "(it also runs on events: slave added, resources freed, revive).", duration, "DURATION"),
    Flag("allocator_agent_recovery_factor", 0.8, "After a failover with quota set, allocation waits until this "
         "fraction of the registered slaves has reregistered (or --allocator_recovery_timeout passes).", float),
    Flag("allocator_recovery_timeout", "10mins", "Longest allocation pause after a failover with quota set.",
         duration, "DURATION"),
    Flag("offer_timeout", None, "How long an offer may stay outstanding before it is rescinded; "
         "unset means offers never expire.", optional_duration, "DURATION"),
    Flag("zk", None, "ZooKeeper URL for leader election and the registry, e.g. "
         "zk://host1:2181,host2:2181/offerd, zk://user:pass@host:2181/offerd or file:///path (a file "
         "holding the URL).",
         metavar="URL"),
    Flag("quorum", None, "Size of the registry quorum; accepted for compatibility with Mesos (the "
         "registry lives in ZooKeeper, whose own quorum applies).", positive_int, "N"),
    Flag("zk_session_timeout", "10secs", "ZooKeeper session timeout; a leader that loses its session "
         "(or its connection) abdicates by exiting.", duration, "DURATION"),
    Flag("registry", None, "Where the registry lives: zk (default with --zk; in ZooKeeper under the --zk "
         "path) or in_memory (lost on failover). replicated_log is accepted as zk.", registry_flag, "NAME"),
    Flag("slave_reregister_timeout", "10mins", "After a master failover, how long admitted slaves have to "
         "reregister before they are marked unreachable.", duration, "DURATION"),
    Flag("slave_removal_rate_limit", None, "At most this many slaves marked unreachable per period, "
         "e.g. 1/10mins (partition safety); unset means no limit.", rate_flag, "N/DURATION"),
    Flag("framework_timeout", "5secs", "Silence after which a scheduler's connection is considered lost "
         "(its failover_timeout then starts).", duration, "DURATION"),
    Flag("slave_ping_timeout", "15secs", "Time allowed for one slave heartbeat; the slave is considered "
         "lost after --max_slave_ping_timeouts of them.", duration, "DURATION"),
    Flag("max_slave_ping_timeouts", 5, "Number of missed slave heartbeats after which the slave is "
         "marked unreachable.", positive_int, "N"),
    Flag("max_message_bytes", 16 * 1024 * 1024, "Largest message accepted from a peer (e.g. 16MB); "
         "larger ones are refused with an error.", byte_size, "BYTES"),
    Flag("max_receive_queue_bytes", "64MB", "Most bytes of received messages waiting for the master's thread; "
         "above it the master stops reading its socket (senders are slowed down by TCP) until half is "
         "handled.", byte_size, "BYTES"),
    Flag("check_invariants", False, "After every change, check the master's accounting (per slave: tasks + "
         "executors + offers + idle = total, and the allocator agrees) and log an error for each violation; "
         "walks every record per change, for tests and debugging.", boolean),
    Flag("min_allocatable_resources", DEFAULT_MIN_ALLOCATABLE, "Smallest resources worth offering: "
         "alternatives separated by '|', each a ';'-separated list, e.g. cpus:0.01|mem:32.",
         min_allocatable, "RESOURCES"),
    Flag("max_completed_frameworks", 50, "Number of completed frameworks kept in memory.",
         positive_int, "N"),
    Flag("max_completed_tasks_per_framework", 1000, "Number of completed tasks kept per framework.",
         positive_int, "N"),
    # -- security (docs/security.md) --
    Flag("authenticate_frameworks", False, "Only schedulers that prove a principal from --credentials may "
         "subscribe (and FrameworkInfo.principal must be that principal).", boolean),
    Flag("authenticate_agents", False, "Only slaves that prove a principal from --credentials may register.",
         boolean),
    Flag("authenticate_slaves", None, "Alias of --authenticate_agents.", boolean),
    Flag("credentials", None, "File of the principals and secrets this master accepts: Mesos' JSON "
         '{"credentials": [{"principal": "...", "secret": "..."}]} or one "principal secret" per line.',
         metavar="PATH"),
    Flag("authenticate_http_readonly", False, "HTTP Basic authentication (--credentials) for the read-only "
         "endpoints (state, metrics, files, the web UI's data).", boolean),
    Flag("authenticate_http_readwrite", False, "HTTP Basic authentication (--credentials) for the endpoints "
         "that change something (teardown, quota, weights, /api/v1).", boolean),
    Flag("acls", None, "Authorization rules in Mesos' ACL JSON (or a file holding it): register_frameworks, "
         "run_tasks, teardown_frameworks, update_quotas, update_weights, view_*, access_sandboxes, "
         "mark_agents_gone, ... Unset allows everything.", metavar="JSON|PATH"),
    Flag("root_submissions", True, "Whether tasks may run as root (a task's or framework's user 'root').",
         boolean),
    Flag("zmq_key_file", None, "This master's CURVE key pair (a .key_secret file from 'offerd keygen'): every "
         "ZeroMQ link is encrypted and clients check the master by its public key. Standby masters share it.",
         metavar="PATH"),
    *tls_flags("the HTTP API and web UI", "slaves' HTTPS (the sandbox proxy) and other peers",
               "authentication and encryption (anyone who reaches the ports then owns the cluster)"),
    Flag("webui_dir", None, "Directory of the web UI's static files (default: the webui/ of this install)."),
    Flag("logging_level", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.", metavar="LEVEL"),
]


def normalize_flags(namespace: argparse.Namespace) -> argparse.Namespace:
    """Give every master flag its typed value, filling in missing ones.

    `resolve_flags` stores defaults as written (``"1secs"``), so the master
    converts them here once; values already typed pass through unchanged.
    """
    for flag in MASTER_FLAGS:
        value = getattr(namespace, flag.name, flag.default)
        if value is None:
            value = flag.default
        if isinstance(value, str) and flag.type is not str:
            value = flag.type(value)
        setattr(namespace, flag.name, value)
    if namespace.authenticate_slaves is not None:
        namespace.authenticate_agents = namespace.authenticate_agents or namespace.authenticate_slaves
        namespace.authenticate_slaves = None
    return namespace


def master_flags(**values) -> argparse.Namespace:
    """Flags from keyword values and defaults only (tests, embedding); the
    environment and config directories are ignored."""
    unknown = set(values) - {flag.name for flag in MASTER_FLAGS}
    if unknown:
        raise ValueError(f"unknown master flag(s): {', '.join(sorted(unknown))}")
    namespace = argparse.Namespace(**values)
    resolve_flags(namespace, MASTER_FLAGS, "master", environ={}, config_root="/nonexistent")
    return normalize_flags(namespace)
