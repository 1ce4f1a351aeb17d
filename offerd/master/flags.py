"""The master's flags, with Mesos' names and defaults (mesos.md §1.16)."""

from __future__ import annotations

import argparse
import re

from offerd.common.flags import Flag, duration, positive_int, resolve_flags
from offerd.common.resources import DEFAULT_MIN_ALLOCATABLE, ResourceError, parse_min_allocatable

_SIZE = re.compile(r"^\s*([0-9]+)\s*([a-z]*)\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


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


def min_allocatable(text: str) -> str:
    # Checked at startup so a typo fails the command line, not the first allocation.
    try:
        parse_min_allocatable(text)
    except ResourceError as exc:
        raise ValueError(str(exc)) from None
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
    Flag("allocation_interval", "1secs", "How often the allocator makes offers from all free resources "
         "(it also runs on events: slave added, resources freed, revive).", duration, "DURATION"),
    Flag("offer_timeout", None, "How long an offer may stay outstanding before it is rescinded; "
         "unset means offers never expire.", optional_duration, "DURATION"),
    Flag("zk", None, "ZooKeeper URL for leader election, e.g. zk://host1:2181,host2:2181/offerd.",
         metavar="URL"),
    Flag("quorum", None, "Size of the registry quorum (used with --zk).", positive_int, "N"),
    Flag("framework_timeout", "5secs", "Silence after which a scheduler's connection is considered lost "
         "(its failover_timeout then starts).", duration, "DURATION"),
    Flag("slave_ping_timeout", "15secs", "Time allowed for one slave heartbeat; the slave is considered "
         "lost after --max_slave_ping_timeouts of them.", duration, "DURATION"),
    Flag("max_slave_ping_timeouts", 5, "Number of missed slave heartbeats after which the slave is "
         "marked unreachable.", positive_int, "N"),
    Flag("max_message_bytes", 16 * 1024 * 1024, "Largest message accepted from a peer (e.g. 16MB); "
         "larger ones are refused with an error.", byte_size, "BYTES"),
    Flag("min_allocatable_resources", DEFAULT_MIN_ALLOCATABLE, "Smallest resources worth offering: "
         "alternatives separated by '|', each a ';'-separated list, e.g. cpus:0.01|mem:32.",
         min_allocatable, "RESOURCES"),
    Flag("max_completed_frameworks", 50, "Number of completed frameworks kept in memory.",
         positive_int, "N"),
    Flag("max_completed_tasks_per_framework", 1000, "Number of completed tasks kept per framework.",
         positive_int, "N"),
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
