"""The local authorizer against Mesos' documented ACL semantics (docs/authorization.md)."""

import json

import pytest

from offerd.common.acls import ACLError, Authorizer


def authorizer(**document):
    return Authorizer.from_document(document)


def test_no_acls_allows_everything_and_is_not_configured():
    acl = Authorizer.from_flag(None)
    assert not acl.configured
    assert acl.allowed("anyone", "teardown_frameworks", "x")
    assert acl.allowed(None, "run_tasks", "root")


def test_first_matching_rule_decides():
    acl = authorizer(register_frameworks=[
        {"principals": {"values": ["a"]}, "roles": {"type": "NONE"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "ANY"}},
    ])
    assert not acl.allowed("a", "register_frameworks", "web")
    assert acl.allowed("b", "register_frameworks", "web")


def test_none_subject_forbids_the_object_to_everyone():
    # "No principal can register as role ads" (Mesos' example).
    acl = authorizer(register_frameworks=[{"principals": {"type": "NONE"}, "roles": {"values": ["ads"]}}])
    assert not acl.allowed("ops", "register_frameworks", "ads")
    assert not acl.allowed(None, "register_frameworks", "ads")
    assert acl.allowed("ops", "register_frameworks", "web")  # permissive by default


def test_permissive_false_denies_what_no_rule_matches():
    acl = authorizer(permissive=False, run_tasks=[{"principals": {"values": ["m"]}, "users": {"values": ["web"]}}])
    assert acl.allowed("m", "run_tasks", "web")
    reason = acl.check("m", "run_tasks", "root")
    assert "run_tasks" in reason and "'m'" in reason and "root" in reason
    assert not acl.allowed("other", "run_tasks", "web")


def test_unauthenticated_requests_match_only_any_or_none_subjects():
    acl = authorizer(permissive=False, view_frameworks=[
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
    ])
    assert acl.allowed("ops", "view_frameworks", "alice")
    assert not acl.allowed(None, "view_frameworks", "alice")
    assert "unauthenticated" in acl.check(None, "view_frameworks", "alice")


def test_object_any_request_needs_an_any_rule():
    acl = authorizer(permissive=False, view_flags=[{"principals": {"values": ["ops"]}, "flags": {"type": "ANY"}}])
    assert acl.allowed("ops", "view_flags")
    acl = authorizer(permissive=False, view_flags=[{"principals": {"values": ["ops"]}, "flags": {"values": ["x"]}}])
    assert not acl.allowed("ops", "view_flags")


def test_role_patterns_match_nested_roles():
    acl = authorizer(permissive=False, register_frameworks=[
        {"principals": {"type": "ANY"}, "roles": {"values": ["eng/*"]}}])
    assert acl.allowed("x", "register_frameworks", "eng/backend")
    assert acl.allowed("x", "register_frameworks", "eng/backend/db")
    assert not acl.allowed("x", "register_frameworks", "eng")
    assert not acl.allowed("x", "register_frameworks", "engineering")


def test_old_action_names_are_accepted():
    acl = authorizer(shutdown_frameworks=[{"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}])
    assert not acl.allowed("x", "teardown_frameworks", "y")


@pytest.mark.parametrize("document, words", [
    ({"launch_rockets": []}, "unknown action"),
    ({"run_tasks": {}}, "must be a list"),
    ({"run_tasks": [{"principals": {"type": "SOME"}}]}, "ANY or NONE"),
    ({"run_tasks": [{"principals": {"values": "a"}}]}, "list of strings"),
    ({"run_tasks": [{"roles": {"type": "ANY"}}]}, "unknown field"),
    ({"permissive": "no"}, "true or false"),
])
def test_bad_documents_are_refused_with_the_rule_named(document, words):
    with pytest.raises(ACLError, match=words):
        Authorizer.from_document(document)


def test_from_flag_reads_json_text_or_a_file(tmp_path):
    document = {"permissive": False, "run_tasks": [{"principals": {"type": "ANY"}, "users": {"values": ["u"]}}]}
    path = tmp_path / "acls.json"
    path.write_text(json.dumps(document))
    for value in (json.dumps(document), str(path), f"file://{path}"):
        acl = Authorizer.from_flag(value)
        assert acl.configured and acl.allowed("p", "run_tasks", "u") and not acl.allowed("p", "run_tasks", "root")
    with pytest.raises(ACLError, match="neither JSON nor a readable file"):
        Authorizer.from_flag(str(tmp_path / "missing.json"))
