"""Secret values: read from an env var or a mounted file, never shown in a repr or a log."""

from __future__ import annotations

import os
from pathlib import Path


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


def read_secret_file(path: str | Path) -> Secret:
    """Read a mounted secret file (Kubernetes Secret volume), stripping one trailing newline."""
    text = Path(path).read_text(encoding="utf-8")
    return Secret(text[:-1] if text.endswith("\n") else text)


def read_secret_env(name: str, environ: dict[str, str] | None = None) -> Secret | None:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return None if value is None or value == "" else Secret(value)
