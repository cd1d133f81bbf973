"""The tokensvc command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from support import API_KEY_SECRET, HS_SECRET, free_port, write_client
from tokensvc.__main__ import main


def test_check_config_accepts_the_bundled_example(capsys: pytest.CaptureFixture[str]) -> None:
    """check-config on clients_config/ exits 0 and names the example client."""
    assert 0 == main(["check-config", str(Path(__file__).parent.parent / "clients_config")])
    assert '"client": "example"' in capsys.readouterr().out


def test_check_config_names_file_and_field(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """check-config exits 1 and prints the file and the field of each problem."""
    write_client(tmp_path, "app", edges={"default": ["frankfort"]})
    assert 1 == main(["check-config", str(tmp_path)])
    err = capsys.readouterr().err
    assert "app.yaml: edges.default[0]: unknown edge 'frankfort'" in err


def test_mint_prints_a_token(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mint prints a token for the identity, signed with the client's key."""
    assert 0 == main(["mint", "--config", str(config_dir), "--client", "app",
                      "--identity", "alice"])
    token = capsys.readouterr().out.strip()
    assert "alice" == jwt.decode(token, API_KEY_SECRET, algorithms=["HS256"])["grants"][
        "identity"]


def test_mint_unknown_client(config_dir: Path) -> None:
    """mint for an unknown client exits 2."""
    assert 2 == main(["mint", "--config", str(config_dir), "--client", "nope",
                      "--identity", "alice"])


def test_dev_assertion_is_accepted_by_the_dev_client(
        config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dev-assertion signs a caller JWT the dev client verifies."""
    assert 0 == main(["dev-assertion", "--config", str(config_dir), "--client", "app",
                      "--identity", "bob"])
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, HS_SECRET, algorithms=["HS256"], audience="tokensvc")
    assert "bob" == claims["sub"]


def test_dev_assertion_refuses_non_dev_client(tmp_path: Path) -> None:
    """dev-assertion refuses a client without dev: true."""
    write_client(tmp_path, "app", dev=False, twilio={"api_key_secret": {"env": "HOME"}},
                 auth={"hs256_secret": {"env": "TEST_HS"}})
    import os

    os.environ["TEST_HS"] = HS_SECRET
    try:
        assert 2 == main(["dev-assertion", "--config", str(tmp_path), "--client", "app"])
    finally:
        del os.environ["TEST_HS"]


def test_serve_refuses_invalid_config_listing_every_problem(tmp_path: Path) -> None:
    """serve exits 1 before binding, listing every problem at once."""
    write_client(tmp_path, "one", edges={"default": ["frankfort"]})
    write_client(tmp_path, "two", token={"ttl_seconds": 999999})
    result = subprocess.run(
        [sys.executable, "-m", "tokensvc", "serve", "--config", str(tmp_path),
         "--port", str(free_port())], capture_output=True, text=True, timeout=30)
    assert 1 == result.returncode
    assert "one.yaml: edges.default[0]" in result.stderr
    assert "two.yaml: token.ttl_seconds" in result.stderr


def test_serve_refuses_dev_client_on_public_address(config_dir: Path) -> None:
    """A dev: true client is not served on 0.0.0.0 unless TOKENSVC_ALLOW_DEV is set."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}
    result = subprocess.run(
        [sys.executable, "-m", "tokensvc", "serve", "--config", str(config_dir),
         "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True, text=True, timeout=30, env=env)
    assert 1 == result.returncode
    assert "TOKENSVC_ALLOW_DEV" in result.stderr
