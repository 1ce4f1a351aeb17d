"""Hypothesis over offerd's ZeroMQ frames, sent over real sockets to a running
master, a running slave's executor endpoint and a running executor driver.

Inputs (tests/fuzz/strategies.py): calls built from the protobuf descriptors with
known and unknown ids, in short sequences (wrong order, duplicates), mutated into
truncated, mislabelled, oversized, unknown-enum or random frames, plus ill-formed
handshake frames. After every input:

- the process answers (a heartbeat round trip, or a marker message for the driver)
  and no handler raised (the actors log "unhandled error" when one does: a crash);
- an input that was refused (ProtocolError or an ERROR event for each call sent)
  left the state as it was (the master's /master/state, the slave's /state);
- the master's accounting holds (offerd.master.invariants: allocated + offered +
  idle = total on every slave).

A legitimate framework runs a task on the real slave the whole time, and after the
fuzzing launches another one and sees it finish.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

import pytest
import zmq
from hypothesis import assume, example, given
from hypothesis import strategies as st

from offerd.common.framing import AUTH, GOODBYE, HEARTBEAT, MAGIC, PROOF, Decoder, TransportStats, encode
from offerd.common.resources import Resources
from offerd.framework_sdk import MesosExecutorDriver, MesosSchedulerDriver, Scheduler
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from offerd.slave import Slave
from offerd.slave.flags import make_flags
from tests.fakes.sdk_peers import FakeSlave, RecordingExecutor
from tests.fuzz import strategies
from tests.fuzz.budget import EXAMPLES, fuzz, report
from tests.support import wait_for

CTX = zmq.Context.instance()


# -- crash detection ---------------------------------------------------------------------


class HandlerErrors(logging.Handler):
    """Counts what the actors' guard logs when a handler raises."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        if "unhandled error" in record.getMessage():
            self.records.append(self.format(record))


@pytest.fixture(scope="module")
def handler_errors():
    handler = HandlerErrors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


# -- a legitimate framework ----------------------------------------------------------------


class Legit(Scheduler):
    """Launches each queued command on the real slave; records every status."""

    def __init__(self, slave_id: str):
        self.slave_id = slave_id
        self.queue: list[tuple[str, str]] = []
        self.states: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def run(self, task_id: str, command: str) -> None:
        with self.lock:
            self.queue.append((task_id, command))

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                wanted, self.queue = (self.queue, []) if offer.slave_id.value == self.slave_id else ([], self.queue)
            if not wanted:
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=0.2))
                continue
            tasks = [pb.TaskInfo(name=task_id, task_id=pb.TaskID(value=task_id), slave_id=offer.slave_id,
                                 command=pb.CommandInfo(value=command),
                                 resources=Resources.parse("cpus:0.1;mem:32").to_protos())
                     for task_id, command in wanted]
            driver.launchTasks(offer.id, tasks)

    def statusUpdate(self, driver, status):
        with self.lock:
            self.states.setdefault(status.task_id.value, []).append(status.state)

    def reached(self, task_id: str, state: int) -> bool:
        with self.lock:
            return state in self.states.get(task_id, [])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, handler_errors):
    """A real master and slave in this process, and a framework with a task running."""
    work = tmp_path_factory.mktemp("frame-fuzz")
    master = Master(master_flags(port=0, allocation_interval="100ms", work_dir=str(work / "master"))).start()
    slave = Slave(make_flags(master=f"127.0.0.1:{master.http_port}", port=0, ip="127.0.0.1", hostname="127.0.0.1",
                             work_dir=str(work / "slave"), resources="cpus:2;mem:1024;disk:1024;ports:[31000-31010]",
                             containerizer="posix")).start()
    wait_for(lambda: slave.slave_id, 15, message="the slave to register")
    legit = Legit(slave.slave_id)
    driver = MesosSchedulerDriver(legit, pb.FrameworkInfo(name="legit", user="root"), f"127.0.0.1:{master.http_port}")
    driver.start()
    legit.run("legit-long", "sleep 600")
    wait_for(lambda: legit.reached("legit-long", pb.TASK_RUNNING), 30, message="the legitimate task to run")
    yield master, slave, legit
    driver.stop()
    slave.stop()
    master.stop()


def legit_framework_still_works(legit: Legit, name: str) -> None:
    legit.run(name, "true")
    wait_for(lambda: legit.reached(name, pb.TASK_FINISHED), 30, message=f"task {name} to finish after the fuzzing")
    with legit.lock:
        long_task = list(legit.states["legit-long"])
    assert long_task[-1] == pb.TASK_RUNNING, f"the long-running task of the legitimate framework ended: {long_task}"


# -- talking to a ROUTER ---------------------------------------------------------------------


class RawPeer:
    """A DEALER that sends frames as given and tells what came back for them."""

    def __init__(self, port: int, server_key: bytes | None = None):
        self.sock = CTX.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, -1)
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = server_key, public, secret
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.accepted = [pb.Event, pb.SlaveEvent, pb.ExecutorEvent, pb.ProtocolError]

    def exchange(self, sequence: list[list[bytes]]) -> list:
        """Send `sequence`, then a heartbeat; the server handles a peer's frames in order,
        so what it answered arrives before the echo of that last heartbeat."""
        beats = sum(1 for frames in sequence if _is_heartbeat(frames)) + 1
        for frames in sequence:
            self.sock.send_multipart(frames or [b""])
        self.sock.send_multipart([MAGIC, HEARTBEAT])
        decoder = Decoder(self.accepted, 1 << 30, TransportStats())
        answers = []
        while beats:
            assert self.sock.poll(15_000), "no heartbeat echo in 15 s: the server stopped answering"
            reply = self.sock.recv_multipart()
            if reply[:2] == [MAGIC, HEARTBEAT]:
                beats -= 1
                continue
            message, _ = decoder.decode(reply)
            if message is not None:
                answers.append(message)
        return answers

    def close(self):
        self.sock.close(0)


def _is_heartbeat(frames: list[bytes]) -> bool:
    return 2 <= len(frames) <= 4 and frames[0] == MAGIC and frames[1] == HEARTBEAT


def _is_refusal(message) -> bool:
    if isinstance(message, pb.ProtocolError):
        return True
    return isinstance(message, (pb.Event, pb.SlaveEvent, pb.ExecutorEvent)) and message.type == type(message).ERROR


def _handled_as_control(frames: list[bytes]) -> bool:
    """As the server sorts frames (offerd.common.transport.Server._on_readable): these
    never reach the decoder; every other frame is answered or refused as a call."""
    if not (2 <= len(frames) <= 4 and frames[0] == MAGIC):
        return False
    kind = frames[1]
    return kind in (HEARTBEAT, GOODBYE) or (kind == AUTH and len(frames) == 4) or (kind == PROOF and len(frames) == 3)


def _calls_in(sequence: list[list[bytes]]) -> int:
    return sum(1 for frames in sequence if not _handled_as_control(frames))


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def master_fingerprint(master) -> dict:
    state = _get(master.http_port, "/master/state")
    return {
        "frameworks": sorted((f["id"], f.get("active"), f.get("name")) for f in state["frameworks"]),
        "slaves": sorted((s["id"], json.dumps(s.get("resources"), sort_keys=True), s.get("active"))
                         for s in state["slaves"]),
        "tasks": sorted((t["id"], t["state"]) for f in state["frameworks"] for t in f.get("tasks", [])),
    }


def slave_fingerprint(slave) -> dict:
    state = _get(slave.http_port, "/state")
    return {"frameworks": sorted(
        (f["id"], sorted((e["id"], sorted((t["id"], t.get("state")) for t in e.get("tasks", [])))
                         for e in f.get("executors", [])))
        for f in state.get("frameworks", []))}


def accounting_violations(master) -> list[str]:
    try:
        from offerd.master import invariants
    except ImportError:
        pytest.fail("offerd/master/invariants.py (the accounting invariant check) is missing")
    return invariants.check(master, 10.0)


class Tally:
    def __init__(self):
        self.inputs = self.rejected = 0


def fuzz_router(target, peer: RawPeer, fingerprint, master, strategy, handler_errors, examples) -> Tally:
    tally = Tally()
    crashes_before = len(handler_errors.records)

    @given(sequence=strategy)
    @example(sequence=[[MAGIC, b"offerd.v1.Call", b"\xff\xff\xff"]])  # an unparsable payload
    @example(sequence=[[MAGIC, HEARTBEAT, b"x", b"y"], [MAGIC]])      # a short frame after a long heartbeat
    # Found: ill-formed control frames are refused as calls; the REGISTER after them is not.
    @example(sequence=[[MAGIC, AUTH], [MAGIC, b"~bye!"], encode(pb.SlaveCall(
        type=pb.SlaveCall.REGISTER, register=pb.SlaveCall.Register(slave_info=pb.SlaveInfo(hostname="fuzz"))))])
    @fuzz(examples)
    def one_input(sequence):
        before = fingerprint()
        answers = peer.exchange(sequence)
        tally.inputs += 1
        assert len(handler_errors.records) == crashes_before, handler_errors.records[crashes_before:]
        calls = _calls_in(sequence)
        refused = sum(1 for answer in answers if _is_refusal(answer))
        if calls and refused >= calls:
            tally.rejected += 1
            assert fingerprint() == before, f"{target}: a refused input changed the state: {sequence!r:.2000}"
        assert accounting_violations(master) == []

    try:
        one_input()
    finally:
        report(f"frames:{target}", tally.inputs, tally.rejected, len(handler_errors.records) - crashes_before)
    return tally


# -- the targets -------------------------------------------------------------------------------


def test_master_frames(cluster, handler_errors):
    master, slave, legit = cluster
    known = (legit_framework_id(master), slave.slave_id, "legit-long", "")
    strategy = st.one_of(strategies.inputs(pb.Call, known, [pb.Call, pb.SlaveCall]),
                         strategies.inputs(pb.SlaveCall, known, [pb.Call, pb.SlaveCall]))
    peer = RawPeer(master.zmq_port)
    try:
        fuzz_router("master", peer, lambda: master_fingerprint(master), master, strategy, handler_errors,
                    EXAMPLES)
    finally:
        peer.close()
    assert urllib.request.urlopen(f"http://127.0.0.1:{master.http_port}/health", timeout=5).status == 200
    legit_framework_still_works(legit, "after-master-fuzz")


def test_slave_executor_endpoint_frames(cluster, handler_errors):
    master, slave, legit = cluster
    known = (legit_framework_id(master), slave.slave_id, "legit-long", "legit-long")
    strategy = strategies.inputs(pb.ExecutorCall, known, [pb.ExecutorCall])
    peer = RawPeer(slave.executor_port, server_key=slave.executor_key[0])
    try:
        fuzz_router("slave-executor-endpoint", peer, lambda: slave_fingerprint(slave), master, strategy,
                    handler_errors, EXAMPLES)
    finally:
        peer.close()
    assert urllib.request.urlopen(f"http://127.0.0.1:{slave.http_port}/health", timeout=5).status == 200
    legit_framework_still_works(legit, "after-slave-fuzz")


def test_executor_driver_frames(handler_errors):
    """The driver's peer is a protocol-level slave double that sends whatever it is given."""
    fake = FakeSlave()
    executor = RecordingExecutor()
    driver = MesosExecutorDriver(executor, fake.environment())
    assert driver.start() == pb.DRIVER_RUNNING
    executor.wait("registered")
    decoder = Decoder([pb.ExecutorEvent], 1 << 30, TransportStats())
    crashes_before = len(handler_errors.records)
    inputs = [0]
    markers = [0]
    stats = driver._client.stats  # the driver's transport counts the frames it refused

    def refused_frames() -> int:
        return stats.invalid_frames + stats.unknown_types + stats.oversized_messages

    @given(sequence=strategies.inputs(pb.ExecutorEvent, ("exec-1", "fw-1", "t1"), [pb.ExecutorEvent]))
    @example(sequence=[[MAGIC, b"offerd.v1.ExecutorEvent", b"\x08\x02\x12"]])  # LAUNCH cut short
    @fuzz(EXAMPLES)
    def one_input(sequence):
        # ERROR and SHUTDOWN end a driver by design (Mesos' too): not inputs to survive.
        for frames in sequence:
            event, _ = decoder.decode(frames)
            assume(event is None or event.type not in (pb.ExecutorEvent.ERROR, pb.ExecutorEvent.SHUTDOWN))
        for frames in sequence:
            fake.send_raw(frames or [b""])
        markers[0] += 1
        marker = f"marker-{markers[0]}".encode()
        fake.send(pb.ExecutorEvent(type=pb.ExecutorEvent.MESSAGE, message=pb.ExecutorEvent.Message(data=marker)))
        wait_for(lambda: (marker,) in executor.args_of("frameworkMessage"), 15, message="the driver to answer")
        inputs[0] += 1
        assert len(handler_errors.records) == crashes_before, handler_errors.records[crashes_before:]

    try:
        one_input()
        # Still a working driver: an update goes out and is acknowledged.
        status = pb.TaskStatus(task_id=pb.TaskID(value="after-fuzz"), state=pb.TASK_RUNNING)
        assert driver.sendStatusUpdate(status) == pb.DRIVER_RUNNING
        wait_for(lambda: any(c.update.status.task_id.value == "after-fuzz"
                             for c in fake.of_type(pb.ExecutorCall.UPDATE)),
                 15, message="the update after the fuzzing")
    finally:
        report("frames:executor-driver", inputs[0], refused_frames(), len(handler_errors.records) - crashes_before,
               rejected_counts="frames")
        driver.stop()
        fake.close()


def legit_framework_id(master) -> str:
    frameworks = _get(master.http_port, "/master/frameworks")["frameworks"]
    return next(f["id"] for f in frameworks if f["name"] == "legit")
