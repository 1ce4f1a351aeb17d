"""Archive extraction into a sandbox that nothing in the archive can leave.

Every member is written through offerd.slave.safe_files (no symbolic link is
ever followed while extracting), and refused, failing the whole fetch with the
member's name, when it is an absolute path or has a `..`, is a device, FIFO or
socket, is a symbolic link whose target is absolute or resolves outside the
sandbox, or is a hard link to anything that is not a file extracted inside.
Once extracted, every symbolic link in the sandbox is checked again against the
final tree (a later member can change where an earlier link leads). Modes keep
the owner's bits and read/execute for others, never setuid, setgid or write
for others; ownership is whoever extracts (the task's user), never the archive's.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile

from offerd.slave.safe_files import (
    UnsafePath, create_file, escaping_links, link_escapes, open_beneath, open_directory, relative_parts,
)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
SAFE_MODE_BITS = 0o755


class ArchiveError(Exception):
    """The archive cannot be extracted safely; the message names the member."""


def is_archive(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(TAR_SUFFIXES) or lower.endswith(".zip")


def extract(archive_fd: int, name: str, root_fd: int) -> None:
    """Extract the archive open at `archive_fd` (named `name`) below `root_fd`."""
    with os.fdopen(os.dup(archive_fd), "rb") as handle:
        if name.lower().endswith(".zip"):
            _extract_zip(handle, name, root_fd)
        else:
            _extract_tar(handle, name, root_fd)
    escaping = escaping_links(root_fd)
    if escaping:
        member, target = escaping[0]
        raise ArchiveError(f"Failed to extract '{name}': symbolic link '{member}' -> '{target}' leads out of "
                           "the sandbox")


def _parts(archive: str, member: str) -> list[str]:
    try:
        parts = relative_parts(member)
    except UnsafePath as exc:
        raise ArchiveError(f"Failed to extract '{archive}': member {exc}") from None
    return parts


def _write(root_fd: int, parts: list[str], source, mode: int, archive: str, member: str) -> None:
    try:
        parent = open_directory(root_fd, parts[:-1], create=True)
        try:
            fd = create_file(parent, parts[-1], mode & SAFE_MODE_BITS | 0o600)
        finally:
            os.close(parent)
    except UnsafePath as exc:
        raise ArchiveError(f"Failed to extract '{archive}': member '{member}': {exc}") from None
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        os.fchmod(out.fileno(), mode & SAFE_MODE_BITS | 0o600)


def _directory(root_fd: int, parts: list[str], archive: str, member: str) -> None:
    try:
        os.close(open_directory(root_fd, parts, create=True))
    except UnsafePath as exc:
        raise ArchiveError(f"Failed to extract '{archive}': member '{member}': {exc}") from None


def _symlink(root_fd: int, parts: list[str], target: str, archive: str, member: str) -> None:
    if link_escapes(root_fd, parts, target):
        raise ArchiveError(f"Failed to extract '{archive}': symbolic link '{member}' -> '{target}' leads out of "
                           "the sandbox")
    try:
        parent = open_directory(root_fd, parts[:-1], create=True)
    except UnsafePath as exc:
        raise ArchiveError(f"Failed to extract '{archive}': member '{member}': {exc}") from None
    try:
        try:
            if stat.S_ISLNK(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                os.unlink(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            pass
        os.symlink(target, parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


def _hardlink(root_fd: int, parts: list[str], target: str, archive: str, member: str) -> None:
    """A hard link to a file extracted earlier: a copy of that file, read
    without following links (a hard link would share its inode, and so its
    later changes, with whatever the target name meant at extraction time)."""
    try:
        source_fd = open_beneath(root_fd, _parts(archive, target))
    except (UnsafePath, OSError):
        raise ArchiveError(f"Failed to extract '{archive}': hard link '{member}' -> '{target}' does not name a "
                           "file extracted in the sandbox") from None
    with os.fdopen(source_fd, "rb") as source:
        st = os.fstat(source.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(f"Failed to extract '{archive}': hard link '{member}' -> '{target}' does not name "
                               "a regular file")
        _write(root_fd, parts, source, st.st_mode, archive, member)


def _extract_tar(handle, archive: str, root_fd: int) -> None:
    with tarfile.open(fileobj=handle, mode="r:*") as tar:
        for member in tar:
            parts = _parts(archive, member.name)
            if not parts:
                continue   # the archive's "./"
            if member.isdir():
                _directory(root_fd, parts, archive, member.name)
            elif member.isfile():
                _write(root_fd, parts, tar.extractfile(member), member.mode, archive, member.name)
            elif member.issym():
                _symlink(root_fd, parts, member.linkname, archive, member.name)
            elif member.islnk():
                _hardlink(root_fd, parts, member.linkname, archive, member.name)
            else:
                raise ArchiveError(f"Failed to extract '{archive}': member '{member.name}' is a device, FIFO or "
                                   "other special file")


def _extract_zip(handle, archive: str, root_fd: int) -> None:
    with zipfile.ZipFile(handle) as zipped:
        for info in zipped.infolist():
            parts = _parts(archive, info.filename)
            if not parts:
                continue
            unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
            kind = stat.S_IFMT(unix_mode)
            if info.is_dir() or kind == stat.S_IFDIR:
                _directory(root_fd, parts, archive, info.filename)
            elif kind == stat.S_IFLNK:
                # Unzip makes these symbolic links; so does this, under the same checks as tar's.
                target = zipped.read(info).decode("utf-8", "surrogateescape")
                _symlink(root_fd, parts, target, archive, info.filename)
            elif kind in (0, stat.S_IFREG):
                with zipped.open(info) as source:
                    _write(root_fd, parts, source, unix_mode or 0o644, archive, info.filename)
            else:
                raise ArchiveError(f"Failed to extract '{archive}': member '{info.filename}' is a device, FIFO or "
                                   "other special file")
