"""The isolator contract (Mesos' include/mesos/slave/isolator.hpp, in Python).

An isolator adds one kind of isolation or accounting to a container. The
containerizer calls its hooks in this order for each container:

    prepare(container)  before the process exists: say what the launch must set
                        up (a LaunchPlan: cgroups and their limits, namespaces);
    isolate(container, pid)   the process exists (already in its cgroups);
    watch(container)    start watching for a limitation (OOM): fds to poll;
    check(container)    whether a limit was hit (a watched fd fired, or it ended);
    update(container)   its resources changed (container.cpus, container.mem_mb
                        already hold the new values);
    usage(container)    Mesos' /monitor/statistics keys (any thread);
    cleanup(container)  the container is gone: remove what prepare made.

Every hook has a no-op default. `cleanup` must tolerate containers it never
saw (a launch that failed early, or a restart). Hooks run on launcher or reaper
threads, never on the actor thread, so a hook may touch the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limitation:
    """Why a container was stopped by its isolation (Mesos' ContainerLimitation)."""
    reason: int          # a TaskStatus.Reason
    message: str


@dataclass
class Container:
    """What isolators know of a container."""
    container_id: str
    directory: str
    cpus: float = 0.0
    mem_mb: float = 0.0
    user: str | None = None
    pid: int | None = None


@dataclass
class LaunchPlan:
    """How the launcher must start a container, merged from every isolator's
    prepare(). The launcher (offerd-init) carries it out between fork and exec,
    in this order: cgroups created, limits written, cgroups joined, namespaces."""
    cgroup_dirs: list[str] = field(default_factory=list)      # cgroups to create
    cgroup_writes: list[tuple[str, str]] = field(default_factory=list)  # (file, value): limits
    cgroup_joins: list[str] = field(default_factory=list)     # v1 `tasks` / v2 `cgroup.procs` files
    clone_flags: int = 0                    # namespaces: CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, ...
    pid_namespace: bool = False             # run the command as PID 1's child of a new PID namespace
    hostname: str | None = None             # set in the new UTS namespace
    sandbox_mount: str | None = None        # bind the sandbox here in a private mount namespace
    environment: dict[str, str] = field(default_factory=dict)
    enter_pid: int | None = None            # join this process's namespaces instead (a health check)

    def merge(self, other: "LaunchPlan") -> None:
        self.cgroup_dirs.extend(other.cgroup_dirs)
        self.cgroup_writes.extend(other.cgroup_writes)
        self.cgroup_joins.extend(other.cgroup_joins)
        self.clone_flags |= other.clone_flags
        self.pid_namespace = self.pid_namespace or other.pid_namespace
        self.hostname = other.hostname or self.hostname
        self.sandbox_mount = other.sandbox_mount or self.sandbox_mount
        self.environment.update(other.environment)


class Isolator:
    """Base class: each hook does nothing unless overridden."""

    #: the --isolation names this isolator serves
    names: tuple[str, ...] = ()

    def recover(self, running: list[str], orphans: list[str]) -> None:
        """The slave restarted: the containers `running` were adopted; remove
        what belongs to the `orphans` (containers of this slave that were
        not). Other slaves may share the machine: touch nothing else."""

    def prepare(self, container: Container) -> LaunchPlan | None:
        """Plan the container's isolation before its process exists (the
        launcher carries the plan out). Raise IsolatorError with a message
        saying what cannot be done."""
        return None

    def isolate(self, container: Container, pid: int) -> None:
        """The container's first process is `pid`."""

    def watch(self, container: Container) -> list[tuple[int, int]]:
        """Start watching for limitations; returns (fd, epoll events) pairs the
        containerizer polls: when one fires it calls `check(container)`."""
        return []

    def check(self, container: Container) -> Limitation | None:
        """Whether the container hit a limit (called when a watched fd fires
        and when the container ends)."""
        return None

    def update(self, container: Container) -> None:
        """The container's resources (cpus, mem_mb) changed."""

    def usage(self, container: Container) -> dict:
        """Statistics in Mesos' ResourceStatistics keys."""
        return {}

    def pids(self, container: Container) -> list[int]:
        """Every process of the container that this isolator can see."""
        return []

    def cleanup(self, container: Container) -> None:
        """Remove what prepare made. Must not fail for an unknown container."""


class IsolatorError(Exception):
    """Isolation could not be set up; the message says what failed."""
