"""The scheduler driver: a framework's connection to the master.

The driver owns one thread (an :class:`~offerd.common.actor.Actor`) holding a
:class:`~offerd.common.transport.Client` to the leading master. Everything it
knows (subscribed or not, the framework id, delivered updates) lives on that
thread; the public methods, callable from any thread and from inside callbacks,
only build the call and post it there. Callbacks run one at a time, in the
order the master sent the events, on a callback thread of their own, so a slow
callback never stalls heartbeats (see _driver.py).

Security: with a credential the driver proves its principal to the master
(challenge-response: the secret never crosses the wire) before it subscribes;
with the master's public key the link is CURVE-encrypted and only that master
is accepted. A master that refuses the credential aborts the driver and calls
``error(driver, "Master refused authentication: ...")``, as Mesos' driver does.
What is not passed in comes from ``OFFERD_CONFIG`` (client.conf) and
``OFFERD_MASTER_PUBLIC_KEY``.

Connection life: connected → SUBSCRIBE (with the framework id once known, which
makes every reconnection a failover) → SUBSCRIBED → ``registered`` the first
time, ``reregistered`` afterwards; connection lost → ``disconnected``, then the
transport finds the master again and the cycle repeats.
"""

from __future__ import annotations

import collections
import getpass
import functools
import logging
import os
import socket
import time

from offerd.common.actor import Actor
from offerd.common.detector import resolve_master
from offerd.common.transport import Client
from offerd.framework_sdk import interface
from offerd.framework_sdk._driver import ABORTED, RUNNING, DriverBase
from offerd.framework_sdk._http_link import HttpLink
from offerd.framework_sdk._link import MasterLink as _Link
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

__all__ = ["SchedulerDriver", "MesosSchedulerDriver", "TRANSPORTS", "TRANSPORT_VARIABLE"]

# "zmq": offerd's own protocol; "http": Mesos' v1 scheduler HTTP API (_http_link.py).
TRANSPORTS = ("zmq", "http")
TRANSPORT_VARIABLE = "OFFERD_SCHEDULER_TRANSPORT"

Call = pb.Call
Event = pb.Event


class SchedulerDriver(DriverBase, interface.SchedulerDriver):
    """Connects a :class:`~offerd.framework_sdk.interface.Scheduler` to a master.

    ``SchedulerDriver(scheduler, framework, master, implicitAcknowledgements=True,
    credential=None, suppressedRoles=None)``, as ``mesos.native.MesosSchedulerDriver``:
    `framework` is a FrameworkInfo (copied; an empty ``user`` becomes the current
    user), `master` is ``host:port`` of the master's HTTP address (or ``zk://...``),
    `credential` a ``Credential(principal, secret)``.

    offerd adds two keyword arguments: `master_public_key` (the master's CURVE
    public key, 40 Z85 characters or its .key file) and `ca_file` (a PEM CA to
    verify the master's HTTPS). Whatever is not given comes from the client.conf
    that ``OFFERD_CONFIG`` names (its ``master``, ``principal``/``secret``,
    ``master_public_key``, ``ca_file``); the key also from ``OFFERD_MASTER_PUBLIC_KEY``.

    `transport` picks how the driver talks to the master: ``"zmq"`` (the
    default) or ``"http"``, Mesos' v1 scheduler HTTP API (credentials as HTTP
    Basic auth, `ca_file` for HTTPS; the CURVE key does not apply). Without it,
    ``OFFERD_SCHEDULER_TRANSPORT`` decides. Callbacks and methods are the same.
    """

    # Transport settings; class attributes so a test can make failure detection fast.
    heartbeat_interval = 1.0
    max_missed_heartbeats = 5
    # A master that accepted the connection but never answers SUBSCRIBE is
    # treated as lost: the driver reconnects (and may find another leader).
    subscribe_timeout = 15.0
    # How many delivered update uuids are remembered to drop redeliveries.
    dedup_memory = 16384

    def __init__(self, scheduler, framework, master, implicitAcknowledgements=True,
                 credential=None, suppressedRoles=None, *, master_public_key=None, ca_file=None,
                 transport=None):
        super().__init__("scheduler driver")
        self._scheduler = scheduler
        self._framework = _with_defaults(framework)
        self._implicit_acks = bool(implicitAcknowledgements)
        # A setting that cannot be used is reported by start(), through error(), as
        # the executor driver reports a missing environment: the constructor never raises.
        self._settings_error: str | None = None
        try:
            self._link = _Link.resolve(master, credential, master_public_key, ca_file)
        except ValueError as exc:
            self._link = _Link(master or "")
            self._settings_error = str(exc)
        self._transport = (transport or os.environ.get(TRANSPORT_VARIABLE) or "zmq").strip().lower()
        if self._transport not in TRANSPORTS and self._settings_error is None:
            self._settings_error = (f"unknown transport {self._transport!r} (from "
                                    f"{'transport=' if transport else TRANSPORT_VARIABLE}): use one of "
                                    f"{', '.join(TRANSPORTS)}")
        self._master = self._link.master
        if self._link.credential is not None and not self._framework.principal:
            # Mesos' rule: the principal the framework proves is its FrameworkInfo.principal.
            self._framework.principal = self._link.credential.principal
        self._suppressed_roles: list[str] = list(suppressedRoles or [])
        # Driver-thread state.
        self._client: Client | None = None
        self._subscribed = False
        self._ever_subscribed = False
        self._subscribe_timer = None
        # (task id, uuid) -> acknowledged?; bounded, oldest forgotten first.
        self._delivered: collections.OrderedDict[tuple[str, bytes], bool] = collections.OrderedDict()

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        with self._cond:
            if self._status != pb.DRIVER_NOT_STARTED:
                return self._status
            error = self._settings_error
            if error is None:
                try:
                    ssl_context = self._link.ssl_context()
                except ValueError as exc:
                    error = str(exc)
            if error is not None:
                self._set_status(ABORTED)
            else:
                self._start_thread(ssl_context)
                self._set_status(RUNNING)
                return RUNNING
        log.error("scheduler driver aborted: %s", error)
        self._call_guarded(self._scheduler, "error", error)
        return ABORTED

    def _start_thread(self, ssl_context) -> None:
        name = self._framework.name or "framework"
        master = self._master
        if ssl_context is None:
            resolve = functools.partial(resolve_master, master)
        else:
            resolve = functools.partial(resolve_master, master, ssl_context=ssl_context)
        self._actor = Actor(f"scheduler-driver[{name}]")
        if self._transport == "http":
            self._client = HttpLink(
                self._actor, master, self._on_message, self._on_connected, self._on_disconnected,
                self._on_auth_failed, ssl_context=ssl_context,
                credential=self._link.credential, max_missed=self.max_missed_heartbeats,
                subscribe_timeout=self.subscribe_timeout, name=f"scheduler-http[{name}]")
        else:
            self._client = Client(
                self._actor,
                resolve,
                [pb.Event, pb.ProtocolError],
                self._on_message,
                on_connected=self._on_connected,
                on_disconnected=self._on_disconnected,
                heartbeat_interval=self.heartbeat_interval,
                max_missed=self.max_missed_heartbeats,
                name=f"scheduler-driver[{name}]",
                server_key=self._link.server_key,
                credential=self._link.credential,
                on_auth_failed=self._on_auth_failed,
            )
        self._actor.call_soon(self._client.start)
        self._start_callbacks(self._actor)
        self._actor.start()

    def stop(self, failover=False):
        return self._begin_stop(self._shutdown, bool(failover))

    # -- calls ----------------------------------------------------------------

    def requestResources(self, requests):
        call = Call(type=Call.REQUEST)
        call.request.requests.extend(requests)
        return self._post(self._send_call, call, "requestResources")

    def launchTasks(self, offerIds, tasks, filters=None):
        if not tasks:
            return self._post(self._send_call, self._decline_call(offerIds, filters), "declineOffer")
        operation = pb.Offer.Operation(type=pb.Offer.Operation.LAUNCH)
        operation.launch.task_infos.extend(tasks)
        return self.acceptOffers(offerIds, [operation], filters)

    def acceptOffers(self, offerIds, operations, filters=None):
        call = Call(type=Call.ACCEPT)
        call.accept.offer_ids.extend(_offer_ids(offerIds))
        call.accept.operations.extend(operations)
        call.accept.filters.CopyFrom(filters if filters is not None else pb.Filters())
        return self._post(self._accept, call)

    def declineOffer(self, offerId, filters=None):
        return self._post(self._send_call, self._decline_call(offerId, filters), "declineOffer")

    def acceptInverseOffers(self, inverseOfferIds, filters=None):
        """The framework will comply with the maintenance the inverse offers announce."""
        call = Call(type=Call.ACCEPT_INVERSE_OFFERS)
        call.accept_inverse_offers.inverse_offer_ids.extend(_offer_ids(inverseOfferIds))
        call.accept_inverse_offers.filters.CopyFrom(filters if filters is not None else pb.Filters())
        return self._post(self._send_call, call, "acceptInverseOffers")

    def declineInverseOffers(self, inverseOfferIds, filters=None):
        """The framework cannot (yet) comply with the maintenance the inverse offers announce."""
        call = Call(type=Call.DECLINE_INVERSE_OFFERS)
        call.decline_inverse_offers.inverse_offer_ids.extend(_offer_ids(inverseOfferIds))
        call.decline_inverse_offers.filters.CopyFrom(filters if filters is not None else pb.Filters())
        return self._post(self._send_call, call, "declineInverseOffers")

    def reviveOffers(self, roles=None):
        call = Call(type=Call.REVIVE)
        call.revive.roles.extend(_roles(roles))
        return self._post(self._revive, call)

    def suppressOffers(self, roles=None):
        call = Call(type=Call.SUPPRESS)
        call.suppress.roles.extend(_roles(roles))
        return self._post(self._suppress, call)

    def killTask(self, taskId):
        call = Call(type=Call.KILL)
        call.kill.task_id.CopyFrom(taskId)
        return self._post(self._send_call, call, "killTask")

    def acknowledgeStatusUpdate(self, status):
        if self._implicit_acks:
            # Mesos kills the process here; a logged refusal is kinder and as safe.
            log.error("acknowledgeStatusUpdate ignored: implicit acknowledgements are enabled "
                      "(pass implicitAcknowledgements=False to the driver)")
            return self._status
        copy = pb.TaskStatus()
        copy.CopyFrom(status)
        return self._post(self._acknowledge, copy)

    def sendFrameworkMessage(self, executorId, slaveId, data):
        call = Call(type=Call.MESSAGE)
        call.message.executor_id.CopyFrom(executorId)
        call.message.slave_id.CopyFrom(slaveId)
        call.message.data = _as_bytes(data)
        return self._post(self._send_call, call, "sendFrameworkMessage")

    def reconcileTasks(self, tasks):
        call = Call(type=Call.RECONCILE)
        for status in tasks:
            entry = call.reconcile.tasks.add()
            entry.task_id.CopyFrom(status.task_id)
            if status.HasField("slave_id"):
                entry.slave_id.CopyFrom(status.slave_id)
        return self._post(self._send_call, call, "reconcileTasks")

    def updateFramework(self, frameworkInfo, suppressedRoles=None):
        info = _with_defaults(frameworkInfo)
        return self._post(self._update_framework, info, list(suppressedRoles or []))

    # -- on the driver thread: outgoing ---------------------------------------

    def _send_call(self, call: Call, what: str) -> None:
        if not self._subscribed:
            log.warning("%s dropped: not connected to a master", what)
            return
        call.framework_id.CopyFrom(self._framework.id)
        self._client.send(call)

    def _decline_call(self, offerIds, filters) -> Call:
        call = Call(type=Call.DECLINE)
        call.decline.offer_ids.extend(_offer_ids(offerIds))
        call.decline.filters.CopyFrom(filters if filters is not None else pb.Filters())
        return call

    def _accept(self, call: Call) -> None:
        if self._subscribed:
            self._send_call(call, "acceptOffers")
            return
        # As Mesos' driver: a launch that cannot reach the master is reported
        # lost right away, so the framework does not wait for it forever.
        for operation in call.accept.operations:
            if operation.type != pb.Offer.Operation.LAUNCH:
                continue
            for task in operation.launch.task_infos:
                status = pb.TaskStatus(
                    state=pb.TASK_LOST, source=pb.TaskStatus.SOURCE_MASTER,
                    reason=pb.TaskStatus.REASON_MASTER_DISCONNECTED,
                    message="Master disconnected", timestamp=time.time())
                status.task_id.CopyFrom(task.task_id)
                if task.HasField("slave_id"):
                    status.slave_id.CopyFrom(task.slave_id)
                self._invoke(self._scheduler, "statusUpdate", status)

    def _revive(self, call: Call) -> None:
        # The driver remembers suppression so a resubscription keeps it.
        if call.revive.roles:
            self._suppressed_roles = [r for r in self._suppressed_roles if r not in call.revive.roles]
        else:
            self._suppressed_roles = []
        self._send_call(call, "reviveOffers")

    def _suppress(self, call: Call) -> None:
        roles = list(call.suppress.roles) or _framework_roles(self._framework)
        self._suppressed_roles += [r for r in roles if r not in self._suppressed_roles]
        self._send_call(call, "suppressOffers")

    def _acknowledge(self, status: pb.TaskStatus) -> None:
        if not status.uuid:
            log.debug("status update of task %s needs no acknowledgement", status.task_id.value)
            return
        key = (status.task_id.value, status.uuid)
        if key in self._delivered:
            self._delivered[key] = True
        self._send_ack(status, "acknowledgeStatusUpdate")

    def _send_ack(self, status: pb.TaskStatus, what: str = "acknowledgement") -> None:
        call = Call(type=Call.ACKNOWLEDGE)
        call.acknowledge.slave_id.CopyFrom(status.slave_id)
        call.acknowledge.task_id.CopyFrom(status.task_id)
        call.acknowledge.uuid = status.uuid
        self._send_call(call, what)

    def _update_framework(self, info: pb.FrameworkInfo, suppressed_roles: list[str]) -> None:
        if self._framework.id.value:
            info.id.CopyFrom(self._framework.id)
        if self._link.credential is not None and not info.principal:
            info.principal = self._link.credential.principal
        self._framework = info
        self._suppressed_roles = suppressed_roles
        # Not subscribed: the next SUBSCRIBE carries the new info. Subscribed: the
        # master takes it in place (a refusal comes back as an error).
        if self._subscribed:
            call = Call(type=Call.UPDATE_FRAMEWORK)
            call.update_framework.framework_info.CopyFrom(info)
            call.update_framework.suppressed_roles.extend(suppressed_roles)
            self._send_call(call, "updateFramework")

    def _shutdown(self, failover: bool) -> None:
        if self._subscribed and not failover:
            call = Call(type=Call.TEARDOWN)
            call.framework_id.CopyFrom(self._framework.id)
            self._client.send(call)
        self._subscribed = False
        self._cancel_subscribe_timer()
        self._client.close()
        # A moment for ZeroMQ's I/O thread to put TEARDOWN and goodbye on the
        # wire before join() returns and the process may exit.
        self._actor.call_later(0.1, self._actor.stop)

    # -- on the driver thread: connection -------------------------------------

    def _on_auth_failed(self, reason: str) -> None:
        # Retrying a secret the master rejected cannot succeed: stop trying, and
        # tell the scheduler (Mesos' driver aborts and calls error() here too).
        self._client.close()
        self._cancel_subscribe_timer()
        self._fail(self._scheduler, f"Master refused authentication: {reason}")

    def _on_connected(self) -> None:
        # The transport has authenticated by now when the driver has a credential.
        call = Call(type=Call.SUBSCRIBE)
        call.subscribe.framework_info.CopyFrom(self._framework)
        call.subscribe.suppressed_roles.extend(self._suppressed_roles)
        if self._framework.id.value:
            call.framework_id.CopyFrom(self._framework.id)
        log.info("subscribing framework %r%s", self._framework.name,
                 f" (failover of {self._framework.id.value})" if self._framework.id.value else "")
        self._client.send(call)
        self._cancel_subscribe_timer()
        self._subscribe_timer = self._actor.call_later(self.subscribe_timeout, self._subscribe_timed_out)

    def _subscribe_timed_out(self) -> None:
        if not self._subscribed and self._status == RUNNING:
            log.warning("no answer to SUBSCRIBE in %.0fs; reconnecting", self.subscribe_timeout)
            self._client.reconnect()

    def _cancel_subscribe_timer(self) -> None:
        if self._subscribe_timer is not None:
            self._subscribe_timer.cancel()
            self._subscribe_timer = None

    def _on_disconnected(self) -> None:
        self._cancel_subscribe_timer()
        was_subscribed, self._subscribed = self._subscribed, False
        if was_subscribed:
            log.info("disconnected from the master")
            self._invoke(self._scheduler, "disconnected")

    # -- on the driver thread: events -----------------------------------------

    def _on_message(self, message) -> None:
        if self._status != RUNNING:
            return  # stopped or aborted: Mesos' driver ignores everything now
        if isinstance(message, pb.ProtocolError):
            self._subscribed = False
            self._fail(self._scheduler, f"the master refused a message ({message.kind}): {message.message}")
            return
        handler = self._handlers.get(message.type)
        if handler is None:
            log.warning("ignoring event of unknown type %d", message.type)
            return
        if message.type not in (Event.SUBSCRIBED, Event.ERROR, Event.HEARTBEAT) and not self._subscribed:
            log.debug("ignoring %s: not subscribed", Event.Type.Name(message.type))
            return
        handler(self, message)

    def _on_subscribed(self, event: Event) -> None:
        self._cancel_subscribe_timer()
        self._framework.id.CopyFrom(event.subscribed.framework_id)
        if self._subscribed:
            return  # a repeated answer on a live subscription
        self._subscribed = True
        first, self._ever_subscribed = not self._ever_subscribed, True
        log.info("framework %s %s", self._framework.id.value, "registered" if first else "reregistered")
        if first:
            self._invoke(self._scheduler, "registered", event.subscribed.framework_id,
                         event.subscribed.master_info)
        else:
            self._invoke(self._scheduler, "reregistered", event.subscribed.master_info)

    def _on_offers(self, event: Event) -> None:
        offers = list(event.offers.offers)
        if offers:
            self._invoke(self._scheduler, "resourceOffers", offers)

    def _on_rescind(self, event: Event) -> None:
        self._invoke(self._scheduler, "offerRescinded", event.rescind.offer_id)

    def _on_inverse_offers(self, event: Event) -> None:
        inverse_offers = list(event.inverse_offers.inverse_offers)
        # Schedulers written before maintenance (duck-typed, no Scheduler base) lack the callback.
        if inverse_offers and hasattr(self._scheduler, "inverseOffers"):
            self._invoke(self._scheduler, "inverseOffers", inverse_offers)

    def _on_rescind_inverse_offer(self, event: Event) -> None:
        if hasattr(self._scheduler, "inverseOfferRescinded"):
            self._invoke(self._scheduler, "inverseOfferRescinded", event.rescind_inverse_offer.inverse_offer_id)

    def _on_update(self, event: Event) -> None:
        status = event.update.status
        if status.uuid:
            key = (status.task_id.value, status.uuid)
            if key in self._delivered:
                # A redelivery (the slave retries until acknowledged): the
                # scheduler has seen it; acknowledge again if we had before.
                if self._implicit_acks or self._delivered[key]:
                    self._send_ack(status)
                return
            self._delivered[key] = False
            while len(self._delivered) > self.dedup_memory:
                self._delivered.popitem(last=False)
        # Acknowledge only once the callback is done, and not if it aborted the
        # driver: an unacknowledged update comes again, a lost one never does.
        then = None
        if self._implicit_acks and status.uuid:
            then = functools.partial(self._implicit_ack, status)
        self._invoke(self._scheduler, "statusUpdate", status, then=then)

    def _implicit_ack(self, status: pb.TaskStatus) -> None:
        if self._status == ABORTED:
            return
        self._delivered[(status.task_id.value, status.uuid)] = True
        self._send_ack(status)

    def _on_message_event(self, event: Event) -> None:
        self._invoke(self._scheduler, "frameworkMessage", event.message.executor_id,
                     event.message.slave_id, event.message.data)

    def _on_failure(self, event: Event) -> None:
        failure = event.failure
        if failure.HasField("executor_id"):
            self._invoke(self._scheduler, "executorLost", failure.executor_id, failure.slave_id, failure.status)
        elif failure.HasField("slave_id"):
            self._invoke(self._scheduler, "slaveLost", failure.slave_id)
        else:
            log.warning("ignoring FAILURE without slave_id")

    def _on_error(self, event: Event) -> None:
        # The master no longer counts this connection as the framework's
        # (failed over, removed, refused): no TEARDOWN from here on.
        self._subscribed = False
        self._cancel_subscribe_timer()
        self._fail(self._scheduler, event.error.message)

    def _on_heartbeat(self, event: Event) -> None:
        pass  # liveness is the transport's business

    _handlers = {
        Event.SUBSCRIBED: _on_subscribed,
        Event.OFFERS: _on_offers,
        Event.RESCIND: _on_rescind,
        Event.UPDATE: _on_update,
        Event.MESSAGE: _on_message_event,
        Event.FAILURE: _on_failure,
        Event.ERROR: _on_error,
        Event.HEARTBEAT: _on_heartbeat,
        Event.INVERSE_OFFERS: _on_inverse_offers,
        Event.RESCIND_INVERSE_OFFER: _on_rescind_inverse_offer,
    }


MesosSchedulerDriver = SchedulerDriver


def _with_defaults(framework) -> pb.FrameworkInfo:
    info = pb.FrameworkInfo()
    info.CopyFrom(framework)
    if not info.user:
        # As Mesos' driver: tasks run as the user who started the scheduler.
        info.user = _current_user()
    if not info.HasField("hostname"):
        info.hostname = socket.gethostname()
    return info


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


def _framework_roles(framework: pb.FrameworkInfo) -> list[str]:
    return list(framework.roles) or [framework.role]


def _offer_ids(offer_ids) -> list[pb.OfferID]:
    # Mesos' bindings take one OfferID or a list of them.
    if isinstance(offer_ids, pb.OfferID):
        return [offer_ids]
    return list(offer_ids)


def _roles(roles) -> list[str]:
    if roles is None:
        return []
    if isinstance(roles, str):
        return [roles]
    return list(roles)


def _as_bytes(data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)
