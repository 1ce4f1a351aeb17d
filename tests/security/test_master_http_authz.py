"""The master's HTTP API under attack: who may tear down, set quota and weights,
mark slaves gone, read flags, and see whose frameworks and tasks.

A real in-process Master with --credentials, --authenticate_http_readwrite and
--acls serves real HTTP; raw ZeroMQ peers play the slaves and schedulers (so
frameworks and tasks exist). Every refusal test also checks nothing changed.
"""

from __future__ import annotations

import getpass
import json

import pytest
import requests

from offerd.common import recordio
from offerd.master.daemon import Master
from offerd.master.flags import master_flags
from offerd.proto import offerd_pb2 as pb
from tests.integration.test_master_protocol import FakeSlave, Scheduler, task

pytestmark = pytest.mark.timeout(60)

SECRETS = {"admin": "admin-secret", "alice": "alice-secret", "ops": "ops-secret", "bob": "bob-secret"}
ANY, NONE = {"type": "ANY"}, {"type": "NONE"}


def only(*values):
    return {"values": list(values)}


# Mesos' format. Each action: what admin may, what the others may, then "nobody else".
ACLS = {
    "permissive": True,
    "teardown_frameworks": [
        {"principals": only("admin"), "framework_principals": ANY},
        {"principals": only("alice"), "framework_principals": only("alice")},
        {"principals": ANY, "framework_principals": NONE},
    ],
    "update_quotas": [{"principals": only("admin"), "roles": ANY}, {"principals": ANY, "roles": NONE}],
    "get_quotas": [{"principals": only("admin"), "roles": ANY}, {"principals": only("alice"), "roles": only("dev")},
                   {"principals": ANY, "roles": NONE}],
    "update_weights": [{"principals": only("admin"), "roles": ANY}, {"principals": only("ops"), "roles": only("dev")},
                       {"principals": ANY, "roles": NONE}],
    "view_roles": [{"principals": only("admin", "ops"), "roles": ANY},
                   {"principals": only("alice"), "roles": only("dev")}, {"principals": ANY, "roles": NONE}],
    "mark_agents_gone": [{"principals": only("admin"), "agents": ANY}, {"principals": ANY, "agents": NONE}],
    "view_flags": [{"principals": only("admin"), "flags": ANY}, {"principals": ANY, "flags": NONE}],
    "view_frameworks": [{"principals": only("admin", "ops"), "users": ANY},
                        {"principals": only("alice"), "users": only("alice")}, {"principals": ANY, "users": NONE}],
    "view_tasks": [{"principals": only("admin", "ops"), "users": ANY},
                   {"principals": only("alice"), "users": only("alice")}, {"principals": ANY, "users": NONE}],
    "view_executors": [{"principals": only("admin", "ops"), "users": ANY},
                       {"principals": only("alice"), "users": only("alice")}, {"principals": ANY, "users": NONE}],
    "access_sandboxes": [{"principals": only("admin"), "users": ANY},
                         {"principals": only("alice"), "users": only("alice")}, {"principals": ANY, "users": NONE}],
}


class Client:
    """HTTP to the master as one principal (None: no credentials)."""

    def __init__(self, master: Master, principal: str | None, secret: str | None = None):
        self.base = f"http://127.0.0.1:{master.http_port}"
        self.auth = (principal, secret or SECRETS[principal]) if principal else None

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, self.base + path, auth=self.auth, **kwargs)

    def get(self, path: str, **params) -> requests.Response:
        return self.request("GET", path, params=params)


def subscribe(sched: Scheduler, name: str, user: str, principal: str, roles=("*",)) -> str:
    info = pb.FrameworkInfo(name=name, user=user, principal=principal, failover_timeout=3600)
    info.roles.extend(roles)
    sched.send(pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(framework_info=info)))
    event = sched.expect(lambda m: isinstance(m, pb.Event) and m.type in (pb.Event.SUBSCRIBED, pb.Event.ERROR))
    assert event.type == pb.Event.SUBSCRIBED, event
    sched.framework_id = event.subscribed.framework_id.value
    return sched.framework_id


def launch(sched: Scheduler, slaves: dict[str, FakeSlave], tasks: dict[str, str | None]) -> None:
    """Launch tasks (id -> CommandInfo.user or None) on the first offer; the slave
    that gets them keeps them STAGING."""
    offer = sched.offers()[0]
    infos = []
    for task_id, user in tasks.items():
        infos.append(task(task_id, "cpus:0.5;mem:64"))
        if user is not None:
            infos[-1].command.user = user
    sched.accept([offer.id.value], infos)
    runs = slaves[offer.slave_id.value].run_tasks()
    assert {run.task.task_id.value for run in runs} == set(tasks)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    work = tmp_path_factory.mktemp("master-authz")
    credentials = work / "credentials.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in SECRETS.items()]}))
    master = Master(master_flags(
        port=0, work_dir=str(work), credentials=str(credentials), authenticate_http_readwrite=True,
        acls=json.dumps(ACLS), allocation_interval="50ms", framework_timeout="60secs")).start()
    peers = []
    try:
        slaves = {}
        for hostname in ("h1", "h2"):
            slave = FakeSlave(master)
            peers.append(slave)
            slaves[slave.register(hostname=hostname)] = slave
        alice, bob = Scheduler(master), Scheduler(master)
        peers += [alice, bob]
        subscribe(alice, "alice-web", "alice", "alice")
        subscribe(bob, "bob-batch", "bob", "bob")
        launch(alice, slaves, {"alice-task": None, "carol-task": "carol"})  # carol's: run as carol
        launch(bob, slaves, {"bob-task": None})
        yield master, alice.framework_id, bob.framework_id, list(slaves)
    finally:
        for peer in peers:
            peer.close()
        master.stop()


def framework_ids(response: requests.Response, group: str = "frameworks") -> set[str]:
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()[group]}


def active_framework_ids(master) -> set[str]:
    return framework_ids(Client(master, "admin").get("/master/frameworks"))


# -- authentication ----------------------------------------------------------------------


WRITES = [
    ("POST", "/master/teardown", {"data": {"frameworkId": "x"}}),
    ("POST", "/teardown", {"data": {"frameworkId": "x"}}),
    ("POST", "/quota", {"json": {"role": "dev", "guarantee": "cpus:1"}}),
    ("DELETE", "/quota/dev", {}),
    ("PUT", "/weights", {"json": [{"role": "dev", "weight": 2}]}),
    ("POST", "/api/v1", {"json": {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "x"}}}}),
]


@pytest.mark.parametrize("method, path, body", WRITES)
def test_writes_without_credentials_are_401(secured, method, path, body):
    master, alice_fw, bob_fw, slave_ids = secured
    before = Client(master, "admin").get("/weights").json(), Client(master, "admin").get("/quota").json()
    for client in (Client(master, None), Client(master, "admin", "wrong-secret"), Client(master, "mallory", "x")):
        response = client.request(method, path, **body)
        assert response.status_code == 401, (client.auth, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert (Client(master, "admin").get("/weights").json(), Client(master, "admin").get("/quota").json()) == before
    assert {alice_fw, bob_fw} <= active_framework_ids(master)


# -- operator calls a principal may not make ---------------------------------------------


def test_teardown_refused_by_acl_keeps_the_framework(secured):
    master, alice_fw, bob_fw, _ = secured
    for principal, framework_id in (("ops", alice_fw), ("ops", bob_fw), ("alice", bob_fw), ("bob", bob_fw)):
        response = Client(master, principal).request("POST", "/master/teardown", data={"frameworkId": framework_id})
        assert response.status_code == 403, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "'teardown_frameworks'" in response.text and f"principal '{principal}'" in response.text
    assert {alice_fw, bob_fw} <= active_framework_ids(master)


def test_quota_changes_refused_by_acl(secured):
    master, *_ = secured
    admin = Client(master, "admin")
    assert admin.request("POST", "/quota", json={"role": "prod", "guarantee": "cpus:1;mem:64"}).status_code == 200
    before = admin.get("/quota").json()
    for principal in ("alice", "ops"):
        client = Client(master, principal)
        refused = [client.request("POST", "/quota", json={"role": "dev", "guarantee": "cpus:1"}),
                   client.request("POST", "/quota", json={"role": "prod", "guarantee": "cpus:2", "force": True}),
                   client.request("DELETE", "/quota/prod")]
        for response in refused:
            assert response.status_code == 403 and "'update_quotas'" in response.text, response.text
            assert f"principal '{principal}'" in response.text
    assert admin.get("/quota").json() == before
    assert admin.request("DELETE", "/quota/prod").status_code == 200
    assert admin.get("/quota").json()["infos"] == []


def test_weights_are_all_or_nothing(secured):
    master, *_ = secured
    admin, ops = Client(master, "admin"), Client(master, "ops")
    assert admin.request("PUT", "/weights", json=[{"role": "dev", "weight": 2}, {"role": "prod", "weight": 3}]
                         ).status_code == 200
    before = admin.get("/weights").json()
    # ops may weigh dev but not prod: the request is refused whole, dev is not changed either.
    response = ops.request("PUT", "/weights", json=[{"role": "dev", "weight": 7}, {"role": "prod", "weight": 9}])
    assert response.status_code == 403 and "'update_weights'" in response.text and "'prod'" in response.text
    assert Client(master, "alice").request("PUT", "/weights", json=[{"role": "dev", "weight": 5}]).status_code == 403
    assert admin.get("/weights").json() == before
    assert master.allocator.weights()["dev"] == 2.0
    # Hostile bodies: refused with a clear 400, nothing changes.
    assert ops.request("PUT", "/weights", json=[{"role": ["dev"], "weight": 1}]).status_code == 400
    assert ops.request("PUT", "/weights", data="not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert admin.get("/weights").json() == before
    # What ops may do, it can.
    assert ops.request("PUT", "/weights", json=[{"role": "dev", "weight": 4}]).status_code == 200
    assert {"role": "dev", "weight": 4} in admin.get("/weights").json()


def test_mark_gone_refused_by_acl_keeps_the_slave(secured):
    master, _, _, slave_ids = secured
    call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": slave_ids[0]}}}
    for principal in ("alice", "ops"):
        response = Client(master, principal).request("POST", "/api/v1", json=call)
        assert response.status_code == 403, response.text
        assert "'mark_agents_gone'" in response.text and f"principal '{principal}'" in response.text
    slaves = {s["id"]: s for s in Client(master, "admin").get("/master/slaves").json()["slaves"]}
    assert slaves[slave_ids[0]]["active"]
    hostile = Client(master, "admin").request("POST", "/api/v1", json={"type": "MARK_AGENT_GONE",
                                                                       "mark_agent_gone": ["x"]})
    assert hostile.status_code == 400 and "agent_id" in hostile.text


def test_flags_need_view_flags(secured):
    master, *_ = secured
    for principal in (None, "alice", "ops"):
        response = Client(master, principal).get("/master/flags")
        assert response.status_code == 403 and "'view_flags'" in response.text, response.text
        assert "flags" not in Client(master, principal).get("/master/state").json()
    assert Client(master, "admin").get("/master/flags").json()["flags"]["authenticate_http_readwrite"] == "true"
    assert "flags" in Client(master, "admin").get("/master/state").json()


def test_cross_site_form_post_is_refused_even_with_credentials(secured):
    master, alice_fw, *_ = secured
    admin = Client(master, "admin")
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        response = admin.request("POST", "/master/teardown", data={"frameworkId": alice_fw}, headers=headers)
        assert response.status_code == 403 and "cross-site" in response.text, response.text
    assert alice_fw in active_framework_ids(master)


def test_jsonp_is_refused_to_authenticated_and_cross_site_reads(secured):
    """A <script src=...?jsonp=cb> on another site is sent with the browser's cached
    credentials; its answer must not be script that site can run."""
    master, alice_fw, *_ = secured
    response = Client(master, "admin").get("/master/state", jsonp="stolen")
    assert response.status_code == 403 and "JSONP" in response.text and alice_fw not in response.text
    cross = Client(master, None).request("GET", "/master/state", params={"jsonp": "stolen"},
                                         headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert Client(master, "admin").get("/master/state").json()["frameworks"]


# -- what each principal sees ------------------------------------------------------------


def test_state_shows_only_what_the_principal_may_view(secured):
    master, alice_fw, bob_fw, _ = secured
    alice, admin, anonymous = Client(master, "alice"), Client(master, "admin"), Client(master, None)

    assert framework_ids(alice.get("/master/state")) == {alice_fw}
    assert framework_ids(alice.get("/state.json")) == {alice_fw}
    assert framework_ids(alice.get("/master/frameworks")) == {alice_fw}
    assert {t["id"] for t in alice.get("/master/tasks").json()["tasks"]} == {"alice-task"}
    summary = alice.get("/master/state-summary").json()
    assert {f["id"] for f in summary["frameworks"]} == {alice_fw}
    assert sum(s["TASK_STAGING"] for s in summary["slaves"]) == 1
    roles = {r["name"]: r for r in alice.get("/master/roles").json()["roles"]}
    assert set(roles) <= {"dev"} and all(bob_fw not in r["frameworks"] for r in roles.values())
    assert alice.get("/master/tasks", framework_id=bob_fw).json()["tasks"] == []
    assert alice.get("/master/sandbox", task_id="bob-task").status_code == 404

    # A task is viewed as the user it runs as: alice sees her framework, not carol's task in it.
    (mine,) = [f for f in alice.get("/master/state").json()["frameworks"]]
    assert [t["id"] for t in mine["tasks"]] == ["alice-task"]

    assert framework_ids(admin.get("/master/state")) >= {alice_fw, bob_fw}
    tasks = {t["id"]: t for t in admin.get("/master/tasks").json()["tasks"]}
    assert {"alice-task", "bob-task", "carol-task"} <= set(tasks)
    assert tasks["carol-task"]["user"] == "carol" and "user" not in tasks["alice-task"]
    # Unauthenticated reads are "any principal": the ACLs above show it nothing.
    assert framework_ids(anonymous.get("/master/state")) == set()
    assert anonymous.get("/master/tasks").json()["tasks"] == []
    # Slaves are not anyone's: everybody sees them.
    assert len(anonymous.get("/master/slaves").json()["slaves"]) >= 2


def test_allocator_reads_show_only_permitted_roles(secured):
    master, alice_fw, bob_fw, _ = secured
    admin, alice = Client(master, "admin"), Client(master, "alice")
    assert admin.request("PUT", "/weights", json=[{"role": "dev", "weight": 2}, {"role": "prod", "weight": 3}]
                         ).status_code == 200
    for role in ("dev", "prod"):
        assert admin.request("POST", "/quota", json={"role": role, "guarantee": "cpus:0.5", "force": True}
                             ).status_code == 200
    try:
        assert {w["role"] for w in alice.get("/weights").json()} == {"dev"}
        assert {i["role"] for i in alice.get("/quota").json()["infos"]} == {"dev"}
        assert {w["role"] for w in admin.get("/weights").json()} >= {"dev", "prod"}
        assert Client(master, None).get("/quota").json()["infos"] == []
        why = alice.get("/master/allocator").json()
        assert set(why["frameworks"]) == {alice_fw}
        assert set(why["weights"]) <= {"dev"} and {q["role"] for q in why["quota"]} == {"dev"}
        assert {alice_fw, bob_fw} <= set(admin.get("/master/allocator").json()["frameworks"])
    finally:
        for role in ("dev", "prod"):
            admin.request("DELETE", f"/quota/{role}")


def test_whoami(secured):
    master, *_ = secured
    assert Client(master, None).get("/master/whoami").json() == {
        "principal": None, "authenticated": False,
        "permissions": dict.fromkeys(("teardown_frameworks", "update_quotas", "update_weights",
                                      "mark_agents_gone", "access_sandboxes"), False)}
    admin = Client(master, "admin").get("/master/whoami").json()
    assert admin == {"principal": "admin", "authenticated": True,
                     "permissions": dict.fromkeys(("teardown_frameworks", "update_quotas", "update_weights",
                                                   "mark_agents_gone", "access_sandboxes"), True)}
    ops = Client(master, "ops").get("/master/whoami").json()
    assert ops["principal"] == "ops" and not any(ops["permissions"].values())
    assert Client(master, "ops", "wrong").get("/master/whoami").status_code == 401


# -- operator calls that are allowed -----------------------------------------------------


def test_teardown_allowed_by_the_framework_principal(secured):
    master, *_ = secured
    own, other = Scheduler(master), Scheduler(master)
    try:
        own_fw = subscribe(own, "alice-own", "alice", "alice")
        other_fw = subscribe(other, "admin-only", "alice", "someone")
        alice = Client(master, "alice")
        refused = alice.request("POST", "/master/teardown", data={"frameworkId": other_fw})
        assert refused.status_code == 403 and "framework_principals 'someone'" in refused.text
        assert alice.request("POST", "/master/teardown", data={"frameworkId": own_fw}).status_code == 200
        assert Client(master, "admin").request("POST", "/teardown", data={"frameworkId": other_fw}).status_code == 200
        ids = framework_ids(Client(master, "admin").get("/master/frameworks"), "completed_frameworks")
        assert {own_fw, other_fw} <= ids
        unknown = Client(master, "admin").request("POST", "/master/teardown", data={"frameworkId": "nope"})
        assert unknown.status_code == 400 and "No framework found" in unknown.text
    finally:
        own.close()
        other.close()


def test_mark_gone_allowed_for_admin(secured):
    master, *_ = secured
    victim = FakeSlave(master)
    try:
        slave_id = victim.register(hostname="victim")
        call = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": slave_id}}}
        assert Client(master, "admin").request("POST", "/api/v1", json=call).status_code == 200
        ids = {s["id"] for s in Client(master, "admin").get("/master/slaves").json()["slaves"]}
        assert slave_id not in ids
    finally:
        victim.close()


# -- the sandbox proxy -------------------------------------------------------------------


def test_sandbox_proxy_over_https_checks_access_sandboxes(cluster_factory, tmp_path):
    """Real slave processes serving https with their own HTTP authentication; the
    master verifies them with --ssl_ca_file and forwards the caller's credentials."""
    from tests.builders import RunningFramework, framework_info
    from tests.security.certs import make_ca_and_cert

    me = getpass.getuser()
    ca_file, cert_file, key_file = make_ca_and_cert(str(tmp_path / "tls"))
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in SECRETS.items()]}))
    acls = {
        "view_frameworks": [{"principals": only("alice"), "users": only(me)}, {"principals": ANY, "users": NONE}],
        "view_tasks": [{"principals": only("alice"), "users": only(me)}, {"principals": ANY, "users": NONE}],
        "view_executors": [{"principals": only("alice"), "users": only(me)}, {"principals": ANY, "users": NONE}],
        "access_sandboxes": [{"principals": only("alice"), "users": only(me)}, {"principals": ANY, "users": NONE}],
    }
    cluster = cluster_factory(
        slaves=1,
        master_args=[f"--credentials={credentials}", f"--acls={json.dumps(acls)}", f"--ssl_ca_file={ca_file}"],
        slave_args=[f"--ssl_cert_file={cert_file}", f"--ssl_key_file={key_file}",
                    f"--http_credentials={credentials}", "--authenticate_http_readonly"])
    with RunningFramework(cluster.master, framework_info(name="sandboxed")) as framework:
        framework.scheduler.submit("echo secret-output", task_id="t-out")
        framework.scheduler.wait_state("t-out", pb.TASK_FINISHED)

        def get(principal, endpoint, **params):
            auth = (principal, SECRETS[principal]) if principal else None
            return requests.get(cluster.master_url + endpoint, params=params, auth=auth, timeout=10)

        box = get("alice", "/master/sandbox", task_id="t-out").json()
        slave, stdout = box["slave_id"], box["directory"] + "/stdout"
        assert get("alice", "/files/read", slave_id=slave, path=stdout).json()["data"] == "secret-output\n"
        assert get("alice", "/files/download", slave_id=slave, path=stdout).content == b"secret-output\n"
        assert any(e["path"] == stdout for e in get("alice", "/files/browse", slave_id=slave,
                                                       path=box["directory"]).json())
        # Refused by the master's ACL, for every way in.
        for endpoint in ("/files/read", "/files/browse", "/files/download"):
            refused = get("ops", endpoint, slave_id=slave, path=stdout)
            assert refused.status_code == 403, refused.text
            assert "'access_sandboxes'" in refused.text and "principal 'ops'" in refused.text
            assert "secret-output" not in refused.text
        # Without credentials the slave itself asks for them (the browser prompts).
        anonymous = get(None, "/files/read", slave_id=slave, path=stdout)
        assert anonymous.status_code == 401 and "secret-output" not in anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        # A task ops may not view has no sandbox for it.
        assert get("ops", "/master/sandbox", task_id="t-out").status_code == 404
        # The slave's documents, proxied, are filtered by the master's ACLs.
        own = get("alice", f"/master/slaves/{slave}/state").json()
        assert framework.framework_id in {f["id"] for g in ("frameworks", "completed_frameworks") for f in own[g]}
        hidden = get("ops", f"/master/slaves/{slave}/state").json()
        assert hidden["frameworks"] == [] and hidden["completed_frameworks"] == []
        assert get("ops", f"/master/slaves/{slave}/monitor/statistics").json() == []


def test_sandbox_owners_from_the_master_state():
    """Whose a sandbox is: its executor's user, a command executor's task's, else unknown."""
    from offerd.master.http_authz import Owners

    state = {"frameworks": [{
        "id": "f1", "user": "alice",
        "executors": [{"executor_id": "custom", "user": "carol"}, {"executor_id": "plain"}],
        "tasks": [{"id": "cmd-task"}, {"id": "root-task", "user": "root"}],
        "unreachable_tasks": [], "completed_tasks": [],
    }], "completed_frameworks": []}
    owners = Owners(state)
    assert owners.sandbox_users({"framework_id": "f1", "executor_id": "custom", "tasks": []}) == {"carol"}
    assert owners.sandbox_users({"framework_id": "f1", "executor_id": "plain", "tasks": []}) == {"alice"}
    assert owners.sandbox_users({"framework_id": "f1", "executor_id": "cmd-task", "tasks": ["cmd-task"]}) == {"alice"}
    assert owners.sandbox_users({"framework_id": "f1", "executor_id": "plain",
                                 "tasks": ["root-task"]}) == {"alice", "root"}
    assert owners.sandbox_users({"framework_id": "f1", "executor_id": "gone", "tasks": ["forgotten"]}) is None
    assert owners.sandbox_users({"framework_id": "f9", "executor_id": "custom", "tasks": []}) is None


def _agent_resources(agent: dict) -> dict[str, set[str]]:
    """{field: {"name(role)"}} of a v1 agent's resource lists."""
    return {field: {f"{r['name']}({r.get('role') or (r.get('reservations') or [{}])[-1].get('role', '*')})"
                    for r in agent.get(field, [])}
            for field in ("total_resources", "allocated_resources", "offered_resources")}


def test_v1_agents_hide_reservations_of_roles_the_caller_may_not_view(secured):
    master = secured[0]
    alice, admin = Client(master, "alice"), Client(master, "admin")
    # alice may view_roles "dev" only; she subscribes to the operator stream before the slave comes.
    stream = alice.request("POST", "/api/v1", json={"type": "SUBSCRIBE"}, stream=True,
                           headers={"Accept": "application/json"})
    assert stream.status_code == 200, stream.text
    decoder, events = recordio.Decoder(), []
    chunks = stream.iter_content(chunk_size=None)
    slave = FakeSlave(master)
    try:
        slave_id = slave.register(resources="cpus:2;mem:256;cpus(dev):1;cpus(prod):3;mem(prod):512", hostname="h3")

        def agent_of(answer: dict) -> dict:
            (agent,) = [a for a in answer["get_agents"]["agents"] if a["agent_info"]["id"]["value"] == slave_id]
            return agent

        call = {"type": "GET_AGENTS"}
        seen = _agent_resources(agent_of(alice.request("POST", "/api/v1", json=call).json()))
        assert "cpus(dev)" in seen["total_resources"] and "cpus(*)" in seen["total_resources"]
        assert not any("(prod)" in r for resources in seen.values() for r in resources), seen
        everything = _agent_resources(agent_of(admin.request("POST", "/api/v1", json=call).json()))
        assert {"cpus(prod)", "mem(prod)", "cpus(dev)"} <= everything["total_resources"]
        # GET_STATE carries the same cut.
        state = alice.request("POST", "/api/v1", json={"type": "GET_STATE"}).json()["get_state"]
        assert not any("(prod)" in r for r in _agent_resources(agent_of(state))["total_resources"])

        # The operator stream's AGENT_ADDED is cut alike.
        added = None
        for chunk in chunks:
            for record in decoder.feed(chunk):
                events.append(json.loads(record))
                if events[-1]["type"] == "AGENT_ADDED" \
                        and events[-1]["agent_added"]["agent"]["agent_info"]["id"]["value"] == slave_id:
                    added = events[-1]["agent_added"]["agent"]
            if added is not None:
                break
        total = _agent_resources(added)["total_resources"]
        assert "cpus(dev)" in total and not any("(prod)" in r for r in total), total
    finally:
        stream.close()
        slave.close()
