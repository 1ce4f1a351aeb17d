"""The master's operator event stream (v1 SUBSCRIBE on POST /api/v1) against a
real local cluster: what Mesos' operator HTTP API documents for SUBSCRIBE
(mesos.apache.org/documentation/latest/operator-http-api/): SUBSCRIBED with the
state, then the master's changes in order, HEARTBEATs, in JSON or protobuf,
cut by the subscriber's ACLs."""

from __future__ import annotations

import json
import queue
import signal
import socket
import threading

import requests

from offerd.common import mesos_json, recordio
from offerd.proto import mesos_v1_master_pb2 as v1_master
from offerd.proto import offerd_pb2 as pb
from tests.builders import RunningFramework, framework_info
from tests.support import wait_for

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


class Subscriber:
    """A SUBSCRIBE call's open stream, read on a thread into a queue of JSON events."""

    def __init__(self, cluster, media: str = JSON, principal: str | None = None, accept: str | None = None,
                 **headers):
        kwargs: dict = {}
        if cluster.security is not None:
            kwargs["verify"] = cluster.security.ca_file
            if principal is not None:
                kwargs["auth"] = (principal, cluster.security.secret(principal))
        self.media = media
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.response = requests.post(cluster.master_url + "/api/v1", data=json.dumps({"type": "SUBSCRIBE"}),
                                      headers={"Content-Type": JSON, "Accept": accept or media, **headers},
                                      stream=True, timeout=30, **kwargs)
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        decoder = recordio.Decoder()
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                for record in decoder.feed(chunk):
                    if self.media == JSON:
                        self.events.put(json.loads(record))
                    else:
                        self.events.put(mesos_json.to_json(v1_master.Event.FromString(record)))
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass  # closed by the test

    def next(self, timeout: float = 30.0) -> dict:
        event = self.events.get(timeout=timeout)
        self.seen.append(event)
        return event

    def until(self, predicate, timeout: float = 30.0, what: str = "an event") -> dict:
        """The first event (heartbeats included) that `predicate` holds for."""
        def found():
            try:
                event = self.next(timeout=0.5)
            except queue.Empty:
                return None
            return event if predicate(event) else None
        return wait_for(found, timeout, interval=0, message=what)

    def close(self) -> None:
        # Shut the socket first: closing the response alone waits for the reader
        # thread's pending read (the next event, up to a heartbeat away).
        connection = getattr(self.response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.response.close()


def _task_events(events: list[dict], task_id: str) -> list[tuple]:
    out = []
    for event in events:
        if event["type"] == "TASK_ADDED" and event["task_added"]["task"]["task_id"]["value"] == task_id:
            out.append(("TASK_ADDED",))
        elif event["type"] == "TASK_UPDATED" and event["task_updated"]["status"]["task_id"]["value"] == task_id:
            out.append(("TASK_UPDATED", event["task_updated"]["state"]))
    return out


def test_subscribed_state_then_changes_in_order(cluster_factory):
    cluster = cluster_factory(slaves=1, master_args=["--slave_ping_timeout=1secs", "--max_slave_ping_timeouts=3"])
    sub = Subscriber(cluster)
    assert sub.response.status_code == 200, sub.response.text
    assert sub.response.headers["Content-Type"] == JSON
    assert sub.response.headers["Mesos-Stream-Id"]
    subscribed = sub.next()
    assert subscribed["type"] == "SUBSCRIBED"
    assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 15
    state = subscribed["subscribed"]["get_state"]
    agents = state["get_agents"]["agents"]
    assert len(agents) == 1 and agents[0]["active"] is True
    agent_id = agents[0]["agent_info"]["id"]["value"]
    assert state.get("get_frameworks", {}).get("frameworks", []) == []
    assert sub.next()["type"] == "HEARTBEAT"  # right after SUBSCRIBED, as Mesos

    with RunningFramework(cluster.master, info=framework_info(name="watched", role="dev")) as fw:
        added = sub.until(lambda e: e["type"] == "FRAMEWORK_ADDED", what="FRAMEWORK_ADDED")
        framework = added["framework_added"]["framework"]
        assert framework["framework_info"]["id"]["value"] == fw.framework_id
        assert framework["framework_info"]["name"] == "watched"
        assert framework["active"] is True and framework["connected"] is True
        task_id = fw.scheduler.submit("true")
        fw.scheduler.wait_state(task_id, pb.TASK_FINISHED)
        finished = sub.until(lambda e: e["type"] == "TASK_UPDATED" and e["task_updated"]["state"] == "TASK_FINISHED",
                             what="TASK_UPDATED TASK_FINISHED")
        assert finished["task_updated"]["framework_id"]["value"] == fw.framework_id
        assert finished["task_updated"]["status"]["agent_id"]["value"] == agent_id
        assert finished["task_updated"]["status"]["state"] == "TASK_FINISHED"
        order = _task_events(sub.seen, task_id)
        # As the master saw them: added, then each update (STARTING may come before RUNNING).
        assert order[0] == ("TASK_ADDED",) and all(kind == "TASK_UPDATED" for kind, *_ in order[1:]), order
        states = [state for _, state in order[1:]]
        rank = {"TASK_STARTING": 0, "TASK_RUNNING": 1, "TASK_FINISHED": 2}
        assert "TASK_RUNNING" in states and states[-1] == "TASK_FINISHED", states
        assert [rank[s] for s in states] == sorted(rank[s] for s in states), states
        task = next(e for e in sub.seen if e["type"] == "TASK_ADDED")["task_added"]["task"]
        assert task["framework_id"]["value"] == fw.framework_id and task["agent_id"]["value"] == agent_id
        # FRAMEWORK_ADDED came before any of its tasks.
        assert sub.seen.index(added) < sub.seen.index(next(e for e in sub.seen if e["type"] == "TASK_ADDED"))

        running_id = fw.scheduler.submit("sleep 600")
        fw.scheduler.wait_state(running_id, pb.TASK_RUNNING)
        sub.until(lambda e: e["type"] == "TASK_UPDATED" and e["task_updated"]["state"] == "TASK_RUNNING"
                  and e["task_updated"]["status"]["task_id"]["value"] == running_id, what="the second task running")
        # Frozen, not killed: a killed slave would leave its task's process behind.
        frozen = cluster.slave_procs[0]
        frozen.send_signal(signal.SIGSTOP)
        try:
            lost = sub.until(lambda e: e["type"] == "TASK_UPDATED"
                             and e["task_updated"]["status"]["task_id"]["value"] == running_id,
                             what="the task on the silent slave")
            assert lost["task_updated"]["state"] in ("TASK_LOST", "TASK_UNREACHABLE")
            removed = sub.until(lambda e: e["type"] == "AGENT_REMOVED", what="AGENT_REMOVED")
            assert removed["agent_removed"]["agent_id"]["value"] == agent_id
        finally:
            frozen.send_signal(signal.SIGCONT)
    gone = sub.until(lambda e: e["type"] in ("FRAMEWORK_UPDATED", "FRAMEWORK_REMOVED"), what="the framework leaving")
    assert (gone.get("framework_updated") or gone.get("framework_removed"))
    sub.close()


def test_protobuf_subscriber_and_a_late_subscriber_sees_the_state(cluster_factory):
    cluster = cluster_factory(slaves=1)
    with RunningFramework(cluster.master, info=framework_info(name="before")) as fw:
        task_id = fw.scheduler.submit("sleep 600")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        sub = Subscriber(cluster, media=PROTOBUF)
        assert sub.response.status_code == 200, sub.response.text
        assert sub.response.headers["Content-Type"] == PROTOBUF
        subscribed = sub.next()
        assert subscribed["type"] == "SUBSCRIBED"
        state = subscribed["subscribed"]["get_state"]
        assert [t["task_id"]["value"] for t in state["get_tasks"]["tasks"]] == [task_id]
        assert state["get_tasks"]["tasks"][0]["state"] == "TASK_RUNNING"
        assert [f["framework_info"]["name"] for f in state["get_frameworks"]["frameworks"]] == ["before"]
        assert sub.next()["type"] == "HEARTBEAT"
        fw.driver.killTask(pb.TaskID(value=task_id))
        killed = sub.until(lambda e: e["type"] == "TASK_UPDATED", what="the kill")
        assert killed["task_updated"]["state"] == "TASK_KILLED"
        sub.close()

    # Message-Accept under application/recordio picks the records' encoding.
    streaming = Subscriber(cluster, media=JSON, accept="application/recordio", **{"Message-Accept": JSON})
    assert streaming.response.status_code == 200, streaming.response.text
    assert streaming.response.headers["Content-Type"] == "application/recordio"
    assert streaming.response.headers["Message-Content-Type"] == JSON
    assert streaming.next()["type"] == "SUBSCRIBED"
    streaming.close()


def test_heartbeats_keep_coming(cluster_factory):
    cluster = cluster_factory(slaves=1)
    sub = Subscriber(cluster)
    assert sub.next()["type"] == "SUBSCRIBED"
    assert sub.next()["type"] == "HEARTBEAT"
    # The next one comes with the master's heartbeat period (15 seconds).
    assert sub.next(timeout=40)["type"] == "HEARTBEAT"
    sub.close()


def test_a_subscriber_sees_only_what_its_acls_let_it_view(cluster_factory):
    cluster = cluster_factory(slaves=1, secure=True)
    nobody = Subscriber(cluster, principal=None)
    assert nobody.response.status_code == 401
    admin = Subscriber(cluster, principal="admin")
    marathon = Subscriber(cluster, principal="marathon")  # may not view_frameworks nor view_tasks
    for sub in (admin, marathon):
        assert sub.response.status_code == 200, sub.response.text
        assert sub.next()["type"] == "SUBSCRIBED"
    with RunningFramework(cluster.master, driver_kwargs=cluster.driver_kwargs()) as fw:
        task_id = fw.scheduler.submit("sleep 600")
        fw.scheduler.wait_state(task_id, pb.TASK_RUNNING)
        admin.until(lambda e: e["type"] == "TASK_UPDATED" and e["task_updated"]["state"] == "TASK_RUNNING",
                    what="admin seeing the task run")
        assert any(e["type"] == "FRAMEWORK_ADDED" for e in admin.seen)
        assert any(e["type"] == "TASK_ADDED" for e in admin.seen)
        # A later subscriber with the same ACLs: its SUBSCRIBED state is cut as GET_STATE is.
        late = Subscriber(cluster, principal="marathon")
        state = late.next()["subscribed"]["get_state"]
        assert state.get("get_tasks", {}) == {} and state.get("get_frameworks", {}) == {}
        assert state["get_agents"]["agents"]
        late.close()
    # marathon's stream carried heartbeats only (agents did not change meanwhile).
    while True:
        try:
            event = marathon.next(timeout=1)
        except queue.Empty:
            break
        assert event["type"] == "HEARTBEAT", event
    admin.close()
    marathon.close()


def test_subscribers_are_bounded(cluster_factory):
    from offerd.master.operator_events import MAX_SUBSCRIBERS

    cluster = cluster_factory(slaves=1)
    subs = [Subscriber(cluster) for _ in range(MAX_SUBSCRIBERS)]
    for sub in subs:
        assert sub.response.status_code == 200, sub.response.text
        assert sub.next()["type"] == "SUBSCRIBED"
    extra = Subscriber(cluster)
    assert extra.response.status_code == 503 and "16" in extra.response.text
    # One leaves: its place is free again once the master sees the connection gone.
    subs.pop().close()

    def another():
        sub = Subscriber(cluster)
        if sub.response.status_code == 200:
            return sub
        assert sub.response.status_code == 503, sub.response.text
        return None
    replacement = wait_for(another, 30, interval=0.5, message="a free subscriber place")
    assert replacement.next()["type"] == "SUBSCRIBED"
    for sub in [*subs, replacement]:
        sub.close()


def test_a_subscriber_that_does_not_read_is_dropped_not_waited_for():
    from offerd.master.operator_events import OperatorEvents, SubscriberStream

    events = OperatorEvents(master=None)  # publishing needs no master: the actor's side only
    stream = SubscriberStream("slow", JSON, principal=None)
    stream.max_events = 3
    reader = SubscriberStream("reader", PROTOBUF, principal=None)
    events._subscribers.update({"slow": stream, "reader": reader})
    for _ in range(4):
        events.publish(v1_master.Event(type=v1_master.Event.HEARTBEAT))
    assert list(events._subscribers) == ["reader"]  # the fourth event found the slow queue full
    gone: list[str] = []
    assert list(stream.body(None, gone.append, threading.Event())) == []  # its response ends
    body = reader.body(None, gone.append, threading.Event())
    # What was queued, one record per chunk (as Mesos writes its streams).
    records = [record for _ in range(4) for record in recordio.decode_all(next(body))]
    body.close()
    assert [v1_master.Event.FromString(r).type for r in records] == [v1_master.Event.HEARTBEAT] * 4
