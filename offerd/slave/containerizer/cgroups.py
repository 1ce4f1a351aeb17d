"""cgroups/cpu, cgroups/mem and cgroups/pids, on cgroup v1 or pure v2.

Each container gets a cgroup `<cgroups_root>/<container id>` in every hierarchy
an isolator uses (v1: one per controller mount, e.g. /sys/fs/cgroup/memory;
v2: the one unified tree). Nothing is created outside `<cgroups_root>`, and
cleanup removes the container's cgroups once its processes are gone.

`prepare` plans the cgroups (directories, limits, the file a process joins
through); the container's init (offerd-init) creates, limits and joins them
before anything of the task runs, in C rather than in the slave's Python: a
dozen system calls per launch that would each take the GIL back.

Which version runs is detected once at start (`detect()`): pure v2 when
--cgroups_hierarchy (/sys/fs/cgroup) is itself cgroup2, else the v1 controller
mounts below it, from /proc/self/mounts (a hybrid machine's controller-less
/sys/fs/cgroup/unified is ignored).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import time
from dataclasses import dataclass

from offerd.proto import offerd_pb2 as pb
from offerd.slave.containerizer.isolator import Container, Isolator, IsolatorError, LaunchPlan, Limitation

log = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000        # Mesos' CFS period (100 ms)
MIN_CPU_SHARES = 2
MIN_CFS_QUOTA_US = 1000
MIN_MEMORY_BYTES = 32 * 1024 * 1024   # Mesos' minimum memory limit
CPU_SHARES_PER_CPU = 1024
USER_HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Hierarchies:
    """Where each controller lives. v2: every controller maps to the unified root."""
    version: int
    mounts: dict[str, str]   # controller -> hierarchy mount point

    def root(self, controller: str) -> str:
        try:
            return self.mounts[controller]
        except KeyError:
            raise IsolatorError(f"the cgroup controller '{controller}' is not available on this machine "
                                f"(cgroup v{self.version})") from None


DEFAULT_HIERARCHY = "/sys/fs/cgroup"


def detect(hierarchy: str = DEFAULT_HIERARCHY, mounts_file: str = "/proc/self/mounts") -> Hierarchies | None:
    """The cgroup hierarchies under `hierarchy` (--cgroups_hierarchy), or None
    without cgroups: v2 when `hierarchy` itself is a cgroup2 mount, else the v1
    controller mounts below it."""
    hierarchy = hierarchy.rstrip("/") or "/"
    v1: dict[str, str] = {}
    v2_root = None
    try:
        with open(mounts_file) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        _, mount_point, fstype, options = parts[:4]
        if fstype == "cgroup2" and mount_point == hierarchy:
            v2_root = mount_point
        elif fstype == "cgroup" and mount_point.startswith(hierarchy + "/"):
            for option in options.split(","):
                if option in ("cpu", "cpuacct", "memory", "pids", "freezer"):
                    v1[option] = mount_point
    if v2_root is not None:
        try:
            with open(os.path.join(v2_root, "cgroup.controllers")) as handle:
                controllers = handle.read().split()
        except OSError:
            controllers = []
        return Hierarchies(2, {name: v2_root for name in controllers})
    return Hierarchies(1, v1) if v1 else None


def read(path: str) -> str:
    # os-level calls: a launch touches a dozen cgroup files, and open()'s text
    # layer costs more than the system calls themselves.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def write(path: str, value) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise IsolatorError(f"cannot write {value} to {path}: {exc.strerror}") from None


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed cgroup file ('name value' per line) as a dict."""
    out = {}
    try:
        for line in read(path).splitlines():
            name, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
    except OSError:
        pass
    return out


def members(path: str) -> list[int]:
    try:
        return [int(pid) for pid in read(os.path.join(path, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def remove(path: str, timeout: float = 2.0) -> None:
    """rmdir a container's cgroup, killing stragglers; tolerant of it being gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("cannot remove cgroup %s: %s", path, exc.strerror)
                return
        for pid in members(path):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


class CgroupsIsolator(Isolator):
    """Shared by the three: one cgroup per container per controller it uses."""

    controllers: tuple[str, ...] = ()

    def __init__(self, hierarchies: Hierarchies, cgroups_root: str, flags=None):
        self.hierarchies = hierarchies
        self.cgroups_root = cgroups_root.strip("/") or "offerd"
        self.flags = flags
        self.v2 = hierarchies.version == 2
        self.roots = sorted({hierarchies.root(c) for c in self.controllers})
        for root in self.roots:
            self._make_root(root)
        # init is single-threaded: on v1 it joins through `tasks`, which moves one
        # thread without the kernel's threadgroup lock that `cgroup.procs` takes.
        self.join_file = "cgroup.procs" if self.v2 else "tasks"

    def _make_root(self, hierarchy: str) -> None:
        path = os.path.join(hierarchy, self.cgroups_root)
        os.makedirs(path, exist_ok=True)
        if self.v2:
            wanted = " ".join(f"+{c}" for c in self.controllers)
            for parent in (hierarchy, path):
                write(os.path.join(parent, "cgroup.subtree_control"), wanted)

    def path(self, controller: str, container: Container | str) -> str:
        cid = container if isinstance(container, str) else container.container_id
        return os.path.join(self.hierarchies.root(controller), self.cgroups_root, cid)

    def prepare(self, container: Container) -> LaunchPlan:
        plan = LaunchPlan()
        for root in self.roots:
            path = os.path.join(root, self.cgroups_root, container.container_id)
            plan.cgroup_dirs.append(path)
            plan.cgroup_joins.append(os.path.join(path, self.join_file))
        plan.cgroup_writes.extend(self.limits(container))
        return plan

    def limits(self, container: Container) -> list[tuple[str, str]]:
        """(file, value) pairs that set a new cgroup's limits for the container."""
        return []

    def update(self, container: Container) -> None:
        for path, value in self.limits(container):
            write(path, value)

    def pids(self, container: Container) -> list[int]:
        return members(os.path.join(self.roots[0], self.cgroups_root, container.container_id))

    def cleanup(self, container: Container) -> None:
        for root in self.roots:
            remove(os.path.join(root, self.cgroups_root, container.container_id))

    def remove_root(self) -> None:
        """The slave stops: remove <cgroups_root> if no container is left in it."""
        for root in self.roots:
            try:
                os.rmdir(os.path.join(root, self.cgroups_root))
            except OSError:
                pass   # containers still there (recovered at the next start), or gone already

    def recover(self, running: list[str], orphans: list[str]) -> None:
        """Remove the cgroups of this slave's containers that were not adopted."""
        for container_id in orphans:
            if container_id not in running:
                for root in self.roots:
                    remove(os.path.join(root, self.cgroups_root, container_id))


class CpuIsolator(CgroupsIsolator):
    """cpu.shares = 1024 x cpus (v2: the matching cpu.weight); with
    --cgroups_enable_cfs a hard quota of cpus x the 100 ms period."""

    names = ("cgroups/cpu",)

    def __init__(self, hierarchies, cgroups_root, flags=None):
        self.controllers = ("cpu",) if hierarchies.version == 2 else (
            ("cpu", "cpuacct") if "cpuacct" in hierarchies.mounts else ("cpu",))
        super().__init__(hierarchies, cgroups_root, flags)
        self.enable_cfs = bool(getattr(flags, "cgroups_enable_cfs", False))

    def limits(self, container: Container) -> list[tuple[str, str]]:
        if not container.cpus:
            return []
        shares = max(MIN_CPU_SHARES, int(CPU_SHARES_PER_CPU * container.cpus))
        path = self.path("cpu", container)
        quota = max(MIN_CFS_QUOTA_US, int(CFS_PERIOD_US * container.cpus))
        if self.v2:
            # The kernel's own shares->weight mapping (as systemd and runc do it).
            return [(os.path.join(path, "cpu.weight"), str(1 + ((shares - 2) * 9999) // 262142)),
                    (os.path.join(path, "cpu.max"),
                     f"{quota} {CFS_PERIOD_US}" if self.enable_cfs else f"max {CFS_PERIOD_US}")]
        out = [(os.path.join(path, "cpu.shares"), str(shares))]
        if self.enable_cfs:
            out += [(os.path.join(path, "cpu.cfs_period_us"), str(CFS_PERIOD_US)),
                    (os.path.join(path, "cpu.cfs_quota_us"), str(quota))]
        return out

    def usage(self, container: Container) -> dict:
        stats = {"cpus_limit": container.cpus}
        if self.v2:
            cpu = read_keyed(os.path.join(self.path("cpu", container), "cpu.stat"))
            stats["cpus_user_time_secs"] = cpu.get("user_usec", 0) / 1e6
            stats["cpus_system_time_secs"] = cpu.get("system_usec", 0) / 1e6
            stats["cpus_throttled_time_secs"] = cpu.get("throttled_usec", 0) / 1e6
        else:
            cpu = read_keyed(os.path.join(self.path("cpu", container), "cpu.stat"))
            stats["cpus_throttled_time_secs"] = cpu.get("throttled_time", 0) / 1e9
            if "cpuacct" in self.controllers:
                acct = read_keyed(os.path.join(self.path("cpuacct", container), "cpuacct.stat"))
                stats["cpus_user_time_secs"] = acct.get("user", 0) / USER_HZ
                stats["cpus_system_time_secs"] = acct.get("system", 0) / USER_HZ
        stats["cpus_nr_periods"] = cpu.get("nr_periods", 0)
        stats["cpus_nr_throttled"] = cpu.get("nr_throttled", 0)
        if self.enable_cfs:
            stats["cpus_quota_secs"] = max(MIN_CFS_QUOTA_US, int(CFS_PERIOD_US * container.cpus)) / 1e6
        return stats

    def cpu_usage_secs(self, container: Container) -> float:
        """Total CPU time of the container from its cgroup counters."""
        if self.v2:
            return read_keyed(os.path.join(self.path("cpu", container), "cpu.stat")).get("usage_usec", 0) / 1e6
        try:
            return int(read(os.path.join(self.path("cpuacct", container), "cpuacct.usage"))) / 1e9
        except (OSError, ValueError, IsolatorError):
            return 0.0


class MemIsolator(CgroupsIsolator):
    """A hard memory limit (min 32 MB); the kernel's OOM killer stays on, and
    an OOM kill in the container's cgroup (seen through its OOM event) stops
    the container with REASON_CONTAINER_LIMITATION_MEMORY."""

    names = ("cgroups/mem",)
    controllers = ("memory",)

    def __init__(self, hierarchies, cgroups_root, flags=None):
        super().__init__(hierarchies, cgroups_root, flags)
        self.limit_swap = bool(getattr(flags, "cgroups_limit_swap", False))
        swap_file = "memory.swap.max" if self.v2 else "memory.memsw.limit_in_bytes"
        # Without swap accounting in the kernel there is no swap limit to write.
        self.swap_file = swap_file if self.limit_swap and os.path.exists(
            os.path.join(self.roots[0], self.cgroups_root, swap_file)) else None
        self._event_fds: dict[str, int] = {}
        self._oom_notified: set[str] = set()   # v1 containers whose OOM eventfd fired

    def limit_bytes(self, container: Container) -> int:
        return max(MIN_MEMORY_BYTES, int(container.mem_mb * 1024 * 1024))

    def limits(self, container: Container) -> list[tuple[str, str]]:
        """For a new cgroup (no limit yet): the hard limit before the swap limit
        (v1 keeps memsw >= limit at every step)."""
        if not container.mem_mb:
            return []
        path = self.path("memory", container)
        limit = str(self.limit_bytes(container))
        if self.v2:
            out = [(os.path.join(path, "memory.max"), limit)]
            return out + ([(os.path.join(path, self.swap_file), "0")] if self.swap_file else [])
        out = [(os.path.join(path, "memory.soft_limit_in_bytes"), limit),
               (os.path.join(path, "memory.limit_in_bytes"), limit)]
        return out + ([(os.path.join(path, self.swap_file), limit)] if self.swap_file else [])

    def update(self, container: Container) -> None:
        limits = self.limits(container)
        if limits and self.swap_file and not self.v2:
            # A resize: memsw must stay >= limit, so a raise moves memsw first.
            path = self.path("memory", container)
            current = int(read(os.path.join(path, "memory.limit_in_bytes")))
            if self.limit_bytes(container) > current:
                limits = [limits[0], limits[2], limits[1]]
        for path, value in limits:
            write(path, value)

    def watch(self, container: Container) -> list[tuple[int, int]]:
        path = self.path("memory", container)
        try:
            if self.v2:
                # memory.events signals a change with POLLPRI; epoll reports it.
                fd = os.open(os.path.join(path, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
            else:
                fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                control = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    write(os.path.join(path, "cgroup.event_control"), f"{fd} {control}")
                finally:
                    os.close(control)
        except (OSError, IsolatorError) as exc:
            log.warning("cannot watch container %s for OOM: %s", container.container_id, exc)
            return []
        self._event_fds[container.container_id] = fd
        # A cgroup2 file is always "readable"; a change shows as POLLPRI.
        return [(fd, select.EPOLLPRI if self.v2 else select.EPOLLIN)]

    def oom_kills(self, container: Container) -> int:
        path = self.path("memory", container)
        name = "memory.events" if self.v2 else "memory.oom_control"
        return read_keyed(os.path.join(path, name)).get("oom_kill", 0)

    def check(self, container: Container) -> Limitation | None:
        cid = container.container_id
        fd = self._event_fds.get(cid)
        if fd is not None:
            try:
                if self.v2:
                    os.pread(fd, 4096, 0)   # re-arms the POLLPRI notification
                else:
                    os.eventfd_read(fd)
                    self._oom_notified.add(cid)
            except (BlockingIOError, OSError):
                pass
            if not self.v2 and cid not in self._oom_notified:
                # v1 notifies on entering OOM, before any kill: no notification, no OOM kill
                # (and no read of memory.oom_control for every container that ends).
                return None
        if self.oom_kills(container) <= 0:
            return None
        path = self.path("memory", container)
        if self.v2:
            peak_file = os.path.join(path, "memory.peak")
            usage = int(read(peak_file)) if os.path.exists(peak_file) else int(read(os.path.join(path, "memory.current")))
        else:
            usage = int(read(os.path.join(path, "memory.max_usage_in_bytes")))
        limit = self.limit_bytes(container)
        return Limitation(pb.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY,
                          f"Memory limit exceeded: Requested: {limit // 2**20}MB "
                          f"Maximum Used: {usage // 2**20}MB (limit {limit} bytes, max usage {usage} bytes)")

    def usage(self, container: Container) -> dict:
        path = self.path("memory", container)
        if self.v2:
            stat = read_keyed(os.path.join(path, "memory.stat"))
            total = _int_file(os.path.join(path, "memory.current"))
            rss, cache, swap = stat.get("anon", 0), stat.get("file", 0), _int_file(os.path.join(path, "memory.swap.current"))
        else:
            stat = read_keyed(os.path.join(path, "memory.stat"))
            total = _int_file(os.path.join(path, "memory.usage_in_bytes"))
            rss, cache, swap = stat.get("total_rss", 0), stat.get("total_cache", 0), stat.get("total_swap", 0)
        return {"mem_limit_bytes": self.limit_bytes(container), "mem_total_bytes": total,
                "mem_rss_bytes": rss, "mem_anon_bytes": rss, "mem_cache_bytes": cache,
                "mem_file_bytes": cache, "mem_swap_bytes": swap}

    def cleanup(self, container: Container) -> None:
        self._oom_notified.discard(container.container_id)
        fd = self._event_fds.pop(container.container_id, None)
        if fd is not None:
            os.close(fd)
        super().cleanup(container)


class PidsIsolator(CgroupsIsolator):
    """Counts a container's processes (pids.current); the cgroup also lets a
    kill reach processes that left the process group."""

    names = ("cgroups/pids",)
    controllers = ("pids",)

    def usage(self, container: Container) -> dict:
        return {"processes": _int_file(os.path.join(self.path("pids", container), "pids.current"))}


def _int_file(path: str) -> int:
    try:
        return int(read(path))
    except (OSError, ValueError):
        return 0


ISOLATORS = {cls.names[0]: cls for cls in (CpuIsolator, MemIsolator, PidsIsolator)}
