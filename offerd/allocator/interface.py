"""The allocator contract: a list of event methods and one question, `allocate`.

Modelled on Mesos' ``include/mesos/allocator/allocator.hpp``. The master tells
the allocator what happens (slaves and frameworks come and go, resources are
used and freed, filters are set) and asks it, now and then, who should be
offered what. The allocator is pure: no sockets, no threads, no clock of its
own. Every method that depends on time takes `now` (seconds on any monotonic
scale the caller picks), so tests move a fake clock.

Accounting rule shared by every implementation: whatever `allocate` hands out
counts as allocated to that framework (an outstanding offer raises the share
exactly like a running task) until the master gives it back through
`recover_resources` or the framework or slave is removed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Mapping, NamedTuple

from offerd.common.resources import Resources


class Allocation(NamedTuple):
    """What one framework is offered on one slave in one allocation run.

    `resources` keep their reservation roles (``cpus(web):2``); `role` is the
    framework role the whole lot is allocated to (Mesos' AllocationInfo.role),
    which is not part of `Resources`. One role per offer, as in Mesos.
    """

    role: str
    resources: Resources


# framework id -> slave id -> Allocation
Allocations = dict[str, dict[str, Allocation]]


class Allocator(ABC):
    """Event methods a master calls, in the order things happen."""

    # -- frameworks -----------------------------------------------------------

    @abstractmethod
    def add_framework(
        self,
        framework_id: str,
        roles: Iterable[str],
        active: bool = True,
        suppressed_roles: Iterable[str] = (),
    ) -> None:
        """A framework subscribed (or was recovered from a slave, inactive)."""

    @abstractmethod
    def update_framework(
        self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] | None = None
    ) -> None:
        """A framework resubscribed with new roles or suppressed roles."""

    @abstractmethod
    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework; everything allocated to it is free again."""

    @abstractmethod
    def activate_framework(self, framework_id: str) -> None:
        """The framework is connected again and may receive offers."""

    @abstractmethod
    def deactivate_framework(self, framework_id: str) -> None:
        """No offers for now (scheduler disconnected); allocations stay."""

    # -- slaves ---------------------------------------------------------------

    @abstractmethod
    def add_slave(
        self,
        slave_id: str,
        total: Resources,
        used: Mapping[str, Resources] | None = None,
        hostname: str | None = None,
        attributes: object = None,
    ) -> None:
        """A slave registered. `used` maps framework id to what its tasks and
        executors already hold there (a reregistering slave)."""

    @abstractmethod
    def update_slave(self, slave_id: str, total: Resources) -> None:
        """The slave's total resources changed."""

    @abstractmethod
    def remove_slave(self, slave_id: str) -> None:
        """Forget a slave and everything allocated on it."""

    @abstractmethod
    def activate_slave(self, slave_id: str) -> None:
        """Offer this slave's resources again."""

    @abstractmethod
    def deactivate_slave(self, slave_id: str) -> None:
        """Stop offering this slave (disconnected); allocations stay."""

    # -- resources ------------------------------------------------------------

    @abstractmethod
    def recover_resources(
        self,
        framework_id: str,
        slave_id: str,
        resources: Resources,
        refuse_seconds: float | None,
        now: float,
        role: str | None = None,
    ) -> None:
        """Resources allocated to a framework are free again (declined, rescinded,
        unused part of an accept, finished task). With `refuse_seconds` > 0 the
        framework (in `role`, or all its roles) is not offered these resources
        on that slave again before ``now + refuse_seconds``."""

    @abstractmethod
    def suppress(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """Stop offering to the framework in `roles` (all of its roles if None)."""

    @abstractmethod
    def revive(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """Undo suppression and drop decline filters for `roles` (all if None)."""

    # -- the question ---------------------------------------------------------

    @abstractmethod
    def allocate(self, now: float, slaves: Iterable[str] | None = None) -> Allocations:
        """Hand out free resources of `slaves` (all if None). What is returned is
        allocated from now on."""

    # -- views ----------------------------------------------------------------

    @abstractmethod
    def allocated(self, framework_id: str) -> Resources:
        """Everything allocated (offered or in use) to a framework."""

    def stats(self) -> dict[str, float]:
        """Counters for /metrics/snapshot (key names without a prefix)."""
        return {}

    # -- policy (roles); allocators without roles refuse --------------------

    def update_weights(self, weights: Mapping[str, float]) -> None:
        """Role weights (a role's share is divided by its weight); merged into
        the current ones."""
        raise NotImplementedError(f"{type(self).__name__} does not support weights")

    def update_quota(self, role: str, guarantee: Resources | None, limit: Resources | None = None) -> None:
        """Role quota on unreserved scalars: the guarantee is served first and
        held back from other roles while unmet; the limit is never exceeded.
        Both None removes the role's quota."""
        raise NotImplementedError(f"{type(self).__name__} does not support quota")

    def recovering(self, expected_slaves: int, now: float) -> None:
        """The master failed over and expects `expected_slaves` back; an
        allocator may pause until enough are (the hierarchical one does, with
        quota set). Default: carry on."""

    def explain(self, framework_id: str | None = None) -> dict:
        """Why frameworks are (not) getting offers; shape in offerd/allocator/README.md."""
        return {"frameworks": {}} if framework_id is None else {}
