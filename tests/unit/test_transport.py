"""Transport: framing, refusals, heartbeats and reconnection over real sockets."""

import threading

import pytest
import zmq

from offerd.common.actor import Actor
from offerd.common.transport import MAGIC, Backoff, Client, Server, encode
from offerd.proto import offerd_pb2 as pb
from tests.support import wait_for


@pytest.fixture
def server_actor():
    actor = Actor("test-server", zmq.Context())
    received, lost = [], []
    holder = {}

    def on_message(peer, message):
        received.append((peer, message))
        holder["server"].send(peer, pb.Event(type=pb.Event.HEARTBEAT))

    holder["server"] = Server(actor, "tcp://127.0.0.1:0", [pb.Call], on_message,
                              on_peer_lost=lost.append, peer_timeout=0.5, max_message_bytes=1024)
    actor.start()
    yield holder["server"], received, lost
    actor.stop()
    actor.join(5)


def raw_dealer(port):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_round_trip_and_heartbeat_echo(server_actor):
    server, received, _ = server_actor
    sock = raw_dealer(server.port)
    sock.send_multipart(encode(pb.Call(type=pb.Call.REVIVE)))
    frames = sock.recv_multipart()
    assert frames[0] == MAGIC and frames[1] == b"offerd.v1.Event"
    assert received[0][1].type == pb.Call.REVIVE
    sock.send_multipart([MAGIC, b"~hb"])
    echo = sock.recv_multipart()
    assert echo[:2] == [MAGIC, b"~hb"] and echo[2] == server.incarnation


@pytest.mark.parametrize("frames, expected", [
    ([b"garbage"], "malformed frame"),
    ([MAGIC, b"offerd.v1.Call", b"\xff\xff\xff"], "malformed offerd.v1.Call"),
    ([MAGIC, b"offerd.v1.Nope", b""], "unknown message type"),
    ([MAGIC, b"offerd.v1.SlaveCall", b""], "unknown message type"),
    ([MAGIC, b"offerd.v1.Call", b"\x08" * 2000], "exceeds the limit of 1024 bytes"),
])
def test_bad_frames_get_a_protocol_error_and_change_nothing(server_actor, frames, expected):
    server, received, _ = server_actor
    sock = raw_dealer(server.port)
    sock.send_multipart(frames)
    reply = sock.recv_multipart()
    assert reply[1] == b"offerd.v1.ProtocolError"
    error = pb.ProtocolError.FromString(reply[2])
    assert expected in error.message
    assert received == []
    # The server still serves others.
    other = raw_dealer(server.port)
    other.send_multipart(encode(pb.Call(type=pb.Call.SUPPRESS)))
    assert other.recv_multipart()[1] == b"offerd.v1.Event"


def test_silent_peer_is_reported_lost(server_actor):
    server, _, lost = server_actor
    sock = raw_dealer(server.port)
    sock.send_multipart([MAGIC, b"~hb"])
    sock.recv_multipart()
    assert wait_for(lambda: len(lost) == 1, timeout=5)


def test_a_timed_out_peer_that_comes_back_is_told_goodbye(server_actor):
    server, _, lost = server_actor
    sock = raw_dealer(server.port)
    sock.send_multipart([MAGIC, b"~hb"])
    assert sock.recv_multipart()[1] == b"~hb"
    assert wait_for(lambda: len(lost) == 1, timeout=5)
    # Same connection, heard from again (a partition that healed): not silently revived.
    sock.send_multipart([MAGIC, b"~hb"])
    assert sock.recv_multipart() == [MAGIC, b"~bye"]
    assert not server.knows(lost[0])


def test_a_client_the_server_wrote_off_reconnects_and_connects_again():
    # The server gives up after 0.3 s of silence; this client beats every 0.5 s and would
    # itself wait 50 s: only the server's GOODBYE can tell it to start over.
    ctx = zmq.Context()
    server_actor = Actor("srv", ctx)
    lost = []
    server = Server(server_actor, "tcp://127.0.0.1:0", [pb.Call], lambda p, m: None, on_peer_lost=lost.append,
                    peer_timeout=0.3)
    server_actor.start()
    client_actor = Actor("cli", ctx)
    events = []
    client = Client(client_actor, lambda: f"tcp://127.0.0.1:{server.port}", [pb.Event], events.append,
                    on_connected=lambda: events.append("up"), on_disconnected=lambda: events.append("down"),
                    heartbeat_interval=0.5, max_missed=100, backoff=Backoff(0.05, 0.2))
    client_actor.call_soon(client.start)
    client_actor.start()
    try:
        assert wait_for(lambda: lost, timeout=10)
        assert wait_for(lambda: events[:3] == ["up", "down", "up"], timeout=10), events
    finally:
        client_actor.stop()
        server_actor.stop()
        client_actor.join(5)
        server_actor.join(5)


def test_client_connects_reconnects_and_delivers():
    ctx = zmq.Context()
    server_actor = Actor("srv", ctx)
    got = []
    server = Server(server_actor, "tcp://127.0.0.1:0", [pb.Call], lambda p, m: got.append(m))
    server_actor.start()
    port = server.port

    client_actor = Actor("cli", ctx)
    events = []
    client = Client(client_actor, lambda: f"tcp://127.0.0.1:{port}", [pb.Event], events.append,
                    on_connected=lambda: events.append("up"), on_disconnected=lambda: events.append("down"),
                    heartbeat_interval=0.1, max_missed=3, backoff=Backoff(0.05, 0.2))
    client_actor.call_soon(client.start)
    client_actor.start()
    assert wait_for(lambda: "up" in events)
    client_actor.call_soon(client.send, pb.Call(type=pb.Call.REVIVE))
    assert wait_for(lambda: len(got) == 1)

    # The server goes away: the client notices by silence and comes back when it returns.
    server_actor.stop()
    server_actor.join(5)
    assert wait_for(lambda: "down" in events, timeout=5)
    server_actor2 = Actor("srv2", ctx)
    Server(server_actor2, f"tcp://127.0.0.1:{port}", [pb.Call], lambda p, m: got.append(m))
    server_actor2.start()
    assert wait_for(lambda: events.count("up") == 2, timeout=10)
    client_actor.stop()
    server_actor2.stop()
    client_actor.join(5)
    server_actor2.join(5)


def test_backoff_is_capped_and_jittered():
    backoff = Backoff(base=0.5, cap=4.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0 < d <= 4.0 for d in delays)
    assert max(delays[6:]) > 2.0  # reached the cap's neighbourhood
    assert len(set(delays)) > 6  # jittered


def test_actor_call_runs_on_actor_thread():
    actor = Actor("a", zmq.Context())
    actor.start()
    assert actor.call(threading.current_thread) is actor._thread
    with pytest.raises(ZeroDivisionError):
        actor.call(lambda: 1 / 0)
    fired = threading.Event()
    actor.call_soon(lambda: actor.call_later(0.05, fired.set))
    assert fired.wait(2)
    actor.stop()
    actor.join(5)
