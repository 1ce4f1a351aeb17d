"""The files of deploy/ as one machine of the example layout would run them.

deploy/ describes three machines whose addresses are written as 192.0.2.11, .12 and
.13 (host A, B, C), with host A's values on the lines after a "# per host" comment of
an environment file, and files under /etc, /var and /opt/offerd. `Machine` turns them
into what a given test host runs: its own address on the per-host lines, the test
hosts' addresses for the example ones, a directory of its own standing in for / (so
/etc/zookeeper/conf/zoo.cfg is ROOT/etc/zookeeper/conf/zoo.cfg) and the running
virtualenv for /opt/offerd. Nothing else is changed: the command line is the unit's
ExecStart and the environment is its EnvironmentFile, as systemd would run them.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLE_ADDRESSES = ("192.0.2.11", "192.0.2.12", "192.0.2.13")
INSTALL_PREFIX = "/opt/offerd"
PER_HOST = "# per host"
# What systemd gives a system service (its default PATH; no HOME, no user environment).
SYSTEMD_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_ROOTED = re.compile(r"(?<![\w.-])/(etc|var)/")


@dataclass
class Unit:
    name: str
    service: dict[str, list[str]] = field(default_factory=dict)  # [Service] key -> its values

    @property
    def exec_start(self) -> list[str]:
        (line,) = self.service["ExecStart"]
        argv = shlex.split(line)
        # Prefixes such as "-" or "@" would change how systemd runs it: the files use none.
        assert argv[0].startswith("/"), f"{self.name}: ExecStart must name an absolute path: {line}"
        return argv

    @property
    def environment_files(self) -> list[str]:
        return self.service.get("EnvironmentFile", [])


def read_unit(name: str) -> Unit:
    """The [Service] section of deploy/systemd/NAME."""
    unit, section = Unit(name), None
    for raw in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service":
            unit.service.setdefault(key.strip(), []).append(value.strip())
    return unit


def read_environment(path: Path) -> list[tuple[str, str, bool]]:
    """(name, value, per_host) of each assignment of a systemd EnvironmentFile."""
    out, per_host = [], False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            per_host = False
            continue
        if line.startswith("#"):
            per_host = per_host or line.startswith(PER_HOST)
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((name.strip(), value, per_host))
        per_host = False
    return out


class Machine:
    """Host number `index` (0 = A) of the example, as a test host at `addresses[index]`."""

    def __init__(self, index: int, addresses: list[str], root: str):
        self.index, self.addresses, self.root = index, addresses, root
        self.address = addresses[index]

    def localize(self, text: str, per_host: bool = False) -> str:
        if per_host:
            text = text.replace(EXAMPLE_ADDRESSES[0], self.address)
        for example, address in zip(EXAMPLE_ADDRESSES, self.addresses):
            text = text.replace(example, address)
        text = text.replace(INSTALL_PREFIX + "/", sys.prefix + "/")
        return _ROOTED.sub(lambda m: f"{self.root}/{m.group(1)}/", text)

    def path(self, example_path: str) -> str:
        """Where this machine keeps what deploy/ puts at `example_path` (/etc/..., /var/...)."""
        return self.localize(example_path)

    def command(self, unit: Unit, overrides: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """The argv and environment systemd would start `unit` with on this machine;
        `overrides` replaces environment values (each one is a stated deviation)."""
        environment = dict(SYSTEMD_ENVIRONMENT)
        for installed in unit.environment_files:
            # /etc/default/offerd-master is deploy/default/offerd-master.
            name = os.path.basename(installed.lstrip("-"))
            for key, value, per_host in read_environment(DEPLOY / "default" / name):
                environment[key] = self.localize(value, per_host)
        for key, value in (overrides or {}).items():
            assert key in environment, f"{unit.name}: override of {key}, which its EnvironmentFile does not set"
            environment[key] = value
        return [self.localize(arg) for arg in unit.exec_start], environment
