"""The benchmark harness's own arithmetic (``bench/run.py``): what it reports must be right.

No load is run here: these tests feed the harness's pure functions (profile classification,
the collapsed-stack parser, the summary, the target verdicts) inputs whose answers are known.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


run: Any = _load()

TOKENSVC = "/work/x/tokensvc"
HYPERCORN = "/venv/lib/python3.11/site-packages/hypercorn"
H11 = "/venv/lib/python3.11/site-packages/h11"


def frame(name: str, path: str, line: int = 1) -> str:
    return f"{name} ({path}:{line})"


def level(rps: float, cpu: float, conns: int = 64) -> dict[str, Any]:
    return {
        "connections": conns,
        "rps": rps,
        "requests": int(rps * 10),
        "latency_ms": {"p50": 10.0, "p99": 20.0},
        "errors": {"total": 0},
        "server_cpu_pct": 100.0,
        "server_cpu_us_per_req": cpu,
        "server_processes": [{"cpu_pct": 100.0}],
        "wrk_cpu_pct": 12.0,
    }


def doc(runs: list[tuple[str, int, float, float, float | None]]) -> dict[str, Any]:
    """A raw results document: (config, repetition, req/s, CPU µs/req, paced p99 ms)."""
    configs = list(dict.fromkeys(name for name, *_ in runs))
    out: list[dict[str, Any]] = []
    for name, rep, rps, cpu, paced in runs:
        record: dict[str, Any] = {"config": name, "rep": rep, "levels": [level(rps, cpu)]}
        if paced is not None:
            record["paced"] = {"latency_ms": {"p99": paced}, "fraction_of_saturation": 0.8}
        out.append(record)
    return {"plan": {"configs": configs}, "runs": out}


def verdicts(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in summary["targets"]}


PER_CORE = "best flask peer CPU/req / tokensvc-full CPU/req at c=64 (per core)"
VS_REFERENCE = "tokensvc-full / reference req/s at c=64 (uvloop)"
PACED = "tokensvc-full / reference p99 at ~80% of each one's saturation"


def test_a_sample_counts_under_the_tokensvc_feature_it_runs_in() -> None:
    stack = [
        frame("serve", HYPERCORN + "/asyncio/run.py"),
        frame("__call__", TOKENSVC + "/app.py"),
        frame("verify", TOKENSVC + "/auth.py"),
        frame("digest", "/usr/lib/python3.11/hmac.py"),
    ]
    assert run.classify(stack) == "auth (caller JWT)"


def test_server_work_below_tokensvc_glue_counts_as_server() -> None:
    stack = [
        frame("__call__", TOKENSVC + "/app.py"),
        frame("send_wrapper", TOKENSVC + "/app.py"),
        frame("app_send", HYPERCORN + "/protocol/http_stream.py"),
        frame("validate", H11 + "/_util.py"),
    ]
    assert run.classify(stack) == run.SERVER


def test_glue_is_what_runs_in_tokensvc_outside_every_feature() -> None:
    stack = [frame("__call__", TOKENSVC + "/app.py"), frame("read_body", TOKENSVC + "/x.py")]
    assert run.classify(stack) == "tokensvc glue (app, routes, middleware)"


def test_observability_splits_into_metrics_and_logging() -> None:
    metric = [frame("Telemetry.request", TOKENSVC + "/observability.py")]
    metric.append(frame("inc", "/venv/site-packages/prometheus_client/metrics.py"))
    log = [frame("AccessLog.request", TOKENSVC + "/observability.py")]
    assert (run.classify(metric), run.classify(log)) == ("metrics", "logging")


def test_collapsed_stacks_drop_idle_threads_and_idle_processes(tmp_path: Path) -> None:
    busy = frame("_run", "/x/uvloop/__init__.py") + ";" + frame("validate", H11 + "/_util.py")
    idle = frame("_worker", "/usr/lib/python3.11/concurrent/futures/thread.py", 83)
    lines = [
        f'process 10:"tokensvc serve";{busy} 7',
        f'process 10:"tokensvc serve";thread (0x1);{idle} 50',
        f'process 11:"hypercorn supervisor";{busy} 40',
    ]
    path = tmp_path / "p.collapsed"
    path.write_text("\n".join(lines) + "\n")
    features, _leaves, total = run.parse_collapsed(path, busy_pids={10})
    assert (total, dict(features)) == (7, {run.SERVER: 7})


def test_ratios_are_of_the_medians_over_repetitions() -> None:
    summary = run.summarize(
        doc(
            [
                ("tokensvc-full", 0, 3000.0, 300.0, None),
                ("reference", 0, 4000.0, 240.0, None),
                ("tokensvc-full", 1, 3600.0, 260.0, None),
                ("reference", 1, 4000.0, 230.0, None),
                ("tokensvc-full", 2, 3300.0, 280.0, None),
                ("reference", 2, 4000.0, 250.0, None),
            ]
        )
    )
    assert verdicts(summary)[VS_REFERENCE]["value"] == pytest.approx(3300 / 4000, abs=1e-3)


def test_per_core_target_compares_the_cheapest_flask_peer() -> None:
    summary = run.summarize(
        doc(
            [
                ("tokensvc-full", 0, 3600.0, 270.0, None),
                ("flask", 0, 2900.0, 350.0, None),
                ("flask-gthread", 0, 3000.0, 330.0, None),
            ]
        )
    )
    target = verdicts(summary)[PER_CORE]
    assert (target["value"], target["verdict"]) == (round(330 / 270, 3), "FAIL")


def test_per_core_target_passes_at_its_goal() -> None:
    summary = run.summarize(
        doc([("tokensvc-full", 0, 3600.0, 264.0, None), ("flask", 0, 2900.0, 330.0, None)])
    )
    assert verdicts(summary)[PER_CORE]["verdict"] == "PASS"


def test_paired_ratios_are_taken_within_each_repetition() -> None:
    # A slow spell in repetition 1 slows both servers: the paired ratio does not move,
    # while the ratio of medians mixes repetitions.
    summary = run.summarize(
        doc(
            [
                ("tokensvc-full", 0, 3000.0, 250.0, None),
                ("flask", 0, 2000.0, 300.0, None),
                ("tokensvc-full", 1, 2000.0, 375.0, None),
                ("flask", 1, 1500.0, 450.0, None),
                ("tokensvc-full", 2, 3000.0, 250.0, None),
                ("flask", 2, 2000.0, 300.0, None),
            ]
        )
    )
    assert verdicts(summary)[PER_CORE]["per_repetition"] == [1.2, 1.2, 1.2]


def test_paced_p99_ratio_is_lower_is_better() -> None:
    summary = run.summarize(
        doc([("tokensvc-full", 0, 3600.0, 270.0, 13.0), ("reference", 0, 4200.0, 240.0, 10.0)])
    )
    target = verdicts(summary)[PACED]
    assert (target["value"], target["verdict"]) == (1.3, "FAIL")


def test_a_missing_peer_gives_no_verdict() -> None:
    summary = run.summarize(doc([("tokensvc-full", 0, 3600.0, 270.0, None)]))
    target = verdicts(summary)[PER_CORE]
    assert (target["value"], target["verdict"], target["per_repetition"]) == (None, "n/a", [])


def test_the_report_shows_the_spread_of_each_ratio() -> None:
    results = doc(
        [
            ("tokensvc-full", 0, 3600.0, 270.0, None),
            ("flask", 0, 2900.0, 330.0, None),
            ("tokensvc-full", 1, 3600.0, 260.0, None),
            ("flask", 1, 2900.0, 338.0, None),
        ]
    )
    lines = [line for line in run.render(results).splitlines() if line.startswith(PER_CORE)]
    assert lines and "1.222 / 1.261 / 1.3 (n=2)" in lines[0]
