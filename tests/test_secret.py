"""Secret references: one rule set for {env: NAME}, {file: /path} and dev-only literals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokensvc.secret import (
    MAX_SECRET_FILE_BYTES,
    Secret,
    SecretRefError,
    resolve_secret,
    secret_file,
)


def _refused(
    ref: object, environ: dict[str, str] | None = None, allow_literal: bool = False
) -> tuple[str, str]:
    with pytest.raises(SecretRefError) as caught:
        resolve_secret(ref, environ or {}, allow_literal=allow_literal)
    return caught.value.field, caught.value.message


def test_env_reference_reads_the_mapping_passed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """{env: NAME} reads the given mapping only; the process environment is not consulted."""
    monkeypatch.setenv("TOKEN_KEY", "from-process")
    found = resolve_secret({"env": "TOKEN_KEY"}, {"TOKEN_KEY": "from-mapping"}, allow_literal=False)
    assert "from-mapping" == found.reveal()
    assert "env" == _refused({"env": "TOKEN_KEY"})[0]


def test_unset_or_empty_env_is_refused_at_env() -> None:
    """An unset or empty variable is a problem at the `env` sub-field, naming the variable."""
    assert ("env", "environment variable 'K' is not set") == _refused({"env": "K"}, {"K": ""})


def test_file_reference_strips_one_trailing_newline(tmp_path: Path) -> None:
    """{file: path} reads the file and strips exactly one trailing newline."""
    path = tmp_path / "s"
    path.write_text("value\n\n")
    assert "value\n" == resolve_secret({"file": str(path)}, {}, allow_literal=False).reveal()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"x" * (MAX_SECRET_FILE_BYTES + 1), f"larger than {MAX_SECRET_FILE_BYTES} bytes"),
    ],
)
def test_unusable_files_are_refused_at_file(tmp_path: Path, content: bytes, expected: str) -> None:
    """Empty, non-UTF-8 and oversized secret files are problems at `file`, saying why."""
    path = tmp_path / "s"
    path.write_bytes(content)
    field, message = _refused({"file": str(path)})
    assert ("file", True) == (field, expected in message)


def test_missing_file_is_refused_at_file(tmp_path: Path) -> None:
    """A file that does not exist is a problem at `file`."""
    assert "file" == _refused({"file": str(tmp_path / "nope")})[0]


def test_literal_only_where_allowed() -> None:
    """A literal is refused unless the caller allows literals (dev: true client files)."""
    assert "" == _refused("hunter2")[0]
    assert Secret("hunter2") == resolve_secret("hunter2", {}, allow_literal=True)


@pytest.mark.parametrize(
    "ref", [None, 3, [], {}, {"env": "A", "file": "/b"}, {"path": "/x"}, {"env": 5}, {"file": ""}]
)
def test_other_shapes_are_refused(ref: object) -> None:
    """Anything else is refused with a SecretRefError, never another exception."""
    _refused(ref)


def test_secret_file_names_the_watched_path() -> None:
    """secret_file() gives the path of a {file:} reference (for reload watching) only."""
    assert ["/run/s", None, None] == [
        secret_file({"file": "/run/s"}),
        secret_file({"env": "X"}),
        secret_file("literal"),
    ]


def test_secrets_are_masked() -> None:
    """A Secret never shows its value in repr or str."""
    secret = Secret("hunter2")
    assert ("Secret('<SECRET>')", "<SECRET>") == (repr(secret), str(secret))
