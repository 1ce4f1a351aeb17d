"""Fixtures for the Marathon-like framework: the Flask app in process, and a
real cluster with the real `offerd marathon` process talking HTTP."""

from __future__ import annotations

import socket

import pytest
import requests

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.core import Config, Core


@pytest.fixture
def core():
    return Core(Config(master="127.0.0.1:5050", http_port=8080))


@pytest.fixture
def client(core):
    return create_app(core).test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """A tiny Marathon client over real HTTP."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def __getattr__(self, method):
        def call(path, **kwargs):
            kwargs.setdefault("timeout", 10)
            return self.session.request(method.upper(), self.url + path, **kwargs)
        return call

    def tasks(self, app_id: str, state: str = "TASK_RUNNING") -> list[dict]:
        response = self.get(f"/v2/apps{app_id}/tasks")
        if response.status_code != 200:
            return []
        return [t for t in response.json()["tasks"] if state is None or t["state"] == state]


@pytest.fixture
def marathon(cluster_factory):
    """A master, two slaves and the marathon process; yields an Api client."""
    port = free_port()
    cluster = cluster_factory(slaves=2, marathon_port=port, marathon_args=[
        "--min_revive_offers_interval=0.2secs", "--decline_offer_duration=30secs", "--logging_level=INFO"])
    api = Api(cluster.marathon_url)
    api.cluster = cluster
    return api
