"""The fetcher: a container's CommandInfo.uris, downloaded into its sandbox
before launch (Mesos' mesos-fetcher, run on a launcher thread, never the actor).

Each URI is a local path (or file://) or http(s)://. The file lands in the
sandbox under `output_file` or the URI's base name; `executable` makes it
executable (and is never extracted); otherwise `extract` (default true)
unpacks .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz and .zip archives there. URIs
with `cache` set are kept under --fetcher_cache_dir, keyed by URI, and the
least recently used entries are evicted beyond --fetcher_cache_size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
STALL_TIMEOUT = 60.0   # Mesos' --fetcher_stall_timeout


class FetchError(Exception):
    """A URI could not be fetched; the message names it and says why."""


class Fetcher:
    def __init__(self, cache_dir: str | None = None, cache_size: int = 2 * 1024**3):
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self._lock = threading.Lock()   # launcher threads share the cache

    def fetch(self, uris, directory: str, owner: tuple[int, int] | None = None) -> list[str]:
        """Fetch every URI into `directory`, in order; returns the paths written."""
        written = []
        for uri in uris:
            try:
                written.append(self._fetch_one(uri, directory))
            except FetchError:
                raise
            except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile) as exc:
                raise FetchError(f"Failed to fetch '{uri.value}': {exc}") from None
        if owner is not None:
            for root, dirs, files in os.walk(directory):
                for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                    os.lchown(name, *owner)
        return written

    def _fetch_one(self, uri, directory: str) -> str:
        value = uri.value
        parsed = urllib.parse.urlparse(value)
        name = uri.output_file or os.path.basename(parsed.path.rstrip("/")) or "download"
        target = os.path.realpath(os.path.join(directory, name))
        if not target.startswith(os.path.realpath(directory) + os.sep):
            raise FetchError(f"Failed to fetch '{value}': output_file '{name}' leaves the sandbox")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if uri.cache and self.cache_dir:
            self._from_cache(value, parsed, target)
        else:
            self._download(value, parsed, target)
        if uri.executable:
            os.chmod(target, 0o755)
        elif uri.extract:
            self._extract(target, directory)
        return target

    def _download(self, value: str, parsed, target: str) -> None:
        if parsed.scheme in ("http", "https"):
            try:
                with urllib.request.urlopen(value, timeout=STALL_TIMEOUT) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
            except OSError as exc:   # URLError and HTTPError are OSErrors
                raise FetchError(f"Failed to fetch '{value}': {getattr(exc, 'reason', exc)}") from None
        elif parsed.scheme in ("", "file"):
            source = urllib.parse.unquote(parsed.path) if parsed.scheme else value
            if not os.path.isabs(source):
                raise FetchError(f"Failed to fetch '{value}': a relative path needs --frameworks_home, "
                                 "which this slave does not have")
            if not os.path.isfile(source):
                raise FetchError(f"Failed to fetch '{value}': no such file on this slave")
            shutil.copyfile(source, target)
        else:
            raise FetchError(f"Failed to fetch '{value}': unsupported scheme '{parsed.scheme}' "
                             "(use a local path, file://, http:// or https://)")

    @staticmethod
    def _extract(path: str, directory: str) -> None:
        lower = path.lower()
        if lower.endswith(TAR_SUFFIXES):
            with tarfile.open(path) as archive:
                archive.extractall(directory, filter="data")
        elif lower.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                root = os.path.realpath(directory)
                for member in archive.namelist():
                    if not os.path.realpath(os.path.join(root, member)).startswith(root + os.sep):
                        raise FetchError(f"Failed to extract '{path}': '{member}' leaves the sandbox")
                archive.extractall(directory)

    # -- the cache -------------------------------------------------------------------

    def _from_cache(self, value: str, parsed, target: str) -> None:
        key = hashlib.sha256(value.encode()).hexdigest()
        cached = os.path.join(self.cache_dir, key)
        with self._lock:
            os.makedirs(self.cache_dir, exist_ok=True)
            if not os.path.exists(cached):
                self._download(value, parsed, cached + ".part")
                os.replace(cached + ".part", cached)
                self._evict(keep=cached)
            os.utime(cached)   # most recently used
            shutil.copyfile(cached, target)

    def _evict(self, keep: str) -> None:
        entries = []
        for name in os.listdir(self.cache_dir):
            path = os.path.join(self.cache_dir, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.cache_size:
                break
            if path != keep:
                os.remove(path)
                total -= size

    def cache_used_bytes(self) -> int:
        if not self.cache_dir:
            return 0
        try:
            return sum(os.path.getsize(os.path.join(self.cache_dir, n)) for n in os.listdir(self.cache_dir))
        except OSError:
            return 0
