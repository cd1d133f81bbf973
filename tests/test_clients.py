"""Client config validation: every problem found, each naming its file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import BASE_CLIENT, merge, write_client
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


@pytest.mark.parametrize(
    ("changes", "field"),
    [
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
    ],
)
def test_bad_field_is_named(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
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
    write_client(
        tmp_path / "c",
        "app",
        dev=False,
        twilio={"api_key_secret": {"env": "TWILIO_SECRET"}},
        auth={"hs256_secret": {"file": str(secret_file)}},
    )
    clients = load_clients(tmp_path / "c", {"TWILIO_SECRET": "env-secret-value"})
    app = clients["app"]
    assert "env-secret-value" == app.twilio.api_keys[0].secret.reveal()
    assert app.auth.hmac_secret is not None
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
    write_client(
        tmp_path / "prod",
        "app",
        dev=False,
        auth={"type": "none"},
        twilio={"api_key_secret": {"env": "S"}},
    )
    assert ("app.yaml", "auth.type") in problems_of(tmp_path / "prod", {"S": "x"})
    write_client(tmp_path / "dev", "app", auth=merge({}, {"type": "none"}))
    assert any("ANY caller" in w for w in scan_clients(tmp_path / "dev", {}).warnings)


def test_api_keys_list_for_rotation(tmp_path: Path) -> None:
    """api_keys lists several keys in order; the first signs."""
    keys = [
        {"sid": "SK" + "4" * 32, "secret": "s" * 32},
        {"sid": "SK" + "5" * 32, "secret": "t" * 32},
    ]
    write_client(
        tmp_path, "app", twilio={"api_key_sid": None, "api_key_secret": None, "api_keys": keys}
    )
    sids = [k.sid for k in load_clients(tmp_path, {})["app"].twilio.api_keys]
    assert ["SK" + "4" * 32, "SK" + "5" * 32] == sids


def test_empty_directory_is_a_problem(tmp_path: Path) -> None:
    """A directory with no client file cannot serve anything: it is a problem."""
    assert [(tmp_path.name, "")] == problems_of(tmp_path)


def test_clients_sharing_an_account_need_distinct_prefixes(tmp_path: Path) -> None:
    """Two clients on one Twilio account without identity prefixes are a problem in both."""
    write_client(tmp_path, "web")
    write_client(
        tmp_path,
        "backend",
        auth={
            "type": "api_key",
            "keys": ["k" * 40],
            "algorithms": None,
            "hs256_secret": None,
            "issuer": None,
            "audience": None,
            "identity_claim": None,
        },
    )
    found = problems_of(tmp_path)
    assert {("web.yaml", "auth.identity_prefix"), ("backend.yaml", "auth.identity_prefix")} <= set(
        found
    )


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


def _pem(key: PrivateKeyTypes) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_unparseable_pem_is_a_config_problem(tmp_path: Path) -> None:
    """A PEM with the right marker but garbage inside is caught by check-config."""
    pem = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    write_client(
        tmp_path,
        "app",
        auth={"algorithms": ["RS256"], "hs256_secret": None, "public_keys": [{"pem": pem}]},
    )
    assert ("app.yaml", "auth.public_keys[0]") in problems_of(tmp_path)


def test_pem_key_type_must_match_algorithms(tmp_path: Path) -> None:
    """An EC key configured for RS256 is a config problem, not a 401 for every caller."""
    from cryptography.hazmat.primitives.asymmetric import ec

    write_client(
        tmp_path,
        "app",
        auth={
            "algorithms": ["RS256"],
            "hs256_secret": None,
            "public_keys": [{"pem": _pem(ec.generate_private_key(ec.SECP256R1()))}],
        },
    )
    assert ("app.yaml", "auth.public_keys[0]") in problems_of(tmp_path)


def test_a_pem_rsa_key_under_2048_bits_is_refused_at_load(tmp_path: Path) -> None:
    """A 1024-bit RSA key is named by check-config, not silently dropped at verify time."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    write_client(
        tmp_path,
        "app",
        auth={"algorithms": ["RS256"], "hs256_secret": None, "public_keys": [{"pem": _pem(weak)}]},
    )
    assert ("app.yaml", "auth.public_keys[0]") in problems_of(tmp_path)


@pytest.mark.parametrize(
    ("algorithms", "length", "refused"),
    [
        (["HS256"], 32, False),
        (["HS384"], 47, True),
        (["HS384"], 48, False),
        (["HS256", "HS512"], 63, True),
        (["HS512"], 64, False),
    ],
)
def test_the_hmac_secret_is_as_long_as_the_longest_allowed_hash(
    tmp_path: Path, algorithms: list[str], length: int, refused: bool
) -> None:
    """RFC 7518: an HS secret at least as long as the hash output, per allowed algorithm."""
    write_client(tmp_path, "app", auth={"algorithms": algorithms, "hs256_secret": "s" * length})
    assert refused == (("app.yaml", "auth.hs256_secret") in problems_of(tmp_path))


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


# --- any content gives problems, never an exception (issue 11, findings 1 and 2) -------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n  \n", "---\n...\n"])
def test_empty_or_comment_only_file_is_a_problem(tmp_path: Path, text: str) -> None:
    """A file with no settings is a problem naming the file, not a client-less success."""
    (tmp_path / "app.yaml").write_text(text)
    result = scan_clients(tmp_path, {})
    assert ({}, [("app.yaml", "")]) == (
        result.clients,
        [(Path(p.source).name, p.field) for p in result.problems],
    )
    assert "empty or holds only comments" in result.problems[0].message


@pytest.mark.parametrize("text", ["- twilio\n- auth\n", "just a string\n", "42\n", "true\n"])
def test_a_file_that_is_not_a_mapping_is_a_problem(tmp_path: Path, text: str) -> None:
    """A list or a scalar at the top of a file is one problem naming the file."""
    (tmp_path / "app.yaml").write_text(text)
    [problem] = scan_clients(tmp_path, {}).problems
    assert ("app.yaml", "", True) == (
        Path(problem.source).name,
        problem.field,
        problem.message.startswith("the file must be a mapping"),
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"edges": {"default": [["dublin"]]}}, "edges.default[0]"),
        ({"edges": {"by_country": {"IE": [["dublin"]]}}}, "edges.by_country.IE[0]"),
        ({"edges": {"by_country": [1]}}, "edges.by_country"),
        (
            {"twilio": {"api_keys": [["x"]], "api_key_sid": None, "api_key_secret": None}},
            "twilio.api_keys[0]",
        ),
        ({"auth": {"algorithms": [{"HS256": 1}]}}, "auth.algorithms[0]"),
        ({"auth": {"hs256_secret": {"env": ["X"]}}}, "auth.hs256_secret"),
        (
            {"auth": {"public_keys": [{"file": 1}], "hs256_secret": None, "algorithms": ["RS256"]}},
            "auth.public_keys[0]",
        ),
        ({"cors": {"allow_origins": [{"a": 1}]}}, "cors.allow_origins[0]"),
        ({"rate_limit": {"per_ip": 30}}, "rate_limit.per_ip"),
        ({"token": {"ttl_seconds": True}}, "token.ttl_seconds"),
        ({"dev": "yes"}, "dev"),
        ({"blocked_subjects": "mallory"}, "blocked_subjects"),
    ],
)
def test_a_wrong_type_anywhere_is_a_problem_at_its_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    """A value of the wrong type (a list inside an edge list, say) is a problem naming the
    file and field, not an exception."""
    write_client(tmp_path, "app", **changes)
    assert ("app.yaml", field) in problems_of(tmp_path)


def test_check_config_reports_a_wrong_type_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokensvc check-config` on `default: [[dublin]]` exits 1 naming the field."""
    from tokensvc.__main__ import main

    write_client(tmp_path, "app", edges={"default": [["dublin"]]})
    code = main(["check-config", str(tmp_path)])
    err = capsys.readouterr().err
    assert (1, True, False) == (code, "app.yaml: edges.default[0]" in err, "Traceback" in err)


def test_check_config_refuses_a_comment_only_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokensvc check-config` on a directory holding only `# x` exits 1, not `ok: 0`."""
    from tokensvc.__main__ import main

    (tmp_path / "app.yaml").write_text("# x\n")
    code = main(["check-config", str(tmp_path)])
    out = capsys.readouterr()
    assert (1, "", True) == (code, out.out, "app.yaml" in out.err)


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    """A file over MAX_FILE_BYTES is one clear problem; a sparse 8 GiB file shows it is
    refused from its size, without being read."""
    from tokensvc.clients import MAX_FILE_BYTES

    with (tmp_path / "app.yaml").open("wb") as handle:
        handle.truncate(8 * 1024**3)
    [problem] = scan_clients(tmp_path, {}).problems
    assert ("app.yaml", True) == (
        Path(problem.source).name,
        f"over the {MAX_FILE_BYTES} byte limit" in problem.message,
    )


def test_yaml_aliases_cannot_blow_up_validation(tmp_path: Path) -> None:
    """Nested aliases that expand to a million values are refused, quickly."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (tmp_path / "app.yaml").write_text("\n".join(lines) + "\n")
    [problem] = scan_clients(tmp_path, {}).problems
    assert "counting YAML aliases" in problem.message


def test_non_string_keys_and_bad_timestamps_are_problems(tmp_path: Path) -> None:
    """`1: x` (an integer key) and `2001-13-45` (an impossible date) are problems."""
    (tmp_path / "one.yaml").write_text("1: x\n")
    (tmp_path / "two.yaml").write_text("twilio: 2001-13-45\n")
    assert [("one.yaml", ""), ("two.yaml", "")] == problems_of(tmp_path)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["dublin", "HS256", "jwt", "env", "file", "30/minute", "IE"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.text(max_size=8),
                st.sampled_from(["env", "file", "pem", "sid", "secret", "default", "IE"]),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), value=_values)
def test_any_value_in_any_position_gives_problems_or_a_config(
    tmp_path: Path, data: st.DataObject, value: object
) -> None:
    """Replacing any node of a valid file (or adding a key anywhere) with any YAML value tree
    gives either a valid client or problems naming app.yaml, never an exception."""
    doc = merge(BASE_CLIENT, {})
    path = data.draw(st.sampled_from(_paths(doc)))
    add = data.draw(st.booleans())
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    if not path:
        doc = value  # type: ignore[assignment]
    elif add and isinstance(parent[path[-1]], dict):
        parent[path[-1]][data.draw(st.text(max_size=8))] = value
    else:
        parent[path[-1]] = value
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(doc))
    result = scan_clients(tmp_path, {})
    assert (["app"] == list(result.clients) and not result.problems) or (
        result.problems and all(Path(p.source).name == "app.yaml" for p in result.problems)
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,? \n\t0.")), max_size=60))
def test_any_text_gives_problems_or_a_config(tmp_path: Path, text: str) -> None:
    """Arbitrary YAML-ish text in a client file never raises."""
    (tmp_path / "app.yaml").write_text(text)
    result = scan_clients(tmp_path, {})
    assert result.problems or result.clients


# --- blocks, lifetime bound, the environment passed in ----------------------------------------


def test_blocked_identities_is_refused_saying_what_to_write(tmp_path: Path) -> None:
    """The old ambiguous key is refused with a message naming its two replacements."""
    write_client(tmp_path, "app", blocked_identities=["mallory"])
    [problem] = scan_clients(tmp_path, {}).problems
    assert ("blocked_identities", True, True) == (
        problem.field,
        "blocked_subjects" in problem.message,
        "blocked_twilio_identities" in problem.message,
    )


def test_blocks_keeps_subjects_and_twilio_identities_apart(tmp_path: Path) -> None:
    """blocks() matches raw subjects against blocked_subjects only and Twilio identities
    against blocked_twilio_identities only."""
    write_client(
        tmp_path, "app", blocked_subjects=["auth0|1"], blocked_twilio_identities=["web_bob"]
    )
    app = load_clients(tmp_path, {})["app"]
    assert [True, True, False, False] == [
        app.blocks("auth0|1", "auth0_7c1"),
        app.blocks("bob", "web_bob"),
        app.blocks("web_bob", "web_web__bob"),
        app.blocks("x", "auth0|1"),
    ]


def test_max_token_lifetime_is_optional(tmp_path: Path) -> None:
    """auth.max_token_lifetime_seconds loads as AuthConfig.max_token_lifetime; unset is None."""
    write_client(tmp_path / "a", "app", auth={"max_token_lifetime_seconds": 900})
    write_client(tmp_path / "b", "app")
    assert (900, None) == (
        load_clients(tmp_path / "a", {})["app"].auth.max_token_lifetime,
        load_clients(tmp_path / "b", {})["app"].auth.max_token_lifetime,
    )


def test_env_secrets_come_from_the_mapping_passed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """{env: NAME} is looked up in the given mapping, not in the process environment."""
    monkeypatch.setenv("TWILIO_SECRET", "from-the-process")
    write_client(
        tmp_path,
        "app",
        dev=False,
        twilio={"api_key_secret": {"env": "TWILIO_SECRET"}},
        auth={"hs256_secret": {"env": "TWILIO_SECRET"}},
    )
    assert ("app.yaml", "twilio.api_key_secret.env") in problems_of(tmp_path, {"OTHER": "x"})


def test_an_empty_optional_section_counts_as_left_out(tmp_path: Path) -> None:
    """`rate_limit:` or `cors:` with nothing under it (YAML null) loads as if omitted, as it
    did before the schema."""
    doc = merge(BASE_CLIENT, {})
    doc.update({"rate_limit": None, "cors": None, "token": None, "blocked_subjects": None})
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(doc))
    app = load_clients(tmp_path, {})["app"]
    assert (None, frozenset(), 3600) == (app.rate_per_ip, app.allow_origins, app.ttl_seconds)
