"""Paths inside a sandbox, opened one component at a time from a directory fd
and never through a symbolic link.

A task owns its sandbox and can swap any name in it for a symbolic link at any
moment, so "check the path, then open it" lets it point the slave (root) at any
file of the machine between the two steps. Here every component is opened with
O_NOFOLLOW relative to the fd of the one before, so what is opened is what was
checked: a symlink anywhere on the way fails the open instead of being followed.
The slave's /files views read through this, and the fetcher writes through it.
"""

from __future__ import annotations

import errno
import os
import stat

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO a task planted must not hang the reader.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_LINK_EXPANSIONS = 40   # as the kernel's ELOOP limit


class UnsafePath(Exception):
    """A name leaves its root, or leads through a symbolic link; the message says which."""


def relative_parts(name: str) -> list[str]:
    """The components of a relative name, refusing absolute names and `..`."""
    if not name or "\0" in name:
        raise UnsafePath(f"'{name}' is not a valid name")
    if name.startswith("/"):
        raise UnsafePath(f"'{name}' is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"'{name}' leaves the sandbox ('..')")
    return parts


def open_directory(root_fd: int, parts: list[str], create: bool = False, mode: int = 0o755) -> int:
    """An fd of the directory `parts` below `root_fd` (creating missing ones with
    `create`), reached without following any symbolic link."""
    fd = os.dup(root_fd)
    try:
        for index, part in enumerate(parts):
            try:
                next_fd = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass   # made meanwhile: opened below like any other
                next_fd = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(f"'{'/'.join(parts[:index + 1])}' is a symbolic link or not a directory")\
                        from None
                raise
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_beneath(root_fd: int, parts: list[str]) -> int:
    """An fd (read-only) of the file or directory `parts` below `root_fd`; raises
    UnsafePath when it or a directory on the way is a symbolic link."""
    if not parts:
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    parent = open_directory(root_fd, parts[:-1])
    try:
        return os.open(parts[-1], READ_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"'{'/'.join(parts)}' is a symbolic link") from None
        raise
    finally:
        os.close(parent)


def create_file(dir_fd: int, name: str, mode: int = 0o644) -> int:
    """A new regular file `name` in `dir_fd`, open for reading and writing. A regular file of
    that name is replaced; a symbolic link (or anything else) there is refused."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"'{name}' already exists as a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"'{name}' already exists and is not a regular file")
        os.unlink(name, dir_fd=dir_fd)
    # O_EXCL with O_NOFOLLOW: if anything (a link) appeared since, this fails rather than follows.
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                   dir_fd=dir_fd)


def link_escapes(root_fd: int, link_parts: list[str], target: str) -> bool:
    """Whether a symbolic link at `link_parts` with `target` resolves outside
    `root_fd`, following the links that exist below the root now (a missing
    component counts as a plain directory)."""
    if target.startswith("/"):
        return True
    stack = list(link_parts[:-1])
    pending = target.split("/")
    expansions = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        try:
            st = os.stat("/".join(stack), dir_fd=root_fd, follow_symlinks=False)
        except OSError:
            continue   # does not exist (yet): nothing to follow
        if stat.S_ISLNK(st.st_mode):
            expansions += 1
            if expansions > MAX_LINK_EXPANSIONS:
                return True
            inner = os.readlink("/".join(stack), dir_fd=root_fd)
            if inner.startswith("/"):
                return True
            stack.pop()
            pending = inner.split("/") + pending
    return False


def escaping_links(root_fd: int) -> list[tuple[str, str]]:
    """Every symbolic link below `root_fd` that resolves outside it, as (name, target)."""
    found = []
    for directory, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        # A link to a directory is listed among the directories (never walked into).
        for name in dirs + files:
            try:
                if not stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    continue
                target = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                continue
            parts = [p for p in os.path.join(directory, name).split("/") if p not in ("", ".")]
            if link_escapes(root_fd, parts, target):
                found.append(("/".join(parts), target))
    return found
