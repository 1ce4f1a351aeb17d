"""The wheel holds everything offerd needs: built from this tree and installed into a
fresh virtualenv (its dependencies from the machine's package index), it runs
`offerd local` with the master's web UI, the Marathon-like framework and its page, and
builds offerd-init from the C source it ships, with nothing imported from this tree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from offerd.cli.local import free_base_port
from tests.support import free_port, wait_for

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
# Not Python, and needed at run time: what package data must carry into the wheel.
DATA_FILES = ["webui/index.html", "webui/app.js", "webui/style.css", "frameworks/marathon_like/ui/index.html",
              "frameworks/marathon_like/ui/app.js", "offerd/proto/offerd.proto",
              "offerd/slave/containerizer/offerd-init.c"]
COMPILERS = ("musl-gcc", "cc", "gcc", "clang")


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} exited with {result.returncode}:\n" \
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def get(url: str):
    try:
        return requests.get(url, timeout=5)
    except requests.RequestException:
        return None


def test_a_wheel_installed_in_a_clean_virtualenv_runs_a_cluster(tmp_path):
    if not any(shutil.which(name) for name in COMPILERS):
        pytest.skip("no C compiler to build offerd-init with (apt-get install musl-tools)")
    # Built from a copy: a build in place would leave build/ and egg-info in the working tree.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".hypothesis", "tests",
        "bench", "node_modules"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(tmp_path / "wheels")])
    (wheel,) = (tmp_path / "wheels").glob("offerd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in DATA_FILES if name not in names], sorted(names)
    assert not [name for name in names if name.startswith("tests/")]

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])

    home = tmp_path / "home"
    home.mkdir()
    # Nothing of this tree or of the test's virtualenv: a clean environment, run from elsewhere.
    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "OFFERD_INIT_DIR": str(tmp_path / "init")}
    offerd = str(venv / "bin" / "offerd")
    where = run([str(venv / "bin" / "python"), "-c",
                 "import offerd, frameworks.marathon_like, offerd.master.http_api as h, "
                 "offerd.slave.containerizer.init_binary as i; "
                 "print(offerd.__file__, frameworks.marathon_like.__file__, h.DEFAULT_WEBUI_DIR, i.SOURCE)"],
                env=env, cwd=home).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    assert "usage: offerd" in run([offerd, "--help"], env=env, cwd=home).stdout
    assert "--zk URL" in run([offerd, "master", "--help"], env=env, cwd=home).stdout

    # offerd-init from the C source in the wheel, as a slave builds it on first use.
    built = run([str(venv / "bin" / "python"), "-m", "offerd.slave.containerizer.init_binary"],
                env=env, cwd=home).stdout.strip()
    assert built.startswith(str(tmp_path / "init")) and os.access(built, os.X_OK), built

    port, marathon_port = free_base_port(1), free_port()
    with open(tmp_path / "local.log", "wb") as log:
        cluster = subprocess.Popen([offerd, "local", "--slaves", "1", "--port", str(port), "--marathon_port",
                                    str(marathon_port), "--work_dir", str(tmp_path / "cluster"),
                                    "--resources", "cpus:2;mem:1024;disk:1024;ports:[31000-31100]"],
                                   env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    master, marathon = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{marathon_port}"
    try:
        def up():
            assert cluster.poll() is None, f"offerd local exited: {(tmp_path / 'local.log').read_text()[-3000:]}"
            state, info = get(master + "/master/state"), get(marathon + "/v2/info")
            return state is not None and state.json().get("activated_slaves") == 1 and info is not None
        wait_for(up, 90, 0.3, "the local cluster and its Marathon")

        finished = run([offerd, "execute", "--master", f"127.0.0.1:{port}", "--command", "echo hi",
                        "--timeout", "60secs"], env=env, cwd=home)
        assert "TASK_FINISHED" in finished.stdout, finished.stdout

        # The web UI and Marathon's page are served from the installed package data.
        site_webui = Path(where[2])
        page, script = get(master + "/"), get(master + "/static/app.js")
        assert page.status_code == 200 and page.content == (site_webui / "index.html").read_bytes()
        assert script.status_code == 200 and script.content == (site_webui / "app.js").read_bytes()
        ui = get(marathon + "/ui/")
        assert ui.status_code == 200 and b"<html" in ui.content

        # A Marathon app: a checkpointing framework's task starts through offerd-init.
        app = {"id": "/wheel-check", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1}
        response = requests.post(marathon + "/v2/apps", json=app, timeout=10)
        assert response.status_code == 201, response.text
        wait_for(lambda: (get(marathon + "/v2/apps/wheel-check").json()["app"]["tasksRunning"] == 1), 60, 0.3,
                 "the app's instance to run")
    finally:
        if cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait(10)
