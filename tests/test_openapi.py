"""The OpenAPI document is valid and the service's answers match it."""

from __future__ import annotations

import re

import jsonschema
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from support import assertion
from tokensvc.clients import CLIENT_ID, HOME_REGIONS
from tokensvc.edges import country_locations
from tokensvc.errors import ApiError, api_errors
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.openapi import OPENAPI
from tokensvc.paths import EDGES_PATH, TOKEN_PATH


def schema(name: str) -> dict:
    """A component schema with its $refs resolvable."""
    return {**OPENAPI["components"]["schemas"][name], "components": OPENAPI["components"]}


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document."""
    validate(OPENAPI)


def test_token_response_matches_its_schema(client: TestClient) -> None:
    """A 200 token response validates against TokenResponse."""
    body = client.post("/v1/clients/app/token",
                       headers={"Authorization": f"Bearer {assertion()}"}).json()
    jsonschema.validate(body, schema("TokenResponse"))


def test_problem_responses_match_their_schema(client: TestClient) -> None:
    """401, 404 and 400 problem documents validate against Problem."""
    for r in (client.post("/v1/clients/app/token"),
              client.post("/v1/clients/nope/token"),
              client.post("/v1/clients/app/token", content=b"{",
                          headers={"Authorization": f"Bearer {assertion()}",
                                   "Content-Type": "application/json"})):
        jsonschema.validate(r.json(), schema("Problem"))


def test_edges_response_matches_its_schema(client: TestClient) -> None:
    """The edges endpoint's answer validates against EdgesResponse."""
    jsonschema.validate(client.get("/v1/clients/app/edges?country=JP").json(),
                        schema("EdgesResponse"))


def test_enums_come_from_the_code() -> None:
    """Error codes, platforms, APNs environments, home regions and the client-id pattern are
    the code's own values."""
    schemas = OPENAPI["components"]["schemas"]
    request = schemas["TokenRequest"]["properties"]
    codes = {cls.code for cls in api_errors()}
    assert {"internal", "headers_too_large", "method_not_allowed"} <= codes
    assert (sorted(codes), [*PLATFORMS, None], [*APNS_ENVIRONMENTS, None],
            list(HOME_REGIONS)) == (
        sorted(schemas["Problem"]["properties"]["code"]["enum"]),
        request["platform"]["enum"], request["apns_environment"]["enum"],
        schemas["TokenResponse"]["properties"]["home_region"]["enum"])
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
    pattern = re.compile(OPENAPI["components"]["schemas"]["TokenRequest"]["properties"][
        "country"]["pattern"])
    pairs = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    accepted = {p for p in pairs if pattern.fullmatch(p) and pattern.fullmatch(p.lower())}
    assert set(country_locations()) == accepted


def test_wrong_method_matches_the_document(client: TestClient) -> None:
    """A 405 carries the documented Allow header and a Problem body."""
    r = client.delete(TOKEN_PATH.replace("{client}", "app"))
    assert (405, "POST, OPTIONS") == (r.status_code, r.headers["allow"])
    jsonschema.validate(r.json(), schema("Problem"))
