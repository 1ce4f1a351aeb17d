"""What a slave keeps on disk across restarts: its SlaveInfo, hence its id.

The layout mirrors Mesos' ``work_dir/meta``: the id the master gave this slave is
what lets a restarted slave REREGISTER instead of appearing as a new machine.
"""

from __future__ import annotations

import logging
import os

from google.protobuf.message import DecodeError

from offerd.common.durable import write_atomically
from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)


def slave_info_path(work_dir: str) -> str:
    return os.path.join(work_dir, "meta", "slaves", "latest", "slave.info")


def read_slave_info(work_dir: str) -> pb.SlaveInfo | None:
    """The checkpointed SlaveInfo, or None when there is none (or it is unreadable)."""
    path = slave_info_path(work_dir)
    try:
        with open(path, "rb") as handle:
            info = pb.SlaveInfo.FromString(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, DecodeError) as exc:
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return None
    return info if info.id.value else None


def write_slave_info(work_dir: str, info: pb.SlaveInfo) -> None:
    write_atomically(slave_info_path(work_dir), info.SerializeToString())


def forget_slave(work_dir: str) -> None:
    """Drop the checkpointed id: the master removed this slave for good."""
    try:
        os.remove(slave_info_path(work_dir))
    except FileNotFoundError:
        return  # nothing was checkpointed
