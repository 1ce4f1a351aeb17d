"""Durable writes of state that must survive a crash: the one way to checkpoint.

`write_atomically` does what Mesos' ``state::checkpoint`` does: write a
temporary file next to the target, fsync it, rename it over the target, then
fsync the directory. A reader, or a restart after SIGKILL or power loss, sees
the old contents or the new ones, never half of one, and a rename that was
reported done stays done (without the directory fsync a power loss can undo it).
"""

from __future__ import annotations

import os
import threading

TEMPORARY_PREFIX = ".tmp-"


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, data: bytes | str, mode: int = 0o644, sync: bool = True) -> None:
    """Replace `path` with `data`, created with `mode` from its first byte.

    `sync=False` keeps the rename atomic but skips both fsyncs: for state that is
    rebuilt anyway after a machine crash (reconciliation repairs it).
    """
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A name unique to this target, process and thread: two writers never share a temporary
    # file, and a leftover from a crash is overwritten (O_TRUNC) or ignored by readers.
    temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{os.path.basename(path)}."
                                        f"{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            # An earlier leftover of that name may have had another mode.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    if sync:
        _fsync_directory(directory)
