"""Contender and detector against a real ZooKeeper (tests/zookeeper.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from offerd.common import detector as detector_module
from offerd.common.election import (ElectionError, StandaloneContender, StandaloneDetector, ZooKeeperContender,
                                    ZooKeeperDetector, create_contender, create_detector, leader_node,
                                    parse_zk_url)
from tests.support import wait_for
from tests.zookeeper import expire_client


def info(n: int) -> dict:
    return {"id": f"master-{n}", "address": {"ip": "127.0.0.1", "port": 5050 + n}, "zmq_port": 6050 + n}


def test_parse_zk_url(tmp_path):
    url = parse_zk_url("zk://h1:2181,h2:2182/offerd/ha")
    assert (url.hosts, url.path, url.credentials) == ("h1:2181,h2:2182", "/offerd/ha", None)
    url = parse_zk_url("zk://alice:s%40cret@h1:2181/x")
    assert url.credentials == "alice:s@cret" and "s@cret" not in str(url)
    (tmp_path / "zk").write_text("zk://h:1/y\n")
    assert parse_zk_url(f"file://{tmp_path / 'zk'}").path == "/y"
    for bad in ("h:2181/x", "zk://h:2181", "zk://h:2181/", "zk:///x", "zk://h/x", f"file://{tmp_path}/none"):
        with pytest.raises(ElectionError):
            parse_zk_url(bad)


def test_lowest_sequence_leads():
    assert leader_node(["json.info_0000000003", "json.info_0000000001", "log_replicas", "x"]) \
        == "json.info_0000000001"
    assert leader_node(["other"]) is None


def test_factory_picks_standalone_without_zk():
    assert isinstance(create_contender(None), StandaloneContender)
    assert isinstance(create_detector(None, {"id": "m"}), StandaloneDetector)
    contender = create_contender("")
    elected = threading.Event()
    contender.on_elected = elected.set
    contender.contend(info(0))
    assert elected.is_set()


def test_first_contender_leads_and_the_next_takes_over(zk_url, zk_server):
    contenders = [ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4) for _ in range(3)]
    elected = [threading.Event() for _ in contenders]
    detector = client = None
    try:
        for n, (contender, event) in enumerate(zip(contenders, elected)):
            contender.on_elected = event.set
            contender.contend(info(n))
        assert elected[0].wait(5)
        assert not elected[1].is_set() and not elected[2].is_set()
        detector = create_detector(zk_url)
        assert detector.wait_leader(5)["id"] == "master-0"
        # Mesos' layout: <path>/json.info_<10 digits> holding MasterInfo JSON.
        client = zk_server.client()
        path = parse_zk_url(zk_url).path
        children = sorted(client.get_children(path))
        assert children[0] == contenders[0].node and len(children[0]) == len("json.info_") + 10
        assert json.loads(client.get(f"{path}/{children[0]}")[0])["zmq_port"] == 6050
        contenders[0].withdraw()
        assert elected[1].wait(5)
        assert not elected[2].is_set()
        wait_for(lambda: (detector.leader() or {}).get("id") == "master-1", 5, message="detector follows")
    finally:
        for contender in contenders:
            contender.withdraw()
        if client is not None:
            client.stop()
            client.close()
        if detector is not None:
            detector.close()


def test_session_expiry_makes_the_leader_stop_before_another_leads(zk_url):
    first = ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4)
    second = ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4)
    times: dict[str, float] = {}
    lost, elected = threading.Event(), threading.Event()
    first.on_lost = lambda why: (times.setdefault("lost", time.monotonic()), lost.set())
    second.on_elected = lambda: (times.setdefault("elected", time.monotonic()), elected.set())
    try:
        first.contend(info(1))
        wait_for(lambda: first.elected, 5, message="first elected")
        second.contend(info(2))
        expire_client(first.client)
        assert lost.wait(5) and elected.wait(10)
        # The old leader hears of it as the server closes the session, at the
        # same moment the new one is told; the master adds registry recovery
        # (a versioned write) before acting, see tests/ha/test_masters.py.
        assert times["lost"] - times["elected"] < 0.5, times
    finally:
        first.withdraw()
        second.withdraw()


def test_resolve_master_reads_the_leader_from_zookeeper(zk_url):
    contender = ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4)
    try:
        with pytest.raises(detector_module.DetectorError, match="no leading master"):
            detector_module.resolve_master(zk_url, timeout=0.3)
        contender.contend(info(7))
        assert detector_module.resolve_master(zk_url) == "tcp://127.0.0.1:6057"
    finally:
        contender.withdraw()


def test_digest_auth_protects_the_znode_but_lets_anyone_read(zk_url, zk_server):
    url = zk_url.replace("zk://", "zk://alice:secret@")
    contender = create_contender(url, session_timeout=4)
    try:
        contender.contend(info(3))
        assert detector_module.resolve_master(zk_url) == "tcp://127.0.0.1:6053"
        from kazoo.exceptions import NoAuthError

        client = zk_server.client()
        try:
            with pytest.raises(NoAuthError):
                client.set(f"{parse_zk_url(zk_url).path}/{contender.node}", b"{}")
        finally:
            client.stop()
            client.close()
    finally:
        contender.withdraw()


def test_detector_with_unreachable_zookeeper_fails_clearly():
    with pytest.raises(ElectionError, match="cannot connect"):
        ZooKeeperDetector(parse_zk_url("zk://127.0.0.1:1/x"), session_timeout=1)


def test_dropped_connection_a_standby_waits_a_leader_stops(zk_url):
    from tests.zookeeper import drop_connection

    leader = ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4)
    standby = ZooKeeperContender(parse_zk_url(zk_url), session_timeout=4)
    lost = {"leader": threading.Event(), "standby": threading.Event()}
    leader.on_lost = lambda why: lost["leader"].set()
    standby.on_lost = lambda why: lost["standby"].set()
    try:
        leader.contend(info(1))
        wait_for(lambda: leader.elected, 5, message="leader elected")
        standby.contend(info(2))
        drop_connection(standby.client)
        wait_for(lambda: standby.client.connected, 5, message="the standby to reconnect")
        assert not lost["standby"].wait(0.5)  # same session, still in the election
        assert standby.node in standby.client.get_children(parse_zk_url(zk_url).path)
        drop_connection(leader.client)
        assert lost["leader"].wait(5)  # a leader cannot know whether it still leads
    finally:
        leader.withdraw()
        standby.withdraw()
