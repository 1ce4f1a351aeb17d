"""namespaces/pid, namespaces/uts, namespaces/ipc, filesystem/linux, and the
posix usage isolators; `create_isolators` builds the list --isolation names.

The namespace isolators change nothing on the host: they only say, in their
LaunchPlan, which namespaces the launcher makes for the container's process.
"""

from __future__ import annotations

import os

from offerd.slave.containerizer import cgroups, launcher
from offerd.slave.containerizer.isolator import Container, Isolator, IsolatorError, LaunchPlan

# Mesos' --sandbox_directory: where the sandbox appears inside a private mount namespace.
SANDBOX_MOUNT = "/mnt/mesos/sandbox"


class PidNamespace(Isolator):
    """The task is the child of PID 1 (offerd-init) of its own PID namespace,
    with its own /proc: `ps` inside sees only the container, and killing PID 1
    kills all."""

    names = ("namespaces/pid",)

    def prepare(self, container: Container) -> LaunchPlan:
        return LaunchPlan(pid_namespace=True)


class UtsNamespace(Isolator):
    names = ("namespaces/uts",)

    def prepare(self, container: Container) -> LaunchPlan:
        # Like a container runtime: the hostname is the (short) container id.
        return LaunchPlan(clone_flags=launcher.CLONE_NEWUTS, hostname=container.container_id[:12])


class IpcNamespace(Isolator):
    names = ("namespaces/ipc",)

    def prepare(self, container: Container) -> LaunchPlan:
        return LaunchPlan(clone_flags=launcher.CLONE_NEWIPC)


class NetNamespace(Isolator):
    """A network namespace of the container's own with only the loopback device,
    brought up by the container's init (offerd-init).
    Nothing connects it to the host's network: no veth or CNI configuration."""

    names = ("namespaces/net",)

    def prepare(self, container: Container) -> LaunchPlan:
        return LaunchPlan(clone_flags=launcher.CLONE_NEWNET)


class LinuxFilesystem(Isolator):
    """A private mount namespace with the sandbox bind-mounted at
    /mnt/mesos/sandbox, which becomes $MESOS_SANDBOX."""

    names = ("filesystem/linux",)

    def __init__(self):
        try:
            os.makedirs(SANDBOX_MOUNT, exist_ok=True)
        except OSError as exc:
            raise IsolatorError(f"filesystem/linux needs {SANDBOX_MOUNT}: {exc.strerror}") from None

    def prepare(self, container: Container) -> LaunchPlan:
        return LaunchPlan(clone_flags=launcher.CLONE_NEWNS, sandbox_mount=SANDBOX_MOUNT,
                          environment={"MESOS_SANDBOX": SANDBOX_MOUNT, "OFFERD_SANDBOX": SANDBOX_MOUNT})


class PosixUsage(Isolator):
    """posix/cpu and posix/mem: no isolation; limits are only reported."""

    names = ("posix/cpu", "posix/mem")

    def usage(self, container: Container) -> dict:
        return {"cpus_limit": container.cpus,
                "mem_limit_bytes": max(cgroups.MIN_MEMORY_BYTES, int(container.mem_mb * 2**20))}


NAMESPACE_ISOLATORS = {
    "namespaces/pid": PidNamespace, "namespaces/uts": UtsNamespace, "namespaces/ipc": IpcNamespace,
    "namespaces/net": NetNamespace,
}
NEEDS_ROOT = ("cgroups/", "namespaces/", "filesystem/linux")


def create_isolators(isolation: str, flags=None, hierarchies: cgroups.Hierarchies | None = None) -> list[Isolator]:
    """The isolators --isolation names, in Mesos' order (filesystem first).
    Raises IsolatorError when the machine cannot provide one of them."""
    names = [name for name in isolation.split(",") if name]
    if "cgroups/all" in names:
        names = [n for n in names if n != "cgroups/all"] + list(cgroups.ISOLATORS)
    wanted_root = [n for n in names if n.startswith(NEEDS_ROOT)]
    if wanted_root and os.geteuid() != 0:
        raise IsolatorError(f"isolator(s) {', '.join(wanted_root)} need root; use --isolation=posix/cpu,posix/mem")
    if any(n.startswith("cgroups/") for n in names) and hierarchies is None:
        where = getattr(flags, "cgroups_hierarchy", None) or cgroups.DEFAULT_HIERARCHY
        hierarchies = cgroups.detect(where)
        if hierarchies is None:
            raise IsolatorError(f"cgroups isolators need cgroups, and none are mounted at {where} "
                                "(see --cgroups_hierarchy)")
    cgroups_root = getattr(flags, "cgroups_root", "offerd") or "offerd"
    isolators: list[Isolator] = []
    if "filesystem/linux" in names:
        isolators.append(LinuxFilesystem())
    if any(n in ("posix/cpu", "posix/mem") for n in names) or not any(n.startswith("cgroups/") for n in names):
        isolators.append(PosixUsage())
    for name in names:
        if name in cgroups.ISOLATORS:
            isolators.append(cgroups.ISOLATORS[name](hierarchies, cgroups_root, flags))
        elif name in NAMESPACE_ISOLATORS:
            isolators.append(NAMESPACE_ISOLATORS[name]())
    return isolators
