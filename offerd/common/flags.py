"""Command-line flags with Mesos' names and Mesos' three sources.

Precedence: command line > environment (``OFFERD_<FLAG>``) > config directory
(one file per flag, ``/etc/offerd/<process>/<flag>``, like ``/etc/mesos-master/``)
> default. Booleans take ``--flag``, ``--no-flag`` and ``--flag=true|false``.
Durations take Mesos' units: ``500ms``, ``15secs``, ``10mins``, ``2hrs``, ``1days``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

DEFAULT_CONFIG_ROOT = "/etc/offerd"

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")
_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ns": 1e-9, "nanosecs": 1e-9, "us": 1e-6, "usecs": 1e-6,
    "ms": 1e-3, "msecs": 1e-3,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}


def duration(text: str | float) -> float:
    """Seconds from a Mesos duration such as ``15secs`` or ``1.5mins``."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION.match(str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 15secs, 500ms, 10mins")
    return float(match.group(1)) * _UNITS[match.group(2)]


def boolean(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r}: use true or false")


def positive_int(text: str | int) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


@dataclass(frozen=True)
class Flag:
    name: str
    default: Any
    help: str
    type: Callable[[Any], Any] = str
    metavar: str | None = None


class FlagError(ValueError):
    pass


def tls_flags(serves: str, ca_verifies: str, insecure_without: str) -> list[Flag]:
    """--ssl_cert_file, --ssl_key_file, --ssl_ca_file and --insecure, which every
    daemon with an HTTP server declares alike; the words say what they cover there."""
    return [
        Flag("ssl_cert_file", None, f"Serve {serves} over HTTPS with this PEM certificate (chain).", metavar="PATH"),
        Flag("ssl_key_file", None, "The PEM private key of --ssl_cert_file.", metavar="PATH"),
        Flag("ssl_ca_file", None, f"PEM CA bundle to verify {ca_verifies}.", metavar="PATH"),
        Flag("insecure", False, f"Allow listening on a non-loopback address without {insecure_without}.",
             boolean),
    ]


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    """Declare `flags` on `parser`; values stay None unless given on the command line."""
    for flag in flags:
        shown_default = "" if flag.default in (None, "") else f" (default: {flag.default})"
        if flag.type is boolean:
            parser.add_argument(
                f"--{flag.name}", nargs="?", const="true", default=None, metavar="BOOL",
                help=flag.help + shown_default,
            )
            parser.add_argument(f"--no-{flag.name}", dest=flag.name, action="store_const", const="false",
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(f"--{flag.name}", default=None, metavar=flag.metavar or flag.name.upper(),
                                help=flag.help + shown_default)


def resolve_flags(
    namespace: argparse.Namespace,
    flags: list[Flag],
    process: str,
    environ: dict[str, str] | None = None,
    config_root: str | None = None,
) -> argparse.Namespace:
    """Fill in every flag from the command line, environment, config dir or default.

    Raises FlagError naming the flag and where its bad value came from.
    """
    environ = os.environ if environ is None else environ
    config_root = config_root or environ.get("OFFERD_CONFIG_DIR", DEFAULT_CONFIG_ROOT)
    config_dir = os.path.join(config_root, process)
    for flag in flags:
        raw, source = getattr(namespace, flag.name, None), "command line"
        if raw is None:
            env_name = f"OFFERD_{flag.name.upper()}"
            if env_name in environ:
                raw, source = environ[env_name], f"environment variable {env_name}"
        if raw is None:
            path = os.path.join(config_dir, flag.name)
            if os.path.isfile(path):
                with open(path) as handle:
                    raw, source = handle.read().strip(), f"config file {path}"
        if raw is None:
            # Defaults written as text ("15secs") go through the same parser.
            default = flag.default
            if isinstance(default, str) and flag.type is not str:
                default = flag.type(default)
            setattr(namespace, flag.name, default)
            continue
        try:
            setattr(namespace, flag.name, flag.type(raw))
        except (ValueError, TypeError) as exc:
            raise FlagError(f"--{flag.name}={raw} (from {source}): {exc}") from None
    return namespace


def flags_as_dict(namespace: argparse.Namespace, flags: list[Flag]) -> dict[str, str]:
    """Flag values as strings, the shape of Mesos' ``/flags`` endpoint."""
    out = {}
    for flag in flags:
        value = getattr(namespace, flag.name, None)
        if value is None:
            continue
        out[flag.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
