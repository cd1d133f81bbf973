"""Logs and metrics: one JSON line per request, correct with several workers, no secrets."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from support import (
    API_KEY_SECRET,
    HS_SECRET,
    assertion,
    get,
    serve,
    write_client,
)
from tokensvc.observability import Fingerprinter

TOKEN = "/v1/clients/app/token"


def call(url: str, headers: dict[str, str], body: bytes = b"{}") -> tuple[int, bytes]:
    request = urllib.request.Request(url + TOKEN, method="POST", data=body,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        data = e.read()
        e.close()
        return e.code, data


def minted_total(metrics_text: str) -> float:
    return sum(float(m) for m in re.findall(
        r'^tokensvc_tokens_minted_total\{[^}]*\} ([0-9.e+]+)$', metrics_text, re.M))


def test_no_secret_reaches_a_log_line_or_a_metric(tmp_path: Path) -> None:
    """Across success and every error path, no token, assertion, secret, Authorization header
    or raw identity appears in the logs or in /metrics."""
    config = tmp_path / "clients"
    write_client(config, blocked_identities=["blocked_user"],
                 rate_limit={"per_identity": "2/minute"})
    secrets_seen: list[str] = [API_KEY_SECRET, HS_SECRET]
    with serve(config, tmp_path) as served:
        for sub in ["person@example.com", "person@example.com", "person@example.com",
                    "blocked_user"]:
            a = assertion(sub)
            secrets_seen.append(a)
            status, body = call(served.url, {"Authorization": f"Bearer {a}"})
            if status == 200:
                secrets_seen.append(json.loads(body)["token"])
        bad = [assertion(secret="wrong-secret-wrong-secret-wrong-secret"),
               assertion(exp=int(time.time()) - 3600), "garbage-credential-xyz"]
        secrets_seen += bad
        for credential in bad:
            call(served.url, {"Authorization": f"Bearer {credential}"})
        call(served.url, {"Authorization": f"Bearer {assertion('x')}"}, b"{not json")
        call(served.url, {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="})
        secrets_seen.append("dXNlcjpwYXNzd29yZA==")
        metrics = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
        served.stop()
        log = served.log()
    leaked = [s[:12] for s in secrets_seen if s in log or s in metrics]
    assert [] == leaked
    assert "person@example.com" not in log and "Bearer" not in log
    assert "person@example.com" not in metrics


def test_one_json_line_per_request_with_the_context(config_dir: Path, tmp_path: Path) -> None:
    """Each token request logs one JSON line with request id, client, status, code, latency,
    region and identity fingerprint."""
    with serve(config_dir, tmp_path, {"TOKENSVC_REGION": "eu-west"}) as served:
        call(served.url, {"Authorization": f"Bearer {assertion('alice')}",
                          "X-Request-Id": "req-1"})
        call(served.url, {"X-Request-Id": "req-2"})
        served.stop()
        lines = [json.loads(line) for line in served.log().splitlines()
                 if line.startswith("{") and '"msg":"request"' in line]
    ok, denied = lines
    assert ("req-1", "app", 200, "eu-west") == (ok["request_id"], ok["client"], ok["status"],
                                                ok["region"])
    assert 16 == len(ok["identity_fp"]) and ok["latency_ms"] > 0
    assert ("req-2", 401, "unauthenticated", "missing") == (
        denied["request_id"], denied["status"], denied["code"], denied["reason"])


def test_metrics_are_summed_across_two_workers(config_dir: Path, tmp_path: Path) -> None:
    """With two workers, /metrics counts the tokens both of them minted."""
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        for i in range(30):
            call(served.url, {"Authorization": f"Bearer {assertion(f'u{i}')}"})
        text = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
        pids = set(re.findall(r'"worker_pid"', text))
    assert 30.0 == minted_total(text)
    assert set() == pids  # no per-process labels leak into the output
    assert 'tokensvc_build_info{region="local"' in text


def test_fingerprint_is_keyed_and_stable() -> None:
    """The same key gives the same fingerprint; another key a different one."""
    a, b = Fingerprinter(b"k1"), Fingerprinter(b"k2")
    assert a("app", "alice") == Fingerprinter(b"k1")("app", "alice") != b("app", "alice")
