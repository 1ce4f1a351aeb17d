"""Mesos' maintenance primitives against a real local cluster: the schedule, DRAINING
machines whose offers carry their unavailability, inverse offers answered over
ZeroMQ (SDK) and over the v1 scheduler API, machine/down removing the slave and
refusing it until machine/up, and the v1 operator calls in JSON and protobuf.

Every slave of `offerd local` runs on 127.0.0.1 under that name; the slave to
drain is one more, started under its own hostname, so it is a machine of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import requests

from offerd.common import mesos_json
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import offerd_pb2 as pb
from tests.builders import command_task, framework_info
from tests.integration.test_scheduler_http_api import V1Scheduler, _info
from tests.support import free_port, wait_for

from offerd.framework_sdk import MesosSchedulerDriver, Scheduler

HOST = "maint-host"
MACHINE = {"hostname": HOST, "ip": "127.0.0.1"}
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
HOUR_NS = 3600 * 10**9


def _start_machine_slave(cluster, work_dir: str, port: int):
    """A slave announcing HOST (its own machine), stopped with the cluster."""
    proc = cluster._spawn(f"slave-{HOST}-{len(cluster.slave_procs)}", [
        "slave", f"--master={cluster.master}", f"--ip={cluster.ip}", f"--hostname={HOST}", f"--port={port}",
        f"--work_dir={work_dir}", "--resources=cpus:2;mem:1024;disk:1024;ports:[33000-33100]",
        "--containerizer=posix", "--logging_level=INFO"])
    cluster.slave_procs.append(proc)
    return proc


def _slaves(cluster) -> list[dict]:
    return requests.get(f"{cluster.master_url}/master/state", timeout=5).json()["slaves"]


def _machine_slave(cluster) -> dict | None:
    return next((s for s in _slaves(cluster) if s["hostname"] == HOST), None)


def _get(cluster, path: str):
    answer = requests.get(f"{cluster.master_url}{path}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _post(cluster, path: str, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{cluster.master_url}{path}", data=data, headers={"Content-Type": JSON}, timeout=10)


def _schedule(start_ns: int) -> dict:
    return {"windows": [{"machine_ids": [MACHINE],
                         "unavailability": {"start": {"nanoseconds": start_ns},
                                            "duration": {"nanoseconds": HOUR_NS}}}]}


def _metric(cluster, key: str) -> float:
    return _get(cluster, "/metrics/snapshot").get(key, 0)


class MaintenanceScheduler(Scheduler):
    """Runs one long task on HOST's slave and records offers and inverse offers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.framework_id = None
        self.offers: list[pb.Offer] = []
        self.inverse_offers: list[pb.InverseOffer] = []
        self.updates: list[pb.TaskStatus] = []
        self.launched = False

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.value

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                self.offers.append(offer)
                launch = offer.hostname == HOST and not self.launched
                self.launched = self.launched or launch
            if launch:
                driver.launchTasks(offer.id, [command_task("long", offer, "sleep 300")], pb.Filters(refuse_seconds=0.1))
            else:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.1))

    def inverseOffers(self, driver, inverse_offers):
        with self.lock:
            self.inverse_offers.extend(inverse_offers)

    def statusUpdate(self, driver, status):
        with self.lock:
            self.updates.append(status)

    def states(self) -> list[int]:
        with self.lock:
            return [u.state for u in self.updates]


def test_bad_schedules_and_machine_lists_are_refused_and_change_nothing(cluster_factory):
    cluster = cluster_factory(slaves=1)
    good = _schedule(time.time_ns() + HOUR_NS)
    assert _post(cluster, "/master/maintenance/schedule", good).status_code == 200
    bad = {
        "an empty window": {"windows": [{"machine_ids": [], "unavailability": {"start": {"nanoseconds": 1}}}]},
        "a machine twice": {"windows": [good["windows"][0], good["windows"][0]]},
        "a machine without hostname and ip": {"windows": [{"machine_ids": [{}],
                                                           "unavailability": {"start": {"nanoseconds": 1}}}]},
        "a bad ip": {"windows": [{"machine_ids": [{"hostname": "x", "ip": "300.1.1.1"}],
                                  "unavailability": {"start": {"nanoseconds": 1}}}]},
        "a negative duration": {"windows": [{"machine_ids": [{"hostname": "x"}], "unavailability": {
            "start": {"nanoseconds": 1}, "duration": {"nanoseconds": -1}}}]},
        "no unavailability": {"windows": [{"machine_ids": [{"hostname": "x"}]}]},
        "an unknown field": {"windows": [], "hours": 3},
        "not JSON": "{windows",
    }
    reasons = {}
    for what, body in bad.items():
        answer = _post(cluster, "/master/maintenance/schedule", body)
        assert answer.status_code == 400, (what, answer.text)
        reasons[what] = answer.text
    assert "appears more than once" in reasons["a machine twice"]
    assert "Both 'hostname' and 'ip' for a machine are empty" in reasons["a machine without hostname and ip"]
    assert "negative" in reasons["a negative duration"]
    assert _get(cluster, "/master/maintenance/schedule") == good

    for path, body, reason in (
            ("/master/machine/down", [], "List of machines is empty"),
            ("/master/machine/down", [{"hostname": "elsewhere"}], "is not part of a maintenance schedule"),
            ("/master/machine/up", [MACHINE], "is not in DOWN mode"),
            ("/master/machine/down", {"hostname": HOST}, "JSON array"),
            ("/master/machine/down", [MACHINE, MACHINE], "appears more than once")):
        answer = _post(cluster, path, body)
        assert answer.status_code == 400 and reason in answer.text, (path, body, answer.text)
    assert _get(cluster, "/master/maintenance/status") == {"draining_machines": [{"id": MACHINE}]}

    # A DOWN machine stays in the schedule until it is brought up.
    assert _post(cluster, "/master/machine/down", [MACHINE]).status_code == 200
    answer = _post(cluster, "/master/maintenance/schedule", {"windows": []})
    assert answer.status_code == 400 and "cannot be removed from the schedule" in answer.text
    assert _get(cluster, "/master/maintenance/status") == {"down_machines": [MACHINE]}
    assert _post(cluster, "/master/machine/up", [MACHINE]).status_code == 200
    assert _get(cluster, "/master/maintenance/schedule") == {"windows": []}
    assert _get(cluster, "/master/maintenance/status") == {}


def _cli(cluster, subcommand: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offerd", "maintenance", subcommand, "--master", cluster.master,
                           *args], capture_output=True, text=True, timeout=60)


def test_the_maintenance_cli(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=1)
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(_schedule(time.time_ns() + HOUR_NS)))
    done = _cli(cluster, "schedule", "--file", str(path))
    assert done.returncode == 0, done.stderr
    listed = _cli(cluster, "schedule")
    assert f"{HOST}/127.0.0.1" in listed.stdout and "1h" in listed.stdout
    assert "DRAINING" in _cli(cluster, "status").stdout
    refused = _cli(cluster, "up", f"{HOST}/127.0.0.1")
    assert refused.returncode == 1 and "is not in DOWN mode" in refused.stderr
    assert _cli(cluster, "down", f"{HOST}/127.0.0.1").returncode == 0
    assert json.loads(_cli(cluster, "status", "--json").stdout) == {"down_machines": [MACHINE]}
    assert _cli(cluster, "up", f"{HOST}/127.0.0.1").returncode == 0
    assert json.loads(_cli(cluster, "schedule", "--json").stdout) == {"windows": []}


def test_draining_inverse_offers_down_and_up_with_a_zeromq_framework(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=1)
    port = free_port()
    _start_machine_slave(cluster, str(tmp_path / "machine-slave"), port)
    wait_for(lambda: _machine_slave(cluster), 60, message="the slave on maint-host registered")
    scheduler = MaintenanceScheduler()
    driver = MesosSchedulerDriver(scheduler, framework_info(name="maintained"), cluster.master)
    driver.start()
    try:
        wait_for(lambda: pb.TASK_RUNNING in scheduler.states(), 60, message="the task runs on maint-host")
        slave_id = _machine_slave(cluster)["id"]

        start = time.time_ns() + HOUR_NS
        assert _post(cluster, "/master/maintenance/schedule", _schedule(start)).status_code == 200
        assert _get(cluster, "/master/maintenance/schedule") == _schedule(start)

        inverse = wait_for(lambda: list(scheduler.inverse_offers), 30, message="an inverse offer")[0]
        assert inverse.slave_id.value == slave_id
        assert inverse.framework_id.value == scheduler.framework_id
        assert inverse.unavailability.start.nanoseconds == start
        assert inverse.unavailability.duration.nanoseconds == HOUR_NS

        def offers_of(host):
            with scheduler.lock:
                return [o for o in scheduler.offers if o.hostname == host]
        drained = wait_for(lambda: [o for o in offers_of(HOST) if o.HasField("unavailability")], 30,
                           message="an offer of the draining slave with its unavailability")
        assert drained[-1].unavailability.start.nanoseconds == start
        assert not any(o.HasField("unavailability") for o in offers_of(cluster.ip))

        # Declined: the status says so, and after the filter another inverse offer comes.
        driver.declineInverseOffers([inverse.id], pb.Filters(refuse_seconds=0.3))

        def statuses():
            machines = _get(cluster, "/master/maintenance/status").get("draining_machines", [])
            return [(s["status"], s["framework_id"]["value"]) for m in machines for s in m.get("statuses", [])]
        wait_for(lambda: statuses() == [("DECLINE", scheduler.framework_id)], 10, message="DECLINE in the status")
        again = wait_for(lambda: [i for i in scheduler.inverse_offers if i.id.value != inverse.id.value], 30,
                         message="a new inverse offer once the decline's filter expired")[0]
        driver.acceptInverseOffers([again.id], pb.Filters(refuse_seconds=3600))
        wait_for(lambda: statuses() == [("ACCEPT", scheduler.framework_id)], 10, message="ACCEPT in the status")

        # DOWN: the slave is told to shut down and removed; its task is lost, as Mesos reports it.
        assert _post(cluster, "/master/machine/down", [MACHINE]).status_code == 200
        wait_for(lambda: pb.TASK_LOST in scheduler.states(), 30, message="TASK_LOST")
        lost = [u for u in scheduler.updates if u.state == pb.TASK_LOST][0]
        assert lost.reason == pb.TaskStatus.REASON_SLAVE_REMOVED
        assert "Machine DOWN" in lost.message
        assert _machine_slave(cluster) is None
        assert _get(cluster, "/master/maintenance/status") == {"down_machines": [MACHINE]}
        proc = cluster.slave_procs[-1]
        wait_for(lambda: proc.poll() is not None, 30, message="the shut-down slave exited")

        # A slave starting on the DOWN machine is refused until the machine is up.
        refused_before = _metric(cluster, "master/slave_registrations_refused_machine_down")
        _start_machine_slave(cluster, str(tmp_path / "machine-slave"), port)
        wait_for(lambda: _metric(cluster, "master/slave_registrations_refused_machine_down") > refused_before, 30,
                 message="the registration refused")
        assert _machine_slave(cluster) is None
        assert _post(cluster, "/master/machine/up", [MACHINE]).status_code == 200
        wait_for(lambda: _machine_slave(cluster), 60, message="the slave registered once the machine is up")
        assert _machine_slave(cluster)["id"] != slave_id
        assert _get(cluster, "/master/maintenance/schedule") == {"windows": []}
    finally:
        driver.stop()
        driver.join()


def _v1(cluster, call: dict, media: str = JSON) -> requests.Response:
    if media == JSON:
        data = json.dumps(call)
    else:
        message, ignored = mesos_json.from_json(call, v1_master.Call)
        assert not ignored
        data = message.SerializeToString()
    return requests.post(f"{cluster.master_url}/api/v1", data=data, timeout=10,
                         headers={"Content-Type": media, "Accept": media})


def _v1_answer(cluster, call: dict, media: str) -> dict:
    answer = _v1(cluster, call, media)
    assert answer.status_code == 200, answer.text
    if media == JSON:
        return answer.json()
    return mesos_json.to_json(v1_master.Response.FromString(answer.content))


def test_v1_operator_calls_and_a_v1_http_scheduler(cluster_factory, tmp_path):
    cluster = cluster_factory(slaves=1)
    _start_machine_slave(cluster, str(tmp_path / "machine-slave"), free_port())
    wait_for(lambda: _machine_slave(cluster), 60, message="the slave on maint-host registered")
    http = V1Scheduler(cluster.master_url)
    try:
        http.subscribe(_info("v1-maintained"))
        offer = http.wait("OFFERS", lambda e: any(o["hostname"] == HOST for o in e["offers"]["offers"]))
        offer = next(o for o in offer["offers"]["offers"] if o["hostname"] == HOST)
        http.launch(offer, "long", "sleep 300")
        http.acknowledge(http.update("long", "TASK_STARTING"))
        http.acknowledge(http.update("long", "TASK_RUNNING"))

        start = time.time_ns() + HOUR_NS
        call = {"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": _schedule(start)}}
        assert _v1(cluster, call, PROTOBUF).status_code == 200
        for media in (JSON, PROTOBUF):
            answer = _v1_answer(cluster, {"type": "GET_MAINTENANCE_SCHEDULE"}, media)
            assert answer["type"] == "GET_MAINTENANCE_SCHEDULE"
            assert answer["get_maintenance_schedule"]["schedule"] == json.loads(json.dumps(_schedule(start)))

        event = http.wait("INVERSE_OFFERS")
        inverse = event["inverse_offers"]["inverse_offers"][0]
        assert inverse["agent_id"] == offer["agent_id"]
        assert int(inverse["unavailability"]["start"]["nanoseconds"]) == start
        http.accepted({"type": "DECLINE_INVERSE_OFFERS", "decline_inverse_offers": {
            "inverse_offer_ids": [inverse["id"]], "filters": {"refuse_seconds": 0.3}}})

        def answered(media, status):
            document = _v1_answer(cluster, {"type": "GET_MAINTENANCE_STATUS"}, media)["get_maintenance_status"]
            machines = document["status"].get("draining_machines", [])
            return [s["status"] for m in machines for s in m.get("statuses", [])] == [status]
        wait_for(lambda: answered(PROTOBUF, "DECLINE"), 10, message="DECLINE in GET_MAINTENANCE_STATUS")
        again = http.wait("INVERSE_OFFERS")["inverse_offers"]["inverse_offers"][0]
        assert again["id"] != inverse["id"]
        http.accepted({"type": "ACCEPT_INVERSE_OFFERS", "accept_inverse_offers": {
            "inverse_offer_ids": [again["id"]], "filters": {"refuse_seconds": 3600}}})
        wait_for(lambda: answered(JSON, "ACCEPT"), 10, message="ACCEPT in GET_MAINTENANCE_STATUS")

        # Bad calls change nothing.
        for bad in ({"type": "START_MAINTENANCE", "start_maintenance": {"machines": []}},
                    {"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": [MACHINE]}},
                    {"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": {
                        "windows": [{"machine_ids": [], "unavailability": {"start": {"nanoseconds": 1}}}]}}}):
            answer = _v1(cluster, bad)
            assert answer.status_code == 400, (bad, answer.text)
        assert answered(JSON, "ACCEPT")

        assert _v1(cluster, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [MACHINE]}},
                   PROTOBUF).status_code == 200
        lost = http.update("long", "TASK_LOST")
        assert lost["reason"] == "REASON_AGENT_REMOVED"
        status = _v1_answer(cluster, {"type": "GET_MAINTENANCE_STATUS"}, JSON)["get_maintenance_status"]["status"]
        assert status == {"down_machines": [MACHINE]}
        assert _v1(cluster, {"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": [MACHINE]}}).status_code == 200
        assert _v1_answer(cluster, {"type": "GET_MAINTENANCE_SCHEDULE"}, JSON)[
            "get_maintenance_schedule"]["schedule"] == {}
    finally:
        http.close()


def test_schedule_survives_a_master_restart(cluster_factory):
    """The schedule and modes are in the registry (registry.json under --work_dir)."""
    cluster = cluster_factory(slaves=1)
    schedule = _schedule(time.time_ns() + HOUR_NS)
    assert _post(cluster, "/master/maintenance/schedule", schedule).status_code == 200
    assert _post(cluster, "/master/machine/down", [MACHINE]).status_code == 200
    cluster.master_proc.terminate()
    cluster.master_proc.wait(30)
    cluster.start_master()
    wait_for(lambda: _reachable(cluster), 60, message="the restarted master serves")
    assert _get(cluster, "/master/maintenance/schedule") == schedule
    assert _get(cluster, "/master/maintenance/status") == {"down_machines": [MACHINE]}
    registry = json.load(open(os.path.join(cluster.work_dir, "master", "registry.json")))
    assert registry["maintenance"]["down_machines"] == [MACHINE]


def _reachable(cluster) -> bool:
    try:
        return requests.get(f"{cluster.master_url}/master/maintenance/schedule", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_acls_decide_per_machine_and_refusals_change_nothing(tmp_path):
    """Mesos' maintenance ACLs, the object being the machine's hostname: a change needs
    every machine allowed (403 naming the ACL, nothing changed); reads leave out the rest."""
    from offerd.master.daemon import Master
    from offerd.master.flags import master_flags

    secrets = {"admin": "admin-secret", "ops": "ops-secret"}
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in secrets.items()]}))
    any_, none = {"type": "ANY"}, {"type": "NONE"}
    ours = {"values": ["rack1-a"]}
    acls = {"permissive": False, **{action: [
        {"principals": {"values": ["admin"]}, "machines": any_},
        {"principals": {"values": ["ops"]}, "machines": ours},
        {"principals": any_, "machines": none}] for action in (
            "update_maintenance_schedule", "get_maintenance_schedule", "start_maintenance", "stop_maintenance",
            "get_maintenance_status")}}
    master = Master(master_flags(port=0, work_dir=str(tmp_path), credentials=str(credentials),
                                 authenticate_http_readwrite=True, acls=json.dumps(acls))).start()
    try:
        base = f"http://127.0.0.1:{master.http_port}"

        def request(method, path, who, body=None):
            return requests.request(method, base + path, json=body, auth=(who, secrets[who]), timeout=10)
        window = lambda *hosts: {"machine_ids": [{"hostname": h} for h in hosts],  # noqa: E731
                                 "unavailability": {"start": {"nanoseconds": 1}}}
        both = {"windows": [window("rack1-a"), window("rack2-b")]}
        answer = request("POST", "/master/maintenance/schedule", "ops", both)
        assert answer.status_code == 403 and "update_maintenance_schedules" in answer.text, answer.text
        assert request("GET", "/master/maintenance/schedule", "admin").json() == {"windows": []}
        assert request("POST", "/master/maintenance/schedule", "admin", both).status_code == 200
        assert request("GET", "/master/maintenance/schedule", "ops").json() == {"windows": [window("rack1-a")]}
        assert request("GET", "/master/maintenance/status", "ops").json() == {
            "draining_machines": [{"id": {"hostname": "rack1-a"}}]}
        answer = request("POST", "/master/machine/down", "ops", [{"hostname": "rack2-b"}])
        assert answer.status_code == 403 and "start_maintenances" in answer.text
        assert request("POST", "/master/machine/down", "ops", [{"hostname": "rack1-a"}]).status_code == 200
        assert request("GET", "/master/maintenance/status", "admin").json() == {
            "draining_machines": [{"id": {"hostname": "rack2-b"}}], "down_machines": [{"hostname": "rack1-a"}]}
    finally:
        master.stop()
