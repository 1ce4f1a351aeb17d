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
        isolators = create_isolators(isolation, flags)
        _check_init(isolation, isolators)
        return PosixContainerizer(actor, work_dir, isolators=isolators, fetcher=fetcher, switch_user=switch_user)
    raise ValueError(f"unknown containerizer {kind!r}: use posix or simulated")


def _check_init(isolation: str, isolators) -> None:
    """offerd-init starts every isolated or checkpointed container: build it now, so
    that a machine without a C compiler learns it at start, not at the first task."""
    import logging

    from offerd.slave.containerizer import init_binary
    from offerd.slave.containerizer.isolator import IsolatorError
    from offerd.slave.containerizer.namespaces import PosixUsage

    try:
        init_binary.path()
    except init_binary.InitBuildError as exc:
        if any(not isinstance(isolator, PosixUsage) for isolator in isolators):
            raise IsolatorError(f"--isolation={isolation} needs offerd-init: {exc}") from None
        logging.getLogger(__name__).warning("tasks of checkpointing frameworks and tasks run as another user "
                                            "will fail to launch: %s", exc)
