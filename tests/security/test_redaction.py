"""Secrets never shown: a ZooKeeper password and secret-named flags stay out of
flags, state documents and log lines.

The end-to-end test starts a real master and a real slave with
``zk://user:secretpw@.../offerd`` against the test ZooKeeper and reads every
place the URL used to show up.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request

import pytest

from offerd.common.logs import RedactingFilter, setup_logging
from offerd.common.redact import MASK, redact_flags, redact_url
from tests.ha.cluster import HACluster, get_json
from tests.support import wait_for

PASSWORD = "secretpw"


@pytest.mark.parametrize("text, expected", [
    ("zk://user:secretpw@127.0.0.1:2181/offerd", f"zk://user:{MASK}@127.0.0.1:2181/offerd"),
    ("zk://user:secretpw@h1:2181,h2:2181/offerd", f"zk://user:{MASK}@h1:2181,h2:2181/offerd"),
    # ':' and '@' inside the password: the whole password goes, not just a prefix.
    ("zk://user:se:cr@tpw@host:2181/p", f"zk://user:{MASK}@host:2181/p"),
    ("connecting to https://op:secretpw@example.com/x and zk://a:secretpw@h:1/y now",
     f"connecting to https://op:{MASK}@example.com/x and zk://a:{MASK}@h:1/y now"),
    ("'zk://user:secretpw@h:1/p'", f"'zk://user:{MASK}@h:1/p'"),
])
def test_redact_url_hides_every_password(text, expected):
    assert redact_url(text) == expected
    assert PASSWORD not in redact_url(text)


@pytest.mark.parametrize("text", [
    "zk://127.0.0.1:2181/offerd", "http://127.0.0.1:5050/master/state", "plain text", "",
    "https://host:8443/a@b",  # an '@' in the path is not a password
])
def test_redact_url_leaves_urls_without_passwords_alone(text):
    assert redact_url(text) == text


def test_redact_url_passes_non_strings_through():
    assert redact_url(None) is None
    assert redact_url(5) == 5


def test_redact_flags_hides_secret_flags_and_url_passwords_but_shows_paths():
    flags = {
        "zk": "zk://user:secretpw@127.0.0.1:2181/offerd",
        "master": "zk://u:secretpw@h:2181/offerd",
        "mesos_authentication_secret": "secretpw",
        "db_password": "secretpw",
        "api_token": "secretpw",
        "credentials": "/etc/offerd/credentials.json",
        "mesos_authentication_secret_file": "/etc/marathon/secret",
        "zmq_key_file": "/etc/offerd/master.key_secret",
        "port": "5050",
        "empty_secret": "",
    }
    shown = redact_flags(flags)
    assert PASSWORD not in repr(shown)
    assert shown["zk"] == f"zk://user:{MASK}@127.0.0.1:2181/offerd"
    assert shown["mesos_authentication_secret"] == shown["db_password"] == shown["api_token"] == MASK
    # Where a secret lives is not the secret: the operator can still see which file is used.
    assert shown["credentials"] == "/etc/offerd/credentials.json"
    assert shown["mesos_authentication_secret_file"] == "/etc/marathon/secret"
    assert shown["zmq_key_file"] == "/etc/offerd/master.key_secret"
    assert shown["port"] == "5050" and shown["empty_secret"] == ""
    assert flags["zk"].startswith("zk://user:secretpw@"), "the input must not be changed"


def test_a_json_object_flag_is_shown_as_json_with_credential_variables_masked():
    shown = redact_flags({"executor_environment_variables": {
        "PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": PASSWORD, "API_KEY": PASSWORD,
        "PROXY": f"http://u:{PASSWORD}@proxy:3128"}})
    value = json.loads(shown["executor_environment_variables"])
    assert PASSWORD not in shown["executor_environment_variables"]
    assert value == {"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": MASK, "API_KEY": MASK,
                     "PROXY": f"http://u:{MASK}@proxy:3128"}


def test_log_lines_never_carry_a_url_password():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    try:
        setup_logging("INFO", stream)
        log = logging.getLogger("offerd.test")
        log.info("joining %s", "zk://user:secretpw@127.0.0.1:2181/offerd")
        log.warning("formatted in the message: zk://user:secretpw@127.0.0.1:2181/offerd")
        try:
            raise ValueError("cannot parse zk://user:secretpw@bad/offerd")
        except ValueError:
            log.exception("failed")
        log.info("a record that is %s", "harmless")
    finally:
        root.handlers[:], root.level, sys.excepthook, threading.excepthook = saved
    text = stream.getvalue()
    assert PASSWORD not in text
    assert text.count(f"user:{MASK}@") >= 3  # the traceback quotes the raising line too
    assert "ValueError: cannot parse" in text and "a record that is harmless" in text


def test_a_malformed_log_record_is_not_swallowed_by_the_filter():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("not a number",), None)
    assert RedactingFilter().filter(record) is True


def _text(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("simulate", [0, 3], ids=["posix-slave", "simulated-fleet"])
def test_zookeeper_password_absent_from_endpoints_and_logs(zk_url, tmp_path, simulate):
    secret_url = zk_url.replace("zk://", f"zk://offerd:{PASSWORD}@", 1)
    cluster = HACluster(secret_url, masters=1, slaves=1, simulate=simulate, work_dir=str(tmp_path))
    try:
        cluster.start(60)
        master = cluster.url(0)
        flags = get_json(f"{master}/master/flags")
        assert flags["flags"]["zk"] == secret_url.replace(PASSWORD, MASK)
        state = wait_for(lambda: (s := get_json(f"{master}/master/state")) and s.get("activated_slaves") == (simulate or 1) and s,
                         30, message="the slave in the master's state")
        for document in (_text(f"{master}/master/flags"), _text(f"{master}/master/state"),
                         _text(f"{master}/state"), _text(f"{master}/master/state.json")):
            assert PASSWORD not in document
        assert state["flags"]["zk"].endswith(MASK + "@" + secret_url.split("@", 1)[1])
        slave = f"http://127.0.0.1:{cluster.slave_ports[0]}"
        slave_flags = get_json(f"{slave}/flags")["flags"]
        assert slave_flags["master"] == secret_url.replace(PASSWORD, MASK)
        for document in (_text(f"{slave}/flags"), _text(f"{slave}/state"), _text(f"{slave}/state.json")):
            assert PASSWORD not in document
    finally:
        cluster.stop()
    logs = os.path.join(str(tmp_path), "logs")
    names = sorted(os.listdir(logs))
    assert names == ["master0.log", "slave0.log"]
    for name in names:
        with open(os.path.join(logs, name), encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        assert text, f"{name} is empty: the test would prove nothing"
        assert PASSWORD not in text, f"{name} shows the ZooKeeper password"


def test_a_crash_traceback_is_redacted_too():
    code = ("import threading\n"
            "from offerd.common.logs import setup_logging\n"
            "setup_logging()\n"
            "def fail():\n"
            "    raise RuntimeError('thread: zk://u:secretpw@h:1/p')\n"
            "thread = threading.Thread(target=fail)\n"
            "thread.start()\n"
            "thread.join()\n"
            "raise ValueError('main: zk://u:secretpw@h:1/p')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "thread: zk://u:" in result.stderr and "main: zk://u:" in result.stderr
    assert PASSWORD not in result.stderr


def test_a_bad_zk_url_stops_the_master_with_a_message_and_no_password(tmp_path):
    result = subprocess.run([sys.executable, "-m", "offerd", "master", "--port=0", f"--work_dir={tmp_path}",
                             f"--zk=zk://user:{PASSWORD}@127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "give a znode path" in result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr
