"""The chaos test's cluster: three masters and a ZooKeeper on a test bridge, slaves on
loopback and slaves on network-namespace hosts (tests/netns.py) whose links can be
taken down, a Marathon with an app, and schedulers that record every status update
and acknowledgement into a `History` (tests/ha/chaos_history.py).

Also what the checks need at the end: each slave's records (its /state and the
updates it checkpointed but has not had acknowledged), the master's latest task
states, and the processes still running each task (found by the MESOS_TASK_ID a
slave puts in every task's environment).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import requests

from offerd.proto import offerd_pb2 as pb
from tests.builders import RecordingScheduler
from tests.ha.chaos_history import MARATHON, History, SlaveRecord
from tests.ha.cluster import HACluster, get_json
from tests.netns import TestNetwork
from tests.support import free_port
from tests.zookeeper import ZooKeeperServer


class HistoryScheduler(RecordingScheduler):
    """A RecordingScheduler with explicit acknowledgements: each update is recorded
    in the history, then acknowledged, and the acknowledgement recorded too (only
    if the driver took it: a stopping driver sends nothing, and the slave resends)."""

    def __init__(self, history: History, partition_aware: bool, **kwargs):
        super().__init__(**kwargs)
        self.history = history
        self.partition_aware = partition_aware
        self.framework_id = ""

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.value
        self.history.add_framework(framework_id.value, self.partition_aware)
        super().registered(driver, framework_id, master_info)

    def statusUpdate(self, driver, status):
        self.history.record(self.framework_id, status.task_id.value, pb.TaskState.Name(status.state),
                            status.slave_id.value, status.uuid.hex(), status.timestamp,
                            pb.TaskStatus.Source.Name(status.source), pb.TaskStatus.Reason.Name(status.reason))
        super().statusUpdate(driver, status)
        if status.uuid and driver.acknowledgeStatusUpdate(status) == pb.DRIVER_RUNNING:
            self.history.acknowledge(self.framework_id, status.task_id.value, status.uuid.hex())


class SlaveHost:
    """One slave process, on loopback (through the HACluster) or on a netns host."""

    def __init__(self, cluster: "ChaosCluster", name: str, index: int | None = None, ip: str = "127.0.0.1",
                 link: str | None = None):
        self.cluster, self.name, self.index, self.ip, self.link = cluster, name, index, ip, link
        self.proc: subprocess.Popen | None = None
        self.port = cluster.ha.slave_ports[index] if index is not None else 5051
        self.work_dir = os.path.join(cluster.work_dir, f"slave{index}" if index is not None else name)
        self.link_down = False

    @property
    def process(self) -> subprocess.Popen | None:
        return self.cluster.ha.slaves[self.index] if self.index is not None else self.proc

    def running(self) -> bool:
        proc = self.process
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        if self.index is not None:
            self.cluster.ha.start_slave(self.index)
            return
        log = open(os.path.join(self.cluster.work_dir, "logs", f"{self.name}.log"), "ab")
        try:
            self.proc = self.cluster.network.popen(self.name, [
                sys.executable, "-m", "offerd", "slave", f"--master={self.cluster.zk_url}", f"--ip={self.ip}",
                f"--hostname={self.ip}", f"--port={self.port}", f"--work_dir={self.work_dir}",
                f"--resources={self.cluster.ha.resources}", "--containerizer=posix", "--insecure",
                *self.cluster.ha.slave_args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def stop(self, sig: int, timeout: float = 30.0) -> None:
        """Signal the slave and wait for it to exit (SIGTERM: a clean stop that keeps
        checkpointed tasks running; SIGKILL: a crash)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def set_link(self, up: bool) -> None:
        subprocess.run(["ip", "link", "set", self.link, "up" if up else "down"], check=True)
        self.link_down = not up

    def state(self) -> dict | None:
        return get_json(f"http://{self.ip}:{self.port}/state", timeout=5)


class ChaosCluster:
    def __init__(self, work_dir: str, loopback_slaves: int = 2, netns_slaves: int = 2, master_args=(),
                 slave_args=(), subnet: int = 11):
        self.work_dir = work_dir
        os.makedirs(os.path.join(work_dir, "logs"), exist_ok=True)
        self.network = TestNetwork(subnet=subnet)
        self.zk: ZooKeeperServer | None = None
        self.marathon: subprocess.Popen | None = None
        self.marathon_url = ""
        self._events_stop = threading.Event()
        self._events_thread: threading.Thread | None = None
        self.slave_hosts: list[SlaveHost] = []
        self._loopback, self._netns = loopback_slaves, netns_slaves
        self._master_args, self._slave_args = list(master_args), list(slave_args)
        self.ha: HACluster | None = None

    @property
    def bridge_ip(self) -> str:
        return f"{self.network.prefix}.1"

    @property
    def zk_url(self) -> str:
        return self.ha.zk_url

    def start(self) -> "ChaosCluster":
        self.zk = ZooKeeperServer(1, host=self.bridge_ip).start()
        self.ha = HACluster(self.zk.url(f"offerd-chaos-{uuid.uuid4().hex[:6]}"), masters=3,
                            slaves=self._loopback, ip=self.bridge_ip, work_dir=self.work_dir,
                            master_args=[*self._master_args, "--insecure"], slave_args=self._slave_args)
        self.ha.start()
        self.slave_hosts = [SlaveHost(self, f"slave{i}", index=i) for i in range(self._loopback)]
        for number in range(self._netns):
            name = f"n{number}"
            ip = self.network.add_host(name)
            # add_host numbers hosts from .10; the bridge end of host k's veth is ov<tag><10+k>.
            link = f"ov{self.network.tag}{ip.rsplit('.', 1)[1]}"
            host = SlaveHost(self, name, ip=ip, link=link)
            self.slave_hosts.append(host)
            host.start()
        self.ha.wait_slaves(len(self.slave_hosts), 60)
        return self

    def activated_slaves(self) -> int:
        return self.ha.state().get("activated_slaves", 0)

    # -- Marathon ---------------------------------------------------------------

    def start_marathon(self, history: History) -> str:
        port = free_port()
        self.marathon_url = f"http://127.0.0.1:{port}"
        log = open(os.path.join(self.work_dir, "logs", "marathon.log"), "ab")
        try:
            self.marathon = subprocess.Popen([
                sys.executable, "-m", "offerd", "marathon", f"--master={self.zk_url}", f"--http_port={port}",
                "--hostname=127.0.0.1", f"--work_dir={os.path.join(self.work_dir, 'marathon')}",
                "--min_revive_offers_interval=0.2secs", "--decline_offer_duration=1secs",
                "--reconciliation_interval=10secs", f"--framework_name={MARATHON}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while get_json(self.marathon_url + "/v2/info") is None:
            if time.monotonic() > deadline or self.marathon.poll() is not None:
                raise AssertionError(f"Marathon did not start (log in {self.work_dir}/logs/marathon.log)")
            time.sleep(0.2)
        self._events_thread = threading.Thread(target=self._read_events, args=(history,), daemon=True,
                                               name="marathon-events")
        self._events_thread.start()
        return self.marathon_url

    def _read_events(self, history: History) -> None:
        """Follow /v2/events, reconnecting whenever the stream breaks."""
        while not self._events_stop.is_set():
            try:
                with requests.get(self.marathon_url + "/v2/events", params={"event_type": "status_update_event"},
                                  stream=True, timeout=(5, 30)) as response:
                    for line in response.iter_lines(decode_unicode=True):
                        if self._events_stop.is_set():
                            return
                        if line and line.startswith("data:"):
                            event = json.loads(line[5:])
                            if event.get("eventType") == "status_update_event":
                                history.record_marathon(event["appId"], event["taskId"], event["taskStatus"],
                                                        event.get("slaveId", ""))
            except (requests.RequestException, ValueError):
                time.sleep(0.5)

    def post_app(self, app: dict) -> None:
        response = requests.post(self.marathon_url + "/v2/apps", json=app, timeout=10)
        assert response.status_code in (200, 201), response.text

    def marathon_running(self, app_id: str) -> list[str]:
        tasks = get_json(f"{self.marathon_url}/v2/apps{app_id}/tasks") or {}
        return [t["id"] for t in tasks.get("tasks", []) if t.get("state") == "TASK_RUNNING"]

    # -- what the checks read at the end ----------------------------------------------

    def slave_records(self) -> list[SlaveRecord]:
        """Every status each slave holds: those in its /state, and the updates it has
        checkpointed but not had acknowledged (work_dir/meta/.../task.updates)."""
        records = []
        for host in self.slave_hosts:
            state = host.state() or {}
            for framework in state.get("frameworks", []) + state.get("completed_frameworks", []):
                for executor in framework.get("executors", []) + framework.get("completed_executors", []):
                    for task in (executor.get("tasks", []) + executor.get("queued_tasks", [])
                                 + executor.get("completed_tasks", [])):
                        for status in task.get("statuses", []):
                            records.append(SlaveRecord(state.get("id", host.name), task["framework_id"],
                                                       task["id"], status["state"], status.get("timestamp") or 0.0))
            pattern = os.path.join(host.work_dir, "meta", "slaves", "*", "frameworks", "*", "executors", "*",
                                   "runs", "*", "tasks", "*", "task.updates")
            for path in glob.glob(pattern):
                if f"{os.sep}latest{os.sep}" in path:
                    continue
                parts = path.split(os.sep)
                slave_id, framework_id = parts[parts.index("slaves") + 1], parts[parts.index("frameworks") + 1]
                try:
                    with open(path) as handle:
                        pending = json.load(handle).get("pending", [])
                except (OSError, ValueError):
                    continue
                for raw in pending:
                    status = pb.TaskStatus.FromString(base64.b64decode(raw))
                    records.append(SlaveRecord(slave_id, framework_id, status.task_id.value,
                                               pb.TaskState.Name(status.state), status.timestamp, pending=True))
        return records

    def pending_updates(self) -> int:
        return sum(1 for r in self.slave_records() if r.pending)

    def master_states(self, framework_ids) -> dict[tuple[str, str], str]:
        state = self.ha.state()
        out = {}
        for framework in state.get("frameworks", []) + state.get("completed_frameworks", []):
            if framework.get("id") not in framework_ids:
                continue
            for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                for task in framework.get(key, []):
                    out[(framework["id"], task["id"])] = task["state"]
        return out

    # -- processes and teardown --------------------------------------------------------

    def task_processes(self) -> dict[str, list[int]]:
        """task id -> pids whose environment names it (MESOS_TASK_ID), for tasks
        whose sandbox (MESOS_DIRECTORY) is under this cluster's work_dir: other
        tests' tasks on this machine are none of ours."""
        out: dict[str, list[int]] = {}
        ours = os.path.join(self.work_dir, "").encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = dict(item.partition(b"=")[::2] for item in handle.read().split(b"\0") if item)
            except OSError:
                continue
            task_id = environ.get(b"MESOS_TASK_ID")
            if task_id is not None and environ.get(b"MESOS_DIRECTORY", b"").startswith(ours):
                out.setdefault(task_id.decode(errors="replace"), []).append(int(entry))
        return out

    def stop(self) -> None:
        self._events_stop.set()
        if self.marathon is not None and self.marathon.poll() is None:
            self.marathon.terminate()
            try:
                self.marathon.wait(15)
            except subprocess.TimeoutExpired:
                self.marathon.kill()
        for host in self.slave_hosts:
            if host.link is not None and host.link_down:
                host.set_link(True)
            if host.index is None:
                host.stop(signal.SIGUSR1, timeout=20)   # shut down: kill its tasks, as the loopback ones are
        if self.ha is not None:
            self.ha.stop()
        self.network.close()
        if self.zk is not None:
            self.zk.stop()
        # The slaves left checkpointed tasks running (SIGTERM keeps them): end them.
        for pids in self.task_processes().values():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

