"""Secure by default off loopback: a daemon that others could reach must be locked.

A master, slave or Marathon asked to listen on an address other than loopback
refuses to start unless authentication and encryption are on, or ``--insecure``
says the operator accepts the risk. On 127.0.0.0/8 and ::1 only local processes
can connect, so ``offerd local`` stays as simple as it always was.
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)


class ExposureError(RuntimeError):
    """Raised instead of starting; the message lists what to turn on."""


def is_loopback(ip: str) -> bool:
    text = (ip or "").strip().strip("[]")
    if text in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False  # a hostname or 0.0.0.0-like wildcard: assume reachable


def check(process: str, ip: str, missing: list[str], insecure: bool) -> None:
    """Refuse to serve on `ip` while anything in `missing` is off.

    `missing` holds one line per protection that is off, each naming the flags
    that turn it on.
    """
    if not missing or is_loopback(ip):
        return
    if insecure:
        log.warning("%s listens on %s with %s off (--insecure): anyone who reaches its ports can control it",
                    process, ip, "; ".join(missing))
        return
    lines = "\n  ".join(missing)
    raise ExposureError(
        f"refusing to listen on {ip}, which is not a loopback address, while these are off:\n  {lines}\n"
        f"Turn them on (see docs/security.md; 'offerd local --secure' shows a complete setup), listen on "
        f"127.0.0.1, or pass --insecure to accept that anyone who reaches the ports controls this {process}.")
