"""The client-file JSON Schema: the one definition of the structure, in step with the code."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from tokensvc import clients
from tokensvc.clientschema import (
    CHART_SCHEMA_FILE,
    SCHEMA_FILE,
    client_schema,
    field_path,
    main,
    schema_problems,
)
from tokensvc.edges import CATALOGUE, EDGES, NON_SDK_EDGES

ROOT = Path(__file__).resolve().parent.parent


def test_schema_is_valid_draft_2020_12() -> None:
    """The shipped schema is itself a valid draft 2020-12 schema."""
    schema = client_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "https://json-schema.org/draft/2020-12/schema" == schema["$schema"]


def test_package_data_is_the_repository_file() -> None:
    """The schema the service loads is the file editors point at."""
    assert json.loads((ROOT / SCHEMA_FILE).read_text("utf-8")) == client_schema()


def test_edge_enum_is_the_code_catalogue() -> None:
    """The schema's edge enum is exactly tokensvc.edges.EDGES."""
    enum = client_schema()["$defs"]["edge"]["enum"]
    assert (sorted(EDGES), len(enum)) == (sorted(enum), len(set(enum)))


def test_catalogue_edge_enum_is_the_data_file() -> None:
    """With allow_non_sdk_edges the lists take every catalogue edge; each non-SDK one has a
    hint saying how to allow it."""
    defs = client_schema()["$defs"]
    assert (list(CATALOGUE), set(NON_SDK_EDGES)) == (
        defs["catalogueEdge"]["enum"],
        set(defs["edge"]["x-hints"]),
    )


def test_enums_and_bounds_match_the_code() -> None:
    """Home regions, algorithms, identity encodings and ttl bounds agree with clients.py."""
    props = client_schema()["properties"]
    auth, ttl = props["auth"]["properties"], props["token"]["properties"]["ttl_seconds"]
    assert (
        list(clients.HOME_REGIONS),
        set(clients.HMAC_ALGORITHMS | clients.ASYMMETRIC_ALGORITHMS),
        list(clients.IDENTITY_ENCODINGS),
        (clients.MIN_TTL, clients.MAX_TTL),
    ) == (
        props["twilio"]["properties"]["home_region"]["enum"],
        set(auth["algorithms"]["items"]["enum"]),
        auth["identity_encoding"]["enum"],
        (ttl["minimum"], ttl["maximum"]),
    )


def test_chart_copy_is_current() -> None:
    """`python -m tokensvc.clientschema --check` finds the chart's $defs.client up to date."""
    assert 0 == main([str(ROOT / CHART_SCHEMA_FILE), "--check"])


def test_example_declares_and_passes_the_schema() -> None:
    """clients_config/example.yaml names the schema for editors and validates against it."""
    text = (ROOT / "clients_config" / "example.yaml").read_text("utf-8")
    first = text.splitlines()[0]
    assert "# yaml-language-server: $schema=../tokensvc/data/client.schema.json" == first
    assert (ROOT / "clients_config" / "../tokensvc/data/client.schema.json").is_file()
    assert [] == schema_problems(yaml.safe_load(text))


def test_field_paths_read_as_written() -> None:
    """JSON paths are rendered the way the operator writes them."""
    assert "edges.by_country.IE[1]" == field_path(["edges", "by_country", "IE", 1])


def test_errors_name_field_and_say_why() -> None:
    """Errors carry the field path and the schema's message, not a raw JSON Schema dump."""
    found = schema_problems(
        {
            "twilio": {"account_sid": "AC1"},
            "auth": {"type": "jwt"},
            "edges": {"default": ["frankfort"]},
        }
    )
    assert {
        "twilio.account_sid",
        "auth.algorithms",
        "auth.issuer",
        "auth.audience",
        "edges.default[0]",
    } <= {f for f, _ in found}
    assert ("edges.default[0]", True) in {
        (f, m.startswith("unknown edge 'frankfort'")) for f, m in found
    }
