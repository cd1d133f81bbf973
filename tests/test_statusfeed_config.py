"""tokensvc.statusfeed.config: the YAML file, validated; every problem names file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tokensvc.errors import ConfigError
from tokensvc.statusfeed.config import DEFAULT_ACT_ON, FeedConfig, load_config

GOOD: dict[str, Any] = {
    "url": "https://status.twilio.com/api/v2/components.json",
    "components": {"abc123xyz": ["ashburn", "ashburn-ix"]},
}


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "status-feed.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def problems(tmp_path: Path, doc: Any) -> list[tuple[str, str]]:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert all(p.source == str(path) for p in caught.value.problems)
    return [(p.field, p.message) for p in caught.value.problems]


def test_a_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    """url and components are enough; act_on defaults to partial and major outages."""
    config = load_config(write(tmp_path, GOOD))
    expected = FeedConfig(
        url=GOOD["url"],
        components={"abc123xyz": ("ashburn", "ashburn-ix")},
        act_on=frozenset(DEFAULT_ACT_ON),
        source=str(tmp_path / "status-feed.yaml"),
    )
    assert expected == config


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    """A typo (poll_interval) is refused, naming the top level."""
    found = problems(tmp_path, {**GOOD, "poll_interval": 30})
    assert ["(top level)"] == [field for field, _ in found]
    assert "poll_interval" in found[0][1]


def test_mapping_a_component_to_roaming_is_an_error(tmp_path: Path) -> None:
    """Roaming is never drained, so mapping it is refused at its field."""
    found = problems(tmp_path, {**GOOD, "components": {"abc": ["dublin", "roaming"]}})
    assert [("components.abc.1", "roaming can never be drained; do not map it")] == found


def test_an_unknown_edge_is_an_error(tmp_path: Path) -> None:
    """Edge names come from tokensvc.edges.EDGES."""
    found = problems(tmp_path, {**GOOD, "components": {"abc": ["ashbrun"]}})
    assert [("components.abc.0", "unknown edge 'ashbrun'")] == found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Three bad fields: three problems, each at its field."""
    found = problems(
        tmp_path,
        {**GOOD, "confirm_polls": 0, "act_on": ["broken"], "url": "ftp://x/components.json"},
    )
    assert ["act_on.0", "confirm_polls", "url"] == sorted(field for field, _ in found)


def test_a_lease_shorter_than_a_poll_is_an_error(tmp_path: Path) -> None:
    """lease_seconds must outlast one jittered poll plus its timeout."""
    found = problems(
        tmp_path, {**GOOD, "poll_interval_seconds": 30, "timeout_seconds": 5, "lease_seconds": 35}
    )
    assert ["lease_seconds"] == [field for field, _ in found]


def test_a_numeric_component_id_must_be_quoted(tmp_path: Path) -> None:
    """YAML reads `123: [ashburn]` as a number; the file is refused at that key."""
    found = problems(
        tmp_path, "url: https://s.example.com/api/v2/summary.json\ncomponents:\n  123: [ashburn]\n"
    )
    assert [("components.123", "keys must be strings (quote them)")] == found


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is a problem with its line, not a traceback."""
    found = problems(tmp_path, "url: [\ncomponents: {}\n")
    assert [("line 3", "not valid YAML")] == found
