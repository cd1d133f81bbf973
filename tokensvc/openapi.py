"""The OpenAPI 3.1 description of the public API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from tokensvc import __version__
from tokensvc.edges import EDGES

_PROBLEM_CODES = ["invalid_request", "unauthenticated", "forbidden", "unknown_client",
                  "not_found", "method_not_allowed", "request_timeout", "payload_too_large",
                  "unsupported_media_type", "rate_limited", "headers_too_large",
                  "not_ready"]


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref":
                                                                "#/components/schemas/Problem"}}}}


_CLIENT = {"name": "client", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "tokensvc", "version": __version__,
             "description": "Twilio Voice Access Tokens for authenticated callers, with an "
                            "ordered list of Twilio edges per client and caller location."},
    "paths": {
        "/v1/clients/{client}/token": {
            "post": {
                "operationId": "mintToken",
                "parameters": [_CLIENT],
                "security": [{"bearer": []}],
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
                "responses": {
                    "200": {"description": "A Voice Access Token and the edges to use",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/TokenResponse"}}}},
                    "400": _problem("Invalid request"),
                    "401": _problem("Missing or invalid caller credential"),
                    "403": _problem("Identity blocked or not allowed"),
                    "404": _problem("Unknown client"),
                    "408": _problem("Body not received in time"),
                    "413": _problem("Body too large"),
                    "415": _problem("Body is not JSON"),
                    "429": _problem("Rate limited (see Retry-After)"),
                    "503": _problem("Not ready"),
                },
            },
        },
        "/v1/clients/{client}/edges": {
            "get": {
                "operationId": "getEdges",
                "parameters": [_CLIENT, {"name": "country", "in": "query", "required": False,
                                         "schema": {"type": "string",
                                                    "pattern": "^[A-Za-z]{2}$"}}],
                "responses": {
                    "200": {"description": "Ordered edges",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/EdgesResponse"}}}},
                    "404": _problem("Unknown client"),
                },
            },
        },
        "/livez": {"get": {"operationId": "livez",
                           "responses": {"200": {"description": "Process alive"}}}},
        "/readyz": {"get": {"operationId": "readyz",
                            "responses": {"200": {"description": "Ready to serve"},
                                          "503": {"description": "Not ready or draining"}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "The caller's credential: a JWT from "
                                                      "the client's identity provider, or an "
                                                      "API key for api_key clients"}},
        "schemas": {
            "Edge": {"type": "string", "enum": sorted(EDGES)},
            "TokenRequest": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "platform": {"type": "string", "enum": ["browser", "ios", "android"]},
                    "apns_environment": {"type": "string", "enum": ["sandbox", "production"]},
                    "country": {"type": "string", "description": "ISO 3166-1 alpha-2 hint; "
                                "a trusted load-balancer header wins"},
                    "identity": {"type": "string", "description": "api_key clients only"},
                },
            },
            "TokenResponse": {
                "type": "object",
                "required": ["token", "identity", "ttl", "expires_at", "refresh_in", "edges",
                             "region", "home_region"],
                "properties": {
                    "token": {"type": "string"},
                    "identity": {"type": "string"},
                    "ttl": {"type": "integer"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "refresh_in": {"type": "integer"},
                    "edges": {"type": "array", "items": {"$ref": "#/components/schemas/Edge"}},
                    "region": {"type": "string"},
                    "home_region": {"type": "string", "enum": ["us1", "ie1", "au1"]},
                },
            },
            "EdgesResponse": {
                "type": "object", "required": ["edges", "region"],
                "properties": {
                    "edges": {"type": "array", "items": {"$ref": "#/components/schemas/Edge"}},
                    "country": {"type": ["string", "null"]},
                    "region": {"type": "string"},
                },
            },
            "Problem": {
                "type": "object", "required": ["type", "title", "status", "code"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"},
                    "code": {"type": "string", "enum": _PROBLEM_CODES},
                },
            },
        },
    },
}
