"""Finding the leading master from what a user typed (``--master``).

Users name a master by its HTTP address (``host:5050``), as with Mesos; the
ZeroMQ endpoint is learned from the master's ``/master/info`` (its MasterInfo
as JSON, the same document Mesos writes into ZooKeeper). A standby master's
``/master/info`` answers with the leader's MasterInfo, so ``host:port`` of any
master finds the leader. A master serving HTTPS is named ``https://host:port``,
or found with a TLS context (``--ssl_ca_file``) that verifies its certificate.

With ``zk://host:2181/path`` (or ``file:///path``) the leader's MasterInfo is
read from ZooKeeper through one watching detector per URL and process; every
reconnect of a `transport.Client` resolves again, which is how slaves and
schedulers follow a new leader.
"""

from __future__ import annotations

import socket
import ssl
import struct

from offerd.common.election import ElectionError, is_zk_url, parse_zk_url, shared_detector
from offerd.common.http import get_json


class DetectorError(RuntimeError):
    pass


def split_host_port(text: str, default_port: int = 5050) -> tuple[str, int]:
    text = text.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.rstrip("/")
    if not text:
        raise DetectorError("empty master address: use HOST:PORT, e.g. 127.0.0.1:5050")
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        number = int(port)
    except ValueError:
        raise DetectorError(f"invalid master address {text!r}: use HOST:PORT, e.g. 127.0.0.1:5050") from None
    if not 0 < number < 65536:
        raise DetectorError(f"invalid master address {text!r}: port {number} is not between 1 and 65535")
    return host, number


def check_master_address(master: str) -> None:
    """Refuse a malformed ``--master`` at start (a retry loop would never fix it):
    HOST:PORT, http(s)://HOST:PORT, zk://... or file://... with a zk:// URL."""
    if is_zk_url(master):
        try:
            parse_zk_url(master)
        except ElectionError as exc:
            raise DetectorError(str(exc)) from None
        return
    host, _ = split_host_port(master)
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise DetectorError(f"invalid master address {master!r}: use HOST:PORT, e.g. 127.0.0.1:5050, "
                            "or zk://host:2181/offerd")


def master_info(master: str, timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> dict:
    """MasterInfo JSON of the leading master named by `master`.

    Over https when `master` says ``https://`` or an `ssl_context` is given (the
    context verifies the master's certificate; without one the system CAs do).
    """
    if is_zk_url(master):
        return _zk_master_info(master, timeout)
    host, port = split_host_port(master)
    secure = ssl_context is not None or master.strip().startswith("https://")
    url = f"{'https' if secure else 'http'}://{host}:{port}/master/info"
    try:
        return get_json(url, timeout=timeout, ssl_context=ssl_context)
    except ssl.SSLError as exc:
        raise DetectorError(f"TLS with the master at {host}:{port} failed: {_tls_reason(exc)}") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None)
        if isinstance(reason, ssl.SSLError):
            raise DetectorError(f"TLS with the master at {host}:{port} failed: {_tls_reason(reason)}") from None
        raise DetectorError(f"cannot reach the master at {host}:{port}: {_os_reason(reason or exc)}") from None
    except ValueError as exc:  # not JSON: e.g. something else listens there
        raise DetectorError(f"the master at {url} did not answer with MasterInfo JSON: {exc}") from None


def _os_reason(exc) -> str:
    """'Connection refused', not '<urlopen error [Errno 111] Connection refused>'."""
    return getattr(exc, "strerror", None) or str(exc)


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{exc.verify_message or exc}; pass the CA that signed the master's certificate "
                "(--ssl_ca_file, or ca_file in client.conf)")
    return f"{exc.reason or exc} (is the master serving https on that port?)"


def zmq_endpoint(info: dict) -> str:
    """The ``tcp://ip:port`` a client connects to, from MasterInfo JSON."""
    address = info.get("address") or {}
    ip = address.get("ip")
    if not ip and "ip" in info:
        ip = socket.inet_ntoa(struct.pack("<I", int(info["ip"])))
    zmq_port = info.get("zmq_port")
    if not ip or not zmq_port:
        raise DetectorError(f"master info has no ZeroMQ address: {info}")
    return f"tcp://{ip}:{zmq_port}"


def resolve_master(master: str, timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> str:
    return zmq_endpoint(master_info(master, timeout, ssl_context=ssl_context))


def _zk_master_info(master: str, timeout: float) -> dict:
    try:
        detector = shared_detector(master)
    except ElectionError as exc:
        raise DetectorError(str(exc)) from None
    info = detector.wait_leader(timeout)
    if info is None:
        raise DetectorError(f"no leading master in {master} yet")
    return info
