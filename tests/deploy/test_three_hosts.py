"""deploy/ on three machines: each network-namespace host (tests/netns.py) runs what
deploy/ installs on a machine of its example layout, with exactly the units' command
lines and environment files (tests/deploy/units.py): a ZooKeeper ensemble member, a
master and a slave each, and the Marathon-like framework on all three. An app of three
instances runs; one whole host then goes down, its link first (nothing it sends reaches
anyone, as when a machine loses power) and then every process on it (ZooKeeper node,
master, slave, Marathon, tasks); the app must get back to three running instances on
the two hosts left.

The host taken down runs neither the leading master nor the ZooKeeper member that
master talks to: a leader that loses its ZooKeeper connection exits (systemd restarts
it as a standby), and after such a failover the new leader waits
--slave_reregister_timeout (10 minutes, Mesos' minimum) for the lost slave before its
tasks are replaced, longer than a test may take (deploy/README.md says so too).
The three slaves share one kernel, so each gets its own --cgroups_root (the one change
to the environment files) and hostname (its own UTS namespace, as a machine has).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from tests.support import wait_for
from tests.deploy.units import DEPLOY, Machine, read_unit
from tests.netns import TestNetwork, netns_available
from tests.zookeeper import zookeeper_missing

log = logging.getLogger(__name__)

SUBNET = 13  # 198.18.13.0/24: other netns tests use 7, 9 and 11
APP_ID = "/deploy-check"
CLONE_NEWUTS = 0x04000000
CGROUP_MOUNTS = "/sys/fs/cgroup"

reason = (netns_available() or zookeeper_missing()
          or (None if shutil.which("nsenter") else "nsenter (util-linux) is not installed"))
pytestmark = [pytest.mark.netns, pytest.mark.skipif(reason is not None, reason=reason or ""),
              pytest.mark.timeout(480)]

_libc = ctypes.CDLL(None, use_errno=True)


def get_json(url: str, timeout: float = 3.0):
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


class Host:
    """One machine: a network namespace, a directory standing in for its /, a hostname."""

    def __init__(self, network: TestNetwork, name: str, index: int, addresses: list[str], root: str):
        self.name, self.ns = name, network.hosts[name]
        self.machine = Machine(index, addresses, root)
        self.address = addresses[index]
        self.link = f"ov{network.tag}{10 + index}"  # add_host numbers hosts from .10
        self.hostname = f"host-{name}"
        self.cgroups_root = f"offerd-deploytest-{network.tag}-{name}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.down = False
        os.makedirs(os.path.join(root, "log"), exist_ok=True)

    def _enter_machine(self) -> None:
        """In the child, before nsenter: a UTS namespace with this host's name."""
        if _libc.unshare(CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
        socket.sethostname(self.hostname)

    def start(self, unit_name: str) -> None:
        overrides = {"OFFERD_CGROUPS_ROOT": self.cgroups_root} if unit_name == "offerd-slave.service" else None
        argv, environment = self.machine.command(read_unit(unit_name), overrides)
        log.info("host %s: starting %s: %s", self.name, unit_name, " ".join(argv))
        with open(os.path.join(self.machine.root, "log", f"{unit_name}.log"), "ab") as output:
            # nsenter joins the network namespace only (`ip netns exec` would also
            # remount /sys, hiding the cgroup hierarchies from the slave), then execs.
            self.procs[unit_name] = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.ns}", "--", *argv], env=environment, cwd="/",
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self._enter_machine)

    def prepare_zookeeper(self, number: int) -> None:
        """/etc/zookeeper/conf/zoo.cfg from deploy/zookeeper/zoo.cfg, and dataDir/myid."""
        config = self.machine.localize((DEPLOY / "zookeeper" / "zoo.cfg").read_text())
        data_dir = re.search(r"^dataDir=(.+)$", config, re.M).group(1)
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, "myid"), "w") as handle:
            handle.write(f"{number}\n")
        path = self.machine.path("/etc/zookeeper/conf/zoo.cfg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(config)

    def zookeeper_mode(self) -> str | None:
        """'leader' or 'follower' once this member serves (ZooKeeper's srvr command)."""
        try:
            with socket.create_connection((self.address, 2181), timeout=2) as sock:
                sock.sendall(b"srvr")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
        except OSError:
            return None
        found = re.search(rb"^Mode: (\w+)", answer, re.M)
        return found.group(1).decode() if found else None

    def zookeeper_servers_of(self, unit_name: str) -> set[str]:
        """Addresses of the ZooKeeper members the unit's process is connected to."""
        pid = self.procs[unit_name].pid
        out = subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", "ss", "-Htnp", "state", "established",
                              "( dport = :2181 )"], capture_output=True, text=True, check=True).stdout
        return {m.group(1) for m in re.finditer(r"(\d+\.\d+\.\d+\.\d+)\]?:2181\s+users:\(.*?pid=(\d+),", out)
                if int(m.group(2)) == pid}

    def master_elected(self) -> bool:
        snapshot = get_json(f"http://{self.address}:5050/metrics/snapshot") or {}
        return snapshot.get("master/elected") == 1

    def marathon_leader(self) -> str | None:
        return (get_json(f"http://{self.address}:8080/v2/leader") or {}).get("leader")

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def task_ids(self) -> set[str]:
        """MESOS_TASK_ID of every task process running on this host."""
        found = set()
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    environ = dict(item.partition(b"=")[::2] for item in handle.read().split(b"\0") if item)
            except OSError:
                continue
            if b"MESOS_TASK_ID" in environ:
                found.add(environ[b"MESOS_TASK_ID"].decode())
        return found

    def take_down(self) -> None:
        """The link first, so that nothing the dying processes send gets out; then every process."""
        subprocess.run(["ip", "link", "set", self.link, "down"], check=True)
        self.down = True
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(30)
        remove_cgroups(self.cgroups_root)


def remove_cgroups(name: str) -> None:
    """Kill what is left in the cgroups under `name` in every hierarchy, then remove them."""
    roots = [os.path.join(CGROUP_MOUNTS, entry, name) for entry in os.listdir(CGROUP_MOUNTS)]
    roots.append(os.path.join(CGROUP_MOUNTS, name))
    for root in roots:
        if not os.path.isdir(root):
            continue
        for directory, _subdirs, _files in sorted(os.walk(root), key=lambda item: -item[0].count("/")):
            for _attempt in range(50):
                try:
                    with open(os.path.join(directory, "cgroup.procs")) as handle:
                        for pid in handle.read().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # the killed processes are still exiting


def marathon_tasks(host: Host) -> list[dict] | None:
    tasks = get_json(f"http://{host.address}:8080/v2/apps{APP_ID}/tasks", timeout=5)
    return None if tasks is None else tasks.get("tasks", [])


def running_on(host: Host, hosts: list[Host]) -> dict[str, list[str]]:
    """Hostname -> ids of the app's TASK_RUNNING tasks, as `host`'s Marathon reports them."""
    out: dict[str, list[str]] = {h.hostname: [] for h in hosts}
    for task in marathon_tasks(host) or []:
        if task.get("state") == "TASK_RUNNING":
            out.setdefault(task.get("host", ""), []).append(task["id"])
    return out


def test_three_machines_keep_an_app_at_its_instance_count_when_one_goes_down(tmp_path):
    network = TestNetwork(subnet=SUBNET)
    hosts: list[Host] = []
    try:
        names = ["a", "b", "c"]
        addresses = [network.add_host(name) for name in names]
        hosts = [Host(network, name, i, addresses, str(tmp_path / name)) for i, name in enumerate(names)]
        started = time.monotonic()
        log.info("hosts a, b, c at %s (namespaces o%s*, logs and files in %s)", ", ".join(addresses),
                 network.tag, tmp_path)

        log.info("1. ZooKeeper: one ensemble member per host")
        for number, host in enumerate(hosts, start=1):
            host.prepare_zookeeper(number)
            host.start("zookeeper.service")

        def zookeeper_leader() -> Host | None:
            modes = [h.zookeeper_mode() for h in hosts]
            ready = all(mode in ("leader", "follower") for mode in modes) and modes.count("leader") == 1
            return hosts[modes.index("leader")] if ready else None

        first = wait_for(zookeeper_leader, 120, 0.5, "the three ZooKeeper members to form a quorum")
        log.info("ZooKeeper serves; its leader is on host %s", first.name)

        log.info("2. masters: host %s first (it leads), then the others as standbys", first.name)
        first.start("offerd-master.service")
        wait_for(first.master_elected, 60, 0.3, f"the master on host {first.name} to be elected")
        for host in hosts:
            if host is not first:
                host.start("offerd-master.service")
        wait_for(lambda: all((get_json(f"http://{h.address}:5050/master/state") or {}).get("leader_info")
                             for h in hosts), 60, 0.3, "every master to know the leader")
        servers = first.zookeeper_servers_of("offerd-master.service")
        log.info("the leading master talks to the ZooKeeper member(s) at %s", ", ".join(sorted(servers)))
        candidates = [h for h in hosts if h is not first and h.address not in servers]
        assert candidates, "the leading master talks to every other host's ZooKeeper member"
        target = candidates[0]
        third = next(h for h in hosts if h is not first and h is not target)
        log.info("host %s will go down; %s and %s stay", target.name, first.name, third.name)

        log.info("3. slaves on hosts %s and %s; Marathon on all three", target.name, first.name)
        for host in (target, first):
            host.start("offerd-slave.service")
        leader_url = f"http://{first.address}:5050"
        wait_for(lambda: (get_json(leader_url + "/master/state") or {}).get("activated_slaves") == 2, 90, 0.3,
                 "two slaves to register")
        for host in hosts:
            host.start("offerd-marathon.service")
        def marathon_leader() -> str | None:
            leaders = [h.marathon_leader() for h in hosts]
            return leaders[0] if None not in leaders and len(set(leaders)) == 1 else None

        wait_for(marathon_leader, 90, 0.5, "the three Marathon instances to serve and name one leader")
        log.info("Marathon's leader: %s", hosts[0].marathon_leader())

        log.info("4. an app of 3 instances, at most 2 per host: host %s gets at least one", target.name)
        app = {"id": APP_ID, "cmd": "sleep 1000", "cpus": 0.01, "mem": 16, "instances": 3,
               "constraints": [["hostname", "MAX_PER", "2"]]}
        response = requests.post(f"http://{third.address}:8080/v2/apps", json=app, timeout=30)
        assert response.status_code == 201, response.text
        wait_for(lambda: sum(map(len, running_on(first, hosts).values())) == 3, 90, 0.5, "3 running instances")
        before = running_on(first, hosts)
        log.info("running: %s", {name: len(ids) for name, ids in before.items()})
        assert before[target.hostname], before

        log.info("5. the slave on host %s", third.name)
        third.start("offerd-slave.service")
        wait_for(lambda: (get_json(leader_url + "/master/state") or {}).get("activated_slaves") == 3, 90, 0.3,
                 "the third slave to register")

        log.info("6. host %s goes down (%.0fs after the start)", target.name, time.monotonic() - started)
        down_at = time.monotonic()
        target.take_down()
        survivors = [first, third]

        def back_to_three():
            now = running_on(first, hosts)
            alive = [task for h in survivors for task in now[h.hostname]]
            return now if len(alive) == 3 and not now[target.hostname] else None

        # The master marks the slave unreachable after --slave_ping_timeout x --max_slave_ping_timeouts
        # (15s x 5), then Marathon replaces its instances.
        after = wait_for(back_to_three, 240, 1.0, "the app to be back at 3 running instances")
        log.info("back at 3 instances %.0fs after host %s went down: %s", time.monotonic() - down_at,
                 target.name, {name: len(ids) for name, ids in after.items()})

        # The leading master agrees, and the tasks are real processes on the hosts left.
        expected = {task for h in survivors for task in after[h.hostname]}
        state = get_json(leader_url + "/master/state", timeout=10)
        slaves = {slave["id"]: slave["hostname"] for slave in state["slaves"]}
        running = {task["id"] for framework in state["frameworks"] for task in framework["tasks"]
                   if task["state"] == "TASK_RUNNING" and slaves.get(task["slave_id"]) != target.hostname}
        assert expected <= running, (expected, running)
        processes = set().union(*(h.task_ids() for h in survivors))
        assert expected <= processes, (expected, processes)
        # Nothing on the hosts left crashed: ZooKeeper, masters, slaves and Marathon still run.
        for host in survivors:
            for unit_name, proc in host.procs.items():
                assert proc.poll() is None, f"{unit_name} on host {host.name} exited with {proc.returncode}"
        log.info("done in %.0fs", time.monotonic() - started)
    finally:
        for host in hosts:
            if host.down:
                subprocess.run(["ip", "link", "set", host.link, "up"], capture_output=True)
            host.stop()
        network.close()
        for host in hosts:
            remove_cgroups(host.cgroups_root)
