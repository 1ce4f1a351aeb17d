"""What this machine offers: resources from --resources or detected, attributes, hostname."""

from __future__ import annotations

import logging
import os
import socket

import psutil

from offerd.common.attributes import parse_attributes
from offerd.common.resources import Resources
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

MB = 1024 * 1024
GB = 1024 * MB
DEFAULT_PORTS = [(31000, 32000)]
# Mesos' fallbacks when a quantity cannot be read from the machine.
FALLBACK = {"cpus": 1, "mem": 1024, "disk": 10240}


def _detect_cpus() -> int:
    return psutil.cpu_count(logical=True) or FALLBACK["cpus"]


def _detect_mem() -> int:
    total = psutil.virtual_memory().total
    usable = total - GB if total >= 2 * GB else total // 2
    return usable // MB


def _detect_disk(work_dir: str) -> int:
    path = work_dir
    while not os.path.exists(path):  # work_dir may not exist before the first run
        path = os.path.dirname(path)
    total = psutil.disk_usage(path).total
    usable = total - 5 * GB if total >= 10 * GB else total // 2
    return usable // MB


def detect(name: str, work_dir: str) -> int:
    """One predefined scalar (cpus, mem in MB, disk in MB), as Mesos detects it."""
    try:
        if name == "cpus":
            return _detect_cpus()
        if name == "mem":
            return _detect_mem()
        return _detect_disk(work_dir)
    except (OSError, psutil.Error) as exc:
        log.warning("cannot detect %s (%s); using %s", name, exc, FALLBACK[name])
        return FALLBACK[name]


def load_resources(text: str | None, work_dir: str) -> Resources:
    """--resources, with the predefined resources it leaves out detected.

    Raises ResourceError (or OSError for an unreadable file://) with the reason.
    """
    text = (text or "").strip()
    if text.startswith("file://"):
        with open(text[len("file://"):]) as handle:
            text = handle.read().strip()
    given = Resources.parse(text) if text else Resources.EMPTY
    names = given.names()
    detected = Resources.from_scalars({name: detect(name, work_dir) for name in FALLBACK if name not in names})
    if "ports" not in names:  # not detected: Mesos offers a default range
        detected += Resources.from_ranges("ports", DEFAULT_PORTS)
    return given + detected


def load_attributes(text: str | None) -> list[pb.Attribute]:
    return parse_attributes(text) if text else []


def default_hostname(ip: str) -> str:
    if ip and ip not in ("0.0.0.0", "::"):
        try:
            return socket.gethostbyaddr(ip)[0]
        except OSError:
            log.debug("no name for %s; using the system hostname", ip)
    return socket.gethostname()
