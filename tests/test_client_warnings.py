"""check-config warnings where Twilio's rules make a valid client file doubtful.

Warnings never refuse a file (``check-config`` prints them and exits 0). They name the file
and field: edges the Voice JS SDK's enum lacks (``sao-paulo-ix``, allowed explicitly), edge
lists of IE1/AU1 clients that do not start at that region's edges, and the reminder that
IE1/AU1 keys, apps and credentials are created in that region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support import write_client
from tokensvc.__main__ import main
from tokensvc.clients import scan_clients


def scan(directory: Path) -> tuple[list[tuple[str, str]], list[str]]:
    result = scan_clients(directory, {})
    return [(Path(p.source).name, p.field) for p in result.problems], result.warnings


def fields_warned(warnings: list[str]) -> list[str]:
    """``app.yaml: edges.default: ...`` -> ``edges.default``."""
    return [w.split(": ", 2)[1] for w in warnings]


def test_a_us1_client_has_no_twilio_warnings(tmp_path: Path) -> None:
    """The base client (us1, SDK edges) loads without warnings."""
    write_client(tmp_path, "app")
    assert ([], []) == scan(tmp_path)


def test_sao_paulo_ix_is_refused_by_default_with_a_hint(tmp_path: Path) -> None:
    """sao-paulo-ix without the opt-in is a problem whose message says how to allow it."""
    write_client(tmp_path, "app", edges={"default": ["sao-paulo-ix", "roaming"]})
    result = scan_clients(tmp_path, {})
    [problem] = result.problems
    assert ("edges.default[0]", True) == (
        problem.field,
        "edges.allow_non_sdk_edges: true" in problem.message,
    )


def test_sao_paulo_ix_allowed_explicitly_loads_with_a_warning(tmp_path: Path) -> None:
    """With edges.allow_non_sdk_edges: true the file loads and each use is warned about."""
    write_client(
        tmp_path,
        "app",
        edges={
            "allow_non_sdk_edges": True,
            "default": ["sao-paulo", "sao-paulo-ix"],
            "by_country": {"BR": ["sao-paulo-ix"]},
        },
    )
    problems, warnings = scan(tmp_path)
    assert ([], ["edges.default[1]", "edges.by_country.BR[0]"]) == (
        problems,
        fields_warned(warnings),
    )


def test_the_opt_in_still_refuses_unknown_edges(tmp_path: Path) -> None:
    """allow_non_sdk_edges admits catalogue edges only: a typo stays a problem."""
    write_client(tmp_path, "app", edges={"allow_non_sdk_edges": True, "default": ["frankfort"]})
    assert [("app.yaml", "edges.default[0]")] == scan(tmp_path)[0]


@pytest.mark.parametrize(
    ("region", "good", "bad"),
    [("ie1", ["london-ix", "dublin"], ["frankfurt", "dublin"]), ("au1", ["sydney"], ["tokyo"])],
)
def test_non_us1_lists_should_start_at_the_home_region(
    tmp_path: Path, region: str, good: list[str], bad: list[str]
) -> None:
    """An IE1/AU1 client is warned about each list not starting at its region's edges."""
    write_client(
        tmp_path,
        "app",
        twilio={"home_region": region},
        edges={"default": good, "by_country": {"DE": bad, "IE": good}, "geo": False},
    )
    problems, warnings = scan(tmp_path)
    assert ([], ["edges.by_country.DE", "twilio.home_region"]) == (
        problems,
        fields_warned(warnings),
    )


def test_geo_on_a_non_us1_client_is_doubtful(tmp_path: Path) -> None:
    """geo: true hands out the caller's nearest edge, not the home region's: warned."""
    write_client(
        tmp_path,
        "app",
        twilio={"home_region": "au1"},
        edges={"default": ["sydney"], "by_country": None, "geo": True},
    )
    assert ["edges.geo", "twilio.home_region"] == fields_warned(scan(tmp_path)[1])


def test_the_region_note_names_what_must_be_created_there(tmp_path: Path) -> None:
    """The IE1 note says keys, apps and credentials belong to IE1 and how to check them."""
    edges = {"default": ["dublin"], "geo": False}
    write_client(tmp_path, "app", twilio={"home_region": "ie1"}, edges=edges)
    [note] = scan(tmp_path)[1]
    assert (True, True, True) == (
        "API keys, TwiML App and push credentials" in note,
        "IE1 region" in note,
        "check-twilio" in note,
    )


def test_check_config_prints_warnings_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings are printed on stderr; the exit code stays 0."""
    changes: dict[str, Any] = {
        "twilio": {"home_region": "ie1"},
        "edges": {"default": ["ashburn"], "geo": False},
    }
    write_client(tmp_path, "app", **changes)
    code = main(["check-config", str(tmp_path)])
    err = capsys.readouterr().err
    assert (0, 2) == (code, err.count("warning: "))
    assert "app.yaml: edges.default: home_region ie1 but the list starts with ashburn" in err
