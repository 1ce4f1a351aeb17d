"""Convergence: launch what is missing, kill what is surplus, drive deployments.

Mixed into :class:`~frameworks.marathon_like.core.Core`; every method runs under
the core's lock. Entry points: ``on_offers`` and ``on_status`` (from the SDK
scheduler), ``tick`` (a timer thread) and ``converge_all`` (after any change).
"""

from __future__ import annotations

import logging

from offerd.proto import offerd_pb2 as pb

from frameworks.marathon_like import deployments as plans
from frameworks.marathon_like import ids
from frameworks.marathon_like.health import on_mesos_status
from frameworks.marathon_like.matcher import OfferView, build_task, match
from frameworks.marathon_like.model import FAILURES, TERMINAL, Instance

log = logging.getLogger(__name__)


class Engine:
    def __init__(self):
        self.suppressed = False
        self.declined_since_revive = False
        self.last_revive = 0.0
        self.want_revive = False
        self.last_reconcile = 0.0
        self.last_unreachable_reconcile = 0.0

    # -- what to launch and kill -------------------------------------------------

    def converge_all(self) -> None:
        for app_id in set(self.apps) | set(self.by_app):
            self.converge(app_id)

    def _victim_order(self, app: dict | None, instances: list[Instance]) -> list[Instance]:
        youngest = (app or {}).get("killSelection", "YOUNGEST_FIRST") == "YOUNGEST_FIRST"

        def key(inst):
            age = inst.started_at or inst.staged_at
            return (not inst.sentenced, inst.condition_rank(), -age if youngest else age)
        return sorted(instances, key=key)

    def _expire_unreachable(self, app: dict) -> None:
        """unreachableStrategy: past inactiveAfterSeconds an unreachable instance no longer
        counts (a replacement launches); past expungeAfterSeconds, or at once when the strategy
        is "disabled", it is killed and forgotten."""
        now = ids.now()
        strategy = app.get("unreachableStrategy")
        for inst in list(self.by_app.get(app["id"], {}).values()):
            if inst.unreachable_since is None:
                continue
            gone = now - inst.unreachable_since
            if strategy == "disabled" or gone >= strategy.get("expungeAfterSeconds", 0):
                log.info("expunging unreachable task %s", inst.task_id)
                self.kill(inst, "unreachable too long")
                self._forget(inst)
            elif gone >= strategy.get("inactiveAfterSeconds", 0) and not inst.inactive:
                log.info("unreachable task %s is inactive; replacing it", inst.task_id)
                inst.inactive = True

    def converge(self, app_id: str) -> None:
        app = self.apps.get(app_id)
        if app is not None:
            self._expire_unreachable(app)
        active = [i for i in self.by_app.get(app_id, {}).values() if i.active]
        entry = self.queue_entry(app_id) if app else self.queue.get(app_id)
        if app is None:
            for inst in self.by_app.get(app_id, {}).values():
                self.kill(inst, "app removed")
            self.queue.pop(app_id, None)
            return
        restart = self.restarts.get(app_id)
        if restart is not None:
            wanted = self._rolling(app, restart, active)
        else:
            surplus = len(active) - app["instances"]
            for inst in self._victim_order(app, active)[:max(0, surplus)]:
                self.kill(inst, "scaling down")
            wanted = max(0, app["instances"] - len(active))
        if wanted > 0 and entry.count <= 0:
            entry.since = ids.now()
            self.revive_soon()
        entry.count = wanted

    def _rolling(self, app: dict, restart: plans.RollingRestart, active: list[Instance]) -> int:
        config = app["versionInfo"]["lastConfigChangeAt"]
        old = [i for i in active if i.config_version != config]
        new = [i for i in active if i.config_version == config]
        capacity = restart.capacity(len(active))
        ready_old = [i for i in old if i.ready(app)]
        ready_new = sum(1 for i in new if self._settled(i, app))
        kill_ready, _ = restart.kills(len(ready_old), ready_new, 0)
        victims = [i for i in old if not i.ready(app)] + self._victim_order(app, ready_old)[:kill_ready]
        for inst in victims:
            self.kill(inst, "replaced by a new version")
        old = [i for i in old if i.active]
        if not old and len(new) > app["instances"]:
            for inst in self._victim_order(app, new)[:len(new) - app["instances"]]:
                self.kill(inst, "scaling down")
        return restart.launches(len(old), len(new), capacity)

    def kill(self, inst: Instance, why: str) -> None:
        if inst.killing or inst.state in TERMINAL:
            return
        inst.killing = True
        inst.kill_sent_at = ids.now()
        log.info("killing %s: %s", inst.task_id, why)
        self.bump("tasks_killed")
        self.driver.killTask(pb.TaskID(value=inst.task_id))

    def _retry_kills(self, now: float, patience: float | None = None) -> None:
        """Send again the kills that have gone unanswered for `patience` (--kill_retry_timeout)."""
        patience = self.config.kill_retry_timeout if patience is None else patience
        for inst in self.instances.values():
            if inst.killing and inst.state not in TERMINAL and now - inst.kill_sent_at >= patience:
                inst.kill_sent_at = now
                log.info("killing %s again: the kill is unanswered", inst.task_id)
                self.driver.killTask(pb.TaskID(value=inst.task_id))

    # -- deployments -----------------------------------------------------------------

    def _settled(self, inst: Instance, app: dict) -> bool:
        """Ready (running, healthy, passed readiness), as Marathon counts a started instance;
        without health or readiness checks to prove it up, also running for the settle time."""
        if not inst.ready(app):
            return False
        if app.get("healthChecks") or app.get("readinessChecks"):
            return True
        return inst.started_at is not None and ids.now() - inst.started_at >= self.config.deployment_settle_seconds

    def _action_done(self, action: dict) -> bool:
        """Whether a step's action is complete: a Start/Scale/Restart only when the app's
        instances all run the target version and are settled (`_settled`); until then the
        deployment stays listed and the launch queue says what is missing and why."""
        app_id = action["app"]
        app = self.apps.get(app_id)
        alive = [i for i in self.by_app.get(app_id, {}).values() if i.state not in TERMINAL]
        if action["action"] == plans.STOP:
            return not alive
        if action["action"] == plans.START or app is None:
            return True
        active = [i for i in alive if i.active]
        config = app["versionInfo"]["lastConfigChangeAt"]
        if action["action"] == plans.RESTART and any(i.config_version != config for i in alive):
            return False
        return len(active) == app["instances"] == sum(1 for i in active if self._settled(i, app)) and \
            len(alive) == len(active)

    def progress_deployments(self) -> None:
        for deployment in sorted(self.deployments.values(), key=lambda d: d.version):
            while deployment.current < len(deployment.steps):
                actions = deployment.current_actions()
                if not deployment.step_started:
                    deployment.step_started = True
                    for action in actions:
                        if action["action"] == plans.RESTART and action["app"] in self.apps:
                            self.restarts[action["app"]] = plans.RollingRestart.of(self.apps[action["app"]])
                    self.converge_all()
                    self.events.publish("deployment_info", plan=deployment.plan_json(self.group_json_of),
                                        currentStep={"actions": actions})
                if not all(self._action_done(a) for a in actions):
                    break
                for action in actions:
                    self.restarts.pop(action["app"], None)
                self.events.publish("deployment_step_success", plan=deployment.plan_json(self.group_json_of),
                                    currentStep={"actions": actions})
                deployment.current += 1
                deployment.step_started = False
                if deployment.current < len(deployment.steps):
                    self.storage.save_deployment(deployment.to_record())
            if deployment.current >= len(deployment.steps):
                self.deployments.pop(deployment.id, None)
                self.storage.delete_deployment(deployment.id)
                self.bump("deployments_succeeded")
                self.events.publish("deployment_success", id=deployment.id,
                                    plan=deployment.plan_json(self.group_json_of))
                self.events.publish("group_change_success", groupId="/", version=deployment.version)

    # -- offers -----------------------------------------------------------------------

    def revive_soon(self) -> None:
        self.want_revive = True

    def on_offers(self, offers) -> None:
        now = ids.now()
        roles = ["*"] if self.config.mesos_role == "*" else [self.config.mesos_role, "*"]
        waiting = [e for e in sorted(self.queue.values(), key=lambda e: e.since)
                   if e.count > 0 and e.backoff.time_left(now) <= 0 and e.app_id in self.apps]
        for offer in offers:
            self.bump("offers_received")
            view = OfferView.of(offer)
            tasks = []
            for entry in waiting:
                app = self.apps[entry.app_id]
                placed = None
                if app["constraints"]:
                    placed = [(i.host, i.attributes) for i in self.by_app.get(app["id"], {}).values() if i.active]
                launched_here = 0
                while entry.count > 0 and view.launched < self.config.max_instances_per_offer:
                    result = match(app, view, roles, placed or [])
                    if isinstance(result, str):
                        if launched_here == 0:
                            entry.record(result, offer, now)
                        break
                    tasks.append(self._launch(app, view, result, now))
                    view.remaining = view.remaining - result.resources
                    view.launched += 1
                    launched_here += 1
                    entry.count -= 1
                    if placed is not None:
                        placed.append((view.hostname, view.attributes))
                if launched_here:
                    entry.record(None, offer, now)
            if tasks:
                more = any(e.count > 0 for e in waiting)
                refuse = 0.0 if more else self.config.decline_offer_duration
                self.driver.launchTasks(offer.id, tasks, pb.Filters(refuse_seconds=refuse))
            else:
                self.declined_since_revive = True
                self.bump("offers_declined")
                self.driver.declineOffer(offer.id, pb.Filters(refuse_seconds=self.config.decline_offer_duration))

    def _launch(self, app: dict, view: OfferView, placement, now: float) -> pb.TaskInfo:
        task_id = ids.new_task_id(app["id"])
        inst = Instance(task_id, app["id"], app["version"], slave_id=view.offer.slave_id.value,
                        host=view.hostname, ports=placement.ports,
                        service_ports=[p["port"] for p in app["portDefinitions"]], staged_at=now,
                        attributes=view.attributes)
        inst.config_version = app["versionInfo"]["lastConfigChangeAt"]
        self.instances[task_id] = inst
        self.by_app.setdefault(app["id"], {})[task_id] = inst
        # Stored before the launch goes out, so a restart adopts it instead of killing an unknown task.
        self.storage.save_instance(inst.to_record())
        self.bump("tasks_launched")
        return build_task(app, task_id, view, placement)

    # -- status updates ------------------------------------------------------------------

    def on_status(self, status) -> None:
        task_id = status.task_id.value
        state = pb.TaskState.Name(status.state)
        inst = self.instances.get(task_id)
        if inst is None:
            if state not in TERMINAL:
                log.info("killing unknown task %s (%s)", task_id, state)
                self.driver.killTask(pb.TaskID(value=task_id))
            return
        if inst.state in TERMINAL:
            return
        now = ids.now()
        changed = inst.state != state
        inst.state = state
        if status.slave_id.value and inst.slave_id != status.slave_id.value:
            inst.slave_id = status.slave_id.value
            changed = True
        if state == "TASK_RUNNING" and inst.started_at is None:
            inst.started_at = now
        if state == "TASK_UNREACHABLE":
            if inst.unreachable_since is None:
                inst.unreachable_since, changed = now, True
        elif inst.unreachable_since is not None:
            inst.unreachable_since, inst.inactive = None, False   # back: scaling down drops the surplus
        if changed and state not in TERMINAL:
            self.storage.save_instance(inst.to_record())
        app = self.apps.get(inst.app_id)
        killed_unhealthy = on_mesos_status(self, inst, app, status)
        self.events.publish("status_update_event", slaveId=inst.slave_id, taskId=task_id, taskStatus=state,
                            message=status.message, appId=inst.app_id, host=inst.host,
                            ipAddresses=[{"ipAddress": inst.host, "protocol": "IPv4"}], ports=inst.ports,
                            version=inst.version)
        if state in TERMINAL:
            self.bump("tasks_terminal")
            failed = state in FAILURES and not inst.killing
            if killed_unhealthy and app is not None:
                # The slave killed it for failing its Mesos-level check: a failure (the
                # replacement comes under backoff), as for Marathon's own health kills.
                self.events.publish("unhealthy_instance_kill_event", appId=inst.app_id, taskId=task_id,
                                    instanceId=task_id, version=inst.version, reason=status.message,
                                    host=inst.host, slaveId=inst.slave_id)
                self.record_failure(app, inst, state, f"unhealthy: {status.message}")
            elif failed and app is not None:
                self.record_failure(app, inst, state, status.message)
            self._forget(inst)
        self.converge(inst.app_id)
        self.progress_deployments()

    def record_failure(self, app: dict, inst: Instance, state: str, message: str) -> None:
        now = ids.now()
        self.queue_entry(app["id"]).backoff.failed(app, now)
        self.last_failure[app["id"]] = {
            "appId": app["id"], "host": inst.host, "message": message or "", "state": state,
            "taskId": inst.task_id, "timestamp": ids.timestamp(now), "version": inst.version,
            "slaveId": inst.slave_id}
        self.storage.save_failure(app["id"], self.last_failure[app["id"]])
        self.bump("tasks_failed")

    def _forget(self, inst: Instance) -> None:
        self.instances.pop(inst.task_id, None)
        self.storage.delete_instance(inst.task_id)
        tasks = self.by_app.get(inst.app_id, {})
        tasks.pop(inst.task_id, None)
        if not tasks:
            self.by_app.pop(inst.app_id, None)

    # -- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = ids.now()
        self.converge_all()
        self.progress_deployments()
        waiting = [e for e in self.queue.values() if e.count > 0]
        launchable = any(e.backoff.time_left(now) <= 0 for e in waiting)
        if launchable and (self.want_revive or self.suppressed or self.declined_since_revive) and \
                now - self.last_revive >= self.config.min_revive_offers_interval:
            self.driver.reviveOffers()
            self.bump("revives")
            self.suppressed = self.declined_since_revive = self.want_revive = False
            self.last_revive = now
        elif not waiting and not self.suppressed and self.connected:
            self.driver.suppressOffers()
            self.suppressed = True
        if self.connected:
            self._retry_kills(now)
        if self.connected and now - self.last_reconcile >= self.config.reconciliation_interval:
            self.reconcile()
        elif self.connected and \
                now - self.last_unreachable_reconcile >= self.config.unreachable_reconciliation_interval:
            self.reconcile_unreachable()

    def on_connected(self) -> None:
        """(Re)registered with a master: ask it about every task, and resend the kills it may
        never have received."""
        self.connected = True
        self.suppressed = False
        self.reconcile()
        self._retry_kills(ids.now(), patience=0.0)
        self.revive_soon()

    def reconcile(self) -> None:
        self.last_reconcile = self.last_unreachable_reconcile = ids.now()
        statuses = self._statuses(self.instances.values())
        if statuses:
            self.driver.reconcileTasks(statuses)
        self.driver.reconcileTasks([])

    def reconcile_unreachable(self) -> None:
        """The master sends nothing when an unreachable slave comes back (Mesos does not):
        asking about the unreachable instances is how a returning one is seen running again,
        and its surplus replacement killed, in seconds rather than at the next full
        reconciliation."""
        self.last_unreachable_reconcile = ids.now()
        statuses = self._statuses(i for i in self.instances.values() if i.unreachable_since is not None)
        if statuses:
            self.driver.reconcileTasks(statuses)

    @staticmethod
    def _statuses(instances) -> list:
        statuses = []
        for inst in instances:
            status = pb.TaskStatus(state=pb.TaskState.Value(inst.state))
            status.task_id.value = inst.task_id
            if inst.slave_id:
                status.slave_id.value = inst.slave_id
            statuses.append(status)
        return statuses
