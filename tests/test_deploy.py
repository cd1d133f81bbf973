"""The example alert rules and dashboard parse and only use metrics tokensvc exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import yaml

from tokensvc.observability import Metrics

DEPLOY = Path(__file__).parent.parent / "deploy"
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def exported() -> set[str]:
    names: set[str] = set()
    metrics = Metrics()
    metrics.enable_redis()  # exported when shared state is in Redis
    for metric in metrics.registry.collect():
        names.add(metric.name)
        names.update(metric.name + s for s in SUFFIXES)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(tokensvc_[a-z_]+)", expr))


def rule_exprs() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"].replace("$region", ".*") for p in doc["panels"] for t in p["targets"]]


def test_alert_rules_are_valid_promql() -> None:
    """Every alert expression parses as PromQL."""
    for expr in rule_exprs():
        promql_parser.parse(expr)


def test_alert_rules_cover_the_required_conditions() -> None:
    """Alerts exist for error ratio, p99 latency, Redis degraded, all edges drained, config
    reload failures and a down scrape target."""
    doc = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    names = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    assert {
        "TokensvcTokenErrorRatioHigh",
        "TokensvcLatencyP99High",
        "TokensvcRedisDegraded",
        "TokensvcAllEdgesDrained",
        "TokensvcConfigReloadFailing",
        "TokensvcTargetDown",
    } <= names


def test_dashboard_queries_are_valid_promql() -> None:
    """Every dashboard query parses as PromQL."""
    for expr in dashboard_exprs():
        promql_parser.parse(expr)


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    """No rule or panel refers to a metric tokensvc does not export."""
    used = set().union(*(metric_names(e) for e in rule_exprs() + dashboard_exprs()))
    assert set() == used - exported()
