"""ZooKeeper: the state store and the leader election of ``--zk zk://host:port/marathon``.

Layout under the URL's path:

    <path>/state/<category>/<name>   one znode per stored value (storage.KeyValueStorage)
    <path>/leader/                   kazoo's election recipe; the data of each
                                     contender is its API address "host:port"

kazoo is used directly: the framework depends on offerd's public SDK only, not on
the masters' election code.
"""

from __future__ import annotations

import logging
import threading

from urllib.parse import unquote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError, NodeExistsError, NotEmptyError
from kazoo.retry import KazooRetry

from frameworks.marathon_like.storage import KeyValueBackend, KeyValueStorage, StorageError

log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, str, str | None]:
    """(kazoo hosts, base path, "user:pass" or None) of ``zk://[user:pass@]h1:p1,h2:p2/path``."""
    if not (url or "").startswith("zk://"):
        raise StorageError(f"invalid ZooKeeper URL {url!r}: use zk://host:2181/marathon")
    rest = url[len("zk://"):]
    credentials = None
    if "@" in rest.split("/", 1)[0]:
        auth, rest = rest.split("@", 1)
        credentials = unquote(auth)
    hosts, _, path = rest.partition("/")
    path = "/" + path.strip("/")
    if not hosts or path == "/":
        raise StorageError(f"invalid ZooKeeper URL {url!r}: use zk://host:2181/marathon")
    return hosts, path, credentials


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
        client.close()
        raise StorageError(f"cannot reach ZooKeeper at zk://{hosts}{path}: {exc}") from None
    client.ensure_path(path)
    return client, path


class ZooKeeperStore(KeyValueBackend):
    def __init__(self, client: KazooClient, base: str):
        self.client = client
        self.root = base.rstrip("/") + "/state"

    def _path(self, category: str, name: str | None = None) -> str:
        return f"{self.root}/{category}" + (f"/{name}" if name is not None else "")

    def get(self, category, name):
        try:
            data, _ = self.client.retry(self.client.get, self._path(category, name))
            return data
        except NoNodeError:
            return None

    def put(self, category, name, data, sync=True):
        # ZooKeeper writes are durable on a quorum when acknowledged: `sync` changes nothing.
        path = self._path(category, name)
        try:
            self.client.retry(self.client.set, path, data)
        except NoNodeError:
            try:
                self.client.retry(self.client.create, path, data, makepath=True)
            except NodeExistsError:
                self.client.retry(self.client.set, path, data)

    def delete(self, category, name):
        try:
            self.client.retry(self.client.delete, self._path(category, name))
        except NoNodeError:
            pass

    def delete_category(self, category):
        try:
            self.client.retry(self.client.delete, self._path(category), recursive=True)
        except (NoNodeError, NotEmptyError):
            pass

    def names(self, category):
        try:
            return self.client.retry(self.client.get_children, self._path(category))
        except NoNodeError:
            return []


class ZooKeeperStorage(KeyValueStorage):
    def __init__(self, client: KazooClient, base: str, own_client: bool = True):
        super().__init__(ZooKeeperStore(client, base))
        self.client, self.base, self._own = client, base, own_client

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
        if state == KazooState.LOST and self.leading:
            log.error("lost the ZooKeeper session while leading")
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
