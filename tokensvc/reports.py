"""``POST /v1/clients/{client}/edge-report``: what a caller saw of its edges -> 202, no body.

    receive (413 past MAX_REPORT_BYTES, 408, 401) -> parse EdgeReport (415/400) ->
    caller.authenticate (429 per IP, 503, 401, 403, 429 per identity: ``edges.reports``,
    counters of its own) -> Telemetry.edge_report + AdaptiveOrder.record -> 202

Body (every field but ``edges`` may be null or left out; any other field is a 400)::

    {"edges": ["dublin", "frankfurt"],      # the list the caller was given, 1..16 edges
     "connected_edge": "frankfurt",         # device.edge on registered; null: none connected
     "error_code": 31005,                   # a Twilio error code 10000..99999, or null
     "preflight": {"edge": "dublin", "rtt_ms": 42.0, "jitter_ms": 3.1, "mos": 4.3,
                   "quality": "excellent"}} # Device.runPreflight's report, or null

Only bounded state comes out of it: counters per client x country x edge (edges from the
catalogue, error codes bucketed into ``ERROR_KINDS``, the country from the trusted
load-balancer header, else ``unknown``; never an identity) and an RTT histogram, through
``Telemetry``; and, for clients with ``edges.adaptive``, the adaptive order's counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from tokensvc.caller import authenticate, receive, resolve
from tokensvc.edges import EDGES
from tokensvc.errors import InvalidRequest
from tokensvc.render import Answer, empty
from tokensvc.token_endpoint import cors_headers, json_object

PURPOSE = "er"  # the rate-limit counters' infix
MAX_REPORT_BYTES = 2048
MAX_EDGES = len(EDGES)
FIELDS = frozenset({"edges", "connected_edge", "error_code", "preflight", "identity"})
PREFLIGHT_FIELDS = frozenset({"edge", "rtt_ms", "jitter_ms", "mos", "quality"})
QUALITIES = ("excellent", "great", "good", "fair", "degraded")
MIN_CODE, MAX_CODE = 10000, 99999
#: Error-code buckets (the ``kind`` label): token errors need a new token, connection errors
#: are what the SDK's edge fallback is for; the rest is media or other.
TOKEN_CODES = frozenset({20101, 20103, 20104, 20105, 20107, 20151, 20155, 20157})
TOKEN_CODES |= frozenset(range(31201, 31208))
CONNECTION_CODES = frozenset({31000, 31003, 31005, 31009, 53000, 53001, 53002})
ERROR_KINDS = ("token", "connection", "media", "other")


def error_kind(code: int) -> str:
    if code in TOKEN_CODES:
        return "token"
    if code in CONNECTION_CODES:
        return "connection"
    if 53400 <= code <= 53599 or 31400 <= code <= 31499:
        return "media"
    return "other"


@dataclass(frozen=True, slots=True)
class Preflight:
    edge: str
    rtt_ms: float | None
    jitter_ms: float | None
    mos: float | None
    quality: str | None


@dataclass(frozen=True, slots=True)
class EdgeReport:
    edges: tuple[str, ...]
    connected_edge: str | None
    error_code: int | None
    preflight: Preflight | None
    identity: str | None = None  # api_key and none clients name the caller here

    def outcomes(self) -> list[tuple[str, bool]]:
        """The counting rule: no connection fails ``edges[0]``; connecting to X succeeds X and
        fails every edge listed before it."""
        if self.connected_edge is None:
            return [(self.edges[0], False)]
        before = (
            self.edges[: self.edges.index(self.connected_edge)]
            if self.connected_edge in self.edges
            else ()
        )
        return [*((e, False) for e in before), (self.connected_edge, True)]


def _edge(value: object, name: str) -> str:
    if not isinstance(value, str) or value not in EDGES:
        raise InvalidRequest(f"{name} is not a Twilio edge")
    return value


def _number(data: dict[str, object], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"preflight.{name} must be a number")
    if not low <= value <= high:
        raise InvalidRequest(f"preflight.{name} must be within {low:g}..{high:g}")
    return float(value)


def parse_report(data: dict[str, object]) -> EdgeReport:
    """The typed report, or the InvalidRequest naming what is wrong."""
    unknown = set(data) - FIELDS
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    edges = data.get("edges")
    if not isinstance(edges, list) or not 1 <= len(edges) <= MAX_EDGES:
        raise InvalidRequest(f"edges must be a list of 1..{MAX_EDGES} edges")
    listed = tuple(_edge(e, "an entry of edges") for e in edges)
    connected = data.get("connected_edge")
    if connected is not None:
        connected = _edge(connected, "connected_edge")
    code = data.get("error_code")
    if code is not None and (
        isinstance(code, bool) or not isinstance(code, int) or not MIN_CODE <= code <= MAX_CODE
    ):
        raise InvalidRequest(f"error_code must be a Twilio error code {MIN_CODE}..{MAX_CODE}")
    raw = data.get("preflight")
    preflight = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise InvalidRequest("preflight must be an object")
        if set(raw) - PREFLIGHT_FIELDS:
            raise InvalidRequest(f"preflight takes only {', '.join(sorted(PREFLIGHT_FIELDS))}")
        quality = raw.get("quality")
        if quality is not None and quality not in QUALITIES:
            raise InvalidRequest(f"preflight.quality must be one of {', '.join(QUALITIES)}")
        preflight = Preflight(
            edge=_edge(raw.get("edge"), "preflight.edge"),
            rtt_ms=_number(raw, "rtt_ms", 0, 60_000),
            jitter_ms=_number(raw, "jitter_ms", 0, 60_000),
            mos=_number(raw, "mos", 1, 5),
            quality=quality,
        )
    identity = data.get("identity")
    if identity is not None and (not isinstance(identity, str) or not 0 < len(identity) <= 1024):
        raise InvalidRequest("identity must be a non-empty string")
    return EdgeReport(listed, connected, code, preflight, identity)


async def edge_report(request: Request) -> Answer:
    service, client = resolve(request)
    incoming = await receive(request, service, client, MAX_REPORT_BYTES)
    report = parse_report(report_object(incoming.body, incoming.headers.get("content-type")))
    cfg = client.config
    limits = cfg.report_limits
    await authenticate(
        request,
        service,
        client,
        incoming,
        PURPOSE,
        limits.per_identity,
        limits.per_ip,
        report.identity,
    )
    outcomes = report.outcomes()
    error_edge = report.connected_edge or report.edges[0]
    rtt = (
        (report.preflight.edge, report.preflight.rtt_ms)
        if report.preflight is not None and report.preflight.rtt_ms is not None
        else None
    )
    service.telemetry.edge_report(
        cfg.client_id,
        incoming.country,
        outcomes,
        None if report.error_code is None else (error_edge, error_kind(report.error_code)),
        rtt,
    )
    configured = cfg.edges.for_country(incoming.country)
    service.adaptive.record(cfg, incoming.country, configured, outcomes, rtt)
    return empty(202, {"Cache-Control": "no-store", **cors_headers(client, incoming.headers)})


def report_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object (empty: a 400, since ``edges`` is required)."""
    if not body.strip():
        raise InvalidRequest("send the report as a JSON object")
    return json_object(body, content_type)
