"""HTTP contract of the edge-feedback endpoints: the mobile ``edge`` field, preflight tokens,
edge reports and ``GET .../edges?explain=true``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient
from test_routes import assert_problem

from support import assertion, make_client, write_client

TOKEN = "/v1/clients/app/token"
PREFLIGHT = "/v1/clients/app/preflight-token"
REPORT = "/v1/clients/app/edge-report"
ECHO_APP = "AP" + "e" * 32
IE = {"x-country": "IE"}


def auth(sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {assertion(sub)}"}


def with_preflight(tmp_path: Path, **changes: Any) -> Path:
    write_client(tmp_path, "app", preflight={"outgoing_application_sid": ECHO_APP}, **changes)
    return tmp_path


@pytest.mark.parametrize("platform", ["ios", "android"])
def test_mobile_token_response_names_the_one_edge(client: TestClient, platform: str) -> None:
    """For ios/android the response has ``edge`` (the first usable edge) beside ``edges``."""
    body = client.post(TOKEN, headers=auth(), json={"platform": platform, "country": "IE"}).json()
    assert ("dublin", ["dublin", "frankfurt", "ashburn"]) == (body["edge"], body["edges"])


def test_browser_token_response_has_no_single_edge(client: TestClient) -> None:
    """A browser takes the whole list: no ``edge`` field."""
    assert "edge" not in client.post(TOKEN, headers=auth()).json()


def test_mobile_edge_skips_a_drained_edge(client: TestClient) -> None:
    """The mobile ``edge`` is the first edge left after drains."""
    service = client.app.state.service  # type: ignore[attr-defined]
    client.portal.call(service.shared.store.drain, "dublin", 60.0, "test")  # type: ignore[union-attr]
    client.portal.call(service.shared.refresh)  # type: ignore[union-attr]
    body = client.post(TOKEN, headers=auth(), json={"platform": "ios", "country": "IE"}).json()
    assert ("frankfurt", ["frankfurt", "ashburn"]) == (body["edge"], body["edges"])


def test_preflight_token_is_short_lived_for_the_echo_app(tmp_path: Path) -> None:
    """The preflight token lives 300 s, calls the echo app, has no incoming and no push."""
    with make_client(with_preflight(tmp_path)) as c:
        r = c.post(PREFLIGHT, headers=auth(), json={"country": "IE"})
    assert 200 == r.status_code
    body = r.json()
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    voice = claims["grants"]["voice"]
    assert (300, {"outgoing": {"application_sid": ECHO_APP}}) == (body["ttl"], voice)
    assert (["dublin", "frankfurt", "ashburn"], "alice") == (body["edges"], body["identity"])
    assert "no-store" == r.headers["cache-control"]


def test_preflight_token_ttl_from_the_client_file(tmp_path: Path) -> None:
    """preflight.ttl_seconds sets the lifetime."""
    write_client(
        tmp_path, "app", preflight={"outgoing_application_sid": ECHO_APP, "ttl_seconds": 120}
    )
    with make_client(tmp_path) as c:
        body = c.post(PREFLIGHT, headers=auth()).json()
    assert 120 == body["ttl"]


def test_preflight_token_without_preflight_app_is_404(client: TestClient) -> None:
    """A client without a preflight section answers 404 no_preflight_app (after auth)."""
    assert_problem(client.post(PREFLIGHT, headers=auth()), 404, "no_preflight_app")
    assert_problem(client.post(PREFLIGHT), 401, "unauthenticated")


def test_preflight_token_needs_authentication(tmp_path: Path) -> None:
    """A bad credential is 401, as on the token path."""
    with make_client(with_preflight(tmp_path)) as c:
        r = c.post(PREFLIGHT, headers={"Authorization": "Bearer nope"})
    assert_problem(r, 401, "unauthenticated")


def test_preflight_token_has_its_own_rate_limit(tmp_path: Path) -> None:
    """preflight.rate_limit counts preflight tokens only: token requests are not used up."""
    write_client(
        tmp_path,
        "app",
        preflight={"outgoing_application_sid": ECHO_APP, "rate_limit": "2/hour"},
        rate_limit={"per_identity": "5/minute"},
    )
    with make_client(tmp_path) as c:
        codes = [c.post(PREFLIGHT, headers=auth()).status_code for _ in range(3)]
        token = c.post(TOKEN, headers=auth()).status_code
    assert ([200, 200, 429], 200) == (codes, token)


def test_preflight_token_refuses_unknown_fields(tmp_path: Path) -> None:
    """Only identity and country may be sent."""
    with make_client(with_preflight(tmp_path)) as c:
        r = c.post(PREFLIGHT, headers=auth(), json={"platform": "ios"})
    assert_problem(r, 400, "invalid_request")


GOOD_REPORT = {
    "edges": ["dublin", "frankfurt"],
    "connected_edge": "frankfurt",
    "error_code": 31005,
    "preflight": {
        "edge": "frankfurt",
        "rtt_ms": 42.5,
        "jitter_ms": 2.0,
        "mos": 4.3,
        "quality": "excellent",
    },
}


def sample(c: TestClient, name: str, **labels: str) -> float:
    service = c.app.state.service  # type: ignore[attr-defined]
    value = service.telemetry.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def report_counts(c: TestClient, country: str) -> tuple[float, ...]:
    """The report metrics GOOD_REPORT moves (the registry is per process: compare deltas)."""
    where = {"client": "app", "country": country}
    return (
        sample(c, "tokensvc_edge_reports_total", **where, edge="dublin", outcome="failed"),
        sample(c, "tokensvc_edge_reports_total", **where, edge="frankfurt", outcome="connected"),
        sample(
            c, "tokensvc_edge_report_errors_total", **where, edge="frankfurt", kind="connection"
        ),
        sample(c, "tokensvc_edge_preflight_rtt_seconds_count", **where, edge="frankfurt"),
    )


def test_edge_report_is_202_without_body_and_counts(config_dir: Path) -> None:
    """An accepted report is 202 with no body; it counts per client x country x edge."""
    with make_client(config_dir, country_header="x-country") as c:
        before = report_counts(c, "IE")
        r = c.post(REPORT, headers={**auth(), **IE}, json=GOOD_REPORT)
        after = report_counts(c, "IE")
    assert (202, b"") == (r.status_code, r.content)
    assert (1.0, 1.0, 1.0, 1.0) == tuple(y - x for x, y in zip(before, after, strict=True))


def test_edge_report_country_comes_only_from_the_trusted_header(config_dir: Path) -> None:
    """Without the trusted header a report counts under ``unknown``, whatever it claims."""
    with make_client(config_dir) as c:
        before = report_counts(c, "unknown")
        c.post(REPORT, headers={**auth(), **IE}, json=GOOD_REPORT)
        after = report_counts(c, "unknown")
    assert (1.0, 1.0, 1.0, 1.0) == tuple(y - x for x, y in zip(before, after, strict=True))


@pytest.mark.parametrize(
    "report",
    [
        {"edges": ["frankfort"]},
        {"edges": []},
        {"edges": ["dublin"], "connected_edge": "nowhere"},
        {"edges": ["dublin"], "error_code": 9999},
        {"edges": ["dublin"], "error_code": 100000},
        {"edges": ["dublin"], "error_code": True},
        {"edges": ["dublin"], "preflight": {"edge": "dublin", "rtt_ms": -1}},
        {"edges": ["dublin"], "preflight": {"edge": "dublin", "mos": 7}},
        {"edges": ["dublin"], "preflight": {"edge": "dublin", "quality": "superb"}},
        {"edges": ["dublin"], "preflight": {"edge": "mars"}},
        {"edges": ["dublin"], "extra": 1},
        {"edges": "dublin"},
    ],
)
def test_bad_edge_report_is_400(client: TestClient, report: dict[str, Any]) -> None:
    """An unknown edge, a code out of range, a bad preflight or an unknown field is a 400."""
    assert_problem(client.post(REPORT, headers=auth(), json=report), 400, "invalid_request")


def test_edge_report_body_is_capped(client: TestClient) -> None:
    """A report larger than 2048 bytes is 413."""
    big = {"edges": ["dublin"], "identity": "x" * 3000}
    assert_problem(client.post(REPORT, headers=auth(), json=big), 413, "payload_too_large")


def test_edge_report_needs_authentication(client: TestClient) -> None:
    """No credential: 401, and nothing is counted."""
    assert_problem(client.post(REPORT, json=GOOD_REPORT), 401, "unauthenticated")


def test_edge_reports_are_rate_limited_per_identity(tmp_path: Path) -> None:
    """edges.reports.per_identity limits reports with a counter of their own."""
    write_client(tmp_path, "app", edges={"reports": {"per_identity": "2/hour"}})
    with make_client(tmp_path) as c:
        codes = [c.post(REPORT, headers=auth(), json=GOOD_REPORT).status_code for _ in range(3)]
        token = c.post(TOKEN, headers=auth()).status_code
    assert ([202, 202, 429], 200) == (codes, token)


def test_explain_without_adaptive(client: TestClient) -> None:
    """explain=true on a client without edges.adaptive says so and lists the configured edges."""
    body = client.get("/v1/clients/app/edges?country=IE&explain=true").json()
    assert {
        "configured": ["dublin", "frankfurt", "ashburn"],
        "adaptive": False,
        "reason": "adaptive order is off for this client",
    } == body["explain"]


def test_explain_must_be_a_boolean(client: TestClient) -> None:
    """explain takes true or false."""
    assert_problem(client.get("/v1/clients/app/edges?explain=yes"), 400, "invalid_request")
