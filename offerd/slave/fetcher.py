"""The fetcher: a container's CommandInfo.uris, downloaded into its sandbox
before launch (Mesos' mesos-fetcher, run on a launcher thread, never the actor).

Each URI is a local path (or file://) or http(s)://. The file lands in the
sandbox under `output_file` or the URI's base name; `executable` makes it
executable (and is never extracted); otherwise `extract` (default true)
unpacks .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz and .zip archives there
(offerd.slave.archives: nothing in an archive can leave the sandbox).

Who fetches: when the container switches user, the fetch runs as that user
(its uid, gid and supplementary groups), as Mesos' fetcher does, so a task can
fetch only what its user can read: `python -m offerd.slave.fetcher` starts as
the slave's user, imports everything it needs, drops to the task's user and
only then touches a URI or the sandbox. A launch without URIs costs nothing;
one with URIs costs that process. Otherwise the fetch runs in the slave.
Files are written without following symbolic links (offerd.slave.safe_files)
and belong to whoever fetched them.

The cache (--fetcher_cache_dir, URIs with `cache` set): one directory per user,
cache_dir/<user>, owned by that user and private to it (0700), as Mesos keeps
it. A user's cached copy is only ever one that user fetched itself, so nobody
reads through the cache what they could not fetch, and a user who writes into
its own cache directory poisons only its own downloads. The slave evicts the
least recently used entries of all users beyond --fetcher_cache_size. The
cache directory must not be writable by other users (else one could swap it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

# Imported here, before the fetch process drops to the task's user, who may not
# be able to read the interpreter's files: everything a fetch can need.
import bz2  # noqa: F401
import encodings.cp437  # noqa: F401 (zip member names)
import encodings.idna  # noqa: F401 (host names)
import gzip  # noqa: F401
import http.client  # noqa: F401
import lzma  # noqa: F401
import ssl
import tarfile
import zipfile
import zlib  # noqa: F401

from offerd.slave import archives
from offerd.slave.safe_files import UnsafePath, create_file, open_directory, relative_parts

log = logging.getLogger(__name__)

STALL_TIMEOUT = 60.0   # Mesos' --fetcher_stall_timeout
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the fetch process may see of the slave's environment: how to reach URIs, nothing else.
FETCH_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY",
                     "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FetchError(Exception):
    """A URI could not be fetched; the message names it and says why."""


def uri_specs(uris) -> list[dict]:
    """CommandInfo.URI messages as plain dicts (what crosses to the fetch process)."""
    return [{"value": u.value, "output_file": u.output_file, "executable": u.executable,
             "extract": u.extract, "cache": u.cache} for u in uris]


class Fetcher:
    def __init__(self, cache_dir: str | None = None, cache_size: int = 2 * 1024**3):
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self._lock = threading.Lock()   # launcher threads share the cache

    def fetch(self, uris, directory: str, user=None) -> list[str]:
        """Fetch every URI into `directory`, in order, as `user` (a resolved user
        with name, uid, gid and groups; None: as the slave); returns the paths written."""
        specs = uri_specs(uris)
        switching = user is not None and user.uid != os.geteuid()
        name = user.name if user is not None else _own_user_name()
        cache = None
        if self.cache_dir and any(s["cache"] for s in specs):
            cache = self._user_cache(name, user if switching else None)
        if switching:
            written = _run_as(user, specs, directory, cache)
        else:
            written = fetch_all(specs, directory, cache)
        if cache is not None:
            with self._lock:
                self._evict()
        return written

    # -- the cache -------------------------------------------------------------------

    def _user_cache(self, name: str, user) -> str:
        _check_private(self.cache_dir)
        path = os.path.join(self.cache_dir, name.replace("/", "_"))
        with self._lock:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if user is not None:
                    os.fchown(fd, user.uid, user.gid)
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
        return path

    def _evict(self) -> None:
        entries = []
        for owner in _listdir(self.cache_dir):
            owner_dir = os.path.join(self.cache_dir, owner)
            for name in _listdir(owner_dir):
                if name.startswith("."):
                    continue   # the lock, partial downloads
                path = os.path.join(owner_dir, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.cache_size:
                break
            try:
                os.unlink(path)   # unlink: a link a user planted is removed, never followed
            except OSError:
                continue
            total -= size

    def cache_used_bytes(self) -> int:
        if not self.cache_dir:
            return 0
        total = 0
        for owner in _listdir(self.cache_dir):
            for name in _listdir(os.path.join(self.cache_dir, owner)):
                try:
                    total += os.lstat(os.path.join(self.cache_dir, owner, name)).st_size
                except OSError:
                    continue
        return total


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _own_user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _check_private(path: str) -> None:
    """The cache directory and every directory above it writable only by root or
    the slave's user (or sticky, as /tmp): otherwise another user could replace
    the cache under the slave."""
    os.makedirs(path, 0o755, exist_ok=True)
    real = os.path.realpath(path)
    current = "/"
    for part in [""] + real.strip("/").split("/"):
        current = os.path.join(current, part) if part else current
        st = os.lstat(current)
        sticky = st.st_mode & stat.S_ISVTX and current != real
        if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not sticky):
            raise FetchError(f"--fetcher_cache_dir={path}: '{current}' can be changed by other users; use a "
                             "directory only the slave's user can write")


# -- the fetch itself (in the slave, or in the fetch process as the task's user) -----

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fetch_all(specs: list[dict], directory: str, cache: str | None, context: ssl.SSLContext | None = None,
              drop_to: dict | None = None) -> list[str]:
    """Fetch `specs` into `directory` (and this user's `cache`). With `drop_to`
    (uid, gid, groups), both directories are opened first and then the process
    becomes that user: the paths above them may be closed to it, the fds are not."""
    root = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cache_fd = os.open(cache, DIRECTORY_FLAGS) if cache else None
    try:
        if drop_to is not None:
            os.setgroups(drop_to["groups"])
            os.setgid(drop_to["gid"])
            os.setuid(drop_to["uid"])
            os.umask(0o022)
        written = []
        for spec in specs:
            try:
                written.append(_fetch_one(spec, directory, root, cache_fd, context))
            except FetchError:
                raise
            except archives.ArchiveError as exc:
                raise FetchError(str(exc)) from None
            except UnsafePath as exc:
                raise FetchError(f"Failed to fetch '{spec['value']}': {exc}") from None
            except PermissionError:
                raise FetchError(f"Failed to fetch '{spec['value']}': permission denied (for user "
                                 f"'{_own_user_name()}')") from None
            except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile) as exc:
                raise FetchError(f"Failed to fetch '{spec['value']}': {exc}") from None
        return written
    finally:
        os.close(root)
        if cache_fd is not None:
            os.close(cache_fd)


def _fetch_one(spec: dict, directory: str, root: int, cache_fd: int | None, context) -> str:
    value = spec["value"]
    parsed = urllib.parse.urlparse(value)
    name = spec["output_file"] or os.path.basename(parsed.path.rstrip("/")) or "download"
    try:
        parts = relative_parts(name)
    except UnsafePath:
        raise FetchError(f"Failed to fetch '{value}': output_file '{name}' leaves the sandbox") from None
    if not parts:
        raise FetchError(f"Failed to fetch '{value}': output_file '{name}' names no file")
    parent = open_directory(root, parts[:-1], create=True)
    try:
        mode = 0o755 if spec["executable"] else 0o644
        with os.fdopen(create_file(parent, parts[-1], mode), "w+b") as out:
            try:
                if spec["cache"] and cache_fd is not None:
                    _from_cache(value, parsed, cache_fd, out, context)
                else:
                    _download(value, parsed, out, context)
            except BaseException:
                os.unlink(parts[-1], dir_fd=parent)   # no empty file left behind for a failed URI
                raise
            out.flush()
            if not spec["executable"] and spec["extract"] and archives.is_archive(name):
                out.seek(0)
                archives.extract(out.fileno(), name, root)
    finally:
        os.close(parent)
    return os.path.join(directory, *parts)


def _download(value: str, parsed, out, context) -> None:
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(value, timeout=STALL_TIMEOUT, context=context) as response:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:   # URLError and HTTPError are OSErrors
            raise FetchError(f"Failed to fetch '{value}': {getattr(exc, 'reason', exc)}") from None
    elif parsed.scheme in ("", "file"):
        source = urllib.parse.unquote(parsed.path) if parsed.scheme else value
        if not os.path.isabs(source):
            raise FetchError(f"Failed to fetch '{value}': a relative path needs --frameworks_home, "
                             "which this slave does not have")
        try:
            # O_NONBLOCK: a FIFO at that path must not hang the fetch; only regular files are copied.
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FetchError(f"Failed to fetch '{value}': no such file on this slave") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FetchError(f"Failed to fetch '{value}': not a regular file")
            os.set_blocking(fd, True)
            shutil.copyfileobj(handle, out, 1 << 20)
    else:
        raise FetchError(f"Failed to fetch '{value}': unsupported scheme '{parsed.scheme}' "
                         "(use a local path, file://, http:// or https://)")


def _from_cache(value: str, parsed, cache_fd: int, out, context) -> None:
    """Copy from this user's cache, downloading into it first when missing; a
    lock per user directory keeps two launches from downloading it twice."""
    key = hashlib.sha256(value.encode()).hexdigest()
    lock = os.open(".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=cache_fd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cache_fd)
        except FileNotFoundError:
            with os.fdopen(create_file(cache_fd, ".part", 0o600), "wb") as part:
                _download(value, parsed, part, context)
            os.replace(".part", key, src_dir_fd=cache_fd, dst_dir_fd=cache_fd)
            fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cache_fd)
        with os.fdopen(fd, "rb") as cached:
            os.utime(fd)   # most recently used
            shutil.copyfileobj(cached, out, 1 << 20)
    finally:
        os.close(lock)


# -- the fetch process ----------------------------------------------------------------

def _run_as(user, specs: list[dict], directory: str, cache: str | None) -> list[str]:
    request = {"uid": user.uid, "gid": user.gid, "groups": list(user.groups), "specs": specs,
               "directory": directory, "cache": cache}
    environment = {k: os.environ[k] for k in FETCH_ENVIRONMENT if k in os.environ}
    environment.setdefault("PATH", DEFAULT_PATH)
    # The process imports this module as the slave does, whatever installed it.
    environment["PYTHONPATH"] = _SOURCE_ROOT
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "offerd.slave.fetcher"], input=json.dumps(request).encode(),
                              capture_output=True, env=environment, cwd="/", close_fds=True)
    except OSError as exc:
        raise FetchError(f"Failed to start the fetcher: {exc}") from None
    try:
        answer = json.loads(done.stdout.decode() or "null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"Failed to fetch: the fetcher exited with status {done.returncode}: {tail[0]}")
    if answer.get("error"):
        raise FetchError(answer["error"])
    return list(answer.get("written", []))


def _main() -> int:
    request = json.loads(sys.stdin.read())
    # Made while still the slave's user: the CA files may be unreadable to the task's user.
    context = ssl.create_default_context()
    # A CA directory is read lazily, at verification: load the bundle file into memory now.
    defaults = ssl.get_default_verify_paths()
    for cafile in dict.fromkeys(f for f in (defaults.cafile, os.environ.get("SSL_CERT_FILE")) if f):
        if os.path.isfile(cafile):
            context.load_verify_locations(cafile=cafile)
    try:
        written = fetch_all(request["specs"], request["directory"], request["cache"], context,
                            drop_to={k: request[k] for k in ("uid", "gid", "groups")})
    except FetchError as exc:
        print(json.dumps({"error": str(exc)}))
        return 0
    print(json.dumps({"written": written}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
