"""Schemathesis over every endpoint of a real master, slave and Marathon, over HTTP.

Each server is a real process started by LocalCluster; its /openapi.json is loaded
with `schemathesis.openapi.from_url`, and every operation gets valid and invalid
requests (query, path, body). Checks on every answer: no 5xx (schemathesis'
`not_a_server_error`); and a state-changing request that is refused (4xx) leaves
the state as it was (the master's /master/state, quotas and weights; Marathon's
apps and groups), compared without counters and timestamps.

Marathon runs beside its own master with no slave: the apps the fuzzer creates
are random commands, which must not run anywhere.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")

from hypothesis import Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from offerd.cli.local import LocalCluster, free_base_port  # noqa: E402
from tests.fuzz.budget import EXAMPLES, fuzz, fuzz_settings, report  # noqa: E402
from tests.support import free_port  # noqa: E402

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("http-fuzz")
    cluster = LocalCluster(slaves=1, port=free_base_port(1), work_dir=str(work), log_dir=str(work / "logs"),
                           resources="cpus:2;mem:1024;disk:1024;ports:[31000-31100]", allocation_interval=0.2,
                           master_args=["--check_invariants"])
    cluster.start(timeout=60)
    yield cluster
    cluster.stop()
    assert_accounting_held(cluster)


@pytest.fixture(scope="module")
def marathon(tmp_path_factory):
    work = tmp_path_factory.mktemp("http-fuzz-marathon")
    cluster = LocalCluster(slaves=0, port=free_base_port(0), work_dir=str(work), log_dir=str(work / "logs"),
                           marathon_port=free_port(), allocation_interval=0.2, master_args=["--check_invariants"])
    cluster.start(timeout=60)
    yield cluster
    cluster.stop()
    assert_accounting_held(cluster)


def assert_accounting_held(cluster) -> None:
    """A --check_invariants master logs every violation of its accounting it finds."""
    with open(os.path.join(cluster.log_dir, "master.log"), errors="replace") as log:
        violated = [line for line in log if "accounting invariant violated" in line]
    assert violated == [], violated[:10]


def master_fingerprint(base: str) -> dict:
    """What a refused request must not change: who is registered, what runs, quotas, weights."""
    state = _get(f"{base}/master/state")
    return {
        "frameworks": sorted((f["id"], f.get("active"), tuple(f.get("roles", []))) for f in state["frameworks"]),
        "completed_frameworks": sorted(f["id"] for f in state.get("completed_frameworks", [])),
        "slaves": sorted((s["id"], json.dumps(s.get("resources"), sort_keys=True), s.get("active"))
                         for s in state["slaves"]),
        "tasks": sorted((t["id"], t["state"]) for f in state["frameworks"] for t in f.get("tasks", [])),
        "quota": _get(f"{base}/quota"),
        "weights": _get(f"{base}/weights"),
    }


def slave_fingerprint(base: str) -> dict:
    state = _get(f"{base}/state")
    return {"id": state.get("id"), "frameworks": sorted(f["id"] for f in state.get("frameworks", []))}


def marathon_fingerprint(base: str) -> dict:
    apps = _get(f"{base}/v2/apps")["apps"]
    root = _get(f"{base}/v2/groups")
    return {"apps": sorted((a["id"], a.get("version"), a.get("instances"), a.get("cmd")) for a in apps),
            "root_version": root.get("version")}


class Tally:
    def __init__(self):
        self.inputs = self.rejected = self.server_errors = 0
        self.failures: list[str] = []


def run_operation(operation, base: str, fingerprint, tally: Tally, per_mode: int) -> None:
    """Valid, then invalid, requests for one operation, each checked as it comes back."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @given(case=operation.as_strategy(generation_mode=mode))
        @fuzz(per_mode)
        def one_request(case):
            write = case.method.upper() in WRITES
            before = fingerprint(base) if write else None
            response = case.call(base_url=base, timeout=15)
            tally.inputs += 1
            where = (f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r} "
                     f"-> {response.status_code} {response.text[:300]!r}")
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception:  # schemathesis' FailureGroup
                tally.server_errors += 1
                tally.failures.append(where)
                raise
            if 400 <= response.status_code < 500:
                tally.rejected += 1
                if write:
                    after = fingerprint(base)
                    assert after == before, f"a refused request changed the state: {where}"

        try:
            one_request()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): the valid requests were the test.
            if mode is GenerationMode.POSITIVE:
                raise


def fuzz_schema(target: str, base: str, fingerprint) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{target}: /openapi.json names no operation"
    per_mode = max(1, EXAMPLES // (2 * len(operations)))
    tally = Tally()
    try:
        for operation in operations:
            run_operation(operation, base, fingerprint, tally, per_mode)
    finally:
        report(f"http:{target}", tally.inputs, tally.rejected, tally.server_errors,
               operations=len(operations))
    assert tally.server_errors == 0, tally.failures


def test_master_endpoints(cluster):
    fuzz_schema("master", cluster.master_url, master_fingerprint)
    assert urllib.request.urlopen(f"{cluster.master_url}/health", timeout=5).status == 200


def test_slave_endpoints(cluster):
    base = f"http://{cluster.ip}:{cluster.slave_port(0)}"
    fuzz_schema("slave", base, slave_fingerprint)
    assert urllib.request.urlopen(f"{base}/health", timeout=5).status == 200


def test_marathon_endpoints(marathon):
    fuzz_schema("marathon", marathon.marathon_url, marathon_fingerprint)
    assert urllib.request.urlopen(f"{marathon.marathon_url}/ping", timeout=5).status == 200


# Inputs the fuzzer found, kept as regressions: each was a 500 or an accepted absurdity.
FOUND = [
    ("PUT", "/master/weights", [{"role": 87178291199, "weight": False}]),  # role not a string: 500
    ("PUT", "/weights", [{"role": [], "weight": 1}]),                     # unhashable role: 500
    ("PUT", "/weights", [{"role": "dev", "weight": 1e400}]),              # infinite weight: accepted
]


@pytest.mark.parametrize("method,path,body", FOUND)
def test_found_inputs_are_refused_and_change_nothing(cluster, method, path, body):
    base = cluster.master_url
    before = master_fingerprint(base)
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400, refused.value.read()
    assert master_fingerprint(base) == before


def _with_app_links(document: dict) -> dict:
    """Marathon's document plus OpenAPI links from a created app to what can be done
    with it, so the state machine below chains create -> read/change/delete."""
    app = "$response.body#/id"
    targets = {"GetApp": ("/v2/apps/{appId}", "get"), "UpdateApp": ("/v2/apps/{appId}", "put"),
               "DeleteApp": ("/v2/apps/{appId}", "delete"), "AppTasks": ("/v2/apps/{appId}/tasks", "get"),
               "AppVersions": ("/v2/apps/{appId}/versions", "get"),
               "RestartApp": ("/v2/apps/{appId}/restart", "post")}
    links = {name: {"operationRef": "#/paths/" + path.replace("/", "~1") + "/" + method,
                    "parameters": {"appId": app}} for name, (path, method) in targets.items()}
    for code in ("200", "201"):
        response = document["paths"]["/v2/apps"]["post"]["responses"].get(code)
        if response is not None:
            response["links"] = links
    return document


def _send(method: str, url: str) -> None:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=15).close()
    except urllib.error.HTTPError:
        pass  # already gone


def reset_marathon(base: str) -> None:
    """Back to no apps and no groups, so each scenario starts where the last one did
    (hypothesis replays choices and expects the same answers to them)."""
    for group in _get(f"{base}/v2/groups").get("groups", []):
        _send("DELETE", f"{base}/v2/groups{urllib.parse.quote(group['id'])}?force=true")
    for app in _get(f"{base}/v2/apps")["apps"]:
        _send("DELETE", f"{base}/v2/apps{urllib.parse.quote(app['id'])}?force=true")


def reset_master(base: str) -> None:
    for info in _get(f"{base}/quota").get("infos", []):
        _send("DELETE", f"{base}/quota/{urllib.parse.quote(info['role'])}")


def run_state_machine(target: str, base: str, document: dict, reset) -> None:
    """Schemathesis' state machine over the document's OpenAPI links; no 5xx on any step."""
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base)
    tally = Tally()

    class Lifecycles(schema.as_state_machine()):
        def call(self, case, **kwargs):
            response = case.call(base_url=base, timeout=15)
            tally.inputs += 1
            tally.rejected += 400 <= response.status_code < 500
            return response

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=[not_a_server_error])

        def teardown(self):
            reset(base)

    try:
        # No shrinking: a live server's state has moved on, so a replay would differ
        # (hypothesis calls that flaky) and hide the failure itself.
        Lifecycles.run(settings=settings(fuzz_settings(max(5, EXAMPLES // 10)),
                                         phases=[Phase.explicit, Phase.reuse, Phase.generate]))
    finally:
        report(f"http:{target}-stateful", tally.inputs, tally.rejected, 0)
    assert tally.inputs > 0


def test_marathon_stateful_app_lifecycles(marathon):
    base = marathon.marathon_url
    run_state_machine("marathon", base, _with_app_links(_get(f"{base}/openapi.json")), reset_marathon)
    assert urllib.request.urlopen(f"{base}/ping", timeout=5).status == 200


def test_master_stateful_quota_and_weights(cluster):
    base = cluster.master_url
    run_state_machine("master", base, _get(f"{base}/openapi.json"), reset_master)
    assert urllib.request.urlopen(f"{base}/health", timeout=5).status == 200
