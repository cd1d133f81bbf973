"""The alert rules, checked and unit-tested by Prometheus's own promtool.

promtool is Debian's (package `prometheus`), unpacked without installing it or starting a
daemon by deploy/scripts/promtool.sh, which also fetches it on a clean machine; a missing
promtool therefore fails these tests rather than skipping them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "deploy" / "alerts.yaml"
ALERT_TESTS = REPO / "deploy" / "alerts.test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of promtool (fetched into the user cache on first use)."""
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "scripts" / "promtool.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout.strip()


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text("utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.mark.process
def test_promtool_check_rules_passes(promtool: str) -> None:
    """`promtool check rules` accepts the rules file."""
    result = _run(promtool, "check", "rules", str(ALERTS))
    assert (0, "") == (result.returncode, result.stderr.strip())


@pytest.mark.process
def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    """`promtool test rules deploy/alerts.test.yaml` passes: each alert fires when it should,
    with its labels and annotations, and not before."""
    result = _run(promtool, "test", "rules", str(ALERT_TESTS))
    assert (0, "SUCCESS") == (result.returncode, result.stdout.strip().splitlines()[-1].strip())


@pytest.mark.process
def test_a_broken_expectation_fails_the_unit_tests(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: expecting no TargetDown alert where one fires is reported."""
    doc = yaml.safe_load(ALERT_TESTS.read_text("utf-8"))
    doc["rule_files"] = [str(ALERTS)]
    doc["tests"][0]["alert_rule_test"][1]["exp_alerts"] = []
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(yaml.safe_dump(doc), "utf-8")
    result = _run(promtool, "test", "rules", str(broken))
    assert (1, True) == (result.returncode, "TokensvcTargetDown" in result.stdout + result.stderr)


def test_every_alert_has_a_unit_test() -> None:
    """Each alert name appears in at least one alert_rule_test of deploy/alerts.test.yaml."""
    doc = yaml.safe_load(ALERT_TESTS.read_text("utf-8"))
    tested = {t["alertname"] for case in doc["tests"] for t in case["alert_rule_test"]}
    assert set() == {str(r["alert"]) for r in _rules()} - tested


def test_every_alert_links_a_runbook_section() -> None:
    """Each alert has annotations.runbook_url (no legacy `runbook`) whose anchor is a heading
    of docs/runbooks.md."""
    anchors = {
        m.group(1).lower() for m in re.finditer(r"^## (\S+)$", RUNBOOKS.read_text("utf-8"), re.M)
    }
    problems = []
    for rule in _rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        url = str(annotations.get("runbook_url", ""))
        if "runbook" in annotations or url.rpartition("#")[2] not in anchors:
            problems.append(rule["alert"])
    assert [] == problems


def test_target_down_alerts_exist() -> None:
    """A down target and a total absence of targets are both alerted on."""
    exprs = {str(r["alert"]): str(r["expr"]) for r in _rules()}
    assert (True, True) == (
        exprs.get("TokensvcTargetDown", "").startswith("up{"),
        exprs.get("TokensvcTargetsMissing", "").startswith("absent(up{"),
    )
