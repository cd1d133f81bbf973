"""The tokensvc command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jwt
import pytest

from support import API_KEY_SECRET, HS_SECRET, serve_until_exit, write_client
from tokensvc.__main__ import main


def test_check_config_accepts_the_bundled_example(capsys: pytest.CaptureFixture[str]) -> None:
    """check-config on clients_config/ exits 0 and names the example client."""
    assert 0 == main(["check-config", str(Path(__file__).parent.parent / "clients_config")])
    assert '"client": "example"' in capsys.readouterr().out


def test_check_config_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config exits 1 and prints the file and the field of each problem."""
    write_client(tmp_path, "app", edges={"default": ["frankfort"]})
    assert 1 == main(["check-config", str(tmp_path)])
    err = capsys.readouterr().err
    assert "app.yaml: edges.default[0]: unknown edge 'frankfort'" in err


def test_mint_prints_a_token(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mint prints a token for the identity, signed with the client's key."""
    assert 0 == main(
        ["mint", "--config", str(config_dir), "--client", "app", "--identity", "alice"]
    )
    token = capsys.readouterr().out.strip()
    assert "alice" == jwt.decode(token, API_KEY_SECRET, algorithms=["HS256"])["grants"]["identity"]


def test_mint_unknown_client(config_dir: Path) -> None:
    """mint for an unknown client exits 2."""
    assert 2 == main(
        ["mint", "--config", str(config_dir), "--client", "nope", "--identity", "alice"]
    )


def test_dev_assertion_is_accepted_by_the_dev_client(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dev-assertion signs a caller JWT the dev client verifies."""
    assert 0 == main(
        ["dev-assertion", "--config", str(config_dir), "--client", "app", "--identity", "bob"]
    )
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, HS_SECRET, algorithms=["HS256"], audience="tokensvc")
    assert "bob" == claims["sub"]


def test_dev_assertion_refuses_non_dev_client(tmp_path: Path) -> None:
    """dev-assertion refuses a client without dev: true."""
    write_client(
        tmp_path,
        "app",
        dev=False,
        twilio={"api_key_secret": {"env": "HOME"}},
        auth={"hs256_secret": {"env": "TEST_HS"}},
    )
    import os

    os.environ["TEST_HS"] = HS_SECRET
    try:
        assert 2 == main(["dev-assertion", "--config", str(tmp_path), "--client", "app"])
    finally:
        del os.environ["TEST_HS"]


@pytest.mark.process
def test_serve_refuses_invalid_config_listing_every_problem(tmp_path: Path) -> None:
    """serve exits 1 before binding, listing every problem at once."""
    write_client(tmp_path, "one", edges={"default": ["frankfort"]})
    write_client(tmp_path, "two", token={"ttl_seconds": 999999})
    result = serve_until_exit(tmp_path)
    assert 1 == result.returncode
    assert "one.yaml: edges.default[0]" in result.stderr
    assert "two.yaml: token.ttl_seconds" in result.stderr


@pytest.mark.process
def test_serve_refuses_dev_client_on_public_address(config_dir: Path) -> None:
    """A dev: true client is not served on 0.0.0.0 unless TOKENSVC_ALLOW_DEV is set."""
    result = serve_until_exit(config_dir, {}, "--host", "0.0.0.0")
    assert 1 == result.returncode
    assert "TOKENSVC_ALLOW_DEV" in result.stderr


def serve_refused(config_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``serve_until_exit`` with JSON logs: a refused start's output, never a log line."""
    return serve_until_exit(config_dir, {"TOKENSVC_LOG_FORMAT": "json", **env})


@pytest.mark.process
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_bad_redis_url_before_binding(config_dir: Path, workers: str) -> None:
    """A bad TOKENSVC_REDIS_URL: exit 1 naming it, no traceback, never "listening"."""
    result = serve_refused(
        config_dir, {"TOKENSVC_REDIS_URL": "http://127.0.0.1:6379/0", "TOKENSVC_WORKERS": workers}
    )
    output = result.stdout + result.stderr
    assert (1, False, False) == (result.returncode, "Traceback" in output, "listening" in output)
    assert "environment: TOKENSVC_REDIS_URL: must start with redis://" in result.stderr


@pytest.mark.process
def test_serve_names_a_misspelled_variable(config_dir: Path) -> None:
    """TOKENSVC_REDIS_ULR is refused at start-up with the name it probably meant."""
    result = serve_refused(config_dir, {"TOKENSVC_REDIS_ULR": "redis://127.0.0.1:6379/0"})
    assert 1 == result.returncode
    assert (
        "environment: TOKENSVC_REDIS_ULR: unknown setting; did you mean TOKENSVC_REDIS_URL?"
        in result.stderr
    )


@pytest.mark.process
def test_serve_lists_setting_redis_and_client_problems_together(tmp_path: Path) -> None:
    """Bad values, both Redis URLs, a missing TLS file and a bad client file: one report."""
    write_client(tmp_path, "one", edges={"default": ["frankfort"]})
    result = serve_refused(
        tmp_path,
        {
            "TOKENSVC_WORKERS": "zero",
            "TOKENSVC_REDIS_URL": (
                f"rediss://127.0.0.1:6380/0?ssl_ca_certs={tmp_path / 'no-ca.pem'}"
            ),
            "TOKENSVC_REDIS_READ_URL": "redis+sentinel://127.0.0.1:26379",
        },
    )
    fields = {line.split(": ")[1] for line in result.stderr.splitlines()[1:]}
    assert (
        1,
        {"TOKENSVC_WORKERS", "TOKENSVC_REDIS_URL", "TOKENSVC_REDIS_READ_URL", "edges.default[0]"},
    ) == (result.returncode, fields)
    assert "ssl_ca_certs: cannot read file" in result.stderr
