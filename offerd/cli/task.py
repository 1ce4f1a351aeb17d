"""``offerd task exec`` and ``offerd task attach``: a command in a running task's
container, or the task's live output (like ``mesos task exec`` / ``attach``).

The task, its slave and its container are found through the master
(``/master/state``) and the slave's ``GET_CONTAINERS``; then the CLI talks to
the slave's ``/api/v1`` directly: LAUNCH_NESTED_CONTAINER_SESSION with a fresh
container id (its output is the answer's RecordIO stream), ATTACH_CONTAINER_INPUT
on a second connection for stdin (``-i`` / ``--tty``), and WAIT_CONTAINER on the
session for its exit status, which becomes this command's (128+N for signal N).
Secured clusters are reached as the other tools reach them (OFFERD_CONFIG).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import sys
import threading
import uuid

from offerd.cli.tools import DEFAULT_MASTER, MasterClient, ToolError, _config, client_from_config
from offerd.common import recordio
from offerd.proto import mesos_v1_agent_pb2 as v1_agent

RECORDIO = "application/recordio"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ProcessIO = v1_agent.ProcessIO
Call = v1_agent.Call
STDIN_CHUNK = 16 * 1024
HEARTBEAT_SECONDS = 10.0


class UsageError(Exception):
    """Shown with exit status 2."""


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task_command", metavar="SUBCOMMAND")
    run = sub.add_parser("exec", help="Run a command inside a running task's container.",
                         description="Run CMD inside the running task's container (its namespaces, cgroups, user "
                                     "and sandbox) and exit with its exit status.")
    run.add_argument("--tty", "-t", action="store_true",
                     help="Give the command a terminal (this terminal in raw mode, its size sent and kept).")
    run.add_argument("--interactive", "-i", action="store_true",
                     help="Send this command's stdin to the command (implied by --tty).")
    _common(run)
    run.add_argument("task", metavar="TASK", help="The task id.")
    run.add_argument("cmd", metavar="-- CMD [ARGS...]", nargs=argparse.REMAINDER,
                     help="The command and its arguments, after '--'.")
    attach = sub.add_parser("attach", help="Follow a running task's output until it ends (Ctrl-C stops).",
                            description="Print what the running task writes to stdout and stderr from now on, "
                                        "until it ends or Ctrl-C.")
    _common(attach)
    attach.add_argument("task", metavar="TASK", help="The task id.")
    parser.set_defaults(handler=lambda args: run_command(parser, args))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default=None, metavar="HOST:PORT",
                        help="The master's HTTP address (default: $OFFERD_MASTER, else the master of the "
                             f"client.conf that $OFFERD_CONFIG names, else {DEFAULT_MASTER}).")
    parser.add_argument("--framework", help="The framework id, if task ids are not unique.")


def run_command(parser: argparse.ArgumentParser, args) -> int:
    if not args.task_command:
        parser.print_help(sys.stderr)
        return 2
    name = f"offerd task {args.task_command}"
    try:
        if args.task_command == "exec":
            cmd = list(args.cmd)
            if cmd and cmd[0] == "--":
                cmd = cmd[1:]
            if not cmd:
                raise UsageError("give the command to run after '--', e.g. offerd task exec TASK -- ls -l")
            if args.tty and not sys.stdin.isatty():
                raise UsageError("--tty needs this command's stdin to be a terminal")
        client = client_from_config(args.master, _config())
        target = find_container(client, args.task, args.framework)
        if args.task_command == "exec":
            return execute(client, target, cmd, args.tty, args.interactive or args.tty)
        return attach(client, target)
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except ToolError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


# -- finding the task's container ----------------------------------------------------------


class Target:
    def __init__(self, task_id: str, host: str, port: int, container_id: str):
        self.task_id, self.host, self.port, self.container_id = task_id, host, port, container_id


def find_container(client: MasterClient, task_id: str, framework: str | None) -> Target:
    state = client.get("/master/state")
    found, ended = None, None
    for group in ("frameworks", "completed_frameworks"):
        for entry in state.get(group, []):
            if framework and framework not in (entry.get("id"), entry.get("name")):
                continue
            for task in entry.get("tasks", []):
                if task["id"] == task_id:
                    found = task
            for key in ("completed_tasks", "unreachable_tasks"):
                for task in entry.get(key, []):
                    if task["id"] == task_id:
                        ended = task
    if found is None:
        if ended is not None:
            raise ToolError(f"task '{task_id}' is not running ({ended['state']}); only a running task's "
                            "container can be entered")
        raise ToolError(f"no running task '{task_id}' is known to the master"
                        + (f" in framework {framework}" if framework else "")
                        + "; 'offerd tasks' lists the running tasks")
    if found["state"] != "TASK_RUNNING":
        raise ToolError(f"task '{task_id}' is {found['state']}, not TASK_RUNNING; wait until it runs")
    slave = next((s for s in state.get("slaves", []) if s["id"] == found["slave_id"]), None)
    if slave is None:
        raise ToolError(f"the master does not know task '{task_id}'s slave {found['slave_id']} any more")
    address = slave.get("pid", "").rpartition("@")[2]
    host, _, port = address.rpartition(":")
    if not host:
        host, port = slave["hostname"], slave["port"]
    target = Target(task_id, host.strip("[]"), int(port), "")
    answer = _call(client, target, {"type": "GET_CONTAINERS"})
    executor_id = found.get("executor_id") or task_id
    for container in json.loads(answer).get("get_containers", {}).get("containers", []):
        if container.get("executor_id", {}).get("value") == executor_id and \
                container.get("framework_id", {}).get("value") == found["framework_id"]:
            target.container_id = container["container_id"]["value"]
            return target
    raise ToolError(f"slave {host}:{port} runs no container for task '{task_id}' (it may just have ended); "
                    "check 'offerd tasks'")


# -- talking to the slave ------------------------------------------------------------------


def _connection(client: MasterClient, target: Target, timeout: float | None) -> http.client.HTTPConnection:
    if client.ssl_context is not None:
        return http.client.HTTPSConnection(target.host, target.port, timeout=timeout, context=client.ssl_context)
    return http.client.HTTPConnection(target.host, target.port, timeout=timeout)


def _headers(client: MasterClient, **extra) -> dict:
    return {**client.headers, **extra}


def _failed(target: Target, response) -> ToolError:
    text = response.read().decode("utf-8", "replace").strip()
    try:
        text = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        pass
    advice = ""
    if response.status == 401:
        advice = "; the slave requires authentication: set OFFERD_CONFIG to a client.conf with a principal"
    elif response.status == 403:
        advice = "; the slave's ACLs refuse this principal"
    elif response.status == 503:
        advice = "; retry in a moment"
    return ToolError(f"the slave at {target.host}:{target.port} answered {response.status}: {text}{advice}")


def _unreachable(target: Target, exc: OSError) -> ToolError:
    return ToolError(f"cannot reach the task's slave at {target.host}:{target.port}: {exc}; is it running and "
                     "reachable from here (and is OFFERD_CONFIG right for https)?")


def _call(client: MasterClient, target: Target, body: dict) -> bytes:
    connection = _connection(client, target, client.timeout)
    try:
        connection.request("POST", "/api/v1", json.dumps(body),
                           _headers(client, **{"Content-Type": JSON, "Accept": JSON}))
        response = connection.getresponse()
        if response.status != 200:
            raise _failed(target, response)
        return response.read()
    except OSError as exc:
        raise _unreachable(target, exc) from None
    finally:
        connection.close()


def _open_stream(client: MasterClient, target: Target, call: Call):
    """POST a call answered with a RecordIO stream: the connection and its
    response, once the slave has accepted the call."""
    connection = _connection(client, target, None)
    try:
        connection.request("POST", "/api/v1", call.SerializeToString(),
                           _headers(client, **{"Content-Type": PROTOBUF, "Accept": RECORDIO,
                                               "Message-Accept": PROTOBUF}))
        response = connection.getresponse()
        if response.status != 200:
            raise _failed(target, response)
        return connection, response
    except OSError as exc:
        connection.close()
        raise _unreachable(target, exc) from None
    except BaseException:
        connection.close()
        raise


def _records(target: Target, connection, response):
    """The ProcessIO records of an accepted stream, until it ends."""
    decoder = recordio.Decoder()
    try:
        while True:
            chunk = response.read1(64 * 1024)
            if not chunk:
                decoder.finish()
                return
            for record in decoder.feed(chunk):
                yield ProcessIO.FromString(record)
    except recordio.RecordIOError as exc:
        raise ToolError(f"the slave's output stream broke: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ToolError(f"the output stream from the slave at {target.host}:{target.port} broke: {exc}") \
            from None
    finally:
        connection.close()


def _write(io: ProcessIO) -> None:
    if io.type != ProcessIO.DATA:
        return
    out = sys.stderr if io.data.type == ProcessIO.Data.STDERR else sys.stdout
    out.buffer.write(io.data.data)
    out.buffer.flush()


def attach(client: MasterClient, target: Target) -> int:
    call = Call(type=Call.ATTACH_CONTAINER_OUTPUT)
    call.attach_container_output.container_id.value = target.container_id
    for io in _records(target, *_open_stream(client, target, call)):
        _write(io)
    return 0


def execute(client: MasterClient, target: Target, cmd: list[str], tty: bool, interactive: bool) -> int:
    session_id = str(uuid.uuid4())
    call = Call(type=Call.LAUNCH_NESTED_CONTAINER_SESSION)
    launch = call.launch_nested_container_session
    launch.container_id.value = session_id
    launch.container_id.parent.value = target.container_id
    launch.command.shell = False
    launch.command.value = cmd[0]
    launch.command.arguments.extend(cmd)
    if tty:
        launch.container.type = launch.container.MESOS
        size = shutil.get_terminal_size()
        launch.container.tty_info.window_size.rows = size.lines
        launch.container.tty_info.window_size.columns = size.columns
        term = os.environ.get("TERM")
        if term:
            launch.command.environment.variables.add(name="TERM", value=term)
    connection, response = _open_stream(client, target, call)   # the session runs
    saved = None
    feeder = None
    try:
        if interactive:
            feeder = _Input(client, target, session_id, tty)
            if tty:
                import termios
                import tty as ttys
                saved = termios.tcgetattr(sys.stdin.fileno())
                ttys.setraw(sys.stdin.fileno())
            feeder.start()
        else:
            _Input(client, target, session_id, tty=False).send_eof()   # an empty stdin, not one left open
        for io in _records(target, connection, response):
            _write(io)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        if feeder is not None:
            feeder.stop()
    wait = {"type": "WAIT_CONTAINER",
            "wait_container": {"container_id": {"value": session_id, "parent": {"value": target.container_id}}}}
    result = json.loads(_call(client, target, wait)).get("wait_container", {})
    if "exit_status" not in result:
        raise ToolError(f"the command ended without an exit status: {result.get('message', 'unknown')}")
    code = os.waitstatus_to_exitcode(result["exit_status"])
    return 128 - code if code < 0 else code


class _Input:
    """This command's stdin (and terminal resizes) as ATTACH_CONTAINER_INPUT."""

    def __init__(self, client: MasterClient, target: Target, session_id: str, tty: bool):
        self.client, self.target, self.session_id, self.tty = client, target, session_id, tty
        self.queue: queue.Queue = queue.Queue()
        self.error: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._read_stdin, daemon=True, name="stdin").start()
        if self.tty:
            signal.signal(signal.SIGWINCH, lambda *_: self.queue.put(("size", None)))
            self.queue.put(("size", None))
        threading.Thread(target=self._send, daemon=True, name="input").start()

    def stop(self) -> None:
        self.queue.put(("end", None))

    def send_eof(self) -> None:
        """Close the command's stdin at once (no -i)."""
        self.queue.put(("data", b""))
        self._send()

    def _read_stdin(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, STDIN_CHUNK)
            except OSError:
                data = b""
            self.queue.put(("data", data))
            if not data:
                return

    def _records(self):
        first = Call(type=Call.ATTACH_CONTAINER_INPUT)
        first.attach_container_input.type = first.attach_container_input.CONTAINER_ID
        first.attach_container_input.container_id.value = self.session_id
        first.attach_container_input.container_id.parent.value = self.target.container_id
        yield recordio.encode(first.SerializeToString())
        while True:
            try:
                kind, data = self.queue.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                kind, data = "heartbeat", None
            if kind == "end":
                return
            call = Call(type=Call.ATTACH_CONTAINER_INPUT)
            attach = call.attach_container_input
            attach.type = attach.PROCESS_IO
            io = attach.process_io
            if kind == "data":
                io.type = ProcessIO.DATA
                io.data.type = ProcessIO.Data.STDIN
                io.data.data = data
            else:
                io.type = ProcessIO.CONTROL
                if kind == "size":
                    size = shutil.get_terminal_size()
                    io.control.type = ProcessIO.Control.TTY_INFO
                    io.control.tty_info.window_size.rows = size.lines
                    io.control.tty_info.window_size.columns = size.columns
                else:
                    io.control.type = ProcessIO.Control.HEARTBEAT
            yield recordio.encode(call.SerializeToString())
            if kind == "data" and not data and not self.tty:
                return   # end of input: the body ends too

    def _send(self) -> None:
        connection = _connection(self.client, self.target, None)
        try:
            connection.request("POST", "/api/v1", self._records(),
                               _headers(self.client, **{"Content-Type": RECORDIO, "Message-Content-Type": PROTOBUF,
                                                        "Accept": JSON}), encode_chunked=True)
            response = connection.getresponse()
            if response.status not in (200, 404):   # 404: the session had already ended
                message = str(_failed(self.target, response))
                print(f"\r\nofferd task exec: input refused: {message}\r", file=sys.stderr)
        except (OSError, http.client.HTTPException):
            pass   # the session ended and the slave closed the connection
        finally:
            connection.close()
