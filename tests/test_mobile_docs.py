"""docs/mobile.md: the documented error handling rotates edges on connection errors only and
fetches tokens on token errors only (Swift and Kotlin samples, and the rules table)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parent.parent / "docs" / "mobile.md").read_text("utf-8")


def block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DOC, re.S)
    assert match is not None
    return match.group(1)


def branch(code: str, start: str, end: str) -> str:
    """The text of one if/when branch of the failure handler."""
    i = code.index(start)
    return code[i : code.index(end, i + len(start))]


@pytest.mark.parametrize(
    ("language", "token_start", "connection_start", "end"),
    [
        ("swift", "if tokenErrors.contains(code)", "} else if connectionErrors", "} else {"),
        (
            "kotlin",
            "error.errorCode in TOKEN_ERRORS",
            "error.errorCode in CONNECTION_ERRORS",
            "else ->",
        ),
    ],
)
def test_token_errors_refresh_and_connection_errors_rotate(
    language: str, token_start: str, connection_start: str, end: str
) -> None:
    """The token-error branch fetches a token and keeps the edge; the connection-error branch
    moves the edge and reuses the token."""
    code = block(language)
    on_token = branch(code, token_start, connection_start)
    on_connection = branch(code, connection_start, end)
    assert (True, False) == ("freshToken()" in on_token, "edgeIndex" in on_token)
    assert (False, True) == ("freshToken()" in on_connection, "edgeIndex" in on_connection)


@pytest.mark.parametrize("code", ["31005", "31009", "53000", "20101", "20104", "31202", "31205"])
def test_table_names_each_code_once(code: str) -> None:
    """Every code has one row in the rules table (rotate or refresh, never both)."""
    rows = [line for line in DOC.splitlines() if line.startswith("|") and code in line]
    assert 1 == len(rows)


def test_samples_read_the_single_edge() -> None:
    """Both samples decode the response's ``edge`` field."""
    assert (True, True) == (
        "edge" in block("swift").split("CodingKeys")[1][:80],
        'optString("edge")' in block("kotlin"),
    )
