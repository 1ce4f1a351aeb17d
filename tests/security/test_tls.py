"""HTTPS on offerd's servers: real certificates, real TLS, real clients (curl,
openssl s_client, urllib, requests), and a master + slave finding each other
over https."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading

import pytest
import requests
from flask import Flask, Response, request

from offerd.common import tls
from offerd.common.detector import DetectorError, master_info, resolve_master, split_host_port
from offerd.common.http import HttpServer, fetch, get_json
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.slave.core import MasterLink
from offerd.slave.daemon import Slave
from offerd.slave.flags import make_flags
from tests.security.certs import make_ca_and_cert, make_self_signed
from tests.support import wait_for

STREAM_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca, cert, key = make_ca_and_cert(str(directory))
    impostor_cert, impostor_key = make_self_signed(str(directory / "impostor"))
    return {"ca": ca, "cert": cert, "key": key, "impostor_cert": impostor_cert, "impostor_key": impostor_key}


def _app(gate: threading.Event) -> Flask:
    app = Flask("tls-test")

    @app.get("/hello")
    def hello():
        return {"hello": "world", "scheme": request.scheme}

    @app.post("/echo")
    def echo():
        return {"bytes": len(request.get_data())}

    @app.get("/stream")
    def stream():
        def events():
            yield "data: first\n\n"
            # The client opens the gate only after it has read the first event:
            # a buffering server would never let it.
            gate.wait(STREAM_TIMEOUT)
            yield "data: second\n\n"

        return Response(events(), mimetype="text/event-stream")

    return app


@pytest.fixture
def served(pki):
    gate = threading.Event()
    server = HttpServer(_app(gate), "127.0.0.1", 0, threads=4, name="tls-test",
                        ssl_cert_file=pki["cert"], ssl_key_file=pki["key"]).start()
    yield server, gate
    gate.set()
    server.close()


def _url(server, path="/hello") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def _curl(*args) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed on this machine")
    return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
                          capture_output=True, text=True, timeout=30)


def _openssl(*args, stdin="") -> subprocess.CompletedProcess:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed on this machine")
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30)


# -- the server -------------------------------------------------------------------


def test_curl_trusts_the_server_with_the_ca_and_refuses_it_without(served, pki):
    server, _ = served
    trusted = _curl("--cacert", pki["ca"], _url(server))
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout) == {"hello": "world", "scheme": "https"}
    untrusted = _curl(_url(server))
    assert untrusted.returncode == 60, untrusted.stderr  # peer certificate cannot be authenticated
    assert untrusted.stdout == ""


def test_openssl_s_client_verifies_the_chain(served, pki):
    server, _ = served
    verified = _openssl("s_client", "-connect", f"127.0.0.1:{server.port}", "-verify_return_error",
                        "-CAfile", pki["ca"], "-verify_ip", "127.0.0.1", "-brief")
    assert verified.returncode == 0, verified.stderr
    assert "Verification: OK" in verified.stderr or "Verify return code: 0 (ok)" in verified.stdout
    # Without our CA nothing vouches for the certificate.
    refused = _openssl("s_client", "-connect", f"127.0.0.1:{server.port}", "-verify_return_error",
                       "-CAfile", pki["impostor_cert"], "-brief")
    assert refused.returncode != 0


def test_plain_http_to_the_tls_port_gets_no_http_answer_and_the_server_keeps_serving(served, pki):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass  # the server dropping the connection is one way of refusing; the answer so far is checked
    assert not answer.startswith(b"HTTP"), answer[:80]
    assert b"hello" not in answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=10)
    context = tls.client_context(pki["ca"])
    assert get_json(_url(server), ssl_context=context)["hello"] == "world"


def test_a_client_that_distrusts_the_server_does_not_disturb_it(served, pki):
    server, _ = served
    with pytest.raises(OSError):
        get_json(_url(server), ssl_context=tls.client_context(pki["impostor_cert"]))
    assert get_json(_url(server), ssl_context=tls.client_context(pki["ca"]))["scheme"] == "https"


def test_an_impostor_certificate_is_refused_by_our_clients(pki):
    impostor = HttpServer(_app(threading.Event()), "127.0.0.1", 0, threads=2, name="impostor",
                          ssl_cert_file=pki["impostor_cert"], ssl_key_file=pki["impostor_key"]).start()
    try:
        context = tls.client_context(pki["ca"])
        with pytest.raises(OSError) as refused:
            get_json(_url(impostor), ssl_context=context)
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        with pytest.raises(DetectorError) as detector_refused:
            master_info(f"127.0.0.1:{impostor.port}", timeout=5, ssl_context=context)
        assert "--ssl_ca_file" in str(detector_refused.value)
    finally:
        impostor.close()


def test_streaming_responses_stream_over_tls(served, pki):
    server, gate = served
    context = tls.client_context(pki["ca"])
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=STREAM_TIMEOUT)
    try:
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.status == 200
        assert response.readline() == b"data: first\n"
        assert not gate.is_set()  # the first event came while the generator still waited
        gate.set()
        rest = response.read()
        assert b"data: second" in rest
    finally:
        connection.close()


def test_an_oversize_body_gets_413_over_tls(served, pki):
    server, _ = served
    context = tls.client_context(pki["ca"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                         % (17 * 1024 * 1024))
            assert conn.recv(64).startswith(b"HTTP/1.1 413")
    # A body under the limit is read whole.
    answer = requests.post(_url(server, "/echo"), data=b"x" * (2 * 1024 * 1024), verify=pki["ca"], timeout=10)
    assert answer.json() == {"bytes": 2 * 1024 * 1024}


def test_silent_connections_do_not_starve_the_workers(served, pki):
    server, _ = served  # 4 worker threads
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    try:
        answer = requests.get(_url(server), verify=pki["ca"], timeout=10)
        assert answer.status_code == 200
    finally:
        for connection in silent:
            connection.close()


def test_many_keep_alive_clients_at_once(served, pki):
    server, _ = served
    context = tls.client_context(pki["ca"])
    clients = [http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
               for _ in range(40)]
    try:
        for _ in range(3):  # every client keeps its connection between rounds
            for client in clients:
                client.request("GET", "/hello")
            for client in clients:
                response = client.getresponse()
                assert response.status == 200
                assert response.getheader("Connection", "").lower() != "close"
                response.read()
    finally:
        for client in clients:
            client.close()


def test_close_is_prompt_and_idempotent_with_a_stream_open(pki):
    gate = threading.Event()
    server = HttpServer(_app(gate), "127.0.0.1", 0, threads=2, ssl_cert_file=pki["cert"],
                        ssl_key_file=pki["key"]).start()
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls.client_context(pki["ca"]),
                                             timeout=STREAM_TIMEOUT)
    try:
        connection.request("GET", "/stream")
        assert connection.getresponse().readline() == b"data: first\n"
        server.close()  # the generator still waits on its gate
        server.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        gate.set()
        connection.close()


# -- tls.py -------------------------------------------------------------------------


def test_contexts_are_tls_1_2_or_newer_and_clients_verify(pki):
    assert tls.server_context(pki["cert"], pki["key"]).minimum_version >= ssl.TLSVersion.TLSv1_2
    client = tls.client_context(pki["ca"])
    assert client.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_bad_files_are_named_with_what_to_do(pki, tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(tls.TlsError, match="nope.pem: no such file"):
        tls.server_context(missing, pki["key"])
    with pytest.raises(tls.TlsError, match="does not belong to certificate"):
        tls.server_context(pki["cert"], pki["impostor_key"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(tls.TlsError, match="garbage.pem: not a PEM certificate"):
        tls.server_context(str(garbage), pki["key"])
    with pytest.raises(tls.TlsError, match="garbage.pem"):
        tls.client_context(str(garbage))
    with pytest.raises(tls.TlsError, match="both --ssl_cert_file and --ssl_key_file"):
        HttpServer(Flask("x"), "127.0.0.1", 0, ssl_cert_file=pki["cert"])


def test_fetch_returns_error_answers_and_forwards_headers(served, pki):
    server, _ = served
    context = tls.client_context(pki["ca"])
    missing = fetch(_url(server, "/missing"), ssl_context=context, headers={"Authorization": "Basic eDp5"})
    assert missing.status == 404
    found = fetch(_url(server), ssl_context=context)
    assert found.status == 200 and found.json()["scheme"] == "https"
    with pytest.raises(ValueError):
        fetch(_url(server), ssl_context=context, max_bytes=4)


# -- a master and a slave over https -----------------------------------------------


@pytest.fixture
def tls_master(pki, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text("admin adminsecret\n")
    master = Master(master_flags(port=0, allocation_interval="100ms", ssl_cert_file=pki["cert"],
                                 ssl_key_file=pki["key"], credentials=str(credentials),
                                 authenticate_http_readonly=True, authenticate_http_readwrite=True)).start()
    yield master
    master.stop()


def test_split_host_port_accepts_https():
    assert split_host_port("https://10.0.0.1:5443/") == ("10.0.0.1", 5443)


def test_the_detector_finds_a_tls_master(tls_master, pki):
    context = tls.client_context(pki["ca"])
    port = tls_master.http_port
    info = master_info(f"127.0.0.1:{port}", ssl_context=context)
    assert info["id"] == tls_master.master_id
    assert resolve_master(f"https://127.0.0.1:{port}", ssl_context=context) == \
        f"tcp://127.0.0.1:{tls_master.zmq_port}"
    with pytest.raises(DetectorError, match="--ssl_ca_file"):
        master_info(f"https://127.0.0.1:{port}")  # the system CAs do not know our CA
    with pytest.raises(DetectorError):
        master_info(f"127.0.0.1:{port}")  # plain http to the TLS port


def test_the_master_guards_its_http_and_hands_out_https_urls(tls_master, pki):
    base = f"https://127.0.0.1:{tls_master.http_port}"
    ca = pki["ca"]
    refused = requests.get(base + "/master/state", verify=ca, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="mesos-master-readonly"'
    wrong = requests.get(base + "/master/state", verify=ca, auth=("admin", "guess"), timeout=10)
    assert wrong.status_code == 401
    state = requests.get(base + "/master/state", verify=ca, auth=("admin", "adminsecret"), timeout=10)
    assert state.status_code == 200 and state.json()["id"] == tls_master.master_id
    for public in ("/health", "/master/health", "/version", "/master/info"):
        assert requests.get(base + public, verify=ca, timeout=10).status_code == 200, public
    redirect = requests.get(base + "/master/redirect", verify=ca, timeout=10, allow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["Location"].startswith("https://")
    # A browser tricked by another site into posting, with cached credentials.
    forged = requests.post(base + "/master/teardown", data={"frameworkId": "x"}, verify=ca, timeout=10,
                           auth=("admin", "adminsecret"), headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "cross-site" in forged.text
    unauthenticated_write = requests.post(base + "/master/teardown", data={"frameworkId": "x"}, verify=ca,
                                          timeout=10)
    assert unauthenticated_write.status_code == 401
    assert unauthenticated_write.headers["WWW-Authenticate"] == 'Basic realm="mesos-master-readwrite"'


def test_a_slave_registers_with_a_tls_master_and_serves_https(tls_master, pki, tmp_path):
    ca = pki["ca"]
    slave = Slave(make_flags(master=f"127.0.0.1:{tls_master.http_port}", port=0, work_dir=str(tmp_path / "slave"),
                             containerizer="simulated", resources="cpus:2;mem:1024;disk:1024",
                             ssl_ca_file=ca, ssl_cert_file=pki["cert"], ssl_key_file=pki["key"],
                             registration_backoff_factor=0.2)).start()
    try:
        wait_for(lambda: slave.slave_id, timeout=30, message="the slave to register over https detection")
        base = f"https://127.0.0.1:{tls_master.http_port}"
        slaves = requests.get(base + "/master/slaves", verify=ca, auth=("admin", "adminsecret"), timeout=10)
        assert [s["id"] for s in slaves.json()["slaves"]] == [slave.slave_id]
        own = requests.get(f"https://127.0.0.1:{slave.http_port}/state", verify=ca, timeout=10)
        assert own.status_code == 200 and own.json()["id"] == slave.slave_id
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{slave.http_port}/state", timeout=10)
    finally:
        slave.stop()


def test_a_slave_without_the_ca_cannot_resolve_a_tls_master(tls_master, pki, tmp_path):
    # The slave's own resolution path: without --ssl_ca_file the system CAs do not
    # vouch for our test CA; with it the master is found.
    flags = dict(port=0, work_dir=str(tmp_path / "slave"), containerizer="simulated")
    address = f"https://127.0.0.1:{tls_master.http_port}"
    with pytest.raises(DetectorError, match="certificate"):
        MasterLink.from_flags(make_flags(master=address, **flags)).resolve(address)
    trusted = MasterLink.from_flags(make_flags(master=address, ssl_ca_file=pki["ca"], **flags))
    assert trusted.resolve(address) == f"tcp://127.0.0.1:{tls_master.zmq_port}"
