"""Schema-driven fuzzing: schemathesis generates requests from /openapi.json (valid
and invalid ones) and sends them to the Flask app; no answer may be a 5xx.

Bounded: a fixed number of examples per operation, derandomized, well under a minute.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")

from hypothesis import HealthCheck, settings  # noqa: E402

from frameworks.marathon_like.api import create_app  # noqa: E402
from frameworks.marathon_like.core import Config, Core  # noqa: E402

CORE = Core(Config())
APP = create_app(CORE)
# Something to find: an app with a task-free deployment, a group, a version to roll back to.
CORE.create_app({"id": "/fuzz/app", "cmd": "sleep 1", "instances": 0, "cpus": 0.1, "mem": 16})

schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    assert response.status_code < 500, (f"{case.method} {case.formatted_path} "
                                        f"body={case.body!r} query={case.query!r} -> "
                                        f"{response.status_code} {response.text[:500]}")
