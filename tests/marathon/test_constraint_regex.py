"""LIKE/UNLIKE patterns run on RE2 (linear time), are bounded in length, and
keep Marathon's meaning (the pattern matches the whole value). A pattern that
makes Python's re backtrack for ages, `(a+)+$` against `aaa…b`, completes with
the right answer: here in the constraint checker, through the API's validation,
and on a real cluster whose slave carries such a value."""

from __future__ import annotations

import pytest

from frameworks.marathon_like import constraints
from frameworks.marathon_like.validation import constraint_errors
from tests.marathon.conftest import Api
from tests.support import free_port, wait_for

CATASTROPHIC = "(a+)+$"
# Python's re needs about 2**n steps for this; RE2 reads it once.
LONG_VALUE = "a" * 20000 + "b"
APP = {"cpus": 0.1, "mem": 16, "cmd": "sleep 600", "instances": 1}


def _check(operator, pattern, value):
    return constraints.check([["rack", operator, pattern]], "host-1", {"rack": value}, [])


def test_catastrophic_pattern_completes_with_the_right_answer():
    reason = _check("LIKE", CATASTROPHIC, LONG_VALUE)
    assert reason.startswith("LIKE: aaaa") and "(20001 characters)" in reason
    assert _check("UNLIKE", CATASTROPHIC, LONG_VALUE) is None
    assert _check("LIKE", CATASTROPHIC, "a" * 20000) is None
    assert _check("UNLIKE", CATASTROPHIC, "a" * 20000).startswith("UNLIKE:")


@pytest.mark.parametrize("pattern, value, fits", [
    ("rack-[0-9]+", "rack-12", True),
    ("rack-[0-9]", "rack-12", False),     # the whole value, not a prefix
    ("rack", "rack-1", False),
    ("1|2", "12", False),                 # alternation anchored as a whole
    ("r.*", "rack", True),
    ("", "", True),
])
def test_like_matches_the_whole_value_as_marathon(pattern, value, fits):
    assert (_check("LIKE", pattern, value) is None) is fits
    assert (_check("UNLIKE", pattern, value) is None) is not fits


def test_patterns_are_bounded_and_must_be_re2():
    assert constraint_errors(["rack", "LIKE", "a" * constraints.MAX_PATTERN]) == []
    too_long = constraint_errors(["rack", "LIKE", "a" * (constraints.MAX_PATTERN + 1)])
    assert too_long == [f"LIKE: the pattern is {constraints.MAX_PATTERN + 1} characters long; "
                        f"at most {constraints.MAX_PATTERN} are allowed"]
    backreference = constraint_errors(["rack", "UNLIKE", r"(a)\1"])
    assert "not a valid regular expression" in backreference[0] and "RE2" in backreference[0]
    assert "lookaround" in constraint_errors(["rack", "LIKE", "(?=a)a"])[0]
    assert constraint_errors(["rack", "LIKE", CATASTROPHIC]) == []


def test_a_stored_pattern_re2_cannot_use_never_matches_and_never_raises():
    """An app stored before patterns were checked: its LIKE waits, with a reason; no crash under the lock."""
    assert _check("LIKE", r"(a)\1", "aa") == r"LIKE: (a)\1 is not a usable pattern"
    assert _check("UNLIKE", r"(a)\1", "aa") == r"UNLIKE: (a)\1 is not a usable pattern"


def test_the_api_refuses_bad_patterns_with_the_field_path(client):
    bad = {"id": "/bad", **APP, "constraints": [["rack", "LIKE", "x" * 2000]]}
    answer = client.post("/v2/apps", json=bad)
    assert answer.status_code == 422
    details = answer.get_json()["details"]
    assert details[0]["path"] == "/constraints(0)" and "at most 1024" in details[0]["errors"][0]
    lookbehind = [["rack", "LIKE", "ok"], ["rack", "UNLIKE", "(?<=a)b"]]
    answer = client.post("/v2/apps", json={**bad, "constraints": lookbehind})
    assert answer.status_code == 422
    assert answer.get_json()["details"][0]["path"] == "/constraints(1)"
    assert client.get("/v2/apps/bad").status_code == 404


def test_long_label_selectors_are_refused_and_linear(client):
    assert client.post("/v2/apps", json={"id": "/labelled", **APP, "labels": {"tier": "web"}}).status_code == 201
    assert [a["id"] for a in client.get("/v2/apps?label=tier in (web, db)").get_json()["apps"]] == ["/labelled"]
    # A long run of spaces: quadratic backtracking for Python's re, one pass for RE2.
    answer = client.get("/v2/apps", query_string={"label": "t" + " " * 4000 + "x"})
    assert answer.status_code == 200 and answer.get_json()["apps"] == []
    answer = client.get("/v2/apps", query_string={"label": "t" * 5000})
    assert answer.status_code == 400 and "at most 4096" in answer.get_json()["message"]


def test_on_a_cluster_the_slave_value_is_judged_and_marathon_keeps_answering(cluster_factory):
    port = free_port()
    cluster = cluster_factory(slaves=1, marathon_port=port, slave_args=[f"--attributes=rack:{LONG_VALUE}"],
                              marathon_args=["--min_revive_offers_interval=0.2secs"])
    api = Api(cluster.marathon_url)
    assert api.post("/v2/apps", json={"id": "/like", **APP, "constraints": [["rack", "LIKE", CATASTROPHIC]]}
                    ).status_code == 201
    assert api.post("/v2/apps", json={"id": "/unlike", **APP, "constraints": [["rack", "UNLIKE", CATASTROPHIC]]}
                    ).status_code == 201
    wait_for(lambda: api.tasks("/unlike"), timeout=60, message="the UNLIKE app running on the slave")

    def like_waits_for_its_constraint():
        queue = api.get("/v2/queue").json()["queue"]
        entry = next((q for q in queue if q.get("app", {}).get("id") == "/like"), None)
        summary = (entry or {}).get("processedOffersSummary", {}).get("rejectSummaryLastOffers", [])
        return any(r["reason"] == "UnfulfilledConstraint" and r["declined"] > 0 for r in summary)

    wait_for(like_waits_for_its_constraint, timeout=60, message="/like declined for its constraint")
    assert api.tasks("/like") == []
    assert api.get("/v2/apps").status_code == 200
