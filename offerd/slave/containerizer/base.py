"""The containerizer contract.

A slave asks for a container (a command in a sandbox with an environment) and
hears back twice, on the actor thread: `on_started(pid)` once the command runs,
then `on_exited(termination)` exactly once when it has ended. A container that
could not be started gets only `on_exited`, with `launch_error` set. Methods are
called on the actor thread and never block it.
"""

from __future__ import annotations

import abc
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer.isolator import Limitation


@dataclass
class LaunchSpec:
    container_id: str
    command: pb.CommandInfo
    directory: str
    environment: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0                 # the container's resources, for its isolators
    mem_mb: float = 0.0
    user: str | None = None           # run as this user (--switch_user), else as the slave
    fetch: bool = False               # download command.uris into the sandbox first
    checkpoint: bool = False          # must be recoverable: its exit status is written to the sandbox


@dataclass(frozen=True)
class Termination:
    returncode: int | None = None    # subprocess style: -N means killed by signal N
    launch_error: str | None = None
    limitation: Limitation | None = None  # the isolation stopped it (e.g. out of memory)

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.launch_error is None and self.limitation is None

    @property
    def wait_status(self) -> int:
        """The raw wait(2) status, which is what Mesos reports in ExitedExecutor."""
        if self.returncode is None:
            return -1
        return -self.returncode if self.returncode < 0 else self.returncode << 8

    @property
    def message(self) -> str:
        if self.launch_error is not None:
            return self.launch_error
        if self.limitation is not None:
            return self.limitation.message
        if self.returncode is None:
            return "Command ended with an unknown status"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = str(-self.returncode)
            return f"Command terminated with signal {name}"
        return f"Command exited with status {self.returncode}"


OnStarted = Callable[[int | None], None]
OnExited = Callable[[Termination], None]


class Containerizer(abc.ABC):
    """Each method documents what an implementation must do."""

    #: True when no process runs: tasks only pretend (benchmarks).
    simulated = False

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited) -> None:
        """Start `spec` without blocking; report through the two callbacks."""

    @abc.abstractmethod
    def kill(self, container_id: str, grace: float) -> None:
        """Ask the container to stop (SIGTERM), and force it (SIGKILL) after
        `grace` seconds; grace <= 0 forces it at once. Repeating a kill may only
        shorten the grace. Unknown ids are ignored."""

    def recover(self, container_id: str, directory: str, cpus: float, mem_mb: float,
                on_exited: OnExited) -> int | None:
        """Adopt a container of an earlier run of the slave; returns its pid, or
        None when it is gone (then `on_exited` reports how it ended)."""
        self_call = Termination(launch_error="this containerizer cannot recover containers")
        on_exited(self_call)
        return None

    def recovered(self, container_ids: set[str], orphans: set[str] = frozenset()) -> None:
        """Recovery is over: remove what belongs to any other container."""

    def update(self, container_id: str, cpus: float, mem_mb: float) -> None:
        """The container's resources changed (a task joined its executor)."""

    def usage(self, container_id: str, pid: int | None) -> dict:
        """Mesos' ResourceStatistics keys for a container; any thread."""
        return {"timestamp": time.time()}

    @abc.abstractmethod
    def destroy_all(self, keep_checkpointed: bool = False) -> None:
        """Kill every container at once (the slave is going away); with
        `keep_checkpointed`, leave those of checkpointing frameworks running
        (and not killed by `close()` either) for the next run to recover."""

    def close(self) -> None:
        """Release threads; called after the actor has stopped."""
