"""Pipelined calls of Mesos' v1 scheduler HTTP API: the master's answers to
requests written back to back on one connection, its calls on verified streams
(offerd.master.scheduler_http), and the SDK's sender
(offerd.framework_sdk._http_calls) against a server that breaks connections."""

from __future__ import annotations

import json
import queue
import socket
import threading
import urllib.parse

import requests

from offerd.framework_sdk._http_calls import Call, CallSender
from tests.integration.test_scheduler_http_api import JSON, V1Scheduler, _info, refused, refuses_the_callers_mistakes
from tests.support import wait_for


def _request(url: str, stream_id: str | None, call: dict, content_type: str = JSON) -> bytes:
    netloc = urllib.parse.urlsplit(url).netloc
    body = json.dumps(call).encode()
    stream = f"Mesos-Stream-Id: {stream_id}\r\n" if stream_id else ""
    return (f"POST /api/v1/scheduler HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: {content_type}\r\n{stream}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _read_message(rfile) -> tuple[bytes, bytes]:
    """One HTTP request or response with a Content-Length: (first line, body);
    the first line is empty at the end of the connection."""
    first = rfile.readline()
    length = 0
    while first and (line := rfile.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return first, rfile.read(length)


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` answers read in order from one connection: (status, body)."""
    rfile = sock.makefile("rb")
    answers = []
    for _ in range(count):
        status_line, body = _read_message(rfile)
        answers.append((int(status_line.split()[1]), body))
    return answers


def _reconcile(framework_id: str, task_id: str) -> dict:
    return {"type": "RECONCILE", "framework_id": {"value": framework_id},
            "reconcile": {"tasks": [{"task_id": {"value": task_id}}]}}


def test_pipelined_calls_are_answered_and_taken_in_order(cluster_factory):
    cluster = cluster_factory(slaves=1)
    http = V1Scheduler(cluster.master_url)
    try:
        http.subscribe(_info("pipelined"))
        url = urllib.parse.urlsplit(http.url)
        calls = [_reconcile(http.framework_id, f"r{index}") for index in range(20)]
        wrong = _reconcile("no-such-framework", "never")
        requests_ = [_request(http.url, http.stream_id, call) for call in calls]
        # A refused call in the middle: answered in its place; the rest go on.
        requests_.insert(7, _request(http.url, http.stream_id, wrong))
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(b"".join(requests_))  # all written before any answer is read
            answers = _read_answers(sock, len(requests_))
        statuses = [status for status, _ in answers]
        assert statuses == [202] * 7 + [400] + [202] * 13, answers
        assert b"cannot be found" in answers[7][1]
        # The master took them in the order they were written: the reconciliation
        # answers come in that order.
        seen = [http.wait("UPDATE")["update"]["status"]["task_id"]["value"] for _ in calls]
        assert seen == [f"r{index}" for index in range(20)]
    finally:
        http.close()


def test_bad_input_on_a_verified_stream_is_answered_as_before(cluster_factory):
    cluster = cluster_factory(slaves=1)
    http = V1Scheduler(cluster.master_url)
    other = V1Scheduler(cluster.master_url)
    try:
        http.subscribe(_info("verified"))
        other.subscribe(_info("other"))
        # One call passes the master's checks: the stream is verified from now on.
        http.accepted({"type": "REVIVE"})
        http.accepted({"type": "REVIVE"})

        refuses_the_callers_mistakes(http, other)
        refused(requests.post(http.url, data=b'{"type": "REVIVE", ', headers={
            "Content-Type": JSON, "Mesos-Stream-Id": http.stream_id}), 400, "invalid JSON")
        # Still verified after all that; then a failover ends the stream, and its id no longer passes.
        http.accepted({"type": "REVIVE"})
        old_stream = http.stream_id
        http.close()
        http.subscribe(_info("verified"), framework_id=http.framework_id)
        assert http.stream_id != old_stream
        refused(http.call({"type": "REVIVE"}, stream_id=old_stream), 400, "didn't match")
        http.accepted({"type": "REVIVE"})
    finally:
        http.close()
        other.close()


class _BreakingServer:
    """A real HTTP/1.1 server on a socket that answers the first `answer[n]`
    requests of its n-th connection with 202 and then closes it (None: all)."""

    def __init__(self, answer: list[int | None]):
        self.answer = answer
        self.received: list[list[bytes]] = []  # bodies, per connection
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        for limit in self.answer:
            conn, _ = self.listener.accept()
            bodies: list[bytes] = []
            self.received.append(bodies)
            rfile = conn.makefile("rb")
            while limit is None or len(bodies) < limit:
                request_line, body = _read_message(rfile)
                if not request_line:
                    break
                bodies.append(body)
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            if limit is not None:
                # Take what else was sent, unanswered, then drop the connection.
                conn.settimeout(0.5)
                try:
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass
            rfile.close()
            conn.close()


def _sender(server: _BreakingServer):
    refusals: queue.Queue = queue.Queue()
    failed: queue.Queue = queue.Queue()
    sender = CallSender("test", None, None, on_refused=lambda *report: refusals.put(report),
                        on_failed=lambda *report: failed.put(report), window=8)
    return sender, refusals, failed


def _calls(url: str, count: int) -> list[Call]:
    return [Call(1, url, "stream", f"CALL{index}", f"body-{index}".encode()) for index in range(count)]


def test_calls_in_flight_on_a_closed_connection_are_sent_once_more():
    # Three answered, the connection closed with five unanswered; all on the next one.
    server = _BreakingServer([3, None])
    sender, refusals, failed = _sender(server)
    for call in _calls(server.url, 8):
        sender.put([call])
    wait_for(lambda: len(server.received) == 2 and len(server.received[1]) == 5, timeout=20)
    sender.close(10)
    first, second = server.received
    assert first[:3] == [b"body-0", b"body-1", b"body-2"]
    # Each unanswered call once more, in order; none that was answered.
    assert second == [f"body-{index}".encode() for index in range(3, 8)]
    assert refusals.empty() and failed.empty()


def test_calls_unanswered_twice_are_reported_not_dropped(caplog):
    # The resent calls meet a closed connection again: each is reported, once.
    server = _BreakingServer([2, 0, 0])
    sender, refusals, failed = _sender(server)
    calls = _calls(server.url, 6)
    sender.put(calls[:3])
    sender.put(calls[3:])
    wait_for(lambda: failed.qsize() == 4, timeout=20)
    sender.close(10)
    reports = [failed.get() for _ in range(4)]
    assert [(generation, kind) for generation, kind, _ in reports] == [(1, f"CALL{index}") for index in range(2, 6)]
    assert failed.empty() and refusals.empty()
    assert server.received[0][:2] == [b"body-0", b"body-1"]
    assert all(f"CALL{index}" in caplog.text for index in range(2, 6))
