"""Marathon's ZooKeeper store on a real ZooKeeper: versioned writes, fenced by the
leader's election znode, and nothing written while the session is SUSPENDED."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from kazoo.client import KazooState

from frameworks.marathon_like.storage import StorageError
from frameworks.marathon_like.zk import Leadership, StorageConflict, ZooKeeperStorage, connect
from tests.support import wait_for
from tests.zookeeper import ZooKeeperServer, kazoo_threads, zookeeper_missing


@pytest.fixture
def storages(zk_url):
    opened = []

    def open_storage(url=zk_url, session_timeout=10.0):
        storage = ZooKeeperStorage.connect(url, session_timeout)
        opened.append(storage)
        return storage

    yield open_storage
    for storage in opened:
        storage.close()


def _contender(storage, name):
    """A Leadership whose lead() just holds on until told to stop; fences `storage`."""
    leadership = Leadership(storage.client, storage.base, name, lambda stop: stop.wait())
    storage.fence_with(leadership)
    return leadership.start()


def test_a_deposed_leaders_write_is_refused_and_the_new_leaders_data_stays(storages):
    first, second = storages(), storages()
    a = _contender(first, "a:1")
    wait_for(lambda: a.leading, 20, message="the first instance to lead")
    b = _contender(second, "b:2")
    try:
        first.save_framework_id("from-a")
        stale_node = a.election_node()
        assert stale_node is not None
        first.framework_id()  # A knows the znode's version: only the fence can stop it

        a.abdicate()
        wait_for(lambda: b.leading, 20, message="the second instance to take over")
        second.framework_id()
        second.save_framework_id("from-b")

        # A leader that has not noticed yet (a long pause): it still believes in its old znode.
        first.backend.fence = lambda: stale_node
        with pytest.raises(StorageError, match="not the leader"):
            first.save_framework_id("from-deposed-a")
        # And once it knows it is not leading, it does not even try.
        first.fence_with(a)
        assert not a.leading  # it stopped leading before it released its znode
        with pytest.raises(StorageError, match="not the leader"):
            first.save_framework_id("from-deposed-a")
        assert second.framework_id() == "from-b"
        data, _ = second.client.get(f"{second.base}/state/framework-id/id")
        assert json.loads(data) == {"value": "from-b"}
    finally:
        a.close()
        b.close()


def test_a_write_over_an_unseen_change_is_a_conflict_not_an_overwrite(storages):
    first, second = storages(), storages()
    def app(instances, second):
        # Every change is a new version, as Marathon makes them.
        return {"id": "/web", "version": f"2026-01-01T00:00:{second:02d}.000Z", "instances": instances}

    first.save_app(app(1, 0))
    assert [a["instances"] for a in second.apps()] == [1]

    first.save_app(app(2, 1))
    with pytest.raises(StorageConflict, match="changed by another writer"):
        second.save_app(app(3, 2))
    assert [a["instances"] for a in first.apps()] == [2]

    # Having read the change, the second writer may build on it.
    assert [a["instances"] for a in second.apps()] == [2]
    second.save_app(app(3, 3))
    assert [a["instances"] for a in first.apps()] == [3]


def test_concurrent_writers_on_one_key_lose_no_update(storages):
    writers, increments = 4, 10
    stores = [storages() for _ in range(writers)]
    stores[0].save_group({"id": "/counter", "dependencies": [], "version": 0})

    def increment(storage):
        for _ in range(increments):
            while True:
                group = next(g for g in storage.groups() if g["id"] == "/counter")
                try:
                    storage.save_group({**group, "version": group["version"] + 1})
                    break
                except StorageConflict:
                    continue  # somebody else won this round: read again

    threads = [threading.Thread(target=increment, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert next(g for g in stores[0].groups() if g["id"] == "/counter")["version"] == writers * increments


@pytest.mark.skipif(zookeeper_missing() is not None, reason=zookeeper_missing() or "")
def test_a_suspended_session_refuses_writes_until_contact_is_back():
    server = ZooKeeperServer(1).start()  # its own server: this test freezes it
    storage = None
    try:
        storage = ZooKeeperStorage.connect(server.url("marathon"), session_timeout=6.0)
        storage.save_framework_id("before")
        suspended, connected = threading.Event(), threading.Event()

        def listener(state):
            (suspended if state == KazooState.SUSPENDED else connected if state == KazooState.CONNECTED
             else threading.Event()).set()

        storage.client.add_listener(listener)
        server.procs[0].send_signal(signal.SIGSTOP)  # no answers: the client suspends, the session lives on
        try:
            assert suspended.wait(30), "the client never noticed ZooKeeper stopped answering"
            with pytest.raises(StorageError, match="lost contact with ZooKeeper; not writing"):
                storage.save_framework_id("while-suspended")
        finally:
            server.procs[0].send_signal(signal.SIGCONT)
        assert connected.wait(30), "the client did not reconnect"
        assert storage.framework_id() == "before"
        storage.save_framework_id("after")
        assert storage.framework_id() == "after"
    finally:
        if storage is not None:
            storage.close()
        server.stop()


def test_an_unreachable_zookeeper_leaves_no_client_retrying():
    before = set(kazoo_threads())
    with pytest.raises(StorageError, match="cannot reach ZooKeeper"):
        connect("zk://127.0.0.1:1/marathon", session_timeout=1.0)
    assert set(kazoo_threads()) <= before
