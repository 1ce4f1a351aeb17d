"""Mesos' v1 scheduler HTTP API (POST /api/v1/scheduler) against a real cluster.

The scheduler here is what an unchanged v1 client is: `requests` with a
streaming SUBSCRIBE whose body is read as RecordIO, and plain POSTs carrying
Mesos-Stream-Id, in Mesos' JSON (and once in protobuf). It runs beside a
ZeroMQ SDK framework on the same master.
"""

from __future__ import annotations

import getpass
import json
import queue
import threading

import requests
import zmq

from offerd.cli.secure_setup import OPERATOR
from offerd.common import mesos_json, recordio
from offerd.common.actor import Actor
from offerd.common.transport import Server
from offerd.framework_sdk import MesosSchedulerDriver, Scheduler
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.master.scheduler_stream import EventStream
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2 as pb
from tests.builders import framework_info
from tests.support import wait_for

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


class V1Scheduler:
    """A v1 HTTP scheduler: one streaming SUBSCRIBE, calls as separate POSTs."""

    def __init__(self, master_url: str, media: str = JSON, **session):
        self.url = f"{master_url}/api/v1/scheduler"
        self.media = media
        self.session = session  # requests' auth= and verify=
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.response = None
        self.stream_id = None
        self.framework_id = None
        self.ended = threading.Event()

    def subscribe(self, info: dict, framework_id: str | None = None) -> dict:
        call = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if framework_id:
            call["framework_id"] = {"value": framework_id}
            call["subscribe"]["framework_info"]["id"] = {"value": framework_id}
        response = requests.post(self.url, data=self._encode(call), stream=True, timeout=30,
                                 headers={"Content-Type": self.media, "Accept": self.media}, **self.session)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == self.media
        self.response = response
        self.stream_id = response.headers["Mesos-Stream-Id"]
        self.ended.clear()
        threading.Thread(target=self._read, args=(response,), daemon=True).start()
        subscribed = self.wait("SUBSCRIBED")
        self.framework_id = subscribed["subscribed"]["framework_id"]["value"]
        return subscribed

    def _encode(self, call: dict) -> bytes:
        if self.media == JSON:
            return json.dumps(call).encode()
        message, ignored = mesos_json.from_json(call, v1_scheduler.Call)
        assert not ignored
        return message.SerializeToString()

    def _read(self, response) -> None:
        decoder = recordio.Decoder()
        try:
            for chunk in response.iter_content(chunk_size=None):
                for record in decoder.feed(chunk):
                    if self.media == JSON:
                        event = json.loads(record)
                    else:
                        event = mesos_json.to_json(v1_scheduler.Event.FromString(record))
                    self.events.put(event)
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass  # closed by the test (urllib3 then finds no socket: AttributeError)
        finally:
            self.ended.set()

    def call(self, call: dict, stream_id: str | None = "current", session: dict | None = None,
             **headers) -> requests.Response:
        session = self.session if session is None else session
        call.setdefault("framework_id", {"value": self.framework_id})
        sent = {"Content-Type": self.media, **headers}
        if stream_id is not None:
            sent["Mesos-Stream-Id"] = self.stream_id if stream_id == "current" else stream_id
        return requests.post(self.url, data=self._encode(call), headers=sent, timeout=10,
                             **{"verify": self.session.get("verify", True), **session})

    def accepted(self, call: dict) -> None:
        response = self.call(call)
        assert response.status_code == 202, response.text
        assert response.content == b""

    def wait(self, kind: str, where=lambda event: True, timeout: float = 30.0) -> dict:
        """The next event of `kind` that `where` likes (earlier unclaimed ones count)."""
        for event in self.seen:
            if event["type"] == kind and where(event):
                self.seen.remove(event)
                return event
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    event = self.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if event["type"] == kind and where(event):
                    return event
                self.seen.append(event)
        finally:
            timer.cancel()
        raise AssertionError(f"no {kind} event within {timeout}s; seen: {[e['type'] for e in self.seen]}")

    def update(self, task_id: str, state: str) -> dict:
        return self.wait("UPDATE", lambda e: e["update"]["status"]["task_id"]["value"] == task_id
                         and e["update"]["status"]["state"] == state)["update"]["status"]

    def acknowledge(self, status: dict) -> None:
        self.accepted({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}})

    def launch(self, offer: dict, task_id: str, command: str) -> None:
        task = {"name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
                "command": {"value": command},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}
        self.accepted({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
            "filters": {"refuse_seconds": 0}}})

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


def _info(name: str, failover_timeout: float = 0.0) -> dict:
    return {"user": getpass.getuser(), "name": name, "failover_timeout": failover_timeout}


def _state(cluster) -> dict:
    return requests.get(f"{cluster.master_url}/master/state", timeout=5).json()


def _framework(cluster, framework_id: str) -> dict | None:
    return next((f for f in _state(cluster)["frameworks"] if f["id"] == framework_id), None)


class _Quiet(Scheduler):
    def __init__(self):
        self.framework_id = None

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.value

    def resourceOffers(self, driver, offers):
        for offer in offers:
            driver.declineOffer(offer.id)


def test_json_scheduler_runs_tasks_beside_a_zeromq_framework(cluster_factory):
    cluster = cluster_factory(slaves=1)
    zmq_scheduler = _Quiet()
    driver = MesosSchedulerDriver(zmq_scheduler, framework_info(name="zmq"), cluster.master)
    driver.start()
    http = V1Scheduler(cluster.master_url)
    try:
        subscribed = http.subscribe(_info("http"))
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 15
        assert subscribed["subscribed"]["master_info"]["port"] == cluster.port
        assert "zmq_port" not in subscribed["subscribed"]["master_info"]  # offerd's own field stays home
        offer = http.wait("OFFERS")["offers"]["offers"][0]
        assert offer["framework_id"]["value"] == http.framework_id

        http.launch(offer, "once", "true")
        for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
            http.acknowledge(http.update("once", state))

        offer = http.wait("OFFERS")["offers"]["offers"][0]
        http.launch(offer, "long", "sleep 300")
        http.acknowledge(http.update("long", "TASK_STARTING"))
        running = http.update("long", "TASK_RUNNING")
        http.acknowledge(running)

        wait_for(lambda: zmq_scheduler.framework_id, 20, message="the ZeroMQ framework subscribed")
        frameworks = {f["name"]: f for f in _state(cluster)["frameworks"]}
        assert {"http", "zmq"} <= set(frameworks)
        assert frameworks["http"]["id"] == http.framework_id and frameworks["http"]["active"]
        assert [t["state"] for t in frameworks["http"]["tasks"]] == ["TASK_RUNNING"]
        assert [t["state"] for t in frameworks["http"]["completed_tasks"]] == ["TASK_FINISHED"]

        http.accepted({"type": "RECONCILE", "reconcile": {"tasks": [
            {"task_id": {"value": "long"}, "agent_id": running["agent_id"]}]}})
        reconciled = http.update("long", "TASK_RUNNING")
        assert reconciled["reason"] == "REASON_RECONCILIATION"
        http.accepted({"type": "RECONCILE", "reconcile": {}})  # implicit: every task
        http.update("long", "TASK_RUNNING")

        offer = http.wait("OFFERS")["offers"]["offers"][0]
        http.accepted({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]],
                                                      "filters": {"refuse_seconds": 3600}}})
        http.accepted({"type": "REQUEST", "request": {"requests": [{"agent_id": offer["agent_id"]}]}})
        http.accepted({"type": "SUPPRESS", "suppress": {}})
        http.accepted({"type": "REVIVE", "revive": {}})  # clears the decline filter too
        again = http.wait("OFFERS")["offers"]["offers"][0]
        assert again["agent_id"] == offer["agent_id"]

        http.accepted({"type": "KILL", "kill": {"task_id": {"value": "long"}, "agent_id": running["agent_id"]}})
        http.acknowledge(http.update("long", "TASK_KILLED"))

        http.accepted({"type": "TEARDOWN"})
        assert http.ended.wait(10), "the event stream ends with the framework"
        state = _state(cluster)
        assert http.framework_id in {f["id"] for f in state["completed_frameworks"]}
        assert "zmq" in {f["name"] for f in state["frameworks"]}
    finally:
        http.close()
        driver.stop()
        driver.join()


def test_protobuf_scheduler_launches_and_tears_down(cluster_factory):
    cluster = cluster_factory(slaves=1)
    http = V1Scheduler(cluster.master_url, media=PROTOBUF)
    try:
        subscribed = http.subscribe(_info("proto"))
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 15
        offer = http.wait("OFFERS")["offers"]["offers"][0]
        http.launch(offer, "p1", "sleep 300")
        http.acknowledge(http.update("p1", "TASK_STARTING"))
        http.acknowledge(http.update("p1", "TASK_RUNNING"))
        assert [t["state"] for t in _framework(cluster, http.framework_id)["tasks"]] == ["TASK_RUNNING"]
        http.accepted({"type": "TEARDOWN"})
        assert http.ended.wait(10)
        assert _framework(cluster, http.framework_id) is None
    finally:
        http.close()


def test_failover_keeps_tasks_and_ends_the_old_stream(cluster_factory):
    cluster = cluster_factory(slaves=1)
    first = V1Scheduler(cluster.master_url)
    second = V1Scheduler(cluster.master_url)
    third = V1Scheduler(cluster.master_url)
    try:
        first.subscribe(_info("failover", failover_timeout=300))
        framework_id = first.framework_id
        offer = first.wait("OFFERS")["offers"]["offers"][0]
        first.launch(offer, "kept", "sleep 300")
        first.acknowledge(first.update("kept", "TASK_STARTING"))
        first.acknowledge(first.update("kept", "TASK_RUNNING"))

        # The scheduler goes away: the master notices and keeps the framework.
        first.close()
        wait_for(lambda: not _framework(cluster, framework_id)["active"], 20,
                 message="the master saw the stream close")
        assert _framework(cluster, framework_id)["tasks"][0]["state"] == "TASK_RUNNING"
        old_stream = first.stream_id

        subscribed = second.subscribe(_info("failover", failover_timeout=300), framework_id=framework_id)
        assert second.framework_id == framework_id and second.stream_id != old_stream
        assert subscribed["subscribed"]["framework_id"]["value"] == framework_id
        framework = wait_for(lambda: (f := _framework(cluster, framework_id)) and f["active"] and f, 10)
        assert [t["id"] for t in framework["tasks"]] == ["kept"]
        # The stream of the gone scheduler speaks for nobody.
        refused = second.call({"type": "REVIVE"}, stream_id=old_stream)
        assert refused.status_code == 400 and "didn't match" in refused.text

        # A failover while the old stream is open: it hears why and ends.
        third.subscribe(_info("failover", failover_timeout=300), framework_id=framework_id)
        error = second.wait("ERROR")
        assert "failed over" in error["error"]["message"]
        assert second.ended.wait(10)
        third.accepted({"type": "RECONCILE", "reconcile": {}})
        third.update("kept", "TASK_RUNNING")
        third.wait("HEARTBEAT")  # every heartbeat_interval_seconds (15)
    finally:
        for scheduler in (first, second, third):
            scheduler.close()


def refused(response, status: int, text: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert text in response.text, response.text


def refuses_the_callers_mistakes(http: V1Scheduler, other: V1Scheduler) -> None:
    """Calls of `http`'s stream that are wrong about the call or the caller
    (`other` is another framework) are refused, each with its reason."""
    with_stream = {"Mesos-Stream-Id": http.stream_id}
    refused(http.call({"type": "FLY"}), 400, "FLY")
    refused(http.call({"type": "REVIVE"}, stream_id=None), 400, "Mesos-Stream-Id")
    refused(http.call({"type": "REVIVE"}, stream_id="not-a-stream"), 400, "didn't match")
    # Another framework's id on this stream: not this stream's framework.
    refused(http.call({"type": "REVIVE", "framework_id": {"value": other.framework_id}}), 400, "didn't match")
    refused(http.call({"type": "REVIVE", "framework_id": {"value": "no-such-framework"}}), 400, "cannot be found")
    refused(http.call({"type": "ACCEPT"}), 400, "Expecting 'accept' to be present")
    refused(http.call({"type": "REVIVE"}, **{"Content-Type": "text/plain"}), 415, "application/json")
    refused(requests.post(http.url, data=b"\xff\xff\xff", headers={"Content-Type": PROTOBUF, **with_stream}),
            400, "protobuf")
    refused(requests.post(http.url, data=b"x" * (17 * 1024 * 1024), headers={"Content-Type": JSON, **with_stream}),
            413, "")
    refused(http.call({"type": "REVIVE"}, Origin="http://elsewhere.example"), 403, "cross-site")


def test_bad_input_is_refused_and_changes_nothing(cluster_factory):
    cluster = cluster_factory(slaves=1)
    http = V1Scheduler(cluster.master_url)
    other = V1Scheduler(cluster.master_url)
    try:
        http.subscribe(_info("careful"))
        other.subscribe(_info("other"))
        offer = http.wait("OFFERS")["offers"]["offers"][0]
        before = _framework(cluster, http.framework_id)
        url = http.url
        with_stream = {"Mesos-Stream-Id": http.stream_id}
        refuses_the_callers_mistakes(http, other)
        refused(http.call({"type": "REVIVE", "framework_id": {}}), 400, "framework_id")
        refused(http.call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]]}, "flavour": 1}), 400,
                "flavour")
        refused(requests.post(url, data=b'{"type": "REVIVE", ', headers={"Content-Type": JSON, **with_stream}),
                400, "invalid JSON")
        refused(requests.post(url, data=b'{"type": "REVIVE"}', headers={"Content-Type": "text/plain"}),
                415, "application/json")
        # Calls are whole bodies; a RecordIO-framed (streamed) call is not a type this API reads.
        refused(requests.post(url, data=b"18\n{\"type\": \"REVIVE\"", headers={
            "Content-Type": "application/recordio", **with_stream}), 415, "application/json")
        refused(requests.post(url, data=b"x" * (17 * 1024 * 1024), headers={"Content-Type": JSON}), 413, "")
        refused(requests.post(url, json={"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("x")}},
                              headers={"Accept": "text/html"}), 406, "Accept")
        refused(requests.post(url, json={"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("x")}},
                              headers=with_stream), 400, "should not include")
        refused(requests.post(url, json={"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x"}}}),
                400, "user")
        # What Mesos has and this master does not: refused by name.
        refused(http.call({"type": "RECONCILE_OPERATIONS", "reconcile_operations": {}}), 501,
                "RECONCILE_OPERATIONS")
        refused(http.call({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": _info("y")}}),
                400, "differs from 'framework_id'")
        refused(http.call({"type": "UPDATE_FRAMEWORK"}), 400, "Expecting 'update_framework' to be present")
        refused(http.call({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [
            {"type": "GROW_VOLUME", "grow_volume": {"volume": {"name": "disk", "type": "SCALAR",
                                                               "scalar": {"value": 1}},
                                                    "addition": {"name": "disk", "type": "SCALAR",
                                                                 "scalar": {"value": 1}}}}]}}),
                501, "GROW_VOLUME")

        after = _framework(cluster, http.framework_id)
        for key in ("active", "tasks", "offered_resources", "used_resources"):
            assert after[key] == before[key], key
        assert len(_state(cluster)["frameworks"]) == 2
        # The offer is still the scheduler's to use, and the stream still works.
        http.launch(offer, "still-fine", "sleep 300")
        http.acknowledge(http.update("still-fine", "TASK_STARTING"))
        http.update("still-fine", "TASK_RUNNING")
    finally:
        http.close()
        other.close()


def test_secure_master_checks_who_calls(cluster_factory):
    """HTTP Basic principals, ACLs and the framework's principal, on HTTPS."""
    cluster = cluster_factory(slaves=1, secure=True)
    security = cluster.security
    verify = security.ca_file
    admin = (OPERATOR, security.secret(OPERATOR))
    subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("secure")}}
    url = f"{cluster.master_url}/api/v1/scheduler"

    nobody = requests.post(url, json=subscribe, verify=verify, timeout=10)
    assert nobody.status_code == 401 and "WWW-Authenticate" in nobody.headers
    # "readonly" is who it says, but the ACLs do not let it register frameworks.
    readonly = requests.post(url, json=subscribe, verify=verify, timeout=10,
                             auth=("readonly", security.secret("readonly")))
    assert readonly.status_code == 403, readonly.text
    assert cluster.state()["frameworks"] == []

    http = V1Scheduler(cluster.master_url, auth=admin, verify=verify)
    try:
        http.subscribe(_info("secure"))
        http.wait("OFFERS")
        # The stream id alone does not make another principal this framework's scheduler.
        other = http.call({"type": "REVIVE"}, session={"auth": ("marathon", security.secret("marathon")),
                                                        "verify": verify})
        assert other.status_code == 400 and "does not match" in other.text
        http.accepted({"type": "TEARDOWN"})
        assert http.ended.wait(10)
    finally:
        http.close()


def _heartbeat() -> pb.Event:
    return pb.Event(type=pb.Event.HEARTBEAT)


def test_event_streams_as_transport_peers():
    """A full or unread stream is a lost peer, reported once, and sends never block;
    a stream the master ends still writes what it queued."""
    context = zmq.Context()
    actor = Actor("streams", context)
    lost: list[bytes] = []
    server = Server(actor, "tcp://127.0.0.1:0", [pb.Call], lambda peer, message: None,
                    on_peer_lost=lost.append, peer_timeout=0.2)
    actor.start()
    try:
        full = EventStream("full", JSON, max_events=3)
        unread = EventStream("unread", JSON)
        ended = EventStream("ended", PROTOBUF)
        actor.call(server.add_virtual_peer, full.peer, full, "alice", 3600.0)
        actor.call(server.add_virtual_peer, unread.peer, unread, None, 0.3)
        actor.call(server.add_virtual_peer, ended.peer, ended, None, 3600.0)
        assert actor.call(server.principal, full.peer) == "alice"

        sent = actor.call(lambda: [server.send(full.peer, _heartbeat()) for _ in range(5)])
        assert sent == [True, True, True, False, False]
        assert actor.call(server.send, unread.peer, _heartbeat())
        wait_for(lambda: len(lost) >= 2, 10, message="the full and the unread stream are lost")
        assert sorted(lost) == sorted([full.peer, unread.peer])
        assert actor.call(server.principal, full.peer) is None

        assert actor.call(server.send, ended.peer, _heartbeat())
        actor.call(server.end_virtual_peer, ended.peer)
        assert not actor.call(server.send, ended.peer, _heartbeat())  # no longer a peer: nothing queued
        gone: list[str] = []
        body = b"".join(ended.body(None, gone.append, threading.Event()))
        events = [v1_scheduler.Event.FromString(record) for record in recordio.decode_all(body)]
        assert [event.type for event in events] == [v1_scheduler.Event.HEARTBEAT]
        assert gone == [] and ended.peer not in lost
        assert actor.call(server.virtual_peers) == 0
    finally:
        actor.stop()
        actor.join(5)
        context.destroy(linger=0)


def test_a_standby_sends_schedulers_to_the_leader(zk_url):
    started: list[Master] = []

    def start() -> Master:
        master = Master(master_flags(port=0, zk=zk_url, zk_session_timeout="3secs", allocation_interval="100ms"))
        master.leadership.exit_on_abdicate = False
        started.append(master.start())
        return master

    try:
        leader = start()
        wait_for(lambda: leader.leadership.is_leader, 10, message="the first master to lead")
        standby = start()
        wait_for(lambda: standby.leadership.leader_info() is not None, 10, message="the standby to see the leader")
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": _info("redirected")}}
        answer = requests.post(f"http://127.0.0.1:{standby.http_port}/api/v1/scheduler", json=subscribe,
                               allow_redirects=False, timeout=10)
        assert answer.status_code == 307
        assert answer.headers["Location"].endswith(f":{leader.http_port}/api/v1/scheduler")
        http = V1Scheduler(f"http://127.0.0.1:{leader.http_port}")
        try:
            http.subscribe(_info("redirected"))
        finally:
            http.close()
    finally:
        for master in started:
            master.stop()
