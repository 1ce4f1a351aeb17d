"""Two marathon processes on a real ZooKeeper: one leads, the other proxies to it;
killing the leader moves the API to the other with apps and tasks intact, and
DELETE /v2/leader hands leadership over."""

from __future__ import annotations

import os
import signal

import pytest

from tests.marathon.conftest import Api
from tests.marathon.test_e2e_marathon import APP, no_deployments, running
from tests.support import free_port, wait_for


def _leader(api) -> str | None:
    try:
        response = api.get("/v2/leader", timeout=3)
    except Exception:
        return None
    return response.json().get("leader") if response.status_code == 200 else None


@pytest.fixture
def pair(cluster_factory, zk_url):
    """A cluster whose marathon leads, and a second marathon on the same --zk as standby."""
    common = [f"--zk={zk_url}", "--zk_session_timeout=2secs", "--min_revive_offers_interval=0.2secs",
              "--decline_offer_duration=30secs"]
    first_port, second_port = free_port(), free_port()
    cluster = cluster_factory(slaves=2, marathon_port=first_port, marathon_args=common)
    first = Api(cluster.marathon_url)
    wait_for(lambda: _leader(first) == f"127.0.0.1:{first_port}", 30, message="the first instance elected")
    second_proc = cluster._spawn("marathon2", [
        "marathon", f"--master={cluster.master}", "--hostname=127.0.0.1", f"--http_port={second_port}",
        f"--work_dir={os.path.join(cluster.work_dir, 'marathon2')}", "--logging_level=INFO", *common])
    second = Api(f"http://127.0.0.1:{second_port}")
    try:
        wait_for(lambda: _leader(second) == f"127.0.0.1:{first_port}", 30, message="the standby up")
        yield cluster, first, second, first_port, second_port
    finally:
        if second_proc.poll() is None:
            second_proc.terminate()
            second_proc.wait(15)


def test_standby_proxies_and_takes_over_when_the_leader_dies(pair):
    cluster, first, second, first_port, second_port = pair
    info = second.get("/v2/info").json()
    assert info["leader"] == f"127.0.0.1:{first_port}" and info["elected"] is True   # answered by the leader

    # Through the standby: proxied to the leader, Marathon's answer and headers intact.
    response = second.post("/v2/apps", json={"id": "/ha", "instances": 3, **APP})
    assert response.status_code == 201, response.text
    assert response.headers["Marathon-Deployment-Id"] and response.headers["Location"].endswith("/v2/apps/ha")
    assert second.post("/v2/apps", json={"id": "/ha", **APP}).status_code == 409
    before = {t["id"] for t in running(first, "/ha", 3)}
    no_deployments(second)
    version = first.get("/v2/apps/ha").json()["app"]["version"]

    cluster.marathon_proc.send_signal(signal.SIGKILL)
    cluster.marathon_proc.wait(10)
    wait_for(lambda: _leader(second) == f"127.0.0.1:{second_port}", 30, message="the standby elected")
    assert second.get("/v2/info").json()["elected"] is True
    app = wait_for(lambda: second.get("/v2/apps/ha").json().get("app"), 10, message="the app on the new leader")
    assert app["version"] == version and app["instances"] == 3
    wait_for(lambda: {t["id"] for t in second.tasks("/ha")} == before, 30, message="the same tasks adopted")
    frameworks = [f for f in cluster.state()["frameworks"] if f["name"] == "marathon"]
    assert len(frameworks) == 1 and {t["id"] for t in frameworks[0]["tasks"]} == before
    assert not frameworks[0]["completed_tasks"]

    # The old leader comes back as a standby; DELETE /v2/leader hands leadership back to it.
    cluster.start_marathon()
    wait_for(lambda: _leader(first) == f"127.0.0.1:{second_port}", 30, message="the old leader as standby")
    response = first.delete("/v2/leader")          # proxied to the leader, which abdicates
    assert response.status_code == 200 and response.json() == {"message": "Leadership abdicated"}
    wait_for(lambda: _leader(second) == f"127.0.0.1:{first_port}", 30, message="leadership handed over")
    wait_for(lambda: {t["id"] for t in first.tasks("/ha")} == before, 30, message="tasks intact after abdication")
    assert second.put("/v2/apps/ha", json={"instances": 1}).status_code == 200
    running(first, "/ha", 1)
