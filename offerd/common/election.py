"""Leader election and detection: small recipes behind two interfaces.

A *contender* puts one master forward and says when it leads and when it must
stop; a *detector* tells anyone who leads now. Each has a standalone
implementation (one master, no ZooKeeper) and a ZooKeeper one, picked by
`create_contender` / `create_detector` from the ``--zk`` URL.

ZooKeeper layout, as Mesos writes it: every master creates an
ephemeral, sequential znode ``<path>/json.info_<10 digits>`` holding its
MasterInfo as JSON (the document ``/master/info`` serves, with ``zmq_port``);
the member with the lowest sequence number leads. Groups are a handful of
masters, so every member watches the children (no herd-effect handling, as in
Mesos).

URLs: ``zk://host1:2181,host2:2181/path``, ``zk://user:pass@host:2181/path``
(digest auth; the znodes get a creator-all ACL plus world-read, so detectors
without credentials can still read MasterInfo) and ``file:///path`` (a file
holding such a URL).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import threading
from abc import ABC, abstractmethod
from typing import Callable
from urllib.parse import unquote

from offerd.common.redact import redact_url

log = logging.getLogger(__name__)

PREFIX = "json.info_"
DEFAULT_SESSION_TIMEOUT = 10.0


class ElectionError(RuntimeError):
    """A bad --zk URL, or ZooKeeper could not be reached."""


@dataclasses.dataclass(frozen=True)
class ZkUrl:
    hosts: str  # kazoo's "h1:2181,h2:2181"
    path: str  # absolute znode path, "/offerd"
    credentials: str | None = None  # "user:pass" for digest auth

    def __str__(self) -> str:
        auth = "<credentials>@" if self.credentials else ""
        return f"zk://{auth}{self.hosts}{self.path}"


def parse_zk_url(text: str) -> ZkUrl:
    """A `ZkUrl` from ``zk://[user:pass@]h1:p1,h2:p2/path`` or ``file:///path``."""
    text = (text or "").strip()
    if text.startswith("file://"):
        path = text[len("file://"):]
        try:
            with open(path, encoding="utf-8") as f:
                content = f.read().strip()
        except OSError as exc:
            raise ElectionError(f"cannot read the ZooKeeper URL from {path}: {exc}") from None
        if content.startswith("file://"):
            raise ElectionError(f"{path} names another file; it must hold a zk:// URL")
        return parse_zk_url(content)
    if not text.startswith("zk://"):
        raise ElectionError(f"invalid ZooKeeper URL {redact_url(text)!r}: use zk://host:2181/path or file:///path")
    rest = text[len("zk://"):]
    credentials = None
    if "@" in rest.split("/", 1)[0]:
        auth, rest = rest.split("@", 1)
        if ":" not in auth:
            raise ElectionError("ZooKeeper credentials must be user:password")
        credentials = unquote(auth)
    hosts, slash, path = rest.partition("/")
    if not hosts:
        raise ElectionError(f"invalid ZooKeeper URL {redact_url(text)!r}: no host")
    path = "/" + path.strip("/")
    if path == "/":
        raise ElectionError(f"invalid ZooKeeper URL {redact_url(text)!r}: give a znode path, e.g. zk://{hosts}/offerd")
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ElectionError(f"invalid ZooKeeper host {host!r} in {redact_url(text)!r}: use HOST:PORT")
    return ZkUrl(hosts, path, credentials)


def is_zk_url(text: str | None) -> bool:
    return bool(text) and (text.startswith("zk://") or text.startswith("file://"))


def sequence_of(name: str) -> int | None:
    if not name.startswith(PREFIX):
        return None
    digits = name[len(PREFIX):]
    return int(digits) if digits.isdigit() else None


def leader_node(children: list[str]) -> str | None:
    """The member that leads: the lowest sequence number among ``json.info_*``."""
    members = [(sequence_of(c), c) for c in children]
    members = [m for m in members if m[0] is not None]
    return min(members)[1] if members else None


def connect(url: ZkUrl, session_timeout: float = DEFAULT_SESSION_TIMEOUT):
    """A started KazooClient for `url` (no chroot: `url.path` is used as a prefix)."""
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    auth = [("digest", url.credentials)] if url.credentials else None
    client = KazooClient(hosts=url.hosts, timeout=session_timeout, auth_data=auth,
                         connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
                         command_retry={"max_tries": 3, "delay": 0.1, "max_delay": 1.0})
    try:
        client.start(timeout=max(session_timeout, 2.0))
    except KazooTimeoutError:
        client.stop()  # ends the connection thread, which would retry forever
        client.close()
        raise ElectionError(f"cannot connect to ZooKeeper at {url.hosts}") from None
    return client


def znode_acl(url: ZkUrl):
    """With credentials: everything for their owner, read for anyone."""
    if not url.credentials:
        return None
    from kazoo.security import ACL, Id, Permissions, make_digest_acl

    user, _, password = url.credentials.partition(":")
    return [make_digest_acl(user, password, all=True), ACL(Permissions.READ, Id("world", "anyone"))]


# -- interfaces --------------------------------------------------------------------


class Contender(ABC):
    """Puts one master forward. `on_elected` is called once it leads; `on_lost`
    once it can no longer be sure it leads (it must stop acting at once)."""

    def __init__(self):
        self.on_elected: Callable[[], None] = lambda: None
        self.on_lost: Callable[[str], None] = lambda why: None

    @abstractmethod
    def contend(self, info: dict) -> None:
        """Enter the election with this MasterInfo JSON."""

    @abstractmethod
    def withdraw(self) -> None:
        """Leave the election (and close any connection)."""

    @property
    def session_id(self) -> tuple | None:
        return None


class Detector(ABC):
    """Who leads now: the leader's MasterInfo JSON, or None."""

    @abstractmethod
    def leader(self) -> dict | None: ...

    def close(self) -> None:
        pass


# -- standalone ----------------------------------------------------------------------


class StandaloneContender(Contender):
    """No ZooKeeper: the one master leads as soon as it asks."""

    def contend(self, info):
        self.on_elected()

    def withdraw(self):
        pass


class StandaloneDetector(Detector):
    def __init__(self, info: dict | None = None):
        self.info = info

    def leader(self):
        return self.info


# -- ZooKeeper -------------------------------------------------------------------------


class ZooKeeperDetector(Detector):
    """Watches ``<path>``'s children and keeps the leader's MasterInfo at hand."""

    def __init__(self, url: ZkUrl, client=None, session_timeout: float = DEFAULT_SESSION_TIMEOUT):
        self.url = url
        self._own_client = client is None
        self.client = client or connect(url, session_timeout)
        self._lock = threading.Lock()
        self._leader: tuple[str, dict] | None = None
        self._changed = threading.Condition(self._lock)
        self.client.ensure_path(url.path)
        from kazoo.recipe.watchers import ChildrenWatch

        ChildrenWatch(self.client, url.path, self._on_children)

    def _on_children(self, children: list[str]) -> bool | None:
        node = leader_node(children)
        info = None
        if node is not None:
            from kazoo.exceptions import NoNodeError

            try:
                data, _ = self.client.get(f"{self.url.path}/{node}")
                info = json.loads(data.decode())
            except NoNodeError:
                info = None  # gone already; the next children event follows
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("unreadable MasterInfo in %s/%s: %s", self.url.path, node, exc)
        with self._changed:
            previous = self._leader[0] if self._leader else None
            self._leader = (node, info) if info is not None else None
            if node != previous:
                log.info("leading master is now %s", f"{self.url.path}/{node}" if info else "(none)")
            self._changed.notify_all()
        return None

    @property
    def leader_node(self) -> str | None:
        with self._lock:
            return self._leader[0] if self._leader else None

    def leader(self):
        with self._lock:
            return self._leader[1] if self._leader else None

    def wait_leader(self, timeout: float) -> dict | None:
        with self._changed:
            self._changed.wait_for(lambda: self._leader is not None, timeout)
            return self._leader[1] if self._leader else None

    def close(self):
        if self._own_client:
            self.client.stop()
            self.client.close()


class ZooKeeperContender(Contender):
    """An ephemeral sequential ``json.info_`` znode; leads while it is the lowest.

    Losing the session, or while leading even the connection (after which the
    server may expire the session, and let another lead, at any moment), calls
    `on_lost`: the master must stop leading before ZooKeeper lets another lead.
    """

    def __init__(self, url: ZkUrl, session_timeout: float = DEFAULT_SESSION_TIMEOUT):
        super().__init__()
        self.url = url
        self.session_timeout = session_timeout
        self.client = connect(url, session_timeout)
        self.detector = ZooKeeperDetector(url, client=self.client)
        self.node: str | None = None
        self.elected = False
        self._done = False
        self._lock = threading.Lock()
        self.client.add_listener(self._on_state)

    @property
    def session_id(self):
        return self.client.client_id

    def contend(self, info):
        path = self.client.create(f"{self.url.path}/{PREFIX}", json.dumps(info).encode(), acl=znode_acl(self.url),
                                  ephemeral=True, sequence=True, makepath=True)
        self.node = path.rsplit("/", 1)[1]
        log.info("contending for leadership as %s", path)
        from kazoo.recipe.watchers import ChildrenWatch

        ChildrenWatch(self.client, self.url.path, self._on_children)

    def _on_children(self, children):
        if self._done:
            return False
        if self.node is not None and self.node not in children:
            # Our znode is gone (session expired server-side): never lead again.
            self._lose("our election znode disappeared")
            return False
        if not self.elected and leader_node(children) == self.node:
            self.elected = True
            log.info("elected: %s/%s has the lowest sequence", self.url.path, self.node)
            threading.Thread(target=self.on_elected, name="elected", daemon=True).start()
        return None

    def _on_state(self, state) -> None:
        from kazoo.client import KazooState

        if self._done:
            return
        if state == KazooState.LOST:
            self._lose("ZooKeeper session expired")
        elif state == KazooState.SUSPENDED and self.elected:
            # Disconnected: the server may expire the session, and let another
            # lead, at any moment; a leader cannot know, so it stops now (as
            # Curator's LeaderLatch does). Standbys just wait for the reconnect.
            self._lose("disconnected from ZooKeeper")

    def _lose(self, why: str) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        log.error("leaving the election: %s", why)
        # Callback off kazoo's threads: it may stop this client.
        threading.Thread(target=self.on_lost, args=(why,), name="election-lost", daemon=True).start()

    def withdraw(self):
        with self._lock:
            self._done = True
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # already broken: nothing to withdraw from
            log.debug("closing the ZooKeeper client failed", exc_info=True)


# -- factories ---------------------------------------------------------------------------


def create_contender(zk: str | None, session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> Contender:
    if not zk:
        return StandaloneContender()
    return ZooKeeperContender(parse_zk_url(zk), session_timeout)


def create_detector(zk: str | None, info: dict | None = None,
                    session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> Detector:
    if not zk:
        return StandaloneDetector(info)
    return ZooKeeperDetector(parse_zk_url(zk), session_timeout=session_timeout)


_shared: dict[str, ZooKeeperDetector] = {}
_shared_lock = threading.Lock()


def close_shared(hosts: str | None = None, under: str | None = None) -> None:
    """Close the shared detectors: all, or those of ZooKeeper `hosts` "h1:p1,h2:p2", or those
    at or below the zk:// URL `under`. Their clients would otherwise keep polling (and
    retrying, once ZooKeeper is gone) until the process exits."""
    root = parse_zk_url(under) if under is not None else None
    with _shared_lock:
        for zk, detector in list(_shared.items()):
            url = parse_zk_url(zk)
            if hosts is not None and url.hosts != hosts:
                continue
            if root is not None and (url.hosts != root.hosts or
                                     not (url.path == root.path or url.path.startswith(root.path.rstrip("/") + "/"))):
                continue
            try:
                detector.close()
            except Exception:  # a broken client: nothing left to close
                log.debug("closing the detector of %s failed", redact_url(zk), exc_info=True)
            del _shared[zk]


atexit.register(close_shared)


def shared_detector(zk: str) -> ZooKeeperDetector:
    """One long-lived detector per URL in this process (slaves, schedulers)."""
    with _shared_lock:
        detector = _shared.get(zk)
        # kazoo reconnects forever and its ChildrenWatch survives session loss.
        if detector is None:
            detector = ZooKeeperDetector(parse_zk_url(zk))
            _shared[zk] = detector
        return detector
