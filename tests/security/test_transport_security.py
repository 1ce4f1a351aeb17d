"""The ZeroMQ link under attack: encryption, the server's key, and proven principals.

Real sockets, a real CURVE handshake and the real ZAP handler. Each test is an
attack that must fail (or the honest path that must keep working beside it).
"""

import time

import pytest
import zmq

from offerd.common import curve
from offerd.common.actor import Actor
from offerd.common.credentials import Credential, new_nonce, prove
from offerd.common.transport import AUTH, AUTH_FAIL, AUTH_OK, CHALLENGE, MAGIC, PROOF, Backoff, Client, Server, encode
from offerd.proto import offerd_pb2 as pb
from tests.support import wait_for

SECRETS = {"sched": "right-secret"}


@pytest.fixture
def keys(tmp_path):
    _, secret_path = curve.generate(str(tmp_path), "server")
    return curve.load_key_pair(secret_path)


@pytest.fixture
def secure_server(keys):
    """An encrypted, authenticating server that records who sent what."""
    actor = Actor("secure-server", zmq.Context())
    received, lost = [], []
    holder = {}

    def on_message(peer, message):
        received.append((peer, holder["server"].principal(peer), message))
        holder["server"].send(peer, pb.Event(type=pb.Event.HEARTBEAT))

    holder["server"] = Server(actor, "tcp://127.0.0.1:0", [pb.Call], on_message, on_peer_lost=lost.append,
                              peer_timeout=5.0, curve_key=keys, credentials=SECRETS.get)
    actor.start()
    yield holder["server"], received, lost
    actor.stop()
    actor.join(5)


def client(port, server_key, credential=None, failures=None):
    actor = Actor("test-client", zmq.Context())
    got = []
    c = Client(actor, lambda: f"tcp://127.0.0.1:{port}", [pb.Event, pb.ProtocolError], got.append,
               heartbeat_interval=0.1, max_missed=5, backoff=Backoff(0.05, 0.2), server_key=server_key,
               credential=credential, on_auth_failed=(failures.append if failures is not None else None))
    actor.call_soon(c.start)
    actor.start()
    return actor, c, got


def stop(actor):
    actor.stop()
    actor.join(5)


def curve_dealer(port, server_public, identity: bytes | None = None):
    """A raw encrypted DEALER with a fresh key pair (and, if given, a chosen routing id)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_authenticated_client_is_known_by_its_principal(secure_server, keys):
    server, received, _ = secure_server
    actor, c, got = client(server.port, keys[0], Credential("sched", "right-secret"))
    try:
        assert wait_for(lambda: c.connected)
        assert c.principal == "sched"
        c.actor.call(c.send, pb.Call(type=pb.Call.REVIVE))
        assert wait_for(lambda: received)
        assert received[0][1] == "sched"
        assert wait_for(lambda: got)
        assert server.stats.authentications == 1
    finally:
        stop(actor)


def test_wrong_secret_is_refused_and_nothing_is_delivered(secure_server, keys):
    server, received, _ = secure_server
    failures = []
    actor, c, _ = client(server.port, keys[0], Credential("sched", "guess"), failures)
    try:
        assert wait_for(lambda: failures)
        assert "failed" in failures[0] and "sched" in failures[0]
        assert not c.connected
        assert c.actor.call(c.send, pb.Call(type=pb.Call.REVIVE)) is False
        time.sleep(0.2)
        assert received == []
        assert server.stats.authentication_failures >= 1
    finally:
        stop(actor)


def test_unknown_principal_is_refused(secure_server, keys):
    failures = []
    actor, c, _ = client(secure_server[0].port, keys[0], Credential("nobody", "x"), failures)
    try:
        assert wait_for(lambda: failures)
        assert not c.connected
    finally:
        stop(actor)


def test_unauthenticated_client_talks_but_has_no_principal(secure_server, keys):
    server, received, _ = secure_server
    actor, c, _ = client(server.port, keys[0])
    try:
        assert wait_for(lambda: c.connected)
        c.actor.call(c.send, pb.Call(type=pb.Call.REVIVE))
        assert wait_for(lambda: received)
        assert received[0][1] is None
    finally:
        stop(actor)


def test_plaintext_client_gets_nothing_from_an_encrypted_server(secure_server):
    server, received, _ = secure_server
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    sock.send_multipart([MAGIC, b"~hb"])
    sock.send_multipart(encode(pb.Call(type=pb.Call.REVIVE)))
    assert sock.poll(1000) == 0
    assert received == []
    sock.close()


def test_client_refuses_a_server_with_another_key(secure_server, tmp_path):
    # A fake master: same address, any key but the one the client was given.
    server, received, _ = secure_server
    _, other_secret = curve.generate(str(tmp_path), "impostor")
    wrong_public = curve.load_key_pair(other_secret)[0]
    actor, c, got = client(server.port, wrong_public, Credential("sched", "right-secret"))
    try:
        time.sleep(1.0)
        assert not c.connected and got == [] and received == []
    finally:
        stop(actor)


def test_a_captured_proof_cannot_be_replayed(secure_server, keys):
    server, received, _ = secure_server
    honest = curve_dealer(server.port, keys[0])
    client_nonce = new_nonce()
    honest.send_multipart([MAGIC, AUTH, b"sched", client_nonce])
    kind, challenge = honest.recv_multipart()[1:]
    assert kind == CHALLENGE
    proof = prove("right-secret", challenge, client_nonce, "sched")
    honest.send_multipart([MAGIC, PROOF, proof])
    assert honest.recv_multipart()[1] == AUTH_OK
    # An attacker who saw all of it replays the same request and proof on its own connection.
    attacker = curve_dealer(server.port, keys[0])
    attacker.send_multipart([MAGIC, AUTH, b"sched", client_nonce])
    kind, fresh = attacker.recv_multipart()[1:]
    assert kind == CHALLENGE and fresh != challenge
    attacker.send_multipart([MAGIC, PROOF, proof])
    assert attacker.recv_multipart()[1] == AUTH_FAIL
    attacker.send_multipart(encode(pb.Call(type=pb.Call.REVIVE)))
    assert wait_for(lambda: received)
    assert received[-1][1] is None  # the attacker's call carries no principal


def test_a_proof_without_a_challenge_is_refused(secure_server, keys):
    server, _, _ = secure_server
    sock = curve_dealer(server.port, keys[0])
    sock.send_multipart([MAGIC, PROOF, b"x" * 32])
    assert sock.recv_multipart()[1] == AUTH_FAIL


def test_a_connection_cannot_switch_principal(secure_server, keys):
    server, _, _ = secure_server
    sock = curve_dealer(server.port, keys[0])
    nonce = new_nonce()
    sock.send_multipart([MAGIC, AUTH, b"sched", nonce])
    challenge = sock.recv_multipart()[2]
    sock.send_multipart([MAGIC, PROOF, prove("right-secret", challenge, nonce, "sched")])
    assert sock.recv_multipart()[1] == AUTH_OK
    sock.send_multipart([MAGIC, AUTH, b"other", new_nonce()])
    reply = sock.recv_multipart()
    assert reply[1] == AUTH_FAIL and b"already authenticated" in reply[2]


def test_a_reused_routing_id_does_not_inherit_the_principal(secure_server, keys):
    server, received, lost = secure_server
    identity = b"victim-id"
    victim = curve_dealer(server.port, keys[0], identity)
    nonce = new_nonce()
    victim.send_multipart([MAGIC, AUTH, b"sched", nonce])
    challenge = victim.recv_multipart()[2]
    victim.send_multipart([MAGIC, PROOF, prove("right-secret", challenge, nonce, "sched")])
    assert victim.recv_multipart()[1] == AUTH_OK
    assert server.principal(identity) == "sched"
    victim.close()
    # The attacker learnt the routing id and connects under it with its own key.
    attacker = curve_dealer(server.port, keys[0], identity)

    def served():
        # libzmq refuses the id until the server has seen the victim's connection close.
        attacker.send_multipart(encode(pb.Call(type=pb.Call.REVIVE)))
        attacker.poll(200)
        return received

    wait_for(served, timeout=30, message="the attacker's connection to be served")
    assert received[-1][1] is None
    assert identity in lost  # the upper layer was told the old connection is gone
    assert server.stats.rebound_peers >= 1
    attacker.close()
