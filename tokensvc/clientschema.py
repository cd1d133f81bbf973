"""The client-file schema: ``tokensvc/data/client.schema.json`` (JSON Schema, draft 2020-12).

That file is the one definition of a client file's structure (keys, types, patterns, enums,
which keys go together). This module loads it, validates a parsed file against it and turns
each error into ``(field, message)``: the field as the operator writes it
(``edges.default[0]``, ``edges.by_country.IE``) and a message taken from the schema's own
``description`` (or ``title`` for enums), so editors that show the schema and the service say
the same thing. An enum may carry ``x-hints`` (value -> why it is refused and how to
allow it) for values that are known but refused by default. Checks a schema cannot express
stay in ``clients.py``.

The Helm chart embeds a generated copy under ``$defs.client`` of its ``values.schema.json``
(``chart_copy``); regenerate it with ``python -m tokensvc.clientschema`` (``--check`` only
compares, exit 1 when it differs). A test keeps them equal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

#: Where editors and the chart find the schema inside the repository.
SCHEMA_FILE = "tokensvc/data/client.schema.json"
#: The chart's values schema, relative to the repository root.
CHART_SCHEMA_FILE = "helm/tokensvc/values.schema.json"
_MAX_MESSAGE = 300
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


@cache
def client_schema() -> dict[str, Any]:
    """The client-file schema as shipped in the package."""
    text = files("tokensvc").joinpath("data/client.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # The shipped schema is checked against the metaschema by tests/test_clientschema.py, not
    # here: that check costs ≈ 40 ms of every start-up.
    return jsonschema.Draft202012Validator(client_schema())


def field_path(parts: Iterator[str | int] | list[str | int]) -> str:
    """``["edges", "default", 0]`` -> ``edges.default[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(base: str, key: object) -> str:
    return f"{base}.{key}" if base else str(key)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _json_type(value: object) -> str:
    for name, kind in (
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, kind):
            return name
    return "other"


def _problems_of(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    where = field_path(list(error.absolute_path))
    schema = error.schema if isinstance(error.schema, dict) else {}
    described = schema.get("description")
    keyword = error.validator
    if "propertyNames" in error.absolute_schema_path:
        return [(_join(where, error.instance), str(described or error.message))]
    if keyword == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        names = error.validator_value if isinstance(error.validator_value, list) else []
        return [(_join(where, name), "is required") for name in names if name not in present]
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        # Keys the schema names only to refuse them (``not: {}``) are not offered.
        allowed = sorted(
            k
            for k, v in schema.get("properties", {}).items()
            if not (isinstance(v, dict) and v.get("not") == {})
        )
        return [
            (_join(where, key), f"unknown key (allowed: {', '.join(allowed)})")
            for key in error.instance
            if key not in schema.get("properties", {})
        ]
    if keyword == "enum":
        options = error.validator_value if isinstance(error.validator_value, list) else []
        valid = ", ".join(str(v) for v in options)
        title = schema.get("title")
        value = _short(repr(error.instance))
        hints = schema.get("x-hints", {})
        hint = hints.get(error.instance) if isinstance(error.instance, str) else None
        if title and hint:
            return [(where, f"{title} {value} is refused: {hint}")]
        if title:
            return [(where, f"unknown {title} {value} (valid: {valid})")]
        if described:
            return [(where, str(described))]
        return [(where, f"must be one of {valid}")]
    if keyword == "type" and not where:
        return [
            (
                "",
                "the file must be a mapping of client settings (twilio:, auth:, ...), "
                f"not {_TYPE_WORDS.get(_json_type(error.instance), 'that')}",
            )
        ]
    if keyword == "type":
        wanted = error.validator_value
        listed = wanted if isinstance(wanted, list) else []
        kinds = [wanted] if isinstance(wanted, str) else [k for k in listed if k != "null"]
        words = " or ".join(_TYPE_WORDS.get(k, str(k)) for k in kinds)
        got = _TYPE_WORDS.get(_json_type(error.instance), "something else")
        if error.instance is None:
            got = "nothing (null)"
        return [(where, f"{described} (got {got})" if described else f"must be {words}, not {got}")]
    if described:
        return [(where, str(described))]
    # jsonschema's own message quotes the value: keep it short.
    return [(where, _short(error.message))]


def schema_problems(document: object) -> list[tuple[str, str]]:
    """Every schema error in one parsed client file, as ``(field, message)``, in document
    order, without duplicates. The document must be JSON-like (string keys, bounded size):
    ``clients.py`` checks that first."""
    found: list[tuple[str, str]] = []
    errors = sorted(
        _validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    )
    # A value of the wrong type also fails its enum or pattern: report the type only.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped:
            continue
        for item in _problems_of(error):
            if item not in found:
                found.append(item)
    return found


def _rewrite_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = prefix + value[len("#/") :]
            else:
                out[key] = _rewrite_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix) for v in node]
    return node


def chart_copy(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The client schema as the chart embeds it at ``$defs.client``: the same rules, without
    ``$schema``/``$id`` (not allowed below a schema's root) and with ``#/$defs/x`` references
    pointing into the copy (``#/$defs/client/$defs/x``)."""
    source = client_schema() if schema is None else schema
    body = {k: v for k, v in source.items() if k not in ("$schema", "$id")}
    rewritten: dict[str, Any] = _rewrite_refs(body, "#/$defs/client/")
    return rewritten


def embed_in_chart(chart_schema: dict[str, Any]) -> dict[str, Any]:
    """``chart_schema`` with ``$defs.client`` replaced by ``chart_copy()``."""
    out = dict(chart_schema)
    out["$defs"] = {**chart_schema.get("$defs", {}), "client": chart_copy()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tokensvc.clientschema",
        description="Write the client schema into the chart's values.schema.json ($defs.client).",
    )
    parser.add_argument("chart_schema", nargs="?", default=CHART_SCHEMA_FILE)
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 when the chart's copy differs"
    )
    args = parser.parse_args(argv)
    path = Path(args.chart_schema)
    current = json.loads(path.read_text("utf-8"))
    wanted = embed_in_chart(current)
    if args.check:
        if wanted != current:
            print(
                f"{path}: $defs.client differs from {SCHEMA_FILE}; run "
                "python -m tokensvc.clientschema",
                file=sys.stderr,
            )
            return 1
        print(f"{path}: $defs.client is up to date")
        return 0
    path.write_text(json.dumps(wanted, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote $defs.client into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
