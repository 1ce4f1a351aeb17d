"""Masters in process against a real ZooKeeper: leading, standing by, abdicating."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from offerd.common.detector import master_info
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.master.registry import UpdateWeights
from offerd.master.registry_membership import AdmitSlave
from tests.support import wait_for
from tests.zookeeper import expire_client


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with _opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def masters(zk_url):
    started: list[Master] = []

    def start(**flags) -> Master:
        flags = {"port": 0, "zk": zk_url, "zk_session_timeout": "3secs", "allocation_interval": "100ms",
                 **flags}
        master = Master(master_flags(**flags))
        master.leadership.exit_on_abdicate = False
        started.append(master.start())
        return master

    yield start
    for master in started:
        master.stop()


def base(master: Master) -> str:
    return f"http://127.0.0.1:{master.http_port}"


def elected(master: Master) -> bool:
    return json.loads(http(base(master) + "/metrics/snapshot")[2])["master/elected"] == 1


def test_one_leads_the_other_stands_by_and_redirects(masters):
    leader = masters()
    wait_for(lambda: elected(leader), 10, message="the first master to lead")
    standby = masters()
    wait_for(lambda: standby.leadership.leader_info() is not None, 10, message="the standby to see the leader")
    assert not elected(standby)

    # host:port of a standby still finds the leader.
    assert master_info(f"127.0.0.1:{standby.http_port}")["id"] == leader.master_id
    status, headers, _ = http(base(standby) + "/master/redirect")
    assert status == 307 and headers["Location"].endswith(f":{leader.http_port}/")
    status, headers, _ = http(base(leader) + "/master/redirect")
    assert status == 307 and headers["Location"].endswith(f":{leader.http_port}/")
    status, headers, _ = http(base(standby) + "/master/teardown", "POST", b"frameworkId=x")
    assert status == 307 and headers["Location"].endswith(f":{leader.http_port}/master/teardown")

    state = json.loads(http(base(standby) + "/master/state")[2])
    assert state["leader"] == leader.master_info.pid and state["leader_info"]["id"] == leader.master_id
    assert state["id"] == standby.master_id
    status, _, body = http(base(standby) + "/master/state?jsonp=cb")
    assert status == 200 and body.startswith(b"cb(") and leader.master_info.pid.encode() in body


def test_standby_without_a_leader_answers_503(zk_url, zk_server, masters):
    # A foreign znode with a lower sequence that holds garbage: no usable leader.
    client = zk_server.client()
    path = zk_url.split("/", 3)[3]
    client.create(f"/{path}/json.info_", b"not json", ephemeral=True, sequence=True, makepath=True)
    try:
        standby = masters()
        assert http(base(standby) + "/master/redirect")[0] == 503
        assert http(base(standby) + "/master/info")[0] == 503
        assert http(base(standby) + "/master/teardown", "POST", b"frameworkId=x")[0] == 503
    finally:
        client.stop()
        client.close()


def test_expired_leader_abdicates_and_the_standby_takes_over_with_the_registry(masters):
    first = masters()
    wait_for(lambda: elected(first), 10, message="the first master to lead")
    first.actor.call(first.leadership.persist, UpdateWeights({"prod": 3.0}))
    first.actor.call(first.leadership.persist, AdmitSlave("S-1", "host1", 5051))
    second = masters(slave_reregister_timeout="1secs")
    wait_for(lambda: second.leadership.leader_info() is not None, 10, message="the standby to see the leader")

    expire_client(first.leadership.contender.client)
    assert first.leadership.abdicated.wait(5)
    assert not first.leadership.is_leader
    wait_for(lambda: second.leadership.is_leader, 10, message="the standby to lead")
    # Registry recovered: weights and quota reach the allocator, the admitted
    # slave that never comes back is marked unreachable.
    assert dict(second.leadership.registrar.state.weights) == {"prod": 3.0}
    assert second.leadership.registrar.state.leader["id"] == second.master_id
    wait_for(lambda: "S-1" in second.leadership.registrar.state.unreachable, 10,
             message="the slave that did not reregister to become unreachable")
    state = json.loads(http(base(second) + "/master/state")[2])
    assert state["unreachable_slaves"] == 1 and state["leader"] == second.master_info.pid


def test_a_fenced_leader_abdicates_on_its_next_write(masters, zk_url):
    from offerd.common.election import connect, parse_zk_url
    from offerd.master.registry import Registrar
    from offerd.master.registry_membership import SetLeader
    from offerd.master.registry_zookeeper import ZooKeeperBackend

    leader = masters()
    wait_for(lambda: elected(leader), 10, message="the master to lead")
    url = parse_zk_url(zk_url)
    client = connect(url)
    try:
        Registrar(ZooKeeperBackend(client, url.path + "/registry")).apply(SetLeader({"id": "usurper"}))
        leader.actor.call(leader.leadership.persist, AdmitSlave("S-2", "h", 1))
        assert leader.leadership.abdicated.wait(5)
    finally:
        client.stop()
        client.close()


def test_digest_auth_guards_the_registry(zk_url, zk_server, masters):
    from kazoo.exceptions import NoAuthError

    leader = masters(zk=zk_url.replace("zk://", "zk://alice:secret@"))
    wait_for(lambda: elected(leader), 10, message="the master to lead")
    assert master_info(zk_url)["id"] == leader.master_id  # anyone may read who leads
    client = zk_server.client()
    try:
        path = "/" + zk_url.split("/", 3)[3] + "/registry"
        assert json.loads(client.get(path)[0])["leader"]["id"] == leader.master_id
        with pytest.raises(NoAuthError):
            client.set(path, b"{}")
    finally:
        client.stop()
        client.close()
