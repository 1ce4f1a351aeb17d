"""Credentials files in Mesos' formats, the challenge-response proof and HTTP Basic."""

import pytest

from offerd.common import credentials as creds


def test_json_and_text_forms(tmp_path):
    json_file = tmp_path / "c.json"
    json_file.write_text('{"credentials": [{"principal": "a", "secret": "s1"}, {"principal": "b", "secret": "s 2"}]}')
    text_file = tmp_path / "c.txt"
    text_file.write_text("# comment\na s1\n\nb s 2\n")
    assert creds.load_credentials(str(json_file)) == {"a": "s1", "b": "s 2"}
    assert creds.load_credentials(f"file://{text_file}") == {"a": "s1", "b": "s 2"}
    single = tmp_path / "one"
    single.write_text('{"principal": "slave", "secret": "x"}')
    assert creds.load_credential(str(single)) == creds.Credential("slave", "x")


@pytest.mark.parametrize("text, words", [
    ("{", "invalid JSON"),
    ('{"credentials": {}}', "expected"),
    ('{"credentials": [{"principal": "a"}]}', "needs string"),
    ("onlyprincipal\n", "expected 'principal secret'"),
    ("a x\na y\n", "appears twice"),
    ("", "no credentials"),
])
def test_bad_files_say_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "c"
    path.write_text(text)
    with pytest.raises(creds.CredentialError, match=words):
        creds.load_credentials(str(path))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(creds.CredentialError, match="cannot read credentials file .*nope"):
        creds.load_credentials(str(tmp_path / "nope"))


def test_secret_is_not_in_repr():
    assert "hunter2" not in repr(creds.Credential("p", "hunter2"))


def test_proof_binds_secret_and_both_nonces():
    server, client = creds.new_nonce(), creds.new_nonce()
    proof = creds.prove("s", server, client, "p")
    assert creds.verify("s", server, client, "p", proof)
    assert not creds.verify("wrong", server, client, "p", proof)
    assert not creds.verify("s", creds.new_nonce(), client, "p", proof)  # a replay against a fresh challenge
    assert not creds.verify("s", server, client, "q", proof)
    assert not creds.verify(None, server, client, "p", proof)


def test_basic_auth():
    table = {"admin": "pw"}
    assert creds.basic_auth_principal(creds.basic_auth_header("admin", "pw"), table) == "admin"
    assert creds.basic_auth_principal(creds.basic_auth_header("admin", "no"), table) is None
    assert creds.basic_auth_principal(creds.basic_auth_header("ghost", "pw"), table) is None
    for junk in (None, "", "Bearer x", "Basic !!!", "Basic " + "YWRtaW4="):
        assert creds.basic_auth_principal(junk, table) is None
