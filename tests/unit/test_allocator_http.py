"""Allocator wiring in a real in-process Master: flags, /quota, /weights,
/master/allocator, persistence under --work_dir, the --roles whitelist."""

import pytest
import requests
import zmq

from offerd.common.flags import FlagError
from offerd.common.resources import Resources
from offerd.common.transport import encode
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb


def start(tmp_path, **flags):
    flags = dict(port=0, allocation_interval="50ms", framework_timeout="60secs", work_dir=str(tmp_path), **flags)
    return Master(master_flags(**flags)).start()


def url(m, path):
    return f"http://127.0.0.1:{m.http_port}{path}"


def dealer(m):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(f"tcp://127.0.0.1:{m.zmq_port}")
    return sock


def test_weights_flag_quota_and_restart(tmp_path):
    m = start(tmp_path, weights="prod=3,dev=1", role_sorter="random")
    try:
        assert requests.get(url(m, "/weights"), timeout=5).json() == [
            {"role": "dev", "weight": 1.0}, {"role": "prod", "weight": 3.0}]
        r = requests.post(url(m, "/quota"), json={"role": "dev", "guarantee": "cpus:1;mem:256"}, timeout=5)
        assert r.status_code == 200, r.text
        assert requests.put(url(m, "/weights"), json=[{"role": "prod", "weight": 5}], timeout=5).status_code == 200
        bad = requests.put(url(m, "/weights"), json=[{"role": "prod", "weight": -1}], timeout=5)
        assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/plain")
        why = requests.get(url(m, "/master/allocator"), timeout=5).json()
        assert why["role_sorter"] == "random" and why["weights"]["prod"] == 5.0
        assert why["quota"][0]["role"] == "dev"
        assert m.flags_json()["role_sorter"] == "random"
    finally:
        m.stop()
    again = start(tmp_path)  # the registry under --work_dir survives the restart
    try:
        infos = requests.get(url(again, "/quota"), timeout=5).json()["infos"]
        assert [i["role"] for i in infos] == ["dev"]
        assert again.allocator.weights()["prod"] == 5.0
        assert set(again.allocator.quotas()) == {"dev"}
    finally:
        again.stop()


def test_roles_whitelist_refuses_other_roles(tmp_path):
    m = start(tmp_path, roles="prod")
    try:
        sock = dealer(m)
        sock.send_multipart(encode(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
            framework_info=pb.FrameworkInfo(name="x", user="u", role="dev")))))
        event = pb.Event.FromString(sock.recv_multipart()[2])
        assert event.type == pb.Event.ERROR and "dev" in event.error.message
        sock.send_multipart(encode(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
            framework_info=pb.FrameworkInfo(name="x", user="u", role="prod")))))
        assert pb.Event.FromString(sock.recv_multipart()[2]).type == pb.Event.SUBSCRIBED
        sock.close()
    finally:
        m.stop()


def test_state_frameworks_carry_the_explanation(tmp_path):
    m = start(tmp_path)
    try:
        slave, sched = dealer(m), dealer(m)
        info = pb.SlaveInfo(hostname="h1", port=5051, resources=Resources.parse("cpus:2;mem:1024").to_protos())
        slave.send_multipart(encode(pb.SlaveCall(type=pb.SlaveCall.REGISTER,
                                                 register=pb.SlaveCall.Register(slave_info=info))))
        slave.recv_multipart()
        sched.send_multipart(encode(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
            framework_info=pb.FrameworkInfo(name="web", user="alice"), suppressed_roles=["*"]))))
        sched.recv_multipart()
        state = requests.get(url(m, "/master/state"), timeout=5).json()
        (framework,) = state["frameworks"]
        assert framework["allocator"]["getting_offers"] is False
        assert [r["code"] for r in framework["allocator"]["reasons"]] == ["SUPPRESSED"]
        slave.close()
        sched.close()
    finally:
        m.stop()


@pytest.mark.parametrize("flag, value", [("weights", "prod=0"), ("weights", "prod"), ("role_sorter", "fifo")])
def test_bad_flags_fail_at_startup(flag, value):
    with pytest.raises((FlagError, ValueError)):
        master_flags(**{flag: value})


def test_failover_pause_flags_reach_the_allocator():
    master = Master(master_flags(allocator_agent_recovery_factor=0.5, allocator_recovery_timeout="2mins"))
    assert master.allocator.agent_recovery_factor == 0.5
    assert master.allocator.recovery_timeout == 120.0
