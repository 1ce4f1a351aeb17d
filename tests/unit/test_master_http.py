"""The master's HTTP endpoints, served by a real in-process Master on free ports."""

import socket
import struct
import time

import pytest
import requests
import zmq

from offerd.common.detector import resolve_master
from offerd.common.resources import Resources
from offerd.common.transport import encode
from offerd.master.daemon import Master
from offerd.master.flags import MASTER_FLAGS, master_flags, normalize_flags
from offerd.proto import offerd_pb2 as pb
from tests.support import free_port


@pytest.fixture(scope="module")
def master():
    # Generous timeouts: the peers below do not heartbeat.
    m = Master(master_flags(port=0, cluster="test-cluster", allocation_interval="50ms",
                            framework_timeout="60secs")).start()
    yield m
    m.stop()


def url(master, path):
    return f"http://127.0.0.1:{master.http_port}{path}"


def get(master, path, **params):
    return requests.get(url(master, path), params=params, timeout=5, allow_redirects=False)


@pytest.fixture(scope="module")
def busy(master):
    """A registered slave and a subscribed framework with an outstanding offer."""
    ctx = zmq.Context.instance()
    slave, sched = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock in (slave, sched):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(f"tcp://127.0.0.1:{master.zmq_port}")
    info = pb.SlaveInfo(hostname="h1", port=5051, resources=Resources.parse("cpus:2;mem:1024").to_protos())
    info.attributes.add(name="rack", type=pb.Value.TEXT, text=pb.Value.Text(value="r1"))
    slave.send_multipart(encode(pb.SlaveCall(type=pb.SlaveCall.REGISTER,
                                             register=pb.SlaveCall.Register(slave_info=info))))
    slave.recv_multipart()
    sched.send_multipart(encode(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
        framework_info=pb.FrameworkInfo(name="web", user="alice")))))
    sched.recv_multipart()
    sched.recv_multipart()  # the offer
    yield
    slave.close()
    sched.close()


def test_master_info_names_the_zeromq_endpoint(master):
    info = get(master, "/master/info").json()
    assert info["zmq_port"] == master.zmq_port
    assert info["address"] == {"hostname": info["hostname"], "ip": "127.0.0.1", "port": master.http_port}
    assert info["port"] == master.http_port
    assert info["pid"] == f"master@127.0.0.1:{master.http_port}"
    assert socket.inet_ntoa(struct.pack("<I", info["ip"])) == "127.0.0.1"  # network order, as Mesos
    # What the SDK and slaves do with it:
    assert resolve_master(f"127.0.0.1:{master.http_port}") == f"tcp://127.0.0.1:{master.zmq_port}"


@pytest.mark.parametrize("path", ["/master/state", "/state.json", "/master/state.json", "/state"])
def test_state_has_the_mesos_shape(master, busy, path):
    state = get(master, path).json()
    for key in ("version", "id", "pid", "hostname", "activated_slaves", "start_time", "leader",
                "leader_info", "cluster", "flags", "slaves", "frameworks", "completed_frameworks",
                "unregistered_frameworks"):
        assert key in state, key
    assert state["id"] == master.master_id and state["cluster"] == "test-cluster"
    assert state["activated_slaves"] == 1
    (slave,) = state["slaves"]
    for key in ("id", "pid", "hostname", "resources", "used_resources", "offered_resources",
                "unreserved_resources", "attributes", "active", "registered_time"):
        assert key in slave, key
    assert slave["resources"]["cpus"] == 2 and slave["attributes"] == {"rack": "r1"}
    (framework,) = state["frameworks"]
    for key in ("id", "name", "user", "role", "roles", "active", "connected", "registered_time",
                "resources", "used_resources", "offered_resources", "tasks", "completed_tasks", "offers"):
        assert key in framework, key
    assert framework["name"] == "web" and framework["user"] == "alice" and framework["roles"] == ["*"]
    (offer,) = framework["offers"]
    assert offer["resources"]["mem"] == 1024 and offer["slave_id"] == slave["id"]
    assert framework["offered_resources"]["cpus"] == 2 and slave["offered_resources"]["cpus"] == 2


def test_jsonp(master):
    response = get(master, "/master/state", jsonp="angular.callbacks._0")
    assert response.headers["Content-Type"].startswith("application/javascript")
    assert response.text.startswith("angular.callbacks._0({") and response.text.endswith("});")
    assert get(master, "/master/state", jsonp="alert(1)//").status_code == 400


def test_frameworks_slaves_tasks_and_summary(master, busy):
    frameworks = get(master, "/master/frameworks").json()
    assert set(frameworks) == {"frameworks", "completed_frameworks", "unregistered_frameworks"}
    fid = frameworks["frameworks"][0]["id"]
    assert get(master, "/master/frameworks", framework_id="nope").json()["frameworks"] == []
    assert get(master, "/master/frameworks", framework_id=fid).json()["frameworks"][0]["id"] == fid
    slaves = get(master, "/master/slaves").json()
    assert len(slaves["slaves"]) == 1 and slaves["recovered_slaves"] == []
    assert get(master, "/master/tasks").json() == {"tasks": []}
    assert get(master, "/master/tasks", limit="x").status_code == 400
    assert get(master, "/master/tasks", order="up").status_code == 400
    summary = get(master, "/master/state-summary").json()
    assert summary["cluster"] == "test-cluster" and summary["slaves"][0]["TASK_RUNNING"] == 0


def test_health_version_flags_redirect(master):
    assert get(master, "/health").status_code == 200
    assert get(master, "/master/health").status_code == 200
    assert get(master, "/version").json()["version"]
    flags = get(master, "/master/flags").json()["flags"]
    assert flags == get(master, "/flags").json()["flags"]
    assert flags["allocation_interval"] == "0.05secs" and flags["min_allocatable_resources"] == "cpus:0.01|mem:32"
    redirect = get(master, "/master/redirect")
    assert redirect.status_code == 307
    assert redirect.headers["Location"].endswith(f":{master.http_port}/")


def test_metrics_snapshot(master, busy):
    metrics = get(master, "/metrics/snapshot").json()
    for key in ("master/uptime_secs", "master/elected", "master/slaves_active", "master/slaves_connected",
                "master/slaves_disconnected", "master/frameworks_active", "master/frameworks_connected",
                "master/frameworks_disconnected", "master/tasks_staging", "master/tasks_starting",
                "master/tasks_running", "master/tasks_finished", "master/tasks_failed", "master/tasks_killed",
                "master/tasks_lost", "master/tasks_error", "master/tasks_dropped", "master/tasks_unreachable",
                "master/outstanding_offers", "master/messages_register_framework",
                "master/messages_register_slave", "master/invalid_status_updates",
                "master/valid_status_updates", "master/dropped_messages",
                "master/invalid_framework_to_executor_messages", "master/transport/messages_received",
                "master/cpus_total", "allocator/allocation_runs"):
        assert key in metrics, key
    assert metrics["master/elected"] == 1
    assert metrics["master/slaves_active"] == 1 and metrics["master/frameworks_active"] == 1
    assert metrics["master/outstanding_offers"] == 1 and metrics["master/cpus_total"] == 2


def test_snapshot_is_reused_until_something_changes(master):
    first = master.read_snapshot()
    assert master.read_snapshot() is first
    master.actor.call(master.touch)
    assert master.read_snapshot() is not first


def test_teardown(master):
    response = requests.post(url(master, "/master/teardown"), timeout=5)
    assert response.status_code == 400 and "frameworkId" in response.text
    response = requests.post(url(master, "/master/teardown"), data={"frameworkId": "nope"}, timeout=5)
    assert response.status_code == 400 and "No framework found" in response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    ctx = zmq.Context.instance()
    sched = ctx.socket(zmq.DEALER)
    sched.setsockopt(zmq.LINGER, 0)
    sched.setsockopt(zmq.RCVTIMEO, 5000)
    sched.connect(f"tcp://127.0.0.1:{master.zmq_port}")
    sched.send_multipart(encode(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
        framework_info=pb.FrameworkInfo(name="doomed")))))
    event = pb.Event.FromString(sched.recv_multipart()[2])
    fid = event.subscribed.framework_id.value
    response = requests.post(url(master, "/master/teardown"), data={"frameworkId": fid}, timeout=5)
    assert response.status_code == 200
    completed = get(master, "/master/frameworks").json()["completed_frameworks"]
    assert fid in [f["id"] for f in completed]
    sched.close()


def test_unknown_path_is_plain_text_404(master):
    response = get(master, "/master/nope")
    assert response.status_code == 404 and "No endpoint" in response.text
    assert get(master, "/master/nope/").status_code == 404


def test_empty_path_segments_are_ignored_as_mesos_does(master):
    # The Mesos CLI asks for /master/frameworks/; Mesos splits paths on "/".
    for path in ("/master/frameworks/", "/master//frameworks", "/master/frameworks//"):
        response = get(master, path)
        assert response.status_code == 200 and "frameworks" in response.json(), path
    assert get(master, "/health/").status_code == 200
    # A route with a trailing slash of its own is left as it is.
    assert get(master, "/").status_code == 200


def test_flag_defaults_are_typed():
    flags = master_flags()
    assert flags.port == 5050 and flags.zmq_port == 0
    assert flags.allocation_interval == 1.0 and flags.offer_timeout is None
    assert flags.framework_timeout == 5.0 and flags.slave_ping_timeout == 15.0
    assert flags.max_slave_ping_timeouts == 5 and flags.max_message_bytes == 16 * 1024 * 1024
    assert master_flags(max_message_bytes="2MB", offer_timeout="1mins").max_message_bytes == 2 * 1024 * 1024
    assert master_flags(offer_timeout="1mins").offer_timeout == 60.0
    assert {f.name for f in MASTER_FLAGS} >= {"ip", "hostname", "port", "zmq_port", "work_dir", "cluster", "zk",
                                             "quorum", "max_completed_frameworks", "logging_level"}
    assert all(f.help for f in MASTER_FLAGS)
    with pytest.raises(ValueError, match="unknown master flag"):
        master_flags(nope=1)


def test_bad_flag_values_fail_early():
    from offerd.common.flags import FlagError
    with pytest.raises(FlagError, match="min_allocatable_resources"):
        master_flags(min_allocatable_resources="cpus:x")
    with pytest.raises(FlagError, match="max_message_bytes"):
        master_flags(max_message_bytes="lots")


def test_zmq_port_defaults_to_http_port_plus_1000():
    # Find a free pair of ports the way an operator's default 5050/6050 works.
    for _ in range(20):
        port = free_port()
        if port + 1000 >= 65536:
            continue
        try:
            m = Master(normalize_flags(master_flags(port=port))).start()
        except (OSError, zmq.ZMQError):
            time.sleep(0.05)
            continue
        try:
            assert (m.http_port, m.zmq_port) == (port, port + 1000)
            assert get(m, "/master/info").json()["zmq_port"] == port + 1000
        finally:
            m.stop()
        return
    pytest.skip("no free port pair found")


def test_web_ui_is_served_at_root(tmp_path):
    from offerd.master.http_api import create_app

    app = create_app(object())
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"<title>offerd</title>" in page.data
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../pyproject.toml").status_code == 404
