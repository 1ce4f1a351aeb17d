"""Separate hosts on one machine: network namespaces joined by a bridge.

Each host is a network namespace with one veth link to a bridge in the root
namespace, an address from 198.18.0.0/15 (set aside for testing) and no route
other than its own /24, so nothing can leave the machine. The test process
itself sits on the bridge at .1 and reaches every host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid


def netns_available() -> str | None:
    """None if namespaces can be built here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"offerd-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")


class TestNetwork:
    """A bridge and hosts on 198.18.<subnet>.0/24; `close()` removes all of it."""

    __test__ = False  # not a pytest class

    def __init__(self, subnet: int = 7):
        self.tag = uuid.uuid4().hex[:5]
        self.prefix = f"198.18.{subnet}"
        self.bridge = f"obr{self.tag}"
        self.hosts: dict[str, str] = {}
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        index = len(self.hosts) + 10
        ns = f"o{self.tag}{name}"
        outside, inside = f"ov{self.tag}{index}", "eth0"
        _ip("netns", "add", ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", f"oi{self.tag}{index}")
        _ip("link", "set", f"oi{self.tag}{index}", "netns", ns)
        _ip("link", "set", f"oi{self.tag}{index}", "name", inside, ns=ns)
        _ip("addr", "add", f"{self.prefix}.{index}/24", "dev", inside, ns=ns)
        _ip("link", "set", inside, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        address = f"{self.prefix}.{index}"
        self.hosts[name] = ns
        return address

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.hosts[host], *argv], **kwargs)

    def close(self) -> None:
        for ns in self.hosts.values():
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Capture:
    """Every frame between the hosts of a TestNetwork, as a wire tap sees it:
    read with a raw packet socket on the hosts' links while the block runs."""

    ETH_P_ALL = 0x0003

    def __init__(self, network: TestNetwork):
        # Frames switched between two hosts never reach the bridge device itself,
        # so the tap listens on every interface and keeps the hosts' veth links.
        self.prefix = f"ov{network.tag}"
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ETH_P_ALL))
        self.sock.settimeout(0.2)
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, (interface, *_rest) = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if interface.startswith(self.prefix):
                self.frames.append(frame)

    def __enter__(self) -> "Capture":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def contains(self, needle: bytes) -> bool:
        return any(needle in frame for frame in self.frames)

    def bytes_to_port(self, port: int) -> int:
        """Bytes of TCP frames to or from `port` (IPv4 over Ethernet)."""
        total = 0
        for frame in self.frames:
            if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            ihl = (frame[14] & 0x0F) * 4
            tcp = frame[14 + ihl:]
            if len(tcp) >= 4 and port in (int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")):
                total += len(frame)
        return total
