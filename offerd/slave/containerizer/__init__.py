"""Containerizers: how a slave runs a command in a sandbox and learns that it ended."""

from offerd.slave.containerizer.base import Containerizer, LaunchSpec, Termination

__all__ = ["Containerizer", "LaunchSpec", "Termination", "create"]


def create(kind: str, actor, work_dir: str) -> Containerizer:
    """The containerizer named by --containerizer."""
    if kind == "simulated":
        from offerd.slave.containerizer.simulated import SimulatedContainerizer

        return SimulatedContainerizer(actor)
    if kind == "posix":
        from offerd.slave.containerizer.posix import PosixContainerizer

        return PosixContainerizer(actor, work_dir)
    raise ValueError(f"unknown containerizer {kind!r}: use posix or simulated")
