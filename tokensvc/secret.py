"""Secret values and the one rule set that resolves secret references.

A secret is written in a config file as a reference: ``{env: NAME}`` (an environment variable,
read from the mapping the caller passes, never from ``os.environ`` here), ``{file: /path}`` (a
mounted file, one trailing newline stripped, at most ``MAX_SECRET_FILE_BYTES``) or, only where
the caller allows it (``dev: true`` client files), a literal string. ``resolve_secret`` is the
only function that applies these rules; client files and the ops config both use it. A
reference that does not resolve raises ``SecretRefError`` naming the sub-field (``""``,
``"env"`` or ``"file"``) and why; the caller adds its own file and field. Values are held as
``Secret``, which masks itself in every repr and string.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path

#: A mounted secret larger than this is a mistake (a key, a password: a few hundred bytes).
MAX_SECRET_FILE_BYTES = 64 * 1024


class Secret:
    """A string that masks itself everywhere except ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<SECRET>')"

    def __str__(self) -> str:
        return "<SECRET>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretRefError(ValueError):
    """A secret reference that does not resolve. ``field`` is the sub-field at fault relative
    to the reference (``""`` for the reference itself, ``"env"``, ``"file"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def read_secret_file(path: str | Path) -> Secret:
    """Read a mounted secret file (Kubernetes Secret volume), stripping one trailing newline.
    Raises OSError (its ``strerror`` says why) when unreadable, over
    ``MAX_SECRET_FILE_BYTES`` or not UTF-8 text."""
    with Path(path).open("rb") as handle:
        data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_SECRET_FILE_BYTES} bytes", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EILSEQ, "not UTF-8 text", str(path)) from None
    return Secret(text[:-1] if text.endswith("\n") else text)


def secret_file(ref: object) -> str | None:
    """The path a ``{file: /path}`` reference names (for reload watching), else None."""
    if isinstance(ref, Mapping) and isinstance(ref.get("file"), str):
        return str(ref["file"])
    return None


def resolve_secret(ref: object, environ: Mapping[str, str], *, allow_literal: bool) -> Secret:
    """Resolve ``{env: NAME}``, ``{file: /path}`` or (with ``allow_literal``) a literal string
    to a non-empty ``Secret``; raise ``SecretRefError`` otherwise. Never reads ``os.environ``:
    pass the environment to use."""
    if isinstance(ref, str):
        if not allow_literal:
            raise SecretRefError(
                "",
                "a literal secret is only allowed with dev: true; use {env: NAME} or {file: /path}",
            )
        if not ref:
            raise SecretRefError("", "is empty")
        return Secret(ref)
    if not isinstance(ref, Mapping) or len(ref) != 1 or not {"env", "file"} & set(ref):
        raise SecretRefError("", "must be {env: NAME} or {file: /path}")
    if "env" in ref:
        name = ref["env"]
        if not isinstance(name, str) or not name:
            raise SecretRefError("env", "must be an environment variable name")
        value = environ.get(name)
        if not value:
            raise SecretRefError("env", f"environment variable {name!r} is not set")
        return Secret(value)
    path = ref["file"]
    if not isinstance(path, str) or not path:
        raise SecretRefError("file", "must be a path")
    try:
        secret = read_secret_file(path)
    except OSError as exc:
        raise SecretRefError("file", f"cannot read {path}: {exc.strerror}") from exc
    if not secret:
        raise SecretRefError("file", f"{path} is empty")
    return secret
