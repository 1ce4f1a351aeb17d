"""Custom executors: a real executor process speaking the executor protocol to a real Slave.

The executor below talks ExecutorCall/ExecutorEvent over a bare DEALER on
purpose: it tests the slave's side of docs/protocol.md without the SDK's
ExecutorDriver, which is tested on its own. It does by hand what every
executor does first: a CURVE connection with the slave's public key, then the
challenge-response with the token its slave gave it (`authenticate` below).
"""

import glob
import inspect
import os
import sys
import time

import zmq

from offerd.common import credentials
from offerd.common.transport import AUTH, AUTH_OK, CHALLENGE, MAGIC, PROOF, encode
from offerd.proto import offerd_pb2 as pb
from tests.fakes.master_for_slaves import Call, Event, FRAMEWORK_ID, kill_task, run_task
from tests.support import wait_for


def encrypted_socket(context, endpoint: str, server_key) -> zmq.Socket:
    """A DEALER to a CURVE server, with a throwaway key pair of its own."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_serverkey = server_key.encode() if isinstance(server_key, str) else server_key
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.connect(endpoint)
    return sock


def authenticate(sock, principal: str, secret: str, timeout_ms: int = 10000) -> bool:
    """The transport's challenge-response, by hand; False when refused."""
    nonce = os.urandom(32)
    sock.send_multipart([MAGIC, AUTH, principal.encode(), nonce])
    while sock.poll(timeout_ms):
        frames = sock.recv_multipart()
        if frames[1] == CHALLENGE:
            sock.send_multipart([MAGIC, PROOF, credentials.prove(secret, frames[2], nonce, principal)])
        elif frames[1] == AUTH_OK:
            return True
        elif frames[1] == b"~authfail":
            return False
    raise AssertionError("no answer to the authentication")


EXECUTOR = r'''
import os, sys
import zmq
from offerd.common.transport import encode
from offerd.proto import offerd_pb2 as pb
from offerd.common import credentials
from offerd.common.transport import AUTH, AUTH_OK, CHALLENGE, MAGIC, PROOF

Ev = pb.ExecutorEvent
framework_id = pb.FrameworkID(value=os.environ["MESOS_FRAMEWORK_ID"])
executor_id = pb.ExecutorID(value=os.environ["MESOS_EXECUTOR_ID"])
print("env", os.environ["MESOS_SLAVE_ENDPOINT"] == os.environ["OFFERD_SLAVE_ENDPOINT"],
      os.environ["MESOS_SANDBOX"] == os.getcwd(), os.environ["PYTHONUNBUFFERED"],
      os.environ["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], os.environ["MESOS_CHECKPOINT"])
print("token", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" in os.environ, os.environ["MESOS_CONTAINER_ID"] in os.getcwd())
sock = encrypted_socket(zmq.Context(), os.environ["MESOS_SLAVE_ENDPOINT"], os.environ["OFFERD_SLAVE_PUBLIC_KEY"])
sock.setsockopt(zmq.LINGER, 2000)
assert authenticate(sock, os.environ["MESOS_CONTAINER_ID"], os.environ["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"])

def call(kind, **fields):
    sock.send_multipart(encode(pb.ExecutorCall(type=kind, framework_id=framework_id,
                                               executor_id=executor_id, **fields)))

def update(task_id, state, data=b""):
    call(pb.ExecutorCall.UPDATE, update=pb.ExecutorCall.Update(
        status=pb.TaskStatus(task_id=task_id, state=state, data=data)))

if "SILENT" in os.environ.get("EXECUTOR_MODE", ""):
    import time; time.sleep(60)
call(pb.ExecutorCall.SUBSCRIBE)
while True:
    frames = sock.recv_multipart()
    if frames[1] != b"offerd.v1.ExecutorEvent":
        continue
    event = Ev.FromString(frames[2])
    if event.type == Ev.SUBSCRIBED:
        print("subscribed", event.subscribed.slave_info.id.value, event.subscribed.framework_info.name, flush=True)
    elif event.type == Ev.LAUNCH:
        task = event.launch.task
        update(task.task_id, pb.TASK_RUNNING, str(os.getpid()).encode())
        if task.data == b"finish":
            update(task.task_id, pb.TASK_FINISHED)
    elif event.type == Ev.MESSAGE:
        call(pb.ExecutorCall.MESSAGE, message=pb.ExecutorCall.Message(data=b"echo:" + event.message.data))
    elif event.type == Ev.KILL:
        update(event.kill.task_id, pb.TASK_KILLED)
    elif event.type == Ev.ACKNOWLEDGED:
        print("acked", event.acknowledged.task_id.value, len(event.acknowledged.uuid), flush=True)
    elif event.type == Ev.SHUTDOWN:
        print("shutdown", flush=True)
        if "STUBBORN" in os.environ.get("EXECUTOR_MODE", ""):
            import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)
        break
'''
# The executor process does its handshake with the helpers above (it cannot import tests/).
EXECUTOR = EXECUTOR.replace("sock = encrypted_socket(",
                            inspect.getsource(encrypted_socket) + inspect.getsource(authenticate)
                            + "\nsock = encrypted_socket(", 1)


def executor_task(tmp_path, task_id, data=b"", executor_id="exec-1", mode=""):
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    task = pb.TaskInfo(name=task_id, task_id=pb.TaskID(value=task_id), data=data)
    executor = task.executor
    executor.executor_id.value = executor_id
    executor.name = "test executor"
    executor.command.value = f"{sys.executable} {script}"
    if mode:
        executor.command.environment.variables.add(name="EXECUTOR_MODE", value=mode)
    return task


def started(master, start_slave, **flags):
    slave = start_slave(**flags)
    return slave, wait_for(lambda: slave.slave_id)


def sandbox_stdout(slave, executor_id="exec-1"):
    pattern = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", FRAMEWORK_ID,
                           "executors", executor_id, "runs", "*", "stdout")
    path = wait_for(lambda: glob.glob(pattern))[0]
    return lambda: open(path).read()


def test_one_executor_runs_two_tasks_and_exchanges_messages(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    # Both tasks arrive before the executor can subscribe: they wait in its queue.
    master.send(slave_id, run_task(executor_task(tmp_path, "first")))
    master.send(slave_id, run_task(executor_task(tmp_path, "second", data=b"finish")))
    first = master.wait_state("first", pb.TASK_RUNNING)
    second = master.wait_state("second", pb.TASK_RUNNING)
    assert first.data == second.data  # one process ran both
    assert first.source == pb.TaskStatus.SOURCE_EXECUTOR and first.executor_id.value == "exec-1"
    assert len(first.uuid) == 16 and first.slave_id.value == slave_id
    assert master.wait_terminal("second").state == pb.TASK_FINISHED

    stdout = sandbox_stdout(slave)
    wait_for(lambda: "acked second" in stdout())
    assert f"subscribed {slave_id} test-framework" in stdout()
    assert "env True True 1 1.0secs 0" in stdout()
    assert "token True True" in stdout()  # a token, and the container id it proves

    master.send(slave_id, Event(type=Event.FRAMEWORK_MESSAGE, framework_message=Event.FrameworkMessage(
        framework_id=pb.FrameworkID(value=FRAMEWORK_ID), executor_id=pb.ExecutorID(value="exec-1"), data=b"ping")))
    reply = master.wait_call(Call.EXECUTOR_MESSAGE).executor_message
    assert (reply.framework_id.value, reply.executor_id.value, reply.data) == (FRAMEWORK_ID, "exec-1", b"echo:ping")

    # A third task goes straight to the subscribed executor; kills go through it too.
    master.send(slave_id, run_task(executor_task(tmp_path, "third")))
    master.wait_state("third", pb.TASK_RUNNING)
    master.send(slave_id, kill_task("first"))
    assert master.wait_terminal("first").state == pb.TASK_KILLED
    assert master.received(Call.EXITED_EXECUTOR) == []


def test_shutdown_executor_ends_it_and_its_tasks(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    master.send(slave_id, run_task(executor_task(tmp_path, "worker")))
    master.wait_state("worker", pb.TASK_RUNNING)
    master.send(slave_id, Event(type=Event.SHUTDOWN_EXECUTOR, shutdown_executor=Event.ShutdownExecutor(
        framework_id=pb.FrameworkID(value=FRAMEWORK_ID), executor_id=pb.ExecutorID(value="exec-1"))))
    status = master.wait_terminal("worker")
    assert status.state == pb.TASK_KILLED and status.reason == pb.TaskStatus.REASON_EXECUTOR_TERMINATED
    exited = master.wait_call(Call.EXITED_EXECUTOR).exited_executor
    assert (exited.framework_id.value, exited.executor_id.value, exited.status) == (FRAMEWORK_ID, "exec-1", 0)
    assert "shutdown" in sandbox_stdout(slave)()


def test_executor_that_ignores_shutdown_is_killed_after_its_grace(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave, executor_shutdown_grace_period=0.5)
    master.send(slave_id, run_task(executor_task(tmp_path, "stuck", mode="STUBBORN")))
    master.wait_state("stuck", pb.TASK_RUNNING)
    begin = time.monotonic()
    master.send(slave_id, Event(type=Event.SHUTDOWN_FRAMEWORK, shutdown_framework=Event.ShutdownFramework(
        framework_id=pb.FrameworkID(value=FRAMEWORK_ID))))
    exited = master.wait_call(Call.EXITED_EXECUTOR, timeout=5).exited_executor
    assert exited.status == 9  # SIGKILL, as a wait status
    assert time.monotonic() - begin < 3
    # The framework is gone from the master: the slave stops resending its updates.
    wait_for(lambda: slave.actor.call(lambda: not slave.core.frameworks and len(slave.core.updates) == 0))


def test_executor_that_exits_fails_its_tasks(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    task = executor_task(tmp_path, "doomed")
    task.executor.command.value = "exit 7"
    master.send(slave_id, run_task(task))
    status = master.wait_terminal("doomed")
    assert status.state == pb.TASK_FAILED
    assert status.reason == pb.TaskStatus.REASON_EXECUTOR_TERMINATED
    assert "status 7" in status.message
    assert master.wait_call(Call.EXITED_EXECUTOR).exited_executor.status == 7 << 8


def test_executor_that_never_subscribes_is_killed(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave, executor_registration_timeout=0.5)
    master.send(slave_id, run_task(executor_task(tmp_path, "silent", mode="SILENT")))
    status = master.wait_terminal("silent", timeout=5)
    assert status.state == pb.TASK_FAILED
    assert status.reason == pb.TaskStatus.REASON_EXECUTOR_REGISTRATION_TIMEOUT
    master.wait_call(Call.EXITED_EXECUTOR)


def test_kill_of_a_queued_task_needs_no_executor(master, start_slave, tmp_path):
    slave, slave_id = started(master, start_slave)
    master.send(slave_id, run_task(executor_task(tmp_path, "queued", mode="SILENT")))
    master.send(slave_id, kill_task("queued"))
    status = master.wait_terminal("queued")
    assert status.state == pb.TASK_KILLED
    assert status.reason == pb.TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
    # With nothing left to run, the idle executor is shut down.
    master.wait_call(Call.EXITED_EXECUTOR, timeout=5)


def test_bad_executor_calls_get_an_error_and_change_nothing(master, start_slave, tmp_path):
    """Calls a proven executor gets wrong. (Calls from processes that are not the
    executor are refused earlier: tests/security/test_executor_tokens.py.)"""
    slave, slave_id = started(master, start_slave)
    master.send(slave_id, run_task(executor_task(tmp_path, "real")))
    master.wait_state("real", pb.TASK_RUNNING)

    def credential():
        executor = slave.core.find_executor(FRAMEWORK_ID, "exec-1")
        return executor.container_id, slave.core.executors.token(executor.container_id)
    container_id, token = slave.actor.call(credential)
    # A second connection of the executor itself, proven with its token.
    sock = encrypted_socket(zmq.Context.instance(), f"tcp://127.0.0.1:{slave.executor_port}",
                            slave.executor_key[0])
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    assert authenticate(sock, container_id, token)

    def ask(call):
        sock.send_multipart(encode(call))
        frames = sock.recv_multipart()
        assert frames[0] == MAGIC and frames[1] == b"offerd.v1.ExecutorEvent"
        return pb.ExecutorEvent.FromString(frames[2])

    def update(state, task_id="real"):
        return pb.ExecutorCall(
            type=pb.ExecutorCall.UPDATE, framework_id=pb.FrameworkID(value=FRAMEWORK_ID),
            executor_id=pb.ExecutorID(value="exec-1"),
            update=pb.ExecutorCall.Update(status=pb.TaskStatus(task_id=pb.TaskID(value=task_id), state=state)))

    try:
        unknown = ask(pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE, framework_id=pb.FrameworkID(value="nope"),
                                      executor_id=pb.ExecutorID(value="exec-1")))
        assert unknown.type == pb.ExecutorEvent.ERROR and "unknown executor" in unknown.error.message
        # Updates travel on the subscribed connection only.
        elsewhere = ask(update(pb.TASK_FAILED))
        assert elsewhere.type == pb.ExecutorEvent.ERROR and "not subscribed" in elsewhere.error.message
    finally:
        sock.close()
    # The executor's subscribed connection is still in charge of its task.
    master.send(slave_id, kill_task("real"))
    assert master.wait_terminal("real").state == pb.TASK_KILLED
    assert master.states("real") == ["TASK_RUNNING", "TASK_KILLED"]
