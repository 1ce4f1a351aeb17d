"""/v2/events cannot starve the API: streams are capped below the HTTP server's
worker threads, the ones beyond the cap get 503, and a consumer that falls too
far behind is dropped instead of buffered without bound. Real HTTP clients
against the Marathon service on its real HTTP server."""

from __future__ import annotations

import contextlib

import pytest
import requests

from frameworks.marathon_like.core import Config
from frameworks.marathon_like.events import EventBus, TooManyStreams
from frameworks.marathon_like.service import HTTP_THREADS, MarathonService, http_threads
from tests.support import wait_for

APP = {"id": "/during-streams", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 0}
# Far beyond any answer's time here, so a starved API shows as a failure, not a slow pass.
TIMEOUT = 30


@pytest.fixture
def marathon():
    service = MarathonService(Config(master="127.0.0.1:1", http_port=0)).start()
    yield service, f"http://127.0.0.1:{service.http.port}"
    service.stop(failover=True)


def _open_stream(base: str) -> requests.Response:
    """An event stream that has begun (its first event read), or the refusal."""
    response = requests.get(base + "/v2/events", stream=True, timeout=TIMEOUT,
                            headers={"Accept": "text/event-stream"})
    if response.status_code == 200:
        # Kept on the response: a line iterator dropped early closes the connection under it.
        response.lines = response.iter_lines()
        assert next(response.lines) == b"event: event_stream_attached"
    return response


def test_streams_beyond_the_cap_get_503_and_the_api_keeps_answering(marathon):
    service, base = marathon
    cap = service.core.config.max_event_streams
    assert cap <= http_threads(service.core.config) // 2   # the default leaves half the workers
    with contextlib.ExitStack() as open_streams:
        answers = [open_streams.enter_context(_open_stream(base)) for _ in range(HTTP_THREADS + 2)]
        accepted = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert len(accepted) == cap
        assert {a.status_code for a in refused} == {503}
        assert refused[0].json()["message"].startswith(f"too many event streams ({cap} open)")
        # Every accepted stream is still open, and the API answers.
        assert service.core.events.streams == cap
        assert requests.get(base + "/ping", timeout=TIMEOUT).status_code == 200
        assert requests.get(base + "/v2/apps", timeout=TIMEOUT).status_code == 200
        created = requests.post(base + "/v2/apps", json=APP, timeout=TIMEOUT)
        assert created.status_code == 201, created.text
        assert requests.get(base + "/v2/apps/during-streams", timeout=TIMEOUT).status_code == 200
        metrics = requests.get(base + "/metrics", timeout=TIMEOUT).json()
        assert metrics["gauges"]["offerd.marathon.events.streams"]["value"] == cap
    # The clients closed their streams: the slots come back.
    wait_for(lambda: service.core.events.streams == 0, timeout=TIMEOUT, message="the stream slots freed")
    with _open_stream(base) as again:
        assert again.status_code == 200


def test_a_stream_sees_events_from_the_api(marathon):
    service, base = marathon
    with _open_stream(base) as stream:
        assert requests.post(base + "/v2/apps", json={**APP, "id": "/seen"}, timeout=TIMEOUT).status_code == 201
        wait_for(lambda: next(stream.lines) == b"event: api_post_event", timeout=TIMEOUT, interval=0,
                 message="the api_post_event on the stream")


def test_a_consumer_that_falls_behind_is_dropped_not_buffered():
    bus = EventBus()
    slow = bus.open_stream((), max_streams=2, max_outstanding=3)
    for _ in range(10):
        bus.publish("deployment_info")
    assert slow.overflowed
    assert slow.queue.qsize() == 3          # never more than the bound buffered
    other = bus.open_stream((), max_streams=2, max_outstanding=3)
    with pytest.raises(TooManyStreams, match=r"too many event streams \(2 open\)"):
        bus.open_stream((), max_streams=2, max_outstanding=3)
    slow.close()
    slow.close()                             # the stream's end and the server's close both call it
    assert bus.streams == 1
    bus.open_stream((), max_streams=2, max_outstanding=3)
    other.close()
    assert bus.streams == 1
