"""ZooKeeper: the state store and the leader election of ``--zk zk://host:port/marathon``.

Layout under the URL's path:

    <path>/state/<category>/<name>   one znode per stored value (storage.KeyValueStorage)
    <path>/leader/                   kazoo's election recipe; the data of each
                                     contender is its API address "host:port"

kazoo is used directly for the store and the election (Marathon's layout, not the
masters'); only the URL is read by ``offerd.common.election.parse_zk_url``, so a
malformed ``--zk`` gets the same error here as from the master.
"""

from __future__ import annotations

import logging
import threading

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError, NotEmptyError, RolledBackError, RuntimeInconsistency
from kazoo.retry import KazooRetry

from offerd.common.election import ElectionError, parse_zk_url

from frameworks.marathon_like.storage import KeyValueBackend, KeyValueStorage, StorageError

log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, str, str | None]:
    """(kazoo hosts, base path, "user:pass" or None) of ``zk://[user:pass@]h1:p1,h2:p2/path``
    (or ``file:///path`` holding one), with the master's errors for a malformed URL."""
    try:
        parsed = parse_zk_url(url)
    except ElectionError as exc:
        raise StorageError(str(exc)) from None
    return parsed.hosts, parsed.path, parsed.credentials


def connect(url: str, session_timeout: float = 10.0) -> tuple[KazooClient, str]:
    """A started client and the base path of `url` (created if missing)."""
    hosts, path, credentials = parse_url(url)
    auth = [("digest", credentials)] if credentials else None
    client = KazooClient(hosts=hosts, timeout=session_timeout, auth_data=auth,
                         connection_retry=KazooRetry(max_tries=-1, max_delay=1.0),
                         command_retry=KazooRetry(max_tries=5, max_delay=1.0))
    try:
        client.start(timeout=max(10.0, session_timeout))
    except Exception as exc:
        # stop() ends the connection thread, which would otherwise retry forever (max_tries=-1).
        client.stop()
        client.close()
        raise StorageError(f"cannot reach ZooKeeper at zk://{hosts}{path}: {exc}") from None
    client.ensure_path(path)
    return client, path


class StorageConflict(StorageError):
    """Another writer changed the znode since this instance last read it."""


NOT_CONNECTED = "lost contact with ZooKeeper; not writing (the write resumes once the session is back)"
NOT_LEADER = "this Marathon is not the leader any more; not writing (the new leader owns the state)"


class ZooKeeperStore(KeyValueBackend):
    """Values in znodes, written as compare-and-set and fenced by leadership.

    Every write is one transaction: a check that this instance's election znode
    still exists (`fence()` names it; a deposed leader's is gone with its session
    or its abdication) and a ``set`` at the znode version this store last read or
    wrote, or a ``create`` for a new key. Whatever another writer changed in
    between makes the write fail with `StorageConflict`, never overwrite. While
    the session is SUSPENDED nothing is written at all: the leader cannot know
    whether it still leads.
    """

    def __init__(self, client: KazooClient, base: str, fence=None):
        self.client = client
        self.root = base.rstrip("/") + "/state"
        # A callable returning this instance's election znode path, or None when it does not lead.
        # Without one (no election: a single instance) writes are versioned but not fenced.
        self.fence = fence
        self._versions: dict[str, int] = {}  # znode path -> the version this store last saw
        self._retried = False
        self._connected = client.connected
        client.add_listener(self._state)

    def _state(self, state) -> None:
        # Runs on kazoo's thread, before any retry: writes stop the moment contact is lost.
        self._connected = state == KazooState.CONNECTED

    def _path(self, category: str, name: str | None = None) -> str:
        return f"{self.root}/{category}" + (f"/{name}" if name is not None else "")

    def get(self, category, name):
        path = self._path(category, name)
        try:
            data, stat = self.client.retry(self.client.get, path)
        except NoNodeError:
            self._versions.pop(path, None)
            return None
        self._versions[path] = stat.version
        return data

    def _commit(self, build) -> list:
        """Run the transaction `build(transaction)` fills, behind the fence; its results.
        `self._retried` tells whether an attempt was lost with the connection (it may have
        been applied all the same)."""
        attempts = []

        def attempt():
            attempts.append(1)
            self._retried = len(attempts) > 1
            if not self._connected:
                raise StorageError(NOT_CONNECTED)
            transaction = self.client.transaction()
            fence = self.fence() if self.fence is not None else None
            if self.fence is not None and fence is None:
                raise StorageError(NOT_LEADER)
            if fence is not None:
                transaction.check(fence, -1)
            build(transaction)
            results = transaction.commit()
            if fence is not None:
                if isinstance(results[0], NoNodeError):
                    raise StorageError(NOT_LEADER)
                results = results[1:]
            return results
        return self.client.retry(attempt)

    def _conflict(self, path: str, data: bytes | None, error: Exception) -> None:
        """Re-read `path`: our own write (a retried commit) is success, anything else a conflict.

        Equal data counts as ours only after a retry: two writers may well write the same
        bytes (both incremented the same value), and the second one's update is then lost."""
        try:
            current, stat = self.client.retry(self.client.get, path)
        except NoNodeError:
            current, stat = None, None
        if data is not None and self._retried and current == data:
            self._versions[path] = stat.version
            return
        self._versions.pop(path, None)
        seen = "missing" if stat is None else f"at version {stat.version}"
        raise StorageConflict(f"{path} was changed by another writer ({seen}; {type(error).__name__}): "
                              "not overwriting it. Reload the state (the leader does when elected) "
                              "and retry.")

    def put(self, category, name, data, sync=True):
        # ZooKeeper writes are durable on a quorum when acknowledged: `sync` changes nothing.
        path = self._path(category, name)
        version = self._versions.get(path)
        if version is None:
            self.client.retry(self.client.ensure_path, self._path(category))
            result, = self._commit(lambda t: t.create(path, data))
        else:
            result, = self._commit(lambda t: t.set_data(path, data, version))
        if isinstance(result, Exception):
            self._conflict(path, data, result)
            return
        self._versions[path] = 0 if version is None else result.version

    def delete(self, category, name):
        path = self._path(category, name)
        version = self._versions.get(path, -1)
        result, = self._commit(lambda t: t.delete(path, version))
        if isinstance(result, NoNodeError):
            self._versions.pop(path, None)  # already gone: what a delete wants
        elif isinstance(result, Exception):
            self._conflict(path, None, result)
        self._versions.pop(path, None)

    def delete_category(self, category, attempts: int = 3):
        root = self._path(category)
        paths = self._descendants(root)
        if not paths:
            return

        def deletes(transaction):
            for path in paths:  # children before their parents
                transaction.delete(path, self._versions.get(path, -1))

        results = self._commit(deletes)
        failed = [(path, r) for path, r in zip(paths, results)
                  if isinstance(r, Exception) and not isinstance(r, (RolledBackError, RuntimeInconsistency))]
        if failed:
            path, error = failed[0]
            if not isinstance(error, (NoNodeError, NotEmptyError)) or attempts <= 1:
                self._conflict(path, None, error)
            # A key added or removed meanwhile: try again on what is there now.
            return self.delete_category(category, attempts - 1)
        for path in paths:
            self._versions.pop(path, None)

    def _descendants(self, path: str) -> list[str]:
        try:
            children = self.client.retry(self.client.get_children, path)
        except NoNodeError:
            return []
        out = []
        for child in children:
            out += self._descendants(f"{path}/{child}")
        return out + [path]

    def names(self, category):
        try:
            return self.client.retry(self.client.get_children, self._path(category))
        except NoNodeError:
            return []


class ZooKeeperStorage(KeyValueStorage):
    def __init__(self, client: KazooClient, base: str, own_client: bool = True):
        super().__init__(ZooKeeperStore(client, base))
        self.client, self.base, self._own = client, base, own_client

    def fence_with(self, leadership: "Leadership") -> None:
        """Write only while `leadership` leads, fenced by its election znode."""
        self.backend.fence = leadership.election_node

    @classmethod
    def connect(cls, url: str, session_timeout: float = 10.0) -> "ZooKeeperStorage":
        client, base = connect(url, session_timeout)
        return cls(client, base)

    def close(self):
        if self._own:
            try:
                self.client.stop()
                self.client.close()
            except Exception:  # closing a client whose session is gone
                log.debug("closing the ZooKeeper client", exc_info=True)


class Leadership:
    """Contend for leadership; `lead()` runs while this instance leads.

    `lead(stop)` must return when `stop` is set (abdication, shutdown or a lost
    session). After an abdication the instance contends again, so another one can
    take over and this one stays a standby.
    """

    def __init__(self, client: KazooClient, base: str, identifier: str, lead, on_session_lost=None):
        self.client, self.identifier, self._lead = client, identifier, lead
        self.election = client.Election(base.rstrip("/") + "/leader", identifier)
        self.leading = False
        self._stop_leading = threading.Event()
        self._closed = threading.Event()
        self._on_session_lost = on_session_lost
        self._thread = threading.Thread(target=self._run, name="marathon-election", daemon=True)
        client.add_listener(self._state)

    def start(self) -> "Leadership":
        self._thread.start()
        return self

    def _state(self, state) -> None:
        if state == KazooState.SUSPENDED and self.leading:
            log.warning("lost contact with ZooKeeper while leading: not writing until it is back")
        if state == KazooState.LOST and self.leading:
            # The election znode went with the session: another instance may lead now.
            log.error("lost the ZooKeeper session while leading: abdicating")
            self._stop_leading.set()
            if self._on_session_lost:
                self._on_session_lost()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self.election.run(self._leading)
            except Exception:
                if self._closed.is_set():
                    return
                log.exception("leader election failed; contending again")
            # Give another contender the chance to win after an abdication.
            self._closed.wait(1.0)

    def _leading(self) -> None:
        self._stop_leading.clear()
        self.leading = True
        log.info("elected leader (%s)", self.identifier)
        try:
            self._lead(self._stop_leading)
        finally:
            self.leading = False
            log.info("no longer the leader (%s)", self.identifier)

    def election_node(self) -> str | None:
        """This instance's election znode while it leads (what fences its writes), else None."""
        lock = self.election.lock
        if not self.leading or not lock.node:
            return None
        return f"{lock.path}/{lock.node}"

    def leader(self) -> str | None:
        """The API address of the current leader, if any."""
        try:
            contenders = self.election.contenders()
        except Exception:
            return None
        return contenders[0] if contenders else None

    def abdicate(self) -> None:
        self._stop_leading.set()

    def close(self) -> None:
        self._closed.set()
        self._stop_leading.set()
        try:
            self.election.cancel()
        except Exception:
            pass
        self._thread.join(10)
