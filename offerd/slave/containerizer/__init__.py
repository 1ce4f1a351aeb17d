"""Containerizers: how a slave runs a command in a sandbox and learns that it ended."""

from offerd.slave.containerizer.base import Containerizer, LaunchSpec, Termination

__all__ = ["Containerizer", "LaunchSpec", "Termination", "create"]


def create(kind: str, actor, work_dir: str, flags=None) -> Containerizer:
    """The containerizer named by --containerizer, with the isolators --isolation
    names (raises IsolatorError when this machine cannot provide one)."""
    if kind == "simulated":
        from offerd.slave.containerizer.simulated import SimulatedContainerizer

        return SimulatedContainerizer(actor)
    if kind == "posix":
        import os

        from offerd.slave.containerizer.namespaces import create_isolators
        from offerd.slave.containerizer.posix import PosixContainerizer
        from offerd.slave.fetcher import Fetcher

        isolation = getattr(flags, "isolation", "posix/cpu,posix/mem")
        fetcher = Fetcher(getattr(flags, "fetcher_cache_dir", None), getattr(flags, "fetcher_cache_size", 2 << 30))
        switch_user = bool(getattr(flags, "switch_user", False)) and os.geteuid() == 0
        return PosixContainerizer(actor, work_dir, isolators=create_isolators(isolation, flags),
                                  fetcher=fetcher, switch_user=switch_user)
    raise ValueError(f"unknown containerizer {kind!r}: use posix or simulated")
