"""Container sessions: a command run inside a running executor's container, with
its input and output streamed over HTTP (Mesos' LAUNCH_NESTED_CONTAINER_SESSION,
ATTACH_CONTAINER_INPUT and ATTACH_CONTAINER_OUTPUT; `offerd task exec`).

A session's process is started the way a health check's command is
(offerd.slave.health_checks): offerd-init with ``--enter PID`` joins the mount,
PID, network, UTS and IPC namespaces of the container's first process (those it
does not share with the slave already), joins the container's cgroups (so the
container's limits count it), switches to the container's user and forks the
command in the sandbox as the container sees it (/mnt/mesos/sandbox with
filesystem/linux). A container without namespaces of its own is simply entered
in none: the session then shares the host's PID namespace, as its container does.

Its stdin/stdout/stderr are pipes, or with a TTY one pseudo-terminal whose slave
side is the session's controlling terminal (init leads a new session and opens
it first). One pump thread per session reads the output and hands each chunk to
every attached output stream; the same thread notices the process's end through
a pidfd, drains what is left, and records the exit status for WAIT_CONTAINER.

The session's container id is nested, ``{value: ID, parent: {value: PARENT}}``.
It lives as long as its process, and dies (SIGKILL to its whole session) when
the launch call's output connection breaks, when it is killed, when its parent
container ends and when the slave stops.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import select
import shutil
import signal
import struct
import termios
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from offerd.slave.containerizer import launcher
from offerd.slave.containerizer.base import Termination
from offerd.slave.containerizer.processes import _shell_status, command_argv
from offerd.slave.health_checks import Target, container_plan, own_namespaces
from offerd.slave.owners import executor_user
from offerd.slave.sandbox import user_environment

log = logging.getLogger(__name__)

# HTTP worker threads the streaming calls may hold at once (each output stream,
# input stream and blocked nested wait holds one). The slave's HTTP server has
# this many threads on top of its own 8 (offerd.slave.daemon), so /state and the
# other calls keep being served; beyond it a call is refused with 503.
MAX_STREAMS = 8
# Live sessions per slave.
MAX_SESSIONS = 64
# Ended sessions remembered for a late WAIT_CONTAINER.
MAX_ENDED = 1000
HEARTBEAT_SECONDS = 5.0
READ_SIZE = 64 * 1024
# Output chunks kept for one slow output stream before the oldest are dropped
# for it (and it is told so on its stderr record).
MAX_QUEUED_BYTES = 4 * 1024 * 1024
STDOUT, STDERR = "STDOUT", "STDERR"


class SessionError(Exception):
    """A refused session call: HTTP `status` and the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Parent:
    """What a session needs to know of its parent container (built on the actor)."""

    container_id: str
    pid: int | None
    directory: str
    user: str | None
    environment: dict[str, str]
    isolators: tuple = ()
    switch_user: bool = False
    simulated: bool = False


def parent_of(core, container_id: str) -> Parent | None:
    """On the actor thread: the live executor container `container_id`, or None."""
    for framework in core.frameworks.values():
        for executor in framework.executors.values():
            if executor.container_id != container_id or executor.terminated:
                continue
            variables = {"SANDBOX": executor.directory, "DIRECTORY": executor.directory,
                         "FRAMEWORK_ID": framework.id, "EXECUTOR_ID": executor.id, "SLAVE_ID": core.slave_id or ""}
            if executor.is_command:
                variables["TASK_ID"] = executor.id
            containerizer = core.containerizer
            return Parent(container_id, executor.pid, executor.directory, executor_user(executor, framework) or None,
                          core.environment(variables, None), tuple(getattr(containerizer, "isolators", ())),
                          bool(getattr(containerizer, "switch_user", False)), bool(containerizer.simulated))
    return None


class Output:
    """One output stream's queue of (kind, bytes); None marks the end."""

    def __init__(self):
        self._items: collections.deque = collections.deque()
        self._bytes = 0
        self._dropped = 0
        self._cond = threading.Condition()

    def put(self, item) -> None:
        with self._cond:
            if item is not None:
                self._bytes += len(item[1])
                while self._bytes > MAX_QUEUED_BYTES and self._items and self._items[0] is not None:
                    self._bytes -= len(self._items.popleft()[1])
                    self._dropped += 1
            self._items.append(item)
            self._cond.notify_all()

    def take(self, timeout: float) -> list:
        """What is queued (maybe nothing after `timeout`), the end as a last None."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            if self._dropped:
                items.insert(0, (STDERR, f"[offerd: {self._dropped} output chunks dropped for a slow reader]\n"
                                 .encode()))
                self._dropped = 0
            return items


class Session:
    def __init__(self, container_id: str, parent: str, user: str | None, tty: bool):
        self.container_id = container_id
        self.parent = parent
        self.user = user
        self.tty = tty
        self.pid: int | None = None
        self.stdin_fd: int | None = None          # the pipe's write end, or the pty's master
        self._outputs: dict[int, str] = {}       # fd -> STDOUT/STDERR, while open
        self._owned: set[int] = set()            # every fd of the session's, closed at its end
        self._stdin_lock = threading.Lock()
        self._command_pids: set[int] = set()     # init's child: the command (maybe a session leader)
        # The launch call's own output stream, there before the process writes anything.
        self.launch_output = Output()
        self._streams: list[Output] = [self.launch_output]
        self._lock = threading.Lock()
        self.input_connected = False
        self.termination: Termination | None = None
        self.ended = threading.Event()

    @property
    def key(self) -> tuple[str, str]:
        return self.parent, self.container_id

    # -- output -----------------------------------------------------------------

    def attach_output(self) -> Output:
        stream = Output()
        with self._lock:
            if self.ended.is_set():
                stream.put(None)
            else:
                self._streams.append(stream)
        return stream

    def detach_output(self, stream: Output) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def _publish(self, item) -> None:
        with self._lock:
            for stream in self._streams:
                stream.put(item)

    # -- input ------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> bool:
        """Write `data` to the process's stdin; empty data is end-of-file. False
        once the process no longer takes input."""
        with self._stdin_lock:
            fd = self.stdin_fd
            if fd is None:
                return False
            if not data:
                if not self.tty:
                    self._owned.discard(fd)
                    self.stdin_fd = None
                    os.close(fd)
                    return True
                data = b"\x04"   # the terminal stays; ^D is its end-of-file
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                return False
            return True

    def resize(self, rows: int, columns: int) -> None:
        if self.tty and self.stdin_fd is not None:
            try:
                fcntl.ioctl(self.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            except OSError as exc:
                log.debug("session %s: resizing its terminal failed: %s", self.container_id, exc)

    # -- lifetime ---------------------------------------------------------------

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """`signum` to the session's process group; SIGKILL to every process of its
        session (those that left the group included)."""
        pid = self.pid
        if pid is None or self.ended.is_set():
            return
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
        if signum == signal.SIGKILL:
            for other in _session_members(pid, _children(pid)):
                try:
                    os.kill(other, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _pump(self, pidfd: int, on_end) -> None:
        """On the session's own thread: output to the streams until the process
        has exited and its output is drained."""
        poller = select.poll()
        for fd in self._outputs:
            poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        self._command_pids = _children(self.pid)
        exited = False
        try:
            while self._outputs and not exited:
                for fd, _ in poller.poll():
                    if fd == pidfd:
                        exited = True
                    elif fd in self._outputs and not self._read(fd):
                        poller.unregister(fd)
            for fd in list(self._outputs):   # what the process wrote just before it ended
                os.set_blocking(fd, False)
                while self._read(fd):
                    pass
        finally:
            _, status = os.waitpid(self.pid, 0)
            os.close(pidfd)
            self._outputs.clear()
            self.termination = Termination(returncode=_shell_status(os.waitstatus_to_exitcode(status)))
            with self._stdin_lock:
                self.stdin_fd = None
                for fd in self._owned:
                    os.close(fd)
                self._owned.clear()
            with self._lock:
                streams, self._streams = self._streams, []
                self.ended.set()
            for stream in streams:
                stream.put(None)
            log.info("session %s.%s ended: %s", self.parent, self.container_id, self.termination.message)
            # Whatever it left running in its session (a background job) ends with it.
            for other in _session_members(self.pid, self._command_pids):
                try:
                    os.kill(other, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            on_end(self)

    def _read(self, fd: int) -> bool:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:   # EIO: a pty whose every slave side is closed
            data = b""
        if not data:
            self._outputs.pop(fd, None)
            return False
        self._publish((self._outputs[fd], data))
        return True


def _children(pid: int) -> set[int]:
    """The direct children of `pid` (init's: the command, which may lead a session of its own)."""
    out = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                out.update(int(child) for child in handle.read().split())
    except OSError:
        pass
    return out


def _session_members(sid: int, others=()) -> list[int]:
    """Processes of session `sid` (or of the sessions `others` lead), but `sid` itself."""
    sids = {sid, *others}
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != sid:
            try:
                if os.getsid(int(name)) in sids:
                    out.append(int(name))
            except OSError:
                pass
    return out


class ContainerSessions:
    """Every session of one slave, and the count of streaming HTTP calls."""

    def __init__(self):
        self._live: dict[tuple[str, str], Session] = {}
        self._ended: collections.OrderedDict[tuple[str, str], Session] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._streams = 0
        self.closed = False

    @contextmanager
    def slot(self, what: str):
        """Hold one of the MAX_STREAMS streaming slots while the block runs."""
        self.acquire(what)
        try:
            yield
        finally:
            self.release()

    def acquire(self, what: str) -> None:
        with self._lock:
            if self._streams >= MAX_STREAMS:
                raise SessionError(503, f"{MAX_STREAMS} streaming container calls are already served by this "
                                        f"slave; retry {what} when one has ended")
            self._streams += 1

    def release(self) -> None:
        with self._lock:
            self._streams -= 1

    def find(self, parent: str, container_id: str) -> Session | None:
        with self._lock:
            return self._live.get((parent, container_id)) or self._ended.get((parent, container_id))

    def live(self) -> list[Session]:
        with self._lock:
            return list(self._live.values())

    def launch(self, parent: Parent, container_id: str, command, user: str | None,
               window: tuple[int, int] | None, tty: bool) -> Session:
        """Start `command` (a mesos.v1.CommandInfo) in `parent`'s container as a new
        session; raises SessionError saying why not."""
        if parent.simulated:
            raise SessionError(501, "the simulated containerizer runs no processes to enter")
        if parent.pid is None:
            raise SessionError(409, f"Container {parent.container_id} has no process yet; try again once it runs")
        key = (parent.container_id, container_id)
        session = Session(container_id, parent.container_id, user, tty)
        with self._lock:
            if self.closed:
                raise SessionError(503, "Agent is shutting down")
            if key in self._live or key in self._ended:
                raise SessionError(400, f"Container {parent.container_id}.{container_id} already exists")
            if len(self._live) >= MAX_SESSIONS:
                raise SessionError(503, f"{MAX_SESSIONS} container sessions already run on this slave")
            self._live[key] = session
        try:
            _spawn(session, parent, command, user, window, self._ended_session)
        except BaseException:
            with self._lock:
                self._live.pop(key, None)
            raise
        return session

    def _ended_session(self, session: Session) -> None:
        with self._lock:
            self._live.pop(session.key, None)
            self._ended[session.key] = session
            while len(self._ended) > MAX_ENDED:
                self._ended.popitem(last=False)

    def parent_ended(self, container_id: str, termination=None) -> None:
        """The parent container ended (called on the actor thread): its sessions end
        too, killed on a thread of their own (finding their processes reads /proc)."""
        ending = [session for session in self.live() if session.parent == container_id]
        if ending:
            threading.Thread(target=lambda: [session.kill() for session in ending], daemon=True,
                             name="session-kill").start()

    def close(self) -> None:
        with self._lock:
            self.closed = True
        for session in self.live():
            session.kill()


def _spawn(session: Session, parent: Parent, command, user_name: str | None,
           window: tuple[int, int] | None, on_end) -> None:
    target = Target(parent.container_id, parent.directory, {}, parent.user, 0.0, 0.0, parent.isolators)
    target.pid = parent.pid
    plan = container_plan(target)
    if own_namespaces(parent.pid):
        plan.enter_pid = parent.pid
    try:
        user = launcher.resolve_user(user_name) if (parent.switch_user and user_name) else None
    except launcher.LaunchError as exc:
        raise SessionError(400, str(exc)) from None
    cwd = plan.environment.get("MESOS_SANDBOX", parent.directory)
    environment = {**user_environment(user if launcher.switching(user) else None, cwd), **parent.environment,
                   **plan.environment}
    if session.tty:
        environment.setdefault("TERM", "xterm")
    for variable in command.environment.variables:
        if variable.HasField("value"):
            environment[variable.name] = variable.value
    argv, executable = command_argv(command)
    if session.tty:
        setsid = shutil.which("setsid")
        if setsid is None:
            raise SessionError(501, "a session with a TTY needs setsid (util-linux) on this slave")
        argv, executable = [setsid, "--ctty", executable or argv[0], *argv[1:]], None
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    opened = [read_fd, write_fd]
    try:
        if write_fd == launcher.REPORT_FD:
            moved = fcntl.fcntl(write_fd, fcntl.F_DUPFD_CLOEXEC, launcher.REPORT_FD + 1)
            os.close(write_fd)
            opened.remove(write_fd)
            opened.append(moved)
            write_fd = moved
        argv_init = launcher.init_argv(argv, executable, plan, user, cwd, None, report_fd=launcher.REPORT_FD)
        if session.tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            opened += [master, slave]
            if window:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", window[0], window[1], 0, 0))
            # Not init's terminal (init lives outside the container's PID namespace, where
            # the command's shell could not see its process group): setsid(1) makes the
            # command the leader of a session whose controlling terminal it is.
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR | os.O_NOCTTY, 0),
                       (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]
            session.stdin_fd = master
            session._outputs = {master: STDOUT}
            session._owned = {master}
            child_ends = [slave]
        else:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            opened += [stdin_r, stdin_w, out_r, out_w, err_r, err_w]
            actions = [(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                       (os.POSIX_SPAWN_DUP2, err_w, 2)]
            session.stdin_fd = stdin_w
            session._outputs = {out_r: STDOUT, err_r: STDERR}
            session._owned = {stdin_w, out_r, err_r}
            child_ends = [stdin_r, out_w, err_w]
        actions.append((os.POSIX_SPAWN_DUP2, write_fd, launcher.REPORT_FD))
        pid = os.posix_spawn(argv_init[0], argv_init, environment, file_actions=actions, setsid=True,
                             setsigmask=(), setsigdef=launcher._DEFAULT_SIGNALS)
    except OSError as exc:
        for fd in opened:
            os.close(fd)
        raise SessionError(500, f"Failed to launch the session: {exc.strerror or exc}") from None
    except launcher.init_binary.InitBuildError as exc:
        for fd in opened:
            os.close(fd)
        raise SessionError(500, f"Failed to launch the session: {exc}") from None
    session.pid = pid
    for fd in (*child_ends, write_fd):
        os.close(fd)
    failure = launcher._read_report(read_fd, launcher.REPORT_TIMEOUT)
    os.close(read_fd)
    if failure is None or failure:
        session.kill()
        os.waitpid(pid, 0)
        for fd in session._owned:
            os.close(fd)
        reason = failure or f"the session's init did not start the command within {launcher.REPORT_TIMEOUT:.0f}s"
        raise SessionError(400, f"Failed to launch nested container: {reason}")
    pidfd = os.pidfd_open(pid)
    log.info("session %s.%s started: pid %d, %s, as %s", parent.container_id, session.container_id, pid,
             "tty" if session.tty else "pipes", user_name or "the slave's user")
    threading.Thread(target=session._pump, args=(pidfd, on_end), daemon=True,
                     name=f"session-{session.container_id[:8]}").start()
