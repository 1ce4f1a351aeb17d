"""What this machine offers: resources from --resources or detected, attributes, hostname."""

from __future__ import annotations

import logging
import os
import socket

import psutil

from offerd.common.resources import Resources, parse_attributes
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * MB
DEFAULT_PORTS = "[31000-32000]"
# Mesos' fallbacks when a quantity cannot be read from the machine.
FALLBACK = {"cpus": "1", "mem": "1024", "disk": "10240"}


def _detect_cpus() -> str:
    return str(psutil.cpu_count(logical=True) or FALLBACK["cpus"])


def _detect_mem() -> str:
    total = psutil.virtual_memory().total
    usable = total - GB if total >= 2 * GB else total // 2
    return str(usable // MB)


def _detect_disk(work_dir: str) -> str:
    path = work_dir
    while not os.path.exists(path):  # work_dir may not exist before the first run
        path = os.path.dirname(path)
    total = psutil.disk_usage(path).total
    usable = total - 5 * GB if total >= 10 * GB else total // 2
    return str(usable // MB)


def detect(name: str, work_dir: str) -> str:
    """The text value of one predefined resource, as Mesos detects it."""
    try:
        if name == "cpus":
            return _detect_cpus()
        if name == "mem":
            return _detect_mem()
        if name == "disk":
            return _detect_disk(work_dir)
    except (OSError, psutil.Error) as exc:
        log.warning("cannot detect %s (%s); using %s", name, exc, FALLBACK[name])
        return FALLBACK[name]
    return DEFAULT_PORTS


def load_resources(text: str | None, work_dir: str) -> Resources:
    """--resources, with the predefined resources it leaves out detected.

    Raises ResourceError (or OSError for an unreadable file://) with the reason.
    """
    text = (text or "").strip()
    if text.startswith("file://"):
        with open(text[len("file://"):]) as handle:
            text = handle.read().strip()
    given = Resources.parse(text) if text else Resources.EMPTY
    missing = [name for name in ("cpus", "mem", "disk", "ports") if name not in given.names()]
    if not missing:
        return given
    return given + Resources.parse(";".join(f"{name}:{detect(name, work_dir)}" for name in missing))


def load_attributes(text: str | None) -> list[pb.Attribute]:
    return parse_attributes(text) if text else []


def default_hostname(ip: str) -> str:
    if ip and ip not in ("0.0.0.0", "::"):
        try:
            return socket.gethostbyaddr(ip)[0]
        except OSError:
            log.debug("no name for %s; using the system hostname", ip)
    return socket.gethostname()
