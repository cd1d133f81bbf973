"""Client config validation: every problem found, each naming its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import merge, write_client
from tokensvc.clients import load_clients, scan_clients
from tokensvc.errors import ConfigError


def problems_of(directory: Path, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    result = scan_clients(directory, env or {})
    return [(Path(p.source).name, p.field) for p in result.problems]


def test_valid_client_loads_with_resolved_fields(config_dir: Path) -> None:
    """A valid file loads; its id is its file name."""
    clients = load_clients(config_dir, {})
    assert ["app"] == list(clients)
    assert ("ashburn", "umatilla", "roaming") == clients["app"].edges.default


@pytest.mark.parametrize(("changes", "field"), [
    ({"edges": {"default": ["frankfort"]}}, "edges.default[0]"),
    ({"edges": {"by_country": {"IE": ["dublin", "frankfrt"]}}}, "edges.by_country.IE[1]"),
    ({"edges": {"by_country": {"XX": ["dublin"]}}}, "edges.by_country.XX"),
    ({"edges": {"default": ["sao-paulo-ix"]}}, "edges.default[0]"),
    ({"twilio": {"account_sid": "AC123"}}, "twilio.account_sid"),
    ({"twilio": {"api_key_sid": "XX" + "0" * 32}}, "twilio.api_key_sid"),
    ({"twilio": {"home_region": "us2"}}, "twilio.home_region"),
    ({"twilio": {"push_credentials": {"android": "nope"}}}, "twilio.push_credentials.android"),
    ({"token": {"ttl_seconds": 90000}}, "token.ttl_seconds"),
    ({"token": {"ttl_seconds": 30}}, "token.ttl_seconds"),
    ({"auth": {"algorithms": ["none"]}}, "auth.algorithms[0]"),
    ({"auth": {"algorithms": ["HS256", "RS256"]}}, "auth.algorithms[1]"),
    ({"auth": {"issuer": None}}, "auth.issuer"),
    ({"auth": {"audience": None}}, "auth.audience"),
    ({"auth": {"hs256_secret": "short"}}, "auth.hs256_secret"),
    ({"cors": {"allow_origins": ["*"]}}, "cors.allow_origins[0]"),
    ({"cors": {"allow_origins": ["https://app.example.com/path"]}}, "cors.allow_origins[0]"),
    ({"rate_limit": {"per_identity": "30 per minute"}}, "rate_limit.per_identity"),
    ({"colour": "blue"}, "colour"),
    ({"twilio": {"api_key": "x"}}, "twilio.api_key"),
])
def test_bad_field_is_named(tmp_path: Path, changes: dict, field: str) -> None:
    """Each kind of mistake is reported with the file and the exact field."""
    write_client(tmp_path, "app", **changes)
    assert ("app.yaml", field) in problems_of(tmp_path)


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    """Two broken files with two problems each give four problems, not one."""
    write_client(tmp_path, "one", edges={"default": ["frankfort"]}, token={"ttl_seconds": 1})
    write_client(tmp_path, "two", twilio={"account_sid": "bad"}, colour="x")
    with pytest.raises(ConfigError) as info:
        load_clients(tmp_path, {})
    assert 4 == len(info.value.problems)


def test_literal_secret_needs_dev(tmp_path: Path) -> None:
    """A literal api_key_secret is refused unless the file says dev: true."""
    write_client(tmp_path, "app", dev=False)
    found = problems_of(tmp_path)
    assert ("app.yaml", "twilio.api_key_secret") in found
    assert ("app.yaml", "auth.hs256_secret") in found


def test_secrets_resolve_from_env_and_file(tmp_path: Path) -> None:
    """{env: NAME} and {file: path} references are read; the values stay masked."""
    secret_file = tmp_path / "key"
    secret_file.write_text("file-secret-0123456789abcdef0123456789\n")
    write_client(tmp_path / "c", "app", dev=False,
                 twilio={"api_key_secret": {"env": "TWILIO_SECRET"}},
                 auth={"hs256_secret": {"file": str(secret_file)}})
    clients = load_clients(tmp_path / "c", {"TWILIO_SECRET": "env-secret-value"})
    app = clients["app"]
    assert "env-secret-value" == app.twilio.api_keys[0].secret.reveal()
    assert "file-secret-0123456789abcdef0123456789" == app.auth.hmac_secret.reveal()
    assert "env-secret-value" not in repr(app)


def test_missing_env_secret_is_named(tmp_path: Path) -> None:
    """An {env: NAME} whose variable is unset is a problem at that field."""
    write_client(tmp_path, "app", twilio={"api_key_secret": {"env": "NOPE"}})
    assert ("app.yaml", "twilio.api_key_secret.env") in problems_of(tmp_path)


def test_invalid_client_id_file_name(tmp_path: Path) -> None:
    """A file name that is not a valid client id is rejected."""
    write_client(tmp_path, "Bad_Name")
    assert ("Bad_Name.yaml", "") in problems_of(tmp_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """Broken YAML is reported with the file and line."""
    (tmp_path / "app.yaml").write_text("twilio:\n  account_sid: [unclosed\n")
    [(name, field)] = problems_of(tmp_path)
    assert ("app.yaml", True) == (name, field.startswith("line "))


def test_auth_none_requires_dev(tmp_path: Path) -> None:
    """auth.type none is refused outside dev, and warns loudly inside dev."""
    write_client(tmp_path / "prod", "app", dev=False, auth={"type": "none"},
                 twilio={"api_key_secret": {"env": "S"}})
    assert ("app.yaml", "auth.type") in problems_of(tmp_path / "prod", {"S": "x"})
    write_client(tmp_path / "dev", "app", auth=merge({}, {"type": "none"}))
    assert any("ANY caller" in w for w in scan_clients(tmp_path / "dev", {}).warnings)


def test_api_keys_list_for_rotation(tmp_path: Path) -> None:
    """api_keys lists several keys in order; the first signs."""
    keys = [{"sid": "SK" + "4" * 32, "secret": "s" * 32}, {"sid": "SK" + "5" * 32,
                                                            "secret": "t" * 32}]
    write_client(tmp_path, "app", twilio={"api_key_sid": None, "api_key_secret": None,
                                          "api_keys": keys})
    sids = [k.sid for k in load_clients(tmp_path, {})["app"].twilio.api_keys]
    assert ["SK" + "4" * 32, "SK" + "5" * 32] == sids


def test_empty_directory_is_a_problem(tmp_path: Path) -> None:
    """A directory with no client file cannot serve anything: it is a problem."""
    assert [(tmp_path.name, "")] == problems_of(tmp_path)


def test_clients_sharing_an_account_need_distinct_prefixes(tmp_path: Path) -> None:
    """Two clients on one Twilio account without identity prefixes are a problem in both."""
    write_client(tmp_path, "web")
    write_client(tmp_path, "backend", auth={"type": "api_key", "keys": ["k" * 40],
                                            "algorithms": None, "hs256_secret": None,
                                            "issuer": None, "audience": None,
                                            "identity_claim": None})
    found = problems_of(tmp_path)
    assert {("web.yaml", "auth.identity_prefix"), ("backend.yaml", "auth.identity_prefix")} <= set(
        found)


def test_prefixes_that_nest_are_refused(tmp_path: Path) -> None:
    """Prefixes 'a_' and 'a_b_' can collide ('a_' + 'b_x' == 'a_b_' + 'x'): refused."""
    write_client(tmp_path, "one", auth={"identity_prefix": "a_"})
    write_client(tmp_path, "two", auth={"identity_prefix": "a_b_"})
    assert 2 == len(problems_of(tmp_path))


def test_distinct_prefixes_on_a_shared_account_load(tmp_path: Path) -> None:
    """Distinct, non-nesting prefixes on one account load fine."""
    write_client(tmp_path, "one", auth={"identity_prefix": "web_"})
    write_client(tmp_path, "two", auth={"identity_prefix": "app_"})
    assert [] == problems_of(tmp_path)


def _pem(key: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_unparseable_pem_is_a_config_problem(tmp_path: Path) -> None:
    """A PEM with the right marker but garbage inside is caught by check-config."""
    pem = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    write_client(tmp_path, "app", auth={"algorithms": ["RS256"], "hs256_secret": None,
                                        "public_keys": [{"pem": pem}]})
    assert ("app.yaml", "auth.public_keys[0]") in problems_of(tmp_path)


def test_pem_key_type_must_match_algorithms(tmp_path: Path) -> None:
    """An EC key configured for RS256 is a config problem, not a 401 for every caller."""
    from cryptography.hazmat.primitives.asymmetric import ec

    write_client(tmp_path, "app", auth={"algorithms": ["RS256"], "hs256_secret": None,
                                        "public_keys": [{"pem": _pem(ec.generate_private_key(
                                            ec.SECP256R1()))}]})
    assert ("app.yaml", "auth.public_keys[0]") in problems_of(tmp_path)


def test_changed_secret_file_changes_the_signature(tmp_path: Path) -> None:
    """A rotated {file:} secret changes the reload signature, so it is picked up."""
    from tokensvc.clients import directory_signature

    secret = tmp_path / "secret"
    secret.write_text("a" * 40)
    write_client(tmp_path / "c", "app", twilio={"api_key_secret": {"file": str(secret)}})
    client = load_clients(tmp_path / "c", {})["app"]
    before = directory_signature(tmp_path / "c", client.watched_files)
    secret.write_text("b" * 41)
    assert before != directory_signature(tmp_path / "c", client.watched_files)
