"""Service settings come from TOKENSVC_* variables, validated all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokensvc.errors import ConfigError
from tokensvc.settings import ENV_VARS, Settings


def test_defaults_without_environment() -> None:
    """With no variables set, the documented defaults apply."""
    s = Settings.from_env({})
    assert ("127.0.0.1", 8080, "local", None, None) == (s.host, s.port, s.region,
                                                        s.admin_port, s.redis_url)


def test_values_are_parsed() -> None:
    """Numbers, choices and header names are parsed and normalized."""
    s = Settings.from_env({"TOKENSVC_PORT": "9000", "TOKENSVC_REGION": "eu-west",
                           "TOKENSVC_COUNTRY_HEADER": "CloudFront-Viewer-Country",
                           "TOKENSVC_WORKERS": "2", "TOKENSVC_WORKER_CLASS": "asyncio"})
    assert (9000, "eu-west", "cloudfront-viewer-country", 2, "asyncio") == (
        s.port, s.region, s.country_header, s.workers, s.worker_class)


def test_every_bad_variable_is_reported_at_once() -> None:
    """Three bad variables give three problems, each naming its variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_PORT": "99999", "TOKENSVC_WORKERS": "zero",
                           "TOKENSVC_LOG_LEVEL": "loud"})
    assert {"TOKENSVC_PORT", "TOKENSVC_WORKERS", "TOKENSVC_LOG_LEVEL"} == {
        p.field for p in info.value.problems}


def test_password_from_file_is_masked(tmp_path: Path) -> None:
    """A *_FILE secret is read from the file and never shown in the settings' repr."""
    (tmp_path / "pw").write_text("hunter2-password\n")
    s = Settings.from_env({"TOKENSVC_REDIS_PASSWORD_FILE": str(tmp_path / "pw")})
    assert s.redis_password is not None
    assert "hunter2-password" == s.redis_password.reveal()
    assert "hunter2" not in repr(s)


def test_redis_url_with_password_is_masked() -> None:
    """A Redis URL (which may embed a password) is masked in repr."""
    s = Settings.from_env({"TOKENSVC_REDIS_URL": "redis://:sekret@127.0.0.1:6379/0"})
    assert "sekret" not in repr(s)


def test_readme_documents_every_variable() -> None:
    """Every variable the service reads is in the README's table."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [v.name for v in ENV_VARS if f"`{v.name}`" not in readme]
    assert [] == missing


def test_admin_port_must_differ_from_public_port() -> None:
    """An admin port equal to the public port is a clear problem, not a bind error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_PORT": "9000", "TOKENSVC_ADMIN_PORT": "9000"})
    assert ["TOKENSVC_ADMIN_PORT"] == [p.field for p in info.value.problems]


def test_cli_port_out_of_range_is_a_problem() -> None:
    """A --port override outside 1..65535 is reported as a problem."""
    with pytest.raises(ConfigError):
        Settings.from_env({}).with_overrides(port=99999)
