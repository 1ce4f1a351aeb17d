"""Framework lifecycle: subscribe, failover, disconnect, teardown, removal."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from offerd.master import events
from offerd.master.state import Framework, is_terminal
from offerd.master.validation import (
    framework_roles,
    validate_framework_info,
    validate_framework_owner,
    validate_framework_principal,
    validate_framework_user,
)
from offerd.proto import offerd_pb2 as pb

if TYPE_CHECKING:
    from offerd.master.daemon import Master

log = logging.getLogger(__name__)


class Frameworks:
    def __init__(self, master: Master):
        self.master = master
        self.state = master.state

    # -- calls ----------------------------------------------------------------

    def on_subscribe(self, peer: bytes, call: pb.Call) -> None:
        master = self.master
        info = call.subscribe.framework_info
        error = validate_framework_info(info)
        framework_id = info.id.value or call.framework_id.value
        roles = framework_roles(info)
        suppressed = set(call.subscribe.suppressed_roles)
        if error is None and info.id.value and call.framework_id.value and info.id.value != call.framework_id.value:
            error = (f"Call.framework_id {call.framework_id.value} differs from "
                     f"FrameworkInfo.id {info.id.value}")
        if error is None and not suppressed <= set(roles):
            error = f"suppressed roles {sorted(suppressed - set(roles))} are not among the framework's roles"
        if error is None and framework_id in self.state.completed_frameworks:
            error = f"Framework {framework_id} has been removed"
        if error is not None:
            master.metrics.inc("master/invalid_calls")
            log.info("refused SUBSCRIBE from peer %s: %s", peer.hex(), error)
            master.send_to_peer(peer, events.error(error))
            return
        framework = self.state.frameworks.get(framework_id) if framework_id else None
        proven = master.server.principal(peer)
        refusal = self._refusal(framework_id, framework, info, roles, proven)
        if refusal is not None:
            counter, error = refusal
            master.metrics.inc(counter)
            log.warning("refused SUBSCRIBE of framework %s (%s) from peer %s, principal %s: %s",
                        framework_id or "(new)", info.name, peer.hex(), _who(proven, info), error)
            # Only the newcomer hears it: the framework and its scheduler stay as they are.
            master.send_to_peer(peer, events.error(error))
            return
        principal = proven if proven is not None else (info.principal or None)
        if framework is None:
            self._add(peer, framework_id or master.ids.framework(), info, roles, suppressed, principal,
                      proven is not None)
        else:
            self._resubscribe(peer, framework, info, roles, suppressed, principal, proven is not None)

    def _refusal(self, framework_id: str, framework: Framework | None, info: pb.FrameworkInfo,
                 roles: tuple[str, ...], proven: str | None) -> tuple[str, str] | None:
        """Why this subscriber may not have the framework, as (metric, text); None if it may.

        Authentication first (who is it), then ownership of the framework id,
        then authorization (--root_submissions, `register_frameworks` per role).
        """
        master = self.master
        error = validate_framework_principal(info.principal or None, proven, master.flags.authenticate_frameworks)
        if error is not None:
            counter = "master/unauthenticated_framework_subscriptions" if proven is None \
                else "master/framework_principal_mismatches"
            return counter, error
        identity = proven if proven is not None else (info.principal or None)
        if framework is not None:
            error = validate_framework_owner(framework_id, framework.principal, framework.authenticated,
                                             framework.recovered, identity, proven is not None)
        elif framework_id:
            # Known to a previous leader (the registry) though not yet back here.
            recorded = master.leadership.framework_principal(framework_id)
            if recorded is not None:
                error = validate_framework_owner(framework_id, recorded, False, False, identity,
                                                 proven is not None)
        if error is not None:
            return "master/framework_principal_mismatches", error
        error = validate_framework_user(info.user or (framework.info.user if framework else ""),
                                        master.flags.root_submissions)
        if error is None:
            for role in roles:
                error = master.authorizer.check(proven, "register_frameworks", role or "*")
                if error is not None:
                    error = f"Framework refused: {error}"
                    break
        if error is not None:
            return "master/unauthorized_framework_subscriptions", error
        return None

    def on_update_framework(self, framework: Framework, call: pb.Call) -> None:
        """UPDATE_FRAMEWORK from a ZeroMQ scheduler: a refusal comes back as an ERROR
        event, as Mesos' v0 schedulers hear it (FrameworkErrorMessage)."""
        refusal = self.update_framework(framework, call)
        if refusal is not None:
            self.master.send_event(framework, events.error(refusal[1]))

    def update_framework(self, framework: Framework, call: pb.Call) -> tuple[int, str] | None:
        """Mesos' UPDATE_FRAMEWORK: a new FrameworkInfo and suppressed roles for a
        subscribed framework, without resubscribing. Returns (HTTP status, reason)
        when refused, having changed nothing.

        As Mesos: the principal, user and checkpoint flag cannot change; the roles
        may, and offers made to a role the framework leaves are rescinded."""
        master = self.master
        update = call.update_framework
        info = update.framework_info
        refusal = self._update_refusal(framework, info, set(update.suppressed_roles))
        if refusal is not None:
            master.metrics.inc("master/invalid_calls")
            log.info("refused UPDATE_FRAMEWORK of framework %s: %s", framework.framework_id, refusal[1])
            return refusal
        roles = framework_roles(info)
        suppressed = set(update.suppressed_roles)
        before = framework.info.SerializeToString(deterministic=True)
        framework.update_info(info, roles)
        framework.suppressed_roles = suppressed
        master.allocator.update_framework(framework.framework_id, roles, suppressed)
        for offer in list(framework.offers.values()):
            if offer.role not in roles:
                master.offers.rescind(offer)
        if framework.info.SerializeToString(deterministic=True) != before:
            master.leadership.framework_added(framework.framework_id, framework.info)
            master.operator_events.framework_updated(framework)
        log.info("framework %s (%s) updated: roles %s, suppressed %s", framework.framework_id,
                 framework.info.name, list(roles), sorted(suppressed))
        master.request_allocation()
        return None

    def _update_refusal(self, framework: Framework, info: pb.FrameworkInfo,
                        suppressed: set[str]) -> tuple[int, str] | None:
        master = self.master
        error = validate_framework_info(info)
        if error is not None:
            return 400, f"Supplied FrameworkInfo is not valid: {error}"
        if info.id.value != framework.framework_id:
            return 400, (f"'UpdateFramework' call is not valid: 'framework_info.id' "
                         f"({info.id.value or 'absent'}) differs from 'framework_id' ({framework.framework_id})")
        old = framework.info
        proven = master.server.principal(framework.peer) if framework.peer is not None else None
        # A principal the scheduler left out of its FrameworkInfo is the one it proved.
        if (info.principal or proven or None) != (old.principal or None):
            return 400, "FrameworkInfo update is not valid: Changing framework's principal is not allowed."
        if info.user != old.user:
            return 400, (f"FrameworkInfo update is not valid: Updating 'FrameworkInfo.user' is unsupported; "
                         f"attempted to update from '{old.user}' to '{info.user}'")
        if info.checkpoint != old.checkpoint:
            return 400, (f"FrameworkInfo update is not valid: Updating 'FrameworkInfo.checkpoint' is "
                         f"unsupported; attempted to update from '{str(old.checkpoint).lower()}' "
                         f"to '{str(info.checkpoint).lower()}'")
        roles = framework_roles(info)
        if not suppressed <= set(roles):
            return 400, (f"'UpdateFramework' call is not valid: suppressed roles "
                         f"{sorted(suppressed - set(roles))} are not among the framework's roles")
        if master.allowed_roles is not None:
            refused = sorted(set(roles) - master.allowed_roles)
            if refused:
                return 400, (f"Supplied FrameworkInfo is not valid: role(s) {', '.join(refused)} not allowed: "
                             f"--roles is {master.flags.roles}")
        for role in roles:
            error = master.authorizer.check(proven, "register_frameworks", role or "*")
            if error is not None:
                return 403, f"Not authorized to register a framework in role '{role or '*'}': {error}"
        return None

    def on_teardown(self, framework: Framework, call: pb.Call) -> None:
        log.info("framework %s asked to be torn down", framework.framework_id)
        self.remove(framework)

    # -- lifecycle ------------------------------------------------------------

    def _add(self, peer, framework_id, info, roles, suppressed, principal: str | None,
             authenticated: bool) -> None:
        master = self.master
        stored = pb.FrameworkInfo()
        stored.CopyFrom(info)
        stored.id.value = framework_id
        # Filled in when only proven (Mesos lets schedulers omit it): the stored
        # principal is what binds the framework id, and slaves keep it.
        if principal is not None:
            stored.principal = principal
        framework = Framework(framework_id, stored, roles, master.flags.max_completed_tasks_per_framework, time.time())
        framework.authenticated = authenticated
        framework.suppressed_roles = suppressed
        self.state.frameworks[framework_id] = framework
        master.leadership.framework_added(framework_id, stored)
        self._connect(framework, peer)
        master.operator_events.framework_added(framework)
        master.allocator.add_framework(framework_id, roles, active=True, suppressed_roles=suppressed)
        log.info("framework %s (%s) subscribed with roles %s", framework_id, info.name, list(roles))
        self._send_subscribed(framework, resubscribed=False)
        master.request_allocation()

    def _resubscribe(self, peer, framework: Framework, info, roles, suppressed, principal: str | None,
                     authenticated: bool) -> None:
        master = self.master
        old_peer = framework.peer
        if old_peer is not None and old_peer != peer:
            master.send_to_peer(old_peer, events.error("Framework failed over"))
            log.info("framework %s failed over to a new connection", framework.framework_id)
        self._unbind(framework)
        if framework.failover_timer is not None:
            framework.failover_timer.cancel()
            framework.failover_timer = None
        # Offers never survive a resubscription (the scheduler forgets them).
        master.offers.remove_framework_offers(framework, notify=False)
        framework.update_info(info, roles)
        if principal is not None:
            framework.info.principal = principal  # a recovered framework takes its first principal
        framework.authenticated = authenticated
        framework.recovered = False
        master.leadership.framework_added(framework.framework_id, framework.info)
        framework.suppressed_roles = suppressed
        framework.reregistered_time = time.time()
        self._connect(framework, peer)
        master.operator_events.framework_updated(framework)
        master.allocator.update_framework(framework.framework_id, roles, suppressed)
        master.allocator.activate_framework(framework.framework_id)
        self._send_subscribed(framework, resubscribed=True)
        master.request_allocation()

    def _connect(self, framework: Framework, peer: bytes) -> None:
        framework.peer = peer
        framework.connected = True
        framework.active = True
        self.state.peer_frameworks.setdefault(peer, set()).add(framework.framework_id)
        self.master.server.set_peer_timeout(peer, self.master.flags.framework_timeout)

    def _unbind(self, framework: Framework) -> None:
        peer = framework.peer
        if peer is None:
            return
        owned = self.state.peer_frameworks.get(peer)
        if owned is not None:
            owned.discard(framework.framework_id)
            if not owned:
                del self.state.peer_frameworks[peer]
                # An HTTP scheduler's event stream ends with its last framework (Mesos
                # closes it on failover and removal); nothing for a ZeroMQ peer.
                self.master.server.end_virtual_peer(peer)
        framework.peer = None

    def _send_subscribed(self, framework: Framework, resubscribed: bool) -> None:
        event = pb.Event(type=pb.Event.SUBSCRIBED)
        event.subscribed.framework_id.value = framework.framework_id
        event.subscribed.heartbeat_interval_seconds = self.master.heartbeat_interval
        event.subscribed.master_info.CopyFrom(self.master.master_info)
        event.subscribed.resubscribed = resubscribed
        self.master.send_event(framework, event)

    def disconnected(self, framework: Framework) -> None:
        """The scheduler's connection is gone; its failover timeout starts."""
        master = self.master
        self._unbind(framework)
        framework.connected = False
        framework.active = False
        master.allocator.deactivate_framework(framework.framework_id)
        master.offers.remove_framework_offers(framework, notify=False)
        master.operator_events.framework_updated(framework)
        timeout = framework.info.failover_timeout
        log.info("framework %s disconnected; removing it in %.3gs unless it resubscribes",
                 framework.framework_id, timeout)
        framework.failover_timer = master.later(timeout, self._failover_expired, framework.framework_id)

    def _failover_expired(self, framework_id: str) -> None:
        framework = self.state.frameworks.get(framework_id)
        if framework is not None and not framework.connected:
            log.info("framework %s did not come back within its failover timeout", framework_id)
            self.remove(framework)

    def remove(self, framework: Framework) -> None:
        """Kill everything of the framework and keep it as a completed framework."""
        master = self.master
        framework_id = framework.framework_id
        if framework.failover_timer is not None:
            framework.failover_timer.cancel()
            framework.failover_timer = None
        master.offers.remove_framework_offers(framework, notify=False, recover=False)
        now = time.time()
        slaves_to_tell = set()
        for task in framework.tasks.values():
            slaves_to_tell.add(task.slave_id)
            slave = self.state.slaves.get(task.slave_id)
            if slave is not None:
                slave.tasks.pop((framework_id, task.task_id), None)
            if not is_terminal(task.state):
                self.state.set_task_state(task, pb.TASK_KILLED)
                task.statuses.append((pb.TASK_KILLED, now))
                master.operator_events.task_updated(task)
            framework.add_completed(task)
        framework.tasks.clear()
        for slave in self.state.slaves.values():
            if slave.executors.pop(framework_id, None) is not None:
                slaves_to_tell.add(slave.slave_id)
        for slave_id in slaves_to_tell:
            slave = self.state.slaves.get(slave_id)
            if slave is not None:
                master.send_slave(slave, events.shutdown_framework(framework_id))
        # The allocator drops every allocation of the framework at once, so
        # tasks are not recovered one by one.
        master.allocator.remove_framework(framework_id)
        self._unbind(framework)
        framework.connected = False
        framework.active = False
        framework.unregistered_time = now
        del self.state.frameworks[framework_id]
        self.state.add_completed_framework(framework)
        master.operator_events.framework_removed(framework)
        master.leadership.framework_removed(framework_id)
        master.metrics.inc("master/frameworks_removed")
        log.info("removed framework %s", framework_id)
        master.request_allocation()

    def recovered(self, framework_id: str, info: pb.FrameworkInfo | None) -> Framework | None:
        """The framework of a task a reregistering slave reports; a placeholder
        (inactive, no scheduler) when the master has not seen it. None if the
        framework was removed: its tasks must go."""
        framework = self.state.frameworks.get(framework_id)
        if framework is not None:
            return framework
        if framework_id in self.state.completed_frameworks:
            return None
        stored = pb.FrameworkInfo()
        if info is not None:
            stored.CopyFrom(info)
        if not stored.name:
            stored.name = "(recovered)"
        stored.id.value = framework_id
        roles = framework_roles(stored)
        framework = Framework(framework_id, stored, roles, self.master.flags.max_completed_tasks_per_framework,
                              time.time())
        framework.recovered = True
        self.state.frameworks[framework_id] = framework
        self.master.operator_events.framework_added(framework)
        self.master.allocator.add_framework(framework_id, roles, active=False)
        log.info("framework %s recovered from a reregistering slave; waiting for its scheduler",
                 framework_id)
        return framework


def _who(proven: str | None, info: pb.FrameworkInfo) -> str:
    """A principal for the logs: proven, or only claimed."""
    if proven is not None:
        return repr(proven)
    return f"(none proven; claims {info.principal!r})" if info.principal else "(none)"
