"""Fixtures for the Marathon-like framework: the Flask app in process, and a
real cluster with the real `offerd marathon` process talking HTTP."""

from __future__ import annotations


import pytest
import requests

from frameworks.marathon_like.api import create_app
from frameworks.marathon_like.core import Config, Core
from offerd.cli import secure_setup
from tests.support import free_port


@pytest.fixture
def core():
    return Core(Config(master="127.0.0.1:5050", http_port=8080))


@pytest.fixture
def client(core):
    return create_app(core).test_client()


class Api:
    """A tiny Marathon client over real HTTP; with `auth` and `ca_file`, HTTPS as that principal."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, ca_file: str | None = None):
        self.url = url
        self.session = requests.Session()
        self.session.auth = auth
        self.ca_file = ca_file

    def __getattr__(self, method):
        def call(path, **kwargs):
            kwargs.setdefault("timeout", 10)
            if self.ca_file is not None:
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
                kwargs.setdefault("verify", self.ca_file)
            return self.session.request(method.upper(), self.url + path, **kwargs)
        return call

    def tasks(self, app_id: str, state: str = "TASK_RUNNING") -> list[dict]:
        response = self.get(f"/v2/apps{app_id}/tasks")
        if response.status_code != 200:
            return []
        return [t for t in response.json()["tasks"] if state is None or t["state"] == state]


# Runs a test against an open cluster and again with all security on (HTTPS and
# Basic authentication on Marathon's API; Marathon authenticated to the master).
OPEN_AND_SECURE = pytest.mark.parametrize("marathon", ["open", "secure"], indirect=True)


@pytest.fixture
def marathon(request, cluster_factory):
    """A master, two slaves and the marathon process; yields an Api client.
    Open unless parametrized "secure"; then the client is the operator principal."""
    mode = getattr(request, "param", "open")
    if mode not in ("open", "secure"):
        raise ValueError(f"marathon: unknown mode {mode!r}; use 'open' or 'secure'")
    port = free_port()
    cluster = cluster_factory(slaves=2, marathon_port=port, secure=mode == "secure", marathon_args=[
        "--min_revive_offers_interval=0.2secs", "--decline_offer_duration=30secs", "--logging_level=INFO"])
    files = cluster.security
    if files is None:
        api = Api(cluster.marathon_url)
    else:
        api = Api(cluster.marathon_url, auth=(secure_setup.OPERATOR, files.secret(secure_setup.OPERATOR)),
                  ca_file=files.ca_file)
    api.cluster = cluster
    return api
