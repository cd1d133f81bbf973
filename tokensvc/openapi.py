"""The OpenAPI 3.1 description of the public API, served at ``GET /openapi.json``.

Nothing here is a copy: paths come from ``paths``, error codes from the ``errors`` tree,
platforms and APNs environments from ``minting``, home regions and the client-id pattern from
``clients``, edges and countries from ``edges``. What the document says about the order of
checks is what ``token_endpoint`` does (the body before the credential).
"""

from __future__ import annotations

from typing import Any

from tokensvc import __version__
from tokensvc.clients import CLIENT_ID, HOME_REGIONS
from tokensvc.edges import EDGES, country_locations
from tokensvc.errors import api_errors
from tokensvc.minting import APNS_ENVIRONMENTS, PLATFORMS
from tokensvc.paths import EDGE_REPORT_PATH, EDGES_PATH, PREFLIGHT_TOKEN_PATH, TOKEN_PATH
from tokensvc.reports import MAX_CODE, MAX_REPORT_BYTES, MIN_CODE, QUALITIES

PROBLEM_CODES = [cls.code for cls in api_errors()]
ORDER_OF_CHECKS = (
    "Checks run in this order, and the first failure answers: 505 (HTTP/2 on cleartext), "
    "431 (headers), 503 (not serving), 404 (unknown client), 413/408 (body size and "
    "deadline), 401 (Authorization header missing or not 'Bearer <credential>'), 415/400 "
    "(the body), 429 (per-IP limit), 503 (identity-provider keys unavailable), 401 "
    "(credential not valid), 403 (body identity not the token's, identity blocked), 429 "
    "(per-identity limit). A missing "
    "credential is reported before any problem of the body; the credential is verified "
    "after the body, because an api_key client's caller names its identity there. A null "
    "field means the field is absent."
)


def _letters(letter: str) -> str:
    return f"[{letter}{letter.lower()}]"


def country_pattern() -> str:
    """Every code of the country table (ISO 3166-1 alpha-2 and XK), in either case."""
    codes = sorted(country_locations())
    return "^(?:" + "|".join(_letters(c[0]) + _letters(c[1]) for c in codes) + ")$"


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    if headers:
        response["headers"] = headers
    return response


def _header(
    description: str, required: bool = True, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": schema or {"type": "string"},
    }


_ANY_ROUTE = {
    "405": _problem(
        "Method not allowed (method_not_allowed); Allow lists the methods",
        {"Allow": _header("The methods this path serves")},
    ),
    "431": _problem("Request headers too large (headers_too_large)"),
    "500": _problem("Unexpected error (internal)"),
    "505": _problem("HTTP/2 on the cleartext port (http_version_not_supported)"),
}
_CLIENT = {
    "name": "client",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{CLIENT_ID.pattern}$"},
}
_CORS = {
    "Access-Control-Allow-Origin": _header(
        "The caller's origin, when the client allows it", required=False
    )
}


def _preflight(method: str, name: str) -> dict[str, Any]:
    return {
        "operationId": f"preflight{method.title()}{name}",
        "summary": "CORS preflight",
        "description": f"Answers 204 when Origin is in the client's cors.allow_origins and "
        f"Access-Control-Request-Method is {method}; 403 otherwise.",
        "parameters": [
            _CLIENT,
            {"name": "Origin", "in": "header", "required": True, "schema": {"type": "string"}},
            {
                "name": "Access-Control-Request-Method",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "204": {
                "description": "Preflight allowed",
                "headers": {
                    "Access-Control-Allow-Origin": _header("The allowed origin (never *)"),
                    "Access-Control-Allow-Methods": _header(f"{method}, OPTIONS"),
                    "Access-Control-Allow-Headers": _header("Request headers allowed"),
                    "Access-Control-Max-Age": _header("Seconds to cache this answer"),
                },
            },
            "403": _problem("Origin or method not allowed (forbidden)"),
            "404": _problem("Unknown client (unknown_client)"),
            **_ANY_ROUTE,
        },
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tokensvc",
        "version": __version__,
        "description": "Twilio Voice Access Tokens for authenticated callers, with an "
        "ordered list of Twilio edges per client and caller location. "
        "Every 4xx and 5xx is an RFC 9457 problem document whose code is "
        "stable.",
    },
    "paths": {
        TOKEN_PATH: {
            "post": {
                "operationId": "mintToken",
                "description": ORDER_OF_CHECKS,
                "parameters": [_CLIENT],
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TokenRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A Voice Access Token and the edges to use",
                        "headers": _CORS,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TokenResponse"}
                            }
                        },
                    },
                    "400": _problem("Invalid body (invalid_request)"),
                    "401": _problem(
                        "Missing or invalid caller credential (unauthenticated)",
                        {"WWW-Authenticate": _header("Bearer challenge")},
                    ),
                    "403": _problem(
                        "Identity blocked, or a jwt client's body names another "
                        "identity than its token (forbidden)"
                    ),
                    "404": _problem("Unknown client (unknown_client) or path (not_found)"),
                    "408": _problem("Body not received in time (request_timeout)"),
                    "413": _problem("Body too large (payload_too_large)"),
                    "415": _problem("Body is not JSON (unsupported_media_type)"),
                    "429": _problem(
                        "Rate limited (rate_limited)",
                        {"Retry-After": _header("Seconds to wait", schema={"type": "integer"})},
                    ),
                    "503": _problem(
                        "Starting, or this client's identity-provider keys are "
                        "unavailable here: try another region (not_ready)"
                    ),
                    **_ANY_ROUTE,
                },
            },
            "options": _preflight("POST", "Token"),
        },
        EDGES_PATH: {
            "get": {
                "operationId": "getEdges",
                "parameters": [
                    _CLIENT,
                    {
                        "name": "country",
                        "in": "query",
                        "required": False,
                        "description": "ISO 3166-1 alpha-2 code (either case); a trusted "
                        "load-balancer header wins. Anything else is a 400.",
                        "schema": {"type": "string", "pattern": country_pattern()},
                    },
                    {
                        "name": "explain",
                        "in": "query",
                        "required": False,
                        "description": "true: add ``explain`` (configured list, measurements "
                        "from edge reports, and why the order differs)",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Ordered edges",
                        "headers": _CORS,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/EdgesResponse"}
                            }
                        },
                    },
                    "400": _problem("country is not an ISO 3166-1 code (invalid_request)"),
                    "404": _problem("Unknown client (unknown_client)"),
                    **_ANY_ROUTE,
                },
            },
            "options": _preflight("GET", "Edges"),
        },
        PREFLIGHT_TOKEN_PATH: {
            "post": {
                "operationId": "mintPreflightToken",
                "description": "A short-lived token (preflight.ttl_seconds, default 300) for "
                "the client's echo TwiML app (preflight.outgoing_application_sid): no incoming, "
                "no push. Run Device.runPreflight(token, {edge}) once per returned edge. Same "
                "authentication and order of checks as the token POST; its own per-identity "
                "limit (preflight.rate_limit). 404 no_preflight_app after authentication when "
                "the client has no preflight section.",
                "parameters": [_CLIENT],
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/PreflightTokenRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A preflight token and the edges to test",
                        "headers": _CORS,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PreflightTokenResponse"}
                            }
                        },
                    },
                    "400": _problem("Invalid body (invalid_request)"),
                    "401": _problem("Missing or invalid caller credential (unauthenticated)"),
                    "403": _problem("Identity blocked (forbidden)"),
                    "404": _problem(
                        "Unknown client (unknown_client) or no preflight app (no_preflight_app)"
                    ),
                    "408": _problem("Body not received in time (request_timeout)"),
                    "413": _problem("Body too large (payload_too_large)"),
                    "415": _problem("Body is not JSON (unsupported_media_type)"),
                    "429": _problem("Rate limited (rate_limited)"),
                    "503": _problem("Starting, or identity-provider keys unavailable (not_ready)"),
                    **_ANY_ROUTE,
                },
            },
            "options": _preflight("POST", "PreflightToken"),
        },
        EDGE_REPORT_PATH: {
            "post": {
                "operationId": "reportEdges",
                "description": "What the caller saw of its edges: 202, no body. Counted per "
                "client x country (trusted header) x edge; no connected_edge is a failure of "
                "edges[0], connected_edge X a success of X and a failure of every edge before "
                f"it. Body at most {MAX_REPORT_BYTES} bytes; limits edges.reports.",
                "parameters": [_CLIENT],
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EdgeReport"}}
                    },
                },
                "responses": {
                    "202": {"description": "Accepted", "headers": _CORS},
                    "400": _problem("Unknown edge, code out of range, bad field (invalid_request)"),
                    "401": _problem("Missing or invalid caller credential (unauthenticated)"),
                    "403": _problem("Identity blocked (forbidden)"),
                    "404": _problem("Unknown client (unknown_client)"),
                    "408": _problem("Body not received in time (request_timeout)"),
                    "413": _problem("Body too large (payload_too_large)"),
                    "415": _problem("Body is not JSON (unsupported_media_type)"),
                    "429": _problem("Rate limited (rate_limited)"),
                    "503": _problem("Starting, or identity-provider keys unavailable (not_ready)"),
                    **_ANY_ROUTE,
                },
            },
            "options": _preflight("POST", "EdgeReport"),
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "responses": {"200": {"description": "Process alive"}, **_ANY_ROUTE},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "Ready to serve"},
                    "503": {"description": "Not ready or draining"},
                    **_ANY_ROUTE,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": {"description": "This document"}, **_ANY_ROUTE},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The caller's credential: a JWT from "
                "the client's identity provider, or an "
                "API key for api_key clients",
            }
        },
        "schemas": {
            "Edge": {"type": "string", "enum": sorted(EDGES)},
            "TokenRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "platform": {"type": ["string", "null"], "enum": [*PLATFORMS, None]},
                    "apns_environment": {
                        "type": ["string", "null"],
                        "enum": [*APNS_ENVIRONMENTS, None],
                    },
                    "country": {
                        "type": ["string", "null"],
                        "pattern": country_pattern(),
                        "description": "ISO 3166-1 alpha-2 hint (either case); a "
                        "trusted load-balancer header wins; anything "
                        "else is a 400",
                    },
                    "identity": {
                        "type": ["string", "null"],
                        "minLength": 1,
                        "maxLength": 1024,
                        "description": "api_key and none clients: the identity to "
                        "mint for (required). jwt clients take the "
                        "identity from the caller's token; this may "
                        "repeat it, and any other value is 403 "
                        "forbidden.",
                    },
                },
            },
            "TokenResponse": {
                "type": "object",
                "required": [
                    "token",
                    "identity",
                    "ttl",
                    "expires_at",
                    "refresh_in",
                    "edges",
                    "region",
                    "home_region",
                ],
                "properties": {
                    "token": {"type": "string"},
                    "identity": {"type": "string"},
                    "ttl": {"type": "integer"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "refresh_in": {"type": "integer"},
                    "edges": {"type": "array", "items": {"$ref": "#/components/schemas/Edge"}},
                    "region": {"type": "string"},
                    "home_region": {"type": "string", "enum": list(HOME_REGIONS)},
                    "edge": {
                        "$ref": "#/components/schemas/Edge",
                        "description": "ios and android only: the one edge to set "
                        "(TwilioVoiceSDK.edge, Voice.setEdge), edges[0]; edges is the "
                        "fallback order",
                    },
                },
            },
            "PreflightTokenRequest": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "identity": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024},
                    "country": {"type": ["string", "null"], "pattern": country_pattern()},
                },
            },
            "PreflightTokenResponse": {
                "type": "object",
                "required": ["token", "identity", "ttl", "expires_at", "edges", "region"],
                "properties": {
                    "token": {"type": "string"},
                    "identity": {"type": "string"},
                    "ttl": {"type": "integer"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "edges": {"type": "array", "items": {"$ref": "#/components/schemas/Edge"}},
                    "country": {"type": ["string", "null"]},
                    "region": {"type": "string"},
                    "home_region": {"type": "string", "enum": list(HOME_REGIONS)},
                },
            },
            "EdgeReport": {
                "type": "object",
                "additionalProperties": False,
                "required": ["edges"],
                "properties": {
                    "edges": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": len(EDGES),
                        "items": {"$ref": "#/components/schemas/Edge"},
                    },
                    "connected_edge": {
                        "anyOf": [{"$ref": "#/components/schemas/Edge"}, {"type": "null"}]
                    },
                    "error_code": {
                        "type": ["integer", "null"],
                        "minimum": MIN_CODE,
                        "maximum": MAX_CODE,
                    },
                    "identity": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024},
                    "preflight": {
                        "anyOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["edge"],
                                "properties": {
                                    "edge": {"$ref": "#/components/schemas/Edge"},
                                    "rtt_ms": {
                                        "type": ["number", "null"],
                                        "minimum": 0,
                                        "maximum": 60000,
                                    },
                                    "jitter_ms": {
                                        "type": ["number", "null"],
                                        "minimum": 0,
                                        "maximum": 60000,
                                    },
                                    "mos": {"type": ["number", "null"], "minimum": 1, "maximum": 5},
                                    "quality": {
                                        "type": ["string", "null"],
                                        "enum": [*QUALITIES, None],
                                    },
                                },
                            },
                        ]
                    },
                },
            },
            "EdgesResponse": {
                "type": "object",
                "required": ["edges", "region"],
                "properties": {
                    "edges": {"type": "array", "items": {"$ref": "#/components/schemas/Edge"}},
                    "country": {"type": ["string", "null"]},
                    "region": {"type": "string"},
                    "explain": {"type": "object", "description": "with explain=true"},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "code"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string", "enum": PROBLEM_CODES},
                },
            },
        },
    },
}
