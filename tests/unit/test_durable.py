"""durable.write_atomically: the one checkpoint write (temporary file, fsync, rename, fsync the directory)."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from offerd.common import durable
from offerd.common.durable import write_atomically


def test_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "state.json"
    write_atomically(str(target), b"one")
    write_atomically(str(target), "two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["state.json"]


def test_creates_with_the_mode_from_the_first_byte(tmp_path):
    target = tmp_path / "secret"
    write_atomically(str(target), b"s3cret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # Replacing keeps the mode asked for, not the old file's.
    write_atomically(str(target), b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", recording_fsync)
    target = tmp_path / "registry.json"
    write_atomically(str(target), b"{}")
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(durable.TEMPORARY_PREFIX)  # the data, before the rename
    assert synced[1] == str(tmp_path)                                         # then the rename itself
    synced.clear()
    write_atomically(str(target), b"{}", sync=False)
    assert synced == []


def test_a_failed_write_keeps_the_old_contents_and_cleans_up(tmp_path):
    target = tmp_path / "state"
    write_atomically(str(target), b"old")
    with pytest.raises(TypeError):
        write_atomically(str(target), 12345)  # not bytes: fails mid-write
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state"]


def test_does_not_follow_a_planted_symlink_at_the_temporary_name(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    target = tmp_path / "state"
    planted = tmp_path / f"{durable.TEMPORARY_PREFIX}state.{os.getpid()}.{threading.get_ident()}"
    planted.symlink_to(victim)
    with pytest.raises(OSError):
        write_atomically(str(target), b"data")
    assert victim.read_bytes() == b"untouched"
    assert not target.exists()


def test_concurrent_writers_each_leave_a_whole_value(tmp_path):
    target = tmp_path / "shared"
    values = [bytes([65 + i]) * 50_000 for i in range(8)]
    threads = [threading.Thread(target=write_atomically, args=(str(target), v)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in values
    assert os.listdir(tmp_path) == ["shared"]
