"""The OpenAPI document is valid and the service's answers match it."""

from __future__ import annotations

import jsonschema
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from support import assertion
from tokensvc.openapi import OPENAPI


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
