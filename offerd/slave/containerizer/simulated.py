"""A containerizer that runs nothing, for benchmarks and large simulated fleets.

A container "runs" its command: ``sleep N`` ends successfully after N seconds
(an actor timer), anything else at once. Killing ends it at once as if by
SIGTERM. No sandbox is created and no thread is used, so a simulated task costs
only the protocol work around it.
"""

from __future__ import annotations

import re
import signal

from offerd.common.actor import Actor
from offerd.slave.containerizer.base import Containerizer, LaunchSpec, OnExited, OnStarted, Termination

_SLEEP = re.compile(r"^\s*(?:exec\s+)?(?:/bin/|/usr/bin/)?sleep\s+([0-9]*\.?[0-9]+)\s*;?\s*$")


def sleep_seconds(command) -> float:
    """N for a ``sleep N`` command (shell or argv form), else 0."""
    text = command.value if command.shell or not command.arguments else " ".join(command.arguments)
    match = _SLEEP.match(text or "")
    return float(match.group(1)) if match else 0.0


class SimulatedContainerizer(Containerizer):
    simulated = True

    def __init__(self, actor: Actor):
        self.actor = actor
        self._running: dict[str, tuple[object, OnExited]] = {}

    def launch(self, spec: LaunchSpec, on_started: OnStarted, on_exited: OnExited) -> None:
        cid = spec.container_id
        # A timer even for "at once", so that the exit never arrives inside launch().
        timer = self.actor.call_later(sleep_seconds(spec.command), self._exit, cid, 0)
        self._running[cid] = (timer, on_exited)
        on_started(None)

    def kill(self, container_id: str, grace: float) -> None:
        entry = self._running.get(container_id)
        if entry is not None:
            entry[0].cancel()
            self._running[container_id] = (
                self.actor.call_later(0, self._exit, container_id, -signal.SIGTERM), entry[1])

    def destroy_all(self, keep_checkpointed: bool = False) -> None:
        for timer, _ in self._running.values():
            timer.cancel()
        self._running.clear()

    def _exit(self, container_id: str, returncode: int) -> None:
        entry = self._running.pop(container_id, None)
        if entry is not None:
            entry[1](Termination(returncode=returncode))
