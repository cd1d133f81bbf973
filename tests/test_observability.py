"""Logs and metrics: one JSON line per request, correct with several workers, no secrets."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from redis_servers import Node
from support import (
    API_KEY_SECRET,
    HS_SECRET,
    assertion,
    get,
    serve,
    write_client,
)
from tokensvc import observability
from tokensvc.observability import (
    LATENCY_BUCKETS,
    AccessLog,
    Fingerprinter,
    Metrics,
    RequestFacts,
    Telemetry,
    TextFormatter,
    request_fields,
)

TOKEN = "/v1/clients/app/token"


def call(
    url: str, headers: dict[str, str], body: bytes = b"{}", path: str = TOKEN
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url + path,
        method="POST",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        data = e.read()
        e.close()
        return e.code, data


def scrape_until(port: int | None, done: Callable[[str], bool], within: float = 10.0) -> str:
    """The first /metrics text for which ``done`` holds (a scrape reaches one worker, and
    each worker publishes twice a second); AssertionError after ``within`` seconds."""
    assert port is not None, "the service runs without an admin port"
    deadline = time.monotonic() + within
    while True:
        text = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        if done(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics not as expected within {within}s:\n{text[:2000]}")
        time.sleep(0.05)


def minted_total(metrics_text: str) -> float:
    return sum(
        float(m)
        for m in re.findall(
            r"^tokensvc_tokens_minted_total\{[^}]*\} ([0-9.e+]+)$", metrics_text, re.M
        )
    )


@pytest.mark.process
def test_no_secret_reaches_a_log_line_or_a_metric(tmp_path: Path) -> None:
    """Across success and every error path (401 variants, 400, 403, 413, 415, 429 per
    identity and per IP, a rejected reload), no token, assertion, API key, secret,
    Authorization header, JWKS private key or raw identity appears in logs or /metrics."""
    config = tmp_path / "clients"
    api_key = "backend-api-key-0123456789abcdef-secret"
    write_client(
        config,
        blocked_subjects=["blocked_user"],
        rate_limit={"per_identity": "2/minute", "per_ip": "40/minute"},
        auth={"identity_prefix": "web_"},
    )
    write_client(
        config,
        "backend",
        auth={
            "type": "api_key",
            "keys": [api_key],
            "identity_prefix": "be_",
            "algorithms": None,
            "hs256_secret": None,
            "issuer": None,
            "audience": None,
            "identity_claim": None,
        },
    )
    secrets_seen: list[str] = [API_KEY_SECRET, HS_SECRET, api_key]
    with serve(config, tmp_path) as served:
        for sub in ["person@example.com"] * 3 + ["blocked_user"]:
            a = assertion(sub)
            secrets_seen.append(a)
            status, body = call(served.url, {"Authorization": f"Bearer {a}"})
            if status == 200:
                secrets_seen.append(json.loads(body)["token"])
        status, body = call(
            served.url,
            {"Authorization": f"Bearer {api_key}"},
            b'{"identity": "person@example.com"}',
            "/v1/clients/backend/token",
        )
        secrets_seen.append(json.loads(body)["token"])
        call(
            served.url,
            {"Authorization": "Bearer wrong-api-key-0123456789"},
            b"{}",
            "/v1/clients/backend/token",
        )
        bad = [
            assertion(secret="wrong-secret-wrong-secret-wrong-secret"),
            assertion(exp=int(time.time()) - 3600),
            "garbage-credential-xyz",
        ]
        secrets_seen += bad
        for credential in bad:
            call(served.url, {"Authorization": f"Bearer {credential}"})
        good = assertion("x")
        secrets_seen.append(good)
        call(served.url, {"Authorization": f"Bearer {good}"}, b"{not json")
        call(
            served.url, {"Authorization": f"Bearer {good}", "Content-Type": "text/plain"}, b"hello"
        )
        call(served.url, {"Authorization": f"Bearer {good}"}, b"{" + b" " * 10000 + b"}")
        call(served.url, {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="})
        secrets_seen.append("dXNlcjpwYXNzd29yZA==")
        for i in range(40):  # exhaust the per-IP limit
            call(served.url, {"Authorization": f"Bearer {assertion(f'ip{i}')}"})
        # A rejected reload: a literal secret in a file without dev: true.
        write_client(
            config,
            "leaky",
            dev=False,
            twilio={"api_key_secret": "literal-leaky-secret-0123456789"},
            auth={"identity_prefix": "lk_"},
        )
        secrets_seen.append("literal-leaky-secret-0123456789")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "leaky.yaml" not in served.log():
            time.sleep(0.1)
        metrics = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
        served.stop()
        log = served.log()
    assert "leaky.yaml" in log and '"status":429' in log and '"status":413' in log
    leaked = [s[:12] for s in secrets_seen if s in log or s in metrics]
    assert [] == leaked
    assert "person@example.com" not in log and "Bearer" not in log
    assert "person@example.com" not in metrics


@pytest.mark.process
def test_one_json_line_per_request_with_the_context(config_dir: Path, tmp_path: Path) -> None:
    """Each token request logs one JSON line with request id, client, status, code, latency,
    region and identity fingerprint."""
    with serve(config_dir, tmp_path, {"TOKENSVC_REGION": "eu-west"}) as served:
        call(served.url, {"Authorization": f"Bearer {assertion('alice')}", "X-Request-Id": "req-1"})
        call(served.url, {"X-Request-Id": "req-2"})
        served.stop()
        lines = [
            json.loads(line)
            for line in served.log().splitlines()
            if line.startswith("{") and '"msg":"request"' in line
        ]
    ok, denied = lines
    assert ("req-1", "app", 200, "eu-west") == (
        ok["request_id"],
        ok["client"],
        ok["status"],
        ok["region"],
    )
    assert 16 == len(ok["identity_fp"]) and ok["latency_ms"] > 0
    assert ("req-2", 401, "unauthenticated", "missing") == (
        denied["request_id"],
        denied["status"],
        denied["code"],
        denied["reason"],
    )


@pytest.mark.process
def test_metrics_are_summed_across_two_workers(config_dir: Path, tmp_path: Path) -> None:
    """With two workers that both served requests, /metrics counts every token minted."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        sent = 0
        pids: set[int] = set()
        while len(pids) < 2 and sent < 400:
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda i: call(
                            served.url, {"Authorization": f"Bearer {assertion(f'u{i}')}"}
                        ),
                        range(sent, sent + 16),
                    )
                )
            sent += 16
            lines = [
                json.loads(line) for line in served.log().splitlines() if '"msg":"request"' in line
            ]
            pids = {line["pid"] for line in lines}
        time.sleep(0.6)  # access lines and metric counts are published every 0.5 s
        text = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
    assert 2 == len(pids)
    assert float(sent) == minted_total(text)
    assert 'tokensvc_build_info{region="local"' in text


@pytest.mark.process
def test_redis_up_gauge_is_1_in_every_worker_for_healthy_state(
    config_dir: Path, tmp_path: Path, redis_node: Node
) -> None:
    """tokensvc_redis_up (min over live workers) is 1 when Redis state is healthy."""
    env = {"TOKENSVC_WORKERS": "2", "TOKENSVC_REDIS_URL": redis_node.url}
    with serve(config_dir, tmp_path, env) as served:
        text = scrape_until(served.admin_port, lambda t: "tokensvc_redis_up 1.0" in t)
    assert re.search(r"^tokensvc_redis_up 1\.0$", text, re.M)


@pytest.mark.process
def test_redis_up_is_absent_without_redis(config_dir: Path, tmp_path: Path) -> None:
    """Without Redis there is no tokensvc_redis_up series (an alert on == 0 cannot fire)."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        time.sleep(0.6)  # past the first gauge refresh of both workers
        text = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
    assert "tokensvc_build_info" in text
    assert [] == re.findall(r"^tokensvc_redis_up.*$", text, re.M)


@pytest.mark.process
def test_no_created_series_and_process_metrics_per_worker(config_dir: Path, tmp_path: Path) -> None:
    """/metrics has no `_created` series, and resident memory, CPU and open fds per worker."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        text = scrape_until(
            served.admin_port, lambda t: 2 == len(re.findall(r"^process_open_fds\{pid=", t, re.M))
        )
    assert [] == re.findall(r"^\w+_created", text, re.M)
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert 2 == len(re.findall(rf"^{name}\{{pid=\"\d+\"\}} [0-9.e+]+$", text, re.M))


def test_fingerprint_is_keyed_and_stable() -> None:
    """The same key gives the same fingerprint; another key a different one."""
    a, b = Fingerprinter(b"k1"), Fingerprinter(b"k2")
    assert a("app", "alice") == Fingerprinter(b"k1")("app", "alice") != b("app", "alice")


def test_text_log_escapes_control_characters() -> None:
    """In the text format a newline (or any control character) in a field or the message is
    escaped, so a %0a in a path cannot write a forged second line."""
    record = logging.LogRecord(
        "tokensvc.request", logging.INFO, __file__, 1, "req\nuest", None, None
    )
    record.path = "/v1/clients/app/token\n12:00:00 INFO    request status=200\x1b[2J"
    line = TextFormatter().format(record)
    assert 1 == len(line.splitlines())
    assert "path=/v1/clients/app/token\\x0a12:00:00" in line
    assert "\x1b" not in line and "req\\x0auest" in line


def test_telemetry_emits_every_request_metric_from_the_facts() -> None:
    """One Telemetry.request call writes the request, auth-failure, rate-limit, local-check,
    minted and first-edge series from the request's facts."""
    metrics = Metrics()
    telemetry = Telemetry(metrics, AccessLog(logging.getLogger("test.access")), "eu")
    telemetry.request(
        RequestFacts(
            "r1",
            "POST",
            "/v1/clients/app/token",
            "token",
            status=200,
            client="app",
            identity_fp="f",
            home_region="ie1",
            country="IE",
            edge="dublin",
            local_rate_checks=2,
        ),
        0.01,
    )
    telemetry.request(
        RequestFacts(
            "r2",
            "POST",
            "/v1/clients/app/token",
            "token",
            status=401,
            client="app",
            code="unauthenticated",
            reason="missing",
        ),
        0.01,
    )
    telemetry.request(
        RequestFacts(
            "r3",
            "POST",
            "/v1/clients/app/token",
            "token",
            status=429,
            client="app",
            code="rate_limited",
            limited="ip",
        ),
        0.01,
    )
    r = metrics.registry.get_sample_value
    assert [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0] == [
        r("tokensvc_token_requests_total", {"client": "app", "outcome": "ok", "status": "200"}),
        r(
            "tokensvc_token_requests_total",
            {"client": "app", "outcome": "unauthenticated", "status": "401"},
        ),
        r("tokensvc_auth_failures_total", {"client": "app", "reason": "missing"}),
        r("tokensvc_rate_limited_total", {"client": "app", "scope": "ip"}),
        r("tokensvc_tokens_minted_total", {"client": "app", "home_region": "ie1"}),
        r("tokensvc_rate_limit_local_total", {}),
        r(
            "tokensvc_edges_returned_total",
            {"client": "app", "country": "IE", "first_edge": "dublin"},
        ),
        r("tokensvc_request_duration_seconds_count", {"route": "token"}),
    ]


def test_histogram_cells_export_what_observe_exports() -> None:
    """Observations counted in a cell and published give the series prometheus-client's own
    Histogram.observe gives for the same values (every bucket edge included)."""
    values = [0.0, 0.0005, 0.0006, 0.001, 0.3, 2.5, 2.6, 99.0, *LATENCY_BUCKETS]
    cells, direct = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    for value in values:
        cells.child(cells.latency, "token").observe(value)
        direct.latency.labels("token").observe(value)

    def samples(m: Metrics) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in m.registry.collect()
            if family.name == "tokensvc_request_duration_seconds"
            for s in family.samples
        ]

    assert samples(direct) == samples(cells)


def test_access_line_is_the_dict_line_written_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """AccessLog.request writes exactly the line AccessLog.write writes from the same fields
    (same keys, order and escaping), also for quotes, control characters and non-ASCII."""
    logging.getLogger("test.access").setLevel(logging.INFO)
    monkey = observability._json_lines
    observability._json_lines = True
    try:
        log = AccessLog(logging.getLogger("test.access"))
        facts = RequestFacts(
            'r"1\\',
            "POST",
            "/v1/clients/a\n\u00e9\u2028/token",
            "token",
            status=401,
            client="app",
            code="unauthenticated",
            reason="bad_signature",
            identity_fp="ab",
            edge="dublin",
        )
        for f in (facts, RequestFacts("r2", "GET", "/x", "other", status=404)):
            log.request(f, 0.0123456, "eu")
            log.write(request_fields(f, 0.0123456, "eu"))
            a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
            a.pop("ts"), b.pop("ts")
            assert list(b.items()) == list(a.items())
    finally:
        observability._json_lines = monkey
