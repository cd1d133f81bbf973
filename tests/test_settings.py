"""Service settings come from TOKENSVC_* variables, validated all at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tokensvc.__main__ import main
from tokensvc.errors import ConfigError
from tokensvc.settings import ENV_VARS, Settings, known_names
from tokensvc.startup import check_inputs

README = Path(__file__).parent.parent / "README.md"


def test_defaults_without_environment() -> None:
    """With no variables set, the documented defaults apply."""
    s = Settings.from_env({})
    assert ("127.0.0.1", 8080, "local", None, None) == (
        s.host,
        s.port,
        s.region,
        s.admin_port,
        s.redis_url,
    )


def test_values_are_parsed() -> None:
    """Numbers, choices and header names are parsed and normalized."""
    s = Settings.from_env(
        {
            "TOKENSVC_PORT": "9000",
            "TOKENSVC_REGION": "eu-west",
            "TOKENSVC_COUNTRY_HEADER": "CloudFront-Viewer-Country",
            "TOKENSVC_WORKERS": "2",
            "TOKENSVC_WORKER_CLASS": "asyncio",
        }
    )
    assert (9000, "eu-west", "cloudfront-viewer-country", 2, "asyncio") == (
        s.port,
        s.region,
        s.country_header,
        s.workers,
        s.worker_class,
    )


def test_every_bad_variable_is_reported_at_once() -> None:
    """Three bad variables give three problems, each naming its variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"TOKENSVC_PORT": "99999", "TOKENSVC_WORKERS": "zero", "TOKENSVC_LOG_LEVEL": "loud"}
        )
    assert {"TOKENSVC_PORT", "TOKENSVC_WORKERS", "TOKENSVC_LOG_LEVEL"} == {
        p.field for p in info.value.problems
    }


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


def readme_settings_table() -> str:
    section = README.read_text(encoding="utf-8").split("## Service settings (environment)")[1]
    section = section.split("\n## ")[0]
    return "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))


def test_readme_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's settings table is, byte for byte, what `tokensvc settings --markdown`
    prints (regenerate it from the declarations after adding a setting)."""
    assert 0 == main(["settings", "--markdown"])
    assert readme_settings_table() == capsys.readouterr().out


def test_variable_names_derive_from_field_names() -> None:
    """Each variable is TOKENSVC_ + its Settings field upper-cased, and every field is one."""
    assert [f"TOKENSVC_{v.field.upper()}" for v in ENV_VARS] == [v.name for v in ENV_VARS]
    assert list(Settings.__dataclass_fields__) == [v.field for v in ENV_VARS]


def test_unknown_variable_names_the_closest_known_one() -> None:
    """A typo such as TOKENSVC_REDIS_ULR is a problem suggesting TOKENSVC_REDIS_URL."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_REDIS_ULR": "redis://127.0.0.1:6379/0"})
    assert [("TOKENSVC_REDIS_ULR", "unknown setting; did you mean TOKENSVC_REDIS_URL?")] == [
        (p.field, p.message) for p in info.value.problems
    ]


def test_unknown_variable_without_a_close_name() -> None:
    """A name close to nothing is still refused, pointing at the list of settings."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_ZZZ": "1"})
    assert ["unknown setting (see `tokensvc settings --markdown`)"] == [
        p.message for p in info.value.problems
    ]


def test_service_link_variable_says_how_to_stop_it() -> None:
    """A Kubernetes service link (TOKENSVC_METRICS_SERVICE_HOST) names enableServiceLinks."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_METRICS_SERVICE_HOST": "10.0.0.1"})
    assert "enableServiceLinks: false" in info.value.problems[0].message


def test_file_variants_of_secrets_are_known(tmp_path: Path) -> None:
    """*_FILE variants exist for the secrets that declare them, and only for those."""
    (tmp_path / "key").write_text("fingerprint-key\n")
    s = Settings.from_env({"TOKENSVC_FINGERPRINT_KEY_FILE": str(tmp_path / "key")})
    assert s.fingerprint_key is not None
    assert "fingerprint-key" == s.fingerprint_key.reveal()
    assert {
        "TOKENSVC_REDIS_PASSWORD_FILE",
        "TOKENSVC_REDIS_SENTINEL_PASSWORD_FILE",
        "TOKENSVC_FINGERPRINT_KEY_FILE",
        "TOKENSVC_STATUS_FEED_WEBHOOK_SECRET_FILE",
    } == {n for n in known_names() if n.endswith("_FILE")}


def test_unreadable_secret_file_names_the_file_variable(tmp_path: Path) -> None:
    """A *_FILE naming a missing file is a problem on that variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
    assert ["TOKENSVC_REDIS_PASSWORD_FILE"] == [p.field for p in info.value.problems]


def test_settings_command_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokensvc settings` prints each value and its source; secrets show as <SECRET>."""
    for name in [n for n in os.environ if n.startswith("TOKENSVC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TOKENSVC_REDIS_PASSWORD", "hunter2-password")
    monkeypatch.setenv("TOKENSVC_PORT", "9000")
    assert 0 == main(["settings"])
    lines = capsys.readouterr().out.splitlines()
    assert "TOKENSVC_REDIS_PASSWORD=<SECRET>  # environment" in lines
    assert "TOKENSVC_PORT=9000  # environment" in lines
    assert "TOKENSVC_REGION=local  # default" in lines
    assert not [line for line in lines if "hunter2" in line]


def test_admin_port_must_differ_from_public_port() -> None:
    """An admin port equal to the public port is a clear problem, not a bind error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKENSVC_PORT": "9000", "TOKENSVC_ADMIN_PORT": "9000"})
    assert ["TOKENSVC_ADMIN_PORT"] == [p.field for p in info.value.problems]


def test_cli_port_out_of_range_is_a_problem(config_dir: Path) -> None:
    """A --port override outside 1..65535 is reported as a problem (as `serve --port` does)."""
    _, problems = check_inputs({}, config_dir=config_dir, port=99999)
    assert [("settings", "port")] == [(p.source, p.field) for p in problems]
