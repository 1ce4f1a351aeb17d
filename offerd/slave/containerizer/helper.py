"""The resident launch helper: one small process per slave that forks containers.

Started once by the slave (`python -S helper.py FD`, standard library only, no
offerd import: some 10 MB) and fed launch requests over a SOCK_SEQPACKET unix
socket. Forking from this small image costs a fraction of a millisecond, where
forking the slave's heap costs tens, and every namespace step is a system call
here instead of an exec of util-linux `unshare` (which alone cost 1.7 ms and
another fork). Per request:

    unshare(CLONE_NEWPID)          (the next child is PID 1 of a new namespace)
    fork()                         child: setsid, join cgroups, unshare(mount, uts,
                                   ipc), / private, fresh /proc, sandbox bind mount,
                                   hostname, stdio, cwd, user; exec the command
    setns(own pid namespace)       (back, for the next request)

The child reports a failing step on a close-on-exec pipe ("joining cgroup ...:
Permission denied"); the helper answers the request with the pid or that error.
It reaps its children and reports every exit status to the slave.

The slave's death (EOF on the socket) makes the helper exit *without* touching
the containers: they are reparented to init, and the next run of the slave
adopts the checkpointed ones (pid file + exit status file in the sandbox) and
kills the others, exactly as for containers the slave spawned itself.

Messages are JSON: request {"id", "argv", "executable", "env", "cwd", "stdout",
"stderr", "cgroup_procs", "clone_flags", "pid_namespace", "hostname", "sandbox",
"sandbox_mount", "user": [uid, gid, [groups], name] | null}; answers {"id",
"pid"} or {"id", "error"}; exits {"exit": pid, "returncode": n} (subprocess
style, -N for a signal).
"""

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MAX_MESSAGE = 4 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mount(source, target, fstype, flags) -> None:
    _check(_libc.mount(source, target, fstype, flags, None))


def _loopback_up() -> None:
    """`ip link set lo up` in a new network namespace (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH22x", ifreq)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _child(req: dict, error_fd: int) -> None:
    """In the forked child: set the container up and exec; never returns."""
    step = "starting"
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()
        for path in req["cgroup_procs"]:
            step = f"joining cgroup {os.path.dirname(path)}"
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        flags = req["clone_flags"]
        if req["pid_namespace"] or req["sandbox_mount"]:
            flags |= CLONE_NEWNS
        if flags:
            step = "creating namespaces"
            _check(_libc.unshare(flags))
        if flags & CLONE_NEWNS:
            step = "making mounts private"
            _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        if req["pid_namespace"]:
            step = "mounting /proc"
            _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if req["sandbox_mount"]:
            step = f"mounting the sandbox at {req['sandbox_mount']}"
            _mount(req["sandbox"].encode(), req["sandbox_mount"].encode(), None, MS_BIND | MS_REC)
        if flags & CLONE_NEWNET:
            step = "bringing up the loopback device"
            _loopback_up()
        if req["hostname"]:
            step = "setting the hostname"
            socket.sethostname(req["hostname"])
        step = "opening the sandbox's stdout and stderr"
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd, target in ((stdin, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        step = f"entering the sandbox {req['cwd']}"
        os.chdir(req["cwd"])
        if req["user"] is not None:
            uid, gid, groups, name = req["user"]
            step = f"switching to user {name}"
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        program = req["executable"] or req["argv"][0]
        step = f"executing {program}"
        os.execvpe(program, req["argv"], req["env"])
    except BaseException as exc:   # noqa: BLE001 (the child must never return)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            os.write(error_fd, f"{step}: {detail}".encode())
        except OSError:
            pass
    os._exit(127)


class Helper:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def send(self, message: dict) -> None:
        self.sock.send(json.dumps(message).encode())

    def spawn(self, req: dict) -> dict:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            if req["pid_namespace"]:
                _check(_libc.unshare(CLONE_NEWPID))
            try:
                pid = os.fork()
            except OSError:
                if req["pid_namespace"]:
                    _check(_libc.setns(self.own_pid_ns, CLONE_NEWPID))
                raise
            if pid == 0:
                _child(req, write_fd)
            if req["pid_namespace"]:
                # Back to our own namespace for the children that follow.
                _check(_libc.setns(self.own_pid_ns, CLONE_NEWPID))
            os.close(write_fd)
            write_fd = None
            failure = b""
            while True:   # until exec (the pipe closes) or a report of what failed
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    break
                failure += chunk
            if failure:
                os.waitpid(pid, 0)
                return {"id": req["id"], "error": failure.decode("utf-8", "replace")}
            return {"id": req["id"], "pid": pid}
        except OSError as exc:
            return {"id": req["id"], "error": f"forking the container: {exc.strerror or exc}"}
        finally:
            os.close(read_fd)
            if write_fd is not None:
                os.close(write_fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"exit": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is the slave's business
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == wake_r:
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                    continue
                try:
                    data = self.sock.recv(MAX_MESSAGE)
                except InterruptedError:
                    continue
                if not data:
                    return   # the slave is gone: leave the containers running (see above)
                self.send(self.spawn(json.loads(data)))
            self.reap()


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.set_inheritable(False)
    try:
        Helper(sock).run()
    except (BrokenPipeError, ConnectionResetError):
        pass   # the slave is gone
    return 0


if __name__ == "__main__":
    sys.exit(main())
