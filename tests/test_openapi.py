"""The OpenAPI document is valid and the service's answers match it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from support import assertion, serve, write_client
from tokensvc.clients import CLIENT_ID, HOME_REGIONS
from tokensvc.edges import country_locations
from tokensvc.errors import ApiError, api_errors
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.openapi import OPENAPI
from tokensvc.paths import EDGES_PATH, TOKEN_PATH


def schema(name: str) -> dict[str, Any]:
    """A component schema with its $refs resolvable."""
    return {**OPENAPI["components"]["schemas"][name], "components": OPENAPI["components"]}


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document."""
    validate(OPENAPI)


def test_token_response_matches_its_schema(client: TestClient) -> None:
    """A 200 token response validates against TokenResponse."""
    body = client.post(
        "/v1/clients/app/token", headers={"Authorization": f"Bearer {assertion()}"}
    ).json()
    jsonschema.validate(body, schema("TokenResponse"))


def test_problem_responses_match_their_schema(client: TestClient) -> None:
    """401, 404 and 400 problem documents validate against Problem."""
    for r in (
        client.post("/v1/clients/app/token"),
        client.post("/v1/clients/nope/token"),
        client.post(
            "/v1/clients/app/token",
            content=b"{",
            headers={"Authorization": f"Bearer {assertion()}", "Content-Type": "application/json"},
        ),
    ):
        jsonschema.validate(r.json(), schema("Problem"))


def test_edges_response_matches_its_schema(client: TestClient) -> None:
    """The edges endpoint's answer validates against EdgesResponse."""
    jsonschema.validate(
        client.get("/v1/clients/app/edges?country=JP").json(), schema("EdgesResponse")
    )


def test_enums_come_from_the_code() -> None:
    """Error codes, platforms, APNs environments, home regions and the client-id pattern are
    the code's own values."""
    schemas = OPENAPI["components"]["schemas"]
    request = schemas["TokenRequest"]["properties"]
    codes = {cls.code for cls in api_errors()}
    assert {"internal", "headers_too_large", "method_not_allowed"} <= codes
    assert (sorted(codes), [*PLATFORMS, None], [*APNS_ENVIRONMENTS, None], list(HOME_REGIONS)) == (
        sorted(schemas["Problem"]["properties"]["code"]["enum"]),
        request["platform"]["enum"],
        request["apns_environment"]["enum"],
        schemas["TokenResponse"]["properties"]["home_region"]["enum"],
    )
    client = OPENAPI["paths"][TOKEN_PATH]["post"]["parameters"][0]["schema"]["pattern"]
    assert f"^{CLIENT_ID.pattern}$" == client


def test_every_error_status_is_documented_on_the_token_post() -> None:
    """Every status an ApiError can answer on the token POST is in its responses (the 404 of
    the router included), and 405 documents Allow."""
    responses = OPENAPI["paths"][TOKEN_PATH]["post"]["responses"]
    statuses = {str(cls.status) for cls in api_errors() if cls is not ApiError}
    assert set() == statuses - set(responses)
    assert "Allow" in responses["405"]["headers"]


def test_preflights_are_documented() -> None:
    """The CORS preflight (OPTIONS) of both client routes is described, 204 and 403."""
    for path in (TOKEN_PATH, EDGES_PATH):
        assert {"204", "403", "404"} <= set(OPENAPI["paths"][path]["options"]["responses"])


def test_country_pattern_is_exactly_the_country_table() -> None:
    """The documented country pattern accepts every table code in either case and nothing
    else of two letters."""
    pattern = re.compile(
        OPENAPI["components"]["schemas"]["TokenRequest"]["properties"]["country"]["pattern"]
    )
    pairs = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    accepted = {p for p in pairs if pattern.fullmatch(p) and pattern.fullmatch(p.lower())}
    assert set(country_locations()) == accepted


def test_wrong_method_matches_the_document(client: TestClient) -> None:
    """A 405 carries the documented Allow header and a Problem body."""
    r = client.delete(TOKEN_PATH.replace("{client}", "app"))
    assert (405, "POST, OPTIONS") == (r.status_code, r.headers["allow"])
    jsonschema.validate(r.json(), schema("Problem"))


SCHEMATHESIS_CONFIG = """\
[parameters]
"path.client" = "app"

[checks.negative_data_rejection]
# 413 and 431 are rejections too (a generated body or header past the caps)
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "431"]
"""


@pytest.mark.slow
@pytest.mark.parametrize("credential", [True, False], ids=["with-credential", "anonymous"])
def test_schemathesis_finds_nothing(tmp_path: Path, credential: bool) -> None:
    """Schemathesis (every check, coverage and fuzzing phases) against a real `tokensvc
    serve`, the client id pinned to a real client, with a valid caller credential and
    without one: zero failures. Bounded to about half a minute per run."""
    config = tmp_path / "clients"
    write_client(config, rate_limit={"per_identity": "100000000/hour", "per_ip": "100000000/hour"})
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)
    st = Path(sys.executable).with_name("st")
    with serve(config, tmp_path) as served:
        command = [
            str(st),
            "--config-file",
            str(tmp_path / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{served.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "13",
            "--request-timeout",
            "5",
        ]
        if credential:
            command += ["--header", f"Authorization: Bearer {assertion('alice', exp=2**31)}"]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False
        )
    assert (0, "") == (result.returncode, result.stderr), result.stdout[-6000:]
