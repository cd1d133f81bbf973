"""HTTP contract of the public API: every status code, problem+json bodies, headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from support import API_KEY_SECRET, ORIGIN, assertion, make_client, serve, write_client
from tokensvc import render

TOKEN = "/v1/clients/app/token"


def auth(sub: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {assertion(sub, **claims)}"}


class Answer(Protocol):
    """What a test client's response offers (the TestClient's httpx flavour varies)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


def assert_problem(response: Answer, status: int, code: str) -> dict[str, Any]:
    assert (status, "application/problem+json") == (
        response.status_code,
        response.headers["content-type"],
    )
    body: dict[str, Any] = response.json()
    assert (code, status) == (body["code"], body["status"])
    assert {"type", "title", "detail"} <= set(body)
    return body


def test_token_response_shape(client: TestClient) -> None:
    """200 with token, identity, ttl, expires_at, refresh_in, edges, region, home_region."""
    r = client.post(TOKEN, headers=auth())
    assert 200 == r.status_code
    body = r.json()
    assert {
        "token",
        "identity",
        "ttl",
        "expires_at",
        "refresh_in",
        "edges",
        "region",
        "home_region",
    } == set(body)
    assert ("alice", 3600, "us1", "local") == (
        body["identity"],
        body["ttl"],
        body["home_region"],
        body["region"],
    )
    assert 0.75 * 3600 <= body["refresh_in"] <= 0.85 * 3600
    assert body["expires_at"].endswith("Z")
    assert "no-store" == r.headers["cache-control"]
    claims = jwt.decode(body["token"], API_KEY_SECRET, algorithms=["HS256"])
    assert "alice" == claims["grants"]["identity"]


def test_identity_comes_from_token_not_body(client: TestClient) -> None:
    """A jwt client refuses a body identity other than its token's (403, issue 13: the
    document allows the field); repeating the token's identity is accepted."""
    r = client.post(TOKEN, headers=auth(), json={"identity": "mallory"})
    assert_problem(r, 403, "forbidden")
    same = client.post(TOKEN, headers=auth(), json={"identity": "alice"})
    assert (200, "alice") == (same.status_code, same.json()["identity"])


def test_country_hint_orders_edges(client: TestClient) -> None:
    """The body's country picks by_country, then the geo table."""
    ie = client.post(TOKEN, headers=auth(), json={"country": "IE"}).json()["edges"]
    jp = client.post(TOKEN, headers=auth(), json={"country": "jp"}).json()["edges"]
    assert (["dublin", "frankfurt", "ashburn"], "tokyo") == (ie, jp[0])


def test_trusted_country_header_wins_over_hint(config_dir: Path) -> None:
    """With TOKENSVC_COUNTRY_HEADER set, the load balancer's header beats the body hint."""
    with make_client(config_dir, country_header="cloudfront-viewer-country") as c:
        r = c.post(
            TOKEN, headers={**auth(), "CloudFront-Viewer-Country": "IE"}, json={"country": "JP"}
        )
    assert "dublin" == r.json()["edges"][0]


def test_edges_endpoint_needs_no_auth(client: TestClient) -> None:
    """GET edges answers without a credential, with a short cache lifetime."""
    r = client.get("/v1/clients/app/edges?country=IE")
    assert (200, ["dublin", "frankfurt", "ashburn"]) == (r.status_code, r.json()["edges"])
    assert "max-age=10" in r.headers["cache-control"]


def test_unauthenticated_has_www_authenticate(client: TestClient) -> None:
    """401 carries WWW-Authenticate and the unauthenticated code."""
    r = client.post(TOKEN)
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_unknown_client_is_404(client: TestClient) -> None:
    """An unknown client id is 404 unknown_client."""
    assert_problem(client.post("/v1/clients/nope/token", headers=auth()), 404, "unknown_client")


def test_unknown_path_and_method(client: TestClient) -> None:
    """Unknown paths are 404 not_found, wrong methods 405, both problem+json."""
    assert_problem(client.get("/nowhere"), 404, "not_found")
    assert_problem(client.get(TOKEN), 405, "method_not_allowed")


def test_body_too_large_is_413(client: TestClient) -> None:
    """A body over the cap is 413 before it is parsed."""
    r = client.post(
        TOKEN,
        headers={**auth(), "content-type": "application/json"},
        content=b'{"country": "' + b"x" * 10000 + b'"}',
    )
    assert_problem(r, 413, "payload_too_large")


def test_non_json_body_is_415(client: TestClient) -> None:
    """A non-JSON body is 415."""
    r = client.post(TOKEN, headers={**auth(), "content-type": "text/plain"}, content=b"hi")
    assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"platform": "fax"}',
        b'{"extra": 1}',
        b'{"country": 5}',
        b'{"apns_environment": "x"}',
    ],
)
def test_invalid_body_is_400(client: TestClient, body: bytes) -> None:
    """Malformed JSON, a non-object, bad values and unknown fields are 400."""
    r = client.post(TOKEN, headers={**auth(), "content-type": "application/json"}, content=body)
    assert_problem(r, 400, "invalid_request")


def test_blocked_identity_in_config_is_403(tmp_path: Path) -> None:
    """An identity listed in blocked_twilio_identities gets 403 forbidden."""
    write_client(tmp_path, "app", blocked_twilio_identities=["mallory"])
    with make_client(tmp_path) as c:
        assert_problem(c.post(TOKEN, headers=auth("mallory")), 403, "forbidden")
        assert 200 == c.post(TOKEN, headers=auth("alice")).status_code


def test_per_identity_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    """Past the per-identity limit, 429 with Retry-After; other identities are unaffected."""
    write_client(tmp_path, "app", rate_limit={"per_identity": "2/minute"})
    with make_client(tmp_path) as c:
        codes = [c.post(TOKEN, headers=auth("alice")).status_code for _ in range(3)]
        r = c.post(TOKEN, headers=auth("alice"))
        other = c.post(TOKEN, headers=auth("bob")).status_code
    assert ([200, 200, 429], 200) == (codes, other)
    assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_per_ip_rate_limit(tmp_path: Path) -> None:
    """Past the per-IP limit, every identity from that address gets 429."""
    write_client(tmp_path, "app", rate_limit={"per_ip": "2/minute", "per_identity": None})
    with make_client(tmp_path) as c:
        codes = [c.post(TOKEN, headers=auth(f"user{i}")).status_code for i in range(3)]
    assert [200, 200, 429] == codes


def test_preflight_allows_configured_origin(client: TestClient) -> None:
    """OPTIONS from an allowed origin answers 204 with that origin, never a wildcard."""
    r = client.options(TOKEN, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert (204, ORIGIN) == (r.status_code, r.headers["access-control-allow-origin"])
    assert "authorization" in r.headers["access-control-allow-headers"]


def test_preflight_refuses_other_origin(client: TestClient) -> None:
    """OPTIONS from an origin not in cors.allow_origins is 403."""
    r = client.options(
        TOKEN, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert_problem(r, 403, "forbidden")


def test_cors_header_on_token_response(client: TestClient) -> None:
    """A token response to an allowed origin carries Access-Control-Allow-Origin."""
    r = client.post(TOKEN, headers={**auth(), "Origin": ORIGIN})
    assert ORIGIN == r.headers["access-control-allow-origin"]
    r = client.post(TOKEN, headers={**auth(), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    """A valid incoming X-Request-Id is echoed; otherwise one is generated."""
    assert (
        "abc-123"
        == client.get("/livez", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
    )
    assert 16 == len(
        client.get("/livez", headers={"X-Request-Id": "bad id!"}).headers["x-request-id"]
    )


def test_probes(client: TestClient) -> None:
    """livez and readyz answer 200 with JSON; readyz lists its checks."""
    assert 200 == client.get("/livez").status_code
    r = client.get("/readyz")
    assert (200, "ok") == (r.status_code, r.json()["checks"]["config"])


def test_draining_turns_readyz_503_but_keeps_serving_tokens(client: TestClient) -> None:
    """Once shutdown starts, readyz is 503, and tokens are still served to requests the load
    balancer sends before it notices."""
    client.app.state.service.draining = True  # type: ignore[attr-defined]
    assert 503 == client.get("/readyz").status_code
    assert 200 == client.post(TOKEN, headers=auth()).status_code


def test_wrong_method_on_token_path_lists_post(client: TestClient) -> None:
    """GET on the token path is 405 with Allow naming POST."""
    r = client.get(TOKEN)
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


def test_metrics_not_on_public_port(client: TestClient) -> None:
    """/metrics is not served on the public port."""
    assert_problem(client.get("/metrics"), 404, "not_found")


def test_admin_port_serves_metrics_and_probes_only(config_dir: Path) -> None:
    """On the admin port, /metrics answers and the token API does not."""
    with make_client(config_dir, admin_port=9090) as c:
        admin = TestClient(c.app, base_url="http://127.0.0.1:9090")  # same app, no 2nd lifespan
        c.post(TOKEN, headers=auth())
        metrics = admin.get("/metrics")
        assert 200 == metrics.status_code
        assert "tokensvc_tokens_minted_total" in metrics.text
        assert 404 == admin.post(TOKEN, headers=auth()).status_code


def test_openapi_document(client: TestClient) -> None:
    """/openapi.json describes the token endpoint."""
    doc = client.get("/openapi.json").json()
    assert "post" in doc["paths"]["/v1/clients/{client}/token"]


def test_identity_prefix_is_applied(tmp_path: Path) -> None:
    """A client's identity_prefix starts every identity it mints."""
    write_client(tmp_path, "app", auth={"identity_prefix": "web_"})
    with make_client(tmp_path) as c:
        assert "web_alice" == c.post(TOKEN, headers=auth("alice")).json()["identity"]


def test_blocked_subject_matches_the_raw_subject(tmp_path: Path) -> None:
    """blocked_subjects names the subject as the IdP writes it (auth0|123)."""
    write_client(tmp_path, "app", blocked_subjects=["auth0|123"])
    with make_client(tmp_path) as c:
        assert_problem(c.post(TOKEN, headers=auth("auth0|123")), 403, "forbidden")


def test_a_twilio_identity_block_spares_a_subject_spelled_like_it(tmp_path: Path) -> None:
    """Blocking Twilio identity auth0_7c123 (caller auth0|123) does not block the different
    caller whose raw subject is the string auth0_7c123 (Twilio identity auth0__7c123)."""
    write_client(tmp_path, "app", blocked_twilio_identities=["auth0_7c123"])
    with make_client(tmp_path) as c:
        blocked = c.post(TOKEN, headers=auth("auth0|123")).status_code
        other = c.post(TOKEN, headers=auth("auth0_7c123")).status_code
    assert (403, 200) == (blocked, other)


def test_deeply_nested_token_header_is_401_not_500(client: TestClient) -> None:
    """A JWT header of thousands of nested arrays is refused as malformed."""
    import base64

    head = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    r = client.post(TOKEN, headers={"Authorization": f"Bearer {head}.e30.x"})
    assert_problem(r, 401, "unauthenticated")


def test_client_without_usable_idp_keys_is_503_so_callers_fail_over(tmp_path: Path) -> None:
    """A JWKS client whose keys could not be fetched answers 503 not_ready, not 401."""
    write_client(
        tmp_path,
        "app",
        auth={
            "algorithms": ["RS256"],
            "hs256_secret": None,
            "jwks_url": "http://127.0.0.1:9/jwks.json",
        },
    )
    with make_client(tmp_path, http_timeout=0.5) as c:
        r = c.post(TOKEN, headers=auth())
    assert_problem(r, 503, "not_ready")


# --- issue 13: HTTP defects -------------------------------------------------------------


def test_repeated_forwarded_for_lines_are_one_list(tmp_path: Path) -> None:
    """A caller-written X-Forwarded-For line before the proxy's own line does not escape the
    per-IP limit: repeated lines are joined (RFC 9110 §5.3) and the proxy's entry is used."""
    write_client(tmp_path, "app", rate_limit={"per_ip": "2/minute", "per_identity": None})
    with make_client(tmp_path, client_ip_header="x-forwarded-for", trusted_hops=1) as c:
        codes = [
            c.post(
                TOKEN,
                headers=[
                    ("authorization", f"Bearer {assertion(f'u{i}')}"),
                    ("x-forwarded-for", f"10.0.0.{i}"),
                    ("x-forwarded-for", "198.51.100.7"),
                ],
            ).status_code
            for i in range(3)
        ]
    assert [200, 200, 429] == codes


def test_repeated_country_header_takes_the_proxys_last_line(config_dir: Path) -> None:
    """Of a repeated trusted country header, the last line (the proxy's) decides."""
    with make_client(config_dir, country_header="x-country") as c:
        headers = [
            ("authorization", f"Bearer {assertion()}"),
            ("x-country", "JP"),
            ("x-country", "IE"),
        ]
        token_edges = c.post(TOKEN, headers=headers).json()["edges"]
        listed = c.get("/v1/clients/app/edges", headers=headers[1:]).json()
    assert ("dublin", "dublin", "IE") == (token_edges[0], listed["edges"][0], listed["country"])


@pytest.mark.parametrize("path", ["/livez/", "/v1/clients/app/edges/", TOKEN + "/"])
def test_trailing_slash_is_404_not_a_redirect(client: TestClient, path: str) -> None:
    """A trailing slash answers 404 problem+json, never a redirect to the Host header."""
    assert_problem(client.get(path, follow_redirects=False), 404, "not_found")
    assert_problem(client.post(path, headers=auth(), follow_redirects=False), 404, "not_found")


@pytest.mark.parametrize(
    "path", ["/v1/clients/app%2Ftoken", "/v1/clients/app%2Fedges", "/v1/clients%2Fapp/token"]
)
def test_encoded_slash_is_not_a_path_separator(client: TestClient, path: str) -> None:
    """Routing uses the raw path: %2F inside a segment is not a slash (404)."""
    assert 404 == client.post(path, headers=auth()).status_code
    assert 404 == client.get(path).status_code


@pytest.mark.parametrize("hint", ["ZZ", "QX", "IRL", "i", " ie", "1E"])
def test_country_hint_that_is_not_a_country_is_400(client: TestClient, hint: str) -> None:
    """A caller-supplied country that is not an ISO 3166-1 code is 400, in the token body and
    in the edges query."""
    assert_problem(
        client.post(TOKEN, headers=auth(), json={"country": hint}), 400, "invalid_request"
    )
    assert_problem(
        client.get("/v1/clients/app/edges", params={"country": hint}), 400, "invalid_request"
    )


def test_kosovo_is_a_country(client: TestClient) -> None:
    """XK (in the country table, not in ISO 3166-1 proper) is accepted."""
    assert 200 == client.post(TOKEN, headers=auth(), json={"country": "xk"}).status_code


def test_header_country_that_is_not_a_country_is_unknown(tmp_path: Path) -> None:
    """Two letters from the trusted header that are no country count as unknown: default
    edges, country null, and the metric label is unknown."""
    write_client(tmp_path, "app")
    with make_client(tmp_path, country_header="x-country", admin_port=9090) as c:
        admin = TestClient(c.app, base_url="http://127.0.0.1:9090")
        c.post(TOKEN, headers={**auth(), "x-country": "ZZ"})
        listed = c.get("/v1/clients/app/edges", headers={"x-country": "QX"}).json()
        text = admin.get("/metrics").text
    assert (None, ["ashburn", "umatilla", "roaming"]) == (listed["country"], listed["edges"])
    assert 'country="ZZ"' not in text
    assert 'tokensvc_edges_returned_total{client="app",country="unknown"' in text


@pytest.mark.parametrize("body", [b"{", b'{"identity": "mallory"}', b'{"country": "ZZ"}'])
def test_missing_credential_is_reported_before_the_body(client: TestClient, body: bytes) -> None:
    """Documented order: no credential is a 401 whatever the body (not its 400)."""
    r = client.post(TOKEN, content=body, headers={"content-type": "application/json"})
    assert_problem(r, 401, "unauthenticated")


def test_invalid_credential_with_a_bad_body_reports_the_body(client: TestClient) -> None:
    """Documented order: a present credential is verified after the body (400, not 401)."""
    r = client.post(
        TOKEN,
        content=b"{",
        headers={"content-type": "application/json", "authorization": "Bearer not-a-jwt"},
    )
    assert_problem(r, 400, "invalid_request")


def test_http2_on_cleartext_is_refused(config_dir: Path) -> None:
    """Prior-knowledge HTTP/2 (and so an h2c upgrade, which reaches the app as HTTP/2) and an
    `Upgrade: h2c` header are refused with 505 on the cleartext port by default."""
    app = make_client(config_dir).app

    async def as_http2(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            scope = {**scope, "http_version": "2"}
        await app(scope, receive, send)

    with TestClient(as_http2, base_url="http://127.0.0.1:8080") as c:
        r2 = c.post(TOKEN, headers=auth())
    with make_client(config_dir) as c:
        upgrade = c.post(TOKEN, headers={**auth(), "Upgrade": "h2c"})
        plain = c.post(TOKEN, headers=auth())
    assert_problem(r2, 505, "http_version_not_supported")
    assert_problem(upgrade, 505, "http_version_not_supported")
    assert 200 == plain.status_code


def test_http2_allowed_by_flag(config_dir: Path) -> None:
    """With TOKENSVC_ALLOW_HTTP2 on, HTTP/2 is served on cleartext."""
    from tokensvc.app import create_app
    from tokensvc.settings import Settings

    app = create_app(Settings(config_dir=config_dir, reload_interval=0.0, allow_http2=True))

    async def as_http2(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            scope = {**scope, "http_version": "2"}
        await app(scope, receive, send)

    with TestClient(as_http2, base_url="http://127.0.0.1:8080") as c:
        assert 200 == c.post(TOKEN, headers=auth()).status_code


def test_unexpected_error_in_a_router_route_is_a_500_problem(client: TestClient) -> None:
    """An exception in a Starlette route is rendered like the token path's: 500 internal."""
    service = client.app.state.service  # type: ignore[attr-defined]

    def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    service.readiness = broken
    assert_problem(client.get("/readyz"), 500, "internal")


@pytest.mark.slow
def test_real_server_refuses_prior_knowledge_http2(config_dir: Path, tmp_path: Path) -> None:
    """Against `tokensvc serve`, an HTTP/2 connection with prior knowledge gets 505 on its
    stream (Hypercorn speaks h2c; the application refuses it on cleartext)."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    with (
        serve(config_dir, tmp_path) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock,
    ):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [
                (":method", "GET"),
                (":path", "/v1/clients/app/edges"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
            ],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        status = None
        for _ in range(50):  # bounded: frames until the response headers arrive
            data = sock.recv(65535)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
            sock.sendall(conn.data_to_send())
            if status is not None:
                break
    assert b"505" == status


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=12,
    )
)
def test_encode_document_is_the_json_encoders_output(value: object) -> None:
    """The once-built C encoder writes what ``json.JSONEncoder(separators=(",", ":"))`` does."""
    document = {"token": "t", "value": value}
    expected = json.JSONEncoder(separators=(",", ":")).encode(document).encode()
    assert expected == render.encode_document(document)
