"""UPDATE_FRAMEWORK (Mesos 1.9+): a subscribed framework changes its FrameworkInfo
and suppressed roles in place, without resubscribing. As Mesos: offers made to a
role the framework leaves are rescinded, the next offers come in its new roles,
and the principal, user and checkpoint flag cannot change (refused, nothing
changed). Through the SDK's updateFramework over ZeroMQ, against a real cluster."""

from __future__ import annotations

import threading

from offerd.common import http
from offerd.framework_sdk import MesosSchedulerDriver, Scheduler
from offerd.proto import offerd_pb2 as pb
from tests.builders import framework_info
from tests.support import wait_for


class HoldingScheduler(Scheduler):
    """Keeps every offer (so a rescind can be seen) and records callbacks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.offers: dict[str, str] = {}        # offer id -> the role it was made to
        self.rescinded: list[str] = []
        self.errors: list[str] = []
        self.callbacks: list[str] = []

    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.callbacks.append("registered")

    def reregistered(self, driver, master_info):
        with self.lock:
            self.callbacks.append("reregistered")

    def disconnected(self, driver):
        with self.lock:
            self.callbacks.append("disconnected")

    def resourceOffers(self, driver, offers):
        with self.lock:
            for offer in offers:
                self.offers[offer.id.value] = offer.allocation_info.role

    def offerRescinded(self, driver, offer_id):
        with self.lock:
            self.rescinded.append(offer_id.value)

    def error(self, driver, message):
        with self.lock:
            self.errors.append(message)

    def roles_offered(self) -> set[str]:
        with self.lock:
            return {role for offer_id, role in self.offers.items() if offer_id not in self.rescinded}


def _framework(cluster, name: str) -> dict:
    frameworks = http.get_json(cluster.master_url + "/master/frameworks")["frameworks"]
    return next(f for f in frameworks if f["name"] == name)


def test_roles_and_name_change_in_place(cluster_factory):
    cluster = cluster_factory(slaves=1)
    scheduler = HoldingScheduler()
    info = framework_info(name="before", roles=["analytics"])
    info.capabilities.add(type=pb.FrameworkInfo.Capability.MULTI_ROLE)
    driver = MesosSchedulerDriver(scheduler, info, cluster.master)
    driver.start()
    try:
        wait_for(lambda: scheduler.roles_offered() == {"analytics"}, 30, message="an offer to 'analytics'")
        held = set(scheduler.offers)
        framework_id = _framework(cluster, "before")["id"]

        updated = framework_info(name="after", roles=["web"])
        updated.capabilities.add(type=pb.FrameworkInfo.Capability.MULTI_ROLE)
        assert driver.updateFramework(updated) == pb.DRIVER_RUNNING

        # The offer to the role it left is rescinded; the next ones are made to the new role.
        wait_for(lambda: held <= set(scheduler.rescinded), 30, message="the 'analytics' offer rescinded")
        wait_for(lambda: "web" in scheduler.roles_offered(), 30, message="an offer to 'web'")
        assert scheduler.roles_offered() == {"web"}
        shown = _framework(cluster, "after")
        assert shown["id"] == framework_id and shown["roles"] == ["web"]
        # In place: no resubscription, so no disconnected/reregistered callbacks.
        assert scheduler.callbacks == ["registered"] and scheduler.errors == []

        # The user cannot change: refused with Mesos' reason, and nothing changed.
        renamed = framework_info(name="renamed", roles=["web"])
        renamed.user = "nobody-else"
        renamed.capabilities.add(type=pb.FrameworkInfo.Capability.MULTI_ROLE)
        driver.updateFramework(renamed)
        wait_for(lambda: scheduler.errors, 30, message="the refusal")
        assert "Updating 'FrameworkInfo.user' is unsupported" in scheduler.errors[0]
        assert _framework(cluster, "after")["roles"] == ["web"]
    finally:
        driver.stop()
        driver.join()


def test_suppressed_roles_must_be_the_frameworks(cluster_factory):
    cluster = cluster_factory(slaves=1)
    scheduler = HoldingScheduler()
    driver = MesosSchedulerDriver(scheduler, framework_info(name="suppressing", roles=["a"]), cluster.master)
    driver.start()
    try:
        wait_for(lambda: scheduler.offers, 30, message="an offer")
        driver.updateFramework(framework_info(name="suppressing", roles=["a"]), suppressedRoles=["b"])
        wait_for(lambda: scheduler.errors, 30, message="the refusal")
        assert "suppressed roles ['b'] are not among the framework's roles" in scheduler.errors[0]
    finally:
        driver.stop()
        driver.join()


def test_over_the_v1_http_api(cluster_factory):
    """A v1 JSON scheduler (plain HTTP, no SDK): 200 once updated, 400 with Mesos'
    reason for an immutable field, and nothing changed by the refusal."""
    from tests.integration.test_scheduler_http_api import V1Scheduler, _framework, _info

    cluster = cluster_factory(slaves=1)
    http_scheduler = V1Scheduler(cluster.master_url)
    try:
        http_scheduler.subscribe(_info("v1-before"))
        framework_id = http_scheduler.framework_id
        info = {**_info("v1-after"), "id": {"value": framework_id}, "webui_url": "http://ui.example"}
        response = http_scheduler.call({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}})
        assert response.status_code == 200, response.text
        shown = _framework(cluster, framework_id)
        assert shown["name"] == "v1-after" and shown["webui_url"] == "http://ui.example" and shown["active"]

        response = http_scheduler.call({"type": "UPDATE_FRAMEWORK", "update_framework": {
            "framework_info": {**info, "name": "v1-never", "checkpoint": True}}})
        assert response.status_code == 400
        assert "Updating 'FrameworkInfo.checkpoint' is unsupported" in response.text
        assert _framework(cluster, framework_id)["name"] == "v1-after"
        # The subscription carries on: calls on the same stream are still taken.
        http_scheduler.accepted({"type": "REVIVE"})
    finally:
        http_scheduler.close()
