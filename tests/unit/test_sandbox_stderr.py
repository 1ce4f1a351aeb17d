"""The last stderr line a failed task's status carries: read without trusting the sandbox."""

from __future__ import annotations

import os
import threading

from offerd.slave.sandbox import last_stderr_line


def test_the_last_non_blank_line_printable_and_bounded(tmp_path):
    (tmp_path / "stderr").write_text("starting\nTraceback ...\nOSError: [Errno 98] Address already in use\n\n  \n")
    assert last_stderr_line(str(tmp_path)) == "OSError: [Errno 98] Address already in use"
    (tmp_path / "stderr").write_text("x" * 50_000 + "\n" + "bad \x1b[31mred\x07\n")
    assert last_stderr_line(str(tmp_path)) == "bad ?[31mred?"
    (tmp_path / "stderr").write_text("y" * 1000)
    assert last_stderr_line(str(tmp_path), limit=20) == "y" * 19 + "…"


def test_nothing_when_there_is_nothing_to_say(tmp_path):
    assert last_stderr_line(str(tmp_path)) is None                # no stderr
    (tmp_path / "stderr").write_text("\n \n")
    assert last_stderr_line(str(tmp_path)) is None                # only blanks
    assert last_stderr_line(str(tmp_path / "missing")) is None    # no sandbox


def test_a_planted_link_or_fifo_is_not_followed_or_waited_on(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    os.symlink(secret, sandbox / "stderr")
    assert last_stderr_line(str(sandbox)) is None
    os.unlink(sandbox / "stderr")
    os.mkfifo(sandbox / "stderr")
    answer = []
    reader = threading.Thread(target=lambda: answer.append(last_stderr_line(str(sandbox))), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and answer == [None]
