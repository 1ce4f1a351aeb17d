"""No task escapes its sandbox: the fetcher fetches as the task's user, archives
cannot write outside the sandbox, and the slave's /files views never follow a
link out (a task swapping a file for a link while they read included).

Real slaves (against the protocol-level fake master), real processes run as the
unprivileged user `nobody` with --switch_user, real HTTP; the archive tests run
the real Fetcher on real archive files.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
import zipfile

import pytest
import requests

from offerd.proto import offerd_pb2 as pb
from offerd.slave.fetcher import Fetcher, FetchError
from tests.fakes.master_for_slaves import command_task, framework_info, kill_task, run_task
from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the task's user needs root")

TASK_USER = "nobody"


@pytest.fixture
def public_dir():
    """A directory every user can traverse (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="offerd-public-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def secret(tmp_path):
    """A root-only file (0600) with content no answer may ever contain."""
    path = tmp_path / "secret.txt"
    content = f"TOP-SECRET-{uuid.uuid4().hex}"
    path.write_text(content + "\n")
    os.chmod(path, 0o600)
    return str(path), content


def user_task(task_id: str, command: str) -> pb.TaskInfo:
    info = command_task(task_id, command)
    info.command.user = TASK_USER
    return info


def sandbox_of(slave, task_id: str) -> str:
    pattern = os.path.join(slave.flags.work_dir, "slaves", slave.slave_id, "frameworks", "F1",
                           "executors", task_id, "runs", "*")
    return wait_for(lambda: glob.glob(pattern), 5)[0]


def started(master, start_slave, **flags):
    slave = start_slave(**flags)
    wait_for(lambda: slave.slave_id, 10)
    return slave


# -- the fetcher runs as the task's user ----------------------------------------------

def test_a_task_user_cannot_fetch_a_file_it_cannot_read(master, start_slave, secret):
    slave = started(master, start_slave, fetcher_cache_dir=None)
    path, content = secret
    info = user_task("shadow", "cat secret.txt")
    info.command.uris.add(value=f"file://{path}")
    master.send(slave.slave_id, run_task(info))
    status = master.wait_terminal("shadow")
    assert status.state == pb.TASK_FAILED and status.reason == pb.TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
    assert f"file://{path}" in status.message and "permission denied" in status.message, status.message
    assert not os.path.exists(os.path.join(sandbox_of(slave, "shadow"), "secret.txt"))


def test_what_the_task_user_can_read_is_fetched_and_owned_by_it(master, start_slave, public_dir, tmp_path):
    cache = os.path.join(public_dir, "cache")
    slave = started(master, start_slave, fetcher_cache_dir=cache)
    source = os.path.join(public_dir, "tool.sh")
    with open(source, "w") as handle:
        handle.write("echo fetched-ok\n")
    os.chmod(source, 0o644)
    info = user_task("readable", "sh tool.sh && sh cached.sh")
    info.command.uris.add(value=source)
    info.command.uris.add(value=f"file://{source}", output_file="cached.sh", cache=True)
    master.send(slave.slave_id, run_task(info))
    status = master.wait_terminal("readable")
    assert status.state == pb.TASK_FINISHED, status.message
    directory = sandbox_of(slave, "readable")
    nobody = os.stat(directory).st_uid
    for name in ("tool.sh", "cached.sh"):
        assert os.lstat(os.path.join(directory, name)).st_uid == nobody != 0
    assert open(os.path.join(directory, "stdout")).read() == "fetched-ok\nfetched-ok\n"
    # The cache is kept per user, private to that user.
    user_cache = os.path.join(cache, TASK_USER)
    assert os.stat(user_cache).st_uid == nobody and stat.S_IMODE(os.stat(user_cache).st_mode) == 0o700


def test_without_switching_users_the_fetch_runs_as_the_slave(master, start_slave, secret):
    """As Mesos: --switch_user=false runs tasks, and their fetches, as the slave's user."""
    slave = started(master, start_slave, switch_user=False, fetcher_cache_dir=None)
    path, content = secret
    info = user_task("as-slave", "cat secret.txt")
    info.command.uris.add(value=path)
    master.send(slave.slave_id, run_task(info))
    assert master.wait_terminal("as-slave").state == pb.TASK_FINISHED
    assert content in open(os.path.join(sandbox_of(slave, "as-slave"), "stdout")).read()


# -- archives and output files --------------------------------------------------------

def _tar(path: str, *members) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data) if data is not None else None)


def _file(name: str, data: bytes = b"x\n"):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    return member, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member, None


def _special(name: str, kind):
    member = tarfile.TarInfo(name)
    member.type = kind
    return member, None


ESCAPING_TARS = {
    "dot-dot": ([_file("../escaped.txt")], "../escaped.txt"),
    "absolute": ([_file("/tmp/offerd-escaped.txt")], "/tmp/offerd-escaped.txt"),
    "symlink-absolute": ([_link("etc", "/etc")], "etc"),
    "symlink-up": ([_link("up", "../../..")], "up"),
    "symlink-chain": ([_file("d/keep"), _link("d/l", ".."), _link("e", "d/l/../outside")], "e"),
    # A later member turns an earlier link's path into one that leads out.
    "symlink-changed-later": ([_link("a", "d1/d2/p/../.."), _link("d1/d2/p", "../..")], "a"),
    "through-a-link": ([_link("inside", "."), _file("inside/../../x")], "inside/../../x"),
    "hardlink-out": ([_link("passwd", "/etc/passwd", tarfile.LNKTYPE)], "passwd"),
    "device": ([_special("null", tarfile.CHRTYPE)], "null"),
    "fifo": ([_special("pipe", tarfile.FIFOTYPE)], "pipe"),
}


@pytest.mark.parametrize("case", sorted(ESCAPING_TARS))
def test_an_archive_member_that_would_escape_fails_the_fetch_naming_it(tmp_path, case):
    members, named = ESCAPING_TARS[case]
    archive = str(tmp_path / "bundle.tar.gz")
    _tar(archive, *members)
    sandbox = tmp_path / "runs" / "sandbox"
    sandbox.mkdir(parents=True)
    uri = pb.CommandInfo().uris.add(value=archive)
    with pytest.raises(FetchError) as refused:
        Fetcher(None).fetch([uri], str(sandbox))
    assert named in str(refused.value) and "bundle.tar.gz" in str(refused.value)
    assert not (tmp_path / "runs" / "escaped.txt").exists() and not os.path.exists("/tmp/offerd-escaped.txt")
    assert not (tmp_path / "runs" / "outside").exists()


def test_links_that_stay_inside_are_extracted(tmp_path):
    archive = str(tmp_path / "ok.tar.gz")
    _tar(archive, _file("lib/libx.so.1", b"lib\n"), _link("lib/libx.so", "libx.so.1"),
         _link("current", "lib"), _file("bin/run", b"run\n"), _link("bin/copy", "bin/run", tarfile.LNKTYPE))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    Fetcher(None).fetch([pb.CommandInfo().uris.add(value=archive)], str(sandbox))
    assert (sandbox / "current" / "libx.so").read_text() == "lib\n"
    assert (sandbox / "bin" / "copy").read_text() == "run\n" and not (sandbox / "bin" / "copy").is_symlink()


def _zip_symlink(archive: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, target)


@pytest.mark.parametrize("case", ["dot-dot", "absolute", "symlink-out"])
def test_a_zip_member_that_would_escape_fails_the_fetch_naming_it(tmp_path, case):
    path = str(tmp_path / "bundle.zip")
    with zipfile.ZipFile(path, "w") as archive:
        if case == "dot-dot":
            archive.writestr("../escaped.txt", "x")
            named = "../escaped.txt"
        elif case == "absolute":
            archive.writestr("/tmp/offerd-zip-escaped.txt", "x")
            named = "/tmp/offerd-zip-escaped.txt"
        else:
            _zip_symlink(archive, "shadow", "/etc/shadow")
            named = "shadow"
    sandbox = tmp_path / "runs" / "sandbox"
    sandbox.mkdir(parents=True)
    with pytest.raises(FetchError) as refused:
        Fetcher(None).fetch([pb.CommandInfo().uris.add(value=path)], str(sandbox))
    assert named in str(refused.value)
    assert not (tmp_path / "runs" / "escaped.txt").exists() and not os.path.exists("/tmp/offerd-zip-escaped.txt")
    assert not os.path.lexists(sandbox / "shadow")


def test_output_files_that_escape_or_meet_a_link_are_refused(tmp_path, secret):
    path, content = secret
    source = tmp_path / "payload.txt"
    source.write_text("payload\n")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for output_file in ("../outside.txt", "/tmp/offerd-outside.txt"):
        with pytest.raises(FetchError, match="leaves the sandbox"):
            Fetcher(None).fetch([pb.CommandInfo().uris.add(value=str(source), output_file=output_file)],
                                str(sandbox))
    assert not (tmp_path / "outside.txt").exists() and not os.path.exists("/tmp/offerd-outside.txt")
    os.symlink(path, sandbox / "planted")
    with pytest.raises(FetchError, match="symbolic link"):
        Fetcher(None).fetch([pb.CommandInfo().uris.add(value=str(source), output_file="planted")], str(sandbox))
    assert open(path).read() == content + "\n"   # the link's target is untouched


# -- /files reads no link ---------------------------------------------------------------

def test_files_refuses_a_symlink_out_and_a_path_through_one(master, start_slave, secret):
    slave = started(master, start_slave)
    path, content = secret
    master.send(slave.slave_id, run_task(user_task(
        "links", f"echo inside > in.txt; mkfifo pipe; ln -s {path} leak; ln -s {os.path.dirname(path)} dir")))
    assert master.wait_terminal("links").state == pb.TASK_FINISHED
    directory = sandbox_of(slave, "links")
    base = f"http://127.0.0.1:{slave.http_port}/files"
    assert requests.get(f"{base}/read", params={"path": f"{directory}/in.txt"}, timeout=5).json()["data"] == "inside\n"
    assert requests.get(f"{base}/download", params={"path": f"{directory}/in.txt"}, timeout=5).content == b"inside\n"
    for view in ("read", "download", "browse"):
        for name in ("leak", f"dir/{os.path.basename(path)}", "dir"):
            answer = requests.get(f"{base}/{view}", params={"path": f"{directory}/{name}"}, timeout=5)
            assert answer.status_code == 403, (view, name, answer.text)
            assert content not in answer.text and "symbolic link" in answer.json()["message"]
    # A FIFO the task made answers at once (opening it must not wait for a writer).
    fifo = requests.get(f"{base}/read", params={"path": f"{directory}/pipe"}, timeout=5)
    assert fifo.status_code == 400 and "not a regular file" in fifo.json()["message"]
    listing = requests.get(f"{base}/browse", params={"path": directory}, timeout=5).json()
    assert {e["path"].rsplit("/", 1)[1]: e["mode"][0] for e in listing}["leak"] == "l"


def test_files_read_never_serves_the_target_of_a_link_swapped_in_while_reading(master, start_slave, secret):
    """The task swaps `f` between a regular file and a link to a root-only file
    as fast as it can while /files/read is asked for `f` over and over: a check
    then open by path would now and then serve the secret."""
    slave = started(master, start_slave)
    path, content = secret
    swap = (f"echo harmless > plain; while true; do ln -sfn {path} f.link && mv -fT f.link f; "
            "cp plain f.file && mv -fT f.file f; done")
    master.send(slave.slave_id, run_task(user_task("swapper", swap)))
    master.wait_state("swapper", pb.TASK_RUNNING)
    directory = sandbox_of(slave, "swapper")
    wait_for(lambda: os.path.lexists(os.path.join(directory, "f")), 5)
    url = f"http://127.0.0.1:{slave.http_port}/files/read"
    codes = []
    with requests.Session() as session:
        for _ in range(400):
            answer = session.get(url, params={"path": f"{directory}/f"}, timeout=5)
            assert content not in answer.text
            codes.append(answer.status_code)
            if answer.status_code == 200:
                assert answer.json()["data"] in ("harmless\n", "")
    # Both shapes were met, so the race really ran against the reads.
    assert 200 in codes and 403 in codes, codes
    master.send(slave.slave_id, kill_task("swapper"))
    master.wait_terminal("swapper")


def test_a_link_planted_at_the_exit_status_file_is_not_written_through(master, start_slave, tmp_path):
    """offerd-init (root) writes a checkpointed task's exit status into the task's
    sandbox when it ends; a link the task put at that name is not followed."""
    slave = started(master, start_slave)
    target = tmp_path / "root-file"
    target.write_text("untouched\n")
    framework = framework_info()
    framework.checkpoint = True
    master.send(slave.slave_id, run_task(user_task("planter", f"ln -s {target} .offerd_exit_status; exit 3"),
                                         framework))
    status = master.wait_terminal("planter")
    assert status.state == pb.TASK_FAILED
    assert target.read_text() == "untouched\n"
