"""The status-feed configuration: one YAML file -> :class:`FeedConfig`, or ``ConfigError``.

The file is named by ``TOKENSVC_STATUS_FEED_CONFIG`` (or ``--config`` on the ``status-feed``
commands). Like client files, unknown keys are errors and every problem names the file and the
field; all problems are reported together. Structure (types, ranges, unknown keys) is checked
by a JSON Schema (:data:`SCHEMA`); rules across fields by Python code below it.

Cross-field rules, each with its reason:

- an edge must be in ``tokensvc.edges.EDGES`` and must not be ``roaming`` (roaming is the
  last resort of every list; the feed never drains it);
- ``lease_seconds`` must outlast one jittered poll plus its timeout, or a healthy feed would
  let its own leases lapse between polls;
- ``max_stale_seconds`` must be at least one poll interval, or every poll would be stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tokensvc.edges import EDGES, ROAMING
from tokensvc.errors import ConfigError, Problem

#: Every status a Statuspage component can have, least severe first.
STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
DEFAULT_ACT_ON = ("partial_outage", "major_outage")
#: Each poll sleeps ``poll_interval_seconds`` times a factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.1

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "components"],
    "properties": {
        "url": {"type": "string", "pattern": r"^https?://[^\s]+/(components|summary)\.json$"},
        "poll_interval_seconds": {"type": "number", "minimum": 1, "maximum": 3600},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
        "max_stale_seconds": {"type": "number", "minimum": 1, "maximum": 86400},
        "act_on": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": list(STATUSES[1:])},
        },
        "confirm_polls": {"type": "integer", "minimum": 1, "maximum": 100},
        "clear_polls": {"type": "integer", "minimum": 1, "maximum": 100},
        "lease_seconds": {"type": "number", "minimum": 1, "maximum": 86400},
        "max_auto_drained": {"type": "integer", "minimum": 0, "maximum": len(EDGES)},
        "min_edges_kept": {"type": "integer", "minimum": 0, "maximum": len(EDGES)},
        "components": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^[A-Za-z0-9_-]{1,64}$"},
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string"},
            },
        },
    },
}


@dataclass(frozen=True)
class FeedConfig:
    """A validated status-feed configuration (seconds are floats)."""

    url: str
    components: Mapping[str, tuple[str, ...]]  # component id -> edges it stands for
    poll_interval_seconds: float = 30.0
    timeout_seconds: float = 5.0
    max_stale_seconds: float = 300.0
    act_on: frozenset[str] = frozenset(DEFAULT_ACT_ON)
    confirm_polls: int = 2
    clear_polls: int = 3
    lease_seconds: float = 120.0
    max_auto_drained: int = 2
    min_edges_kept: int = 1
    source: str = ""

    @property
    def lock_seconds(self) -> float:
        """Expiry of the per-region poller lock: two jittered polls plus a timeout, so a live
        holder renews it in time and a dead one is replaced within one lock lease."""
        return 2 * self.poll_interval_seconds * (1 + JITTER) + self.timeout_seconds

    def components_of(self, edge: str) -> tuple[str, ...]:
        return tuple(c for c, edges in self.components.items() if edge in edges)


def _field(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _non_string_keys(value: Any, where: tuple[object, ...]) -> list[tuple[object, ...]]:
    """Paths of mapping keys YAML decoded as numbers or booleans (``123: [ashburn]``)."""
    found: list[tuple[object, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                found.append((*where, key))
            else:
                found += _non_string_keys(item, (*where, key))
    return found


def parse_config(raw: Any, source: str) -> FeedConfig:
    """Validate a decoded document; raise ConfigError with every problem."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    bad_keys = _non_string_keys(raw, ())
    if bad_keys:
        raise ConfigError(
            [
                Problem(source, _field(where), "keys must be strings (quote them)")
                for where in bad_keys
            ]
        )
    problems = [
        Problem(source, _field(e.absolute_path), e.message)
        for e in sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise ConfigError(problems)
    defaults = FeedConfig(url="", components={})
    config = FeedConfig(
        url=raw["url"],
        components={c: tuple(edges) for c, edges in raw["components"].items()},
        poll_interval_seconds=float(
            raw.get("poll_interval_seconds", defaults.poll_interval_seconds)
        ),
        timeout_seconds=float(raw.get("timeout_seconds", defaults.timeout_seconds)),
        max_stale_seconds=float(raw.get("max_stale_seconds", defaults.max_stale_seconds)),
        act_on=frozenset(raw.get("act_on", DEFAULT_ACT_ON)),
        confirm_polls=raw.get("confirm_polls", defaults.confirm_polls),
        clear_polls=raw.get("clear_polls", defaults.clear_polls),
        lease_seconds=float(raw.get("lease_seconds", defaults.lease_seconds)),
        max_auto_drained=raw.get("max_auto_drained", defaults.max_auto_drained),
        min_edges_kept=raw.get("min_edges_kept", defaults.min_edges_kept),
        source=source,
    )
    problems = _cross_field_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _cross_field_problems(c: FeedConfig) -> list[Problem]:
    problems: list[Problem] = []
    for component, edges in c.components.items():
        for i, edge in enumerate(edges):
            where = f"components.{component}.{i}"
            if edge == ROAMING:
                problems.append(
                    Problem(c.source, where, "roaming can never be drained; do not map it")
                )
            elif edge not in EDGES:
                problems.append(Problem(c.source, where, f"unknown edge {edge!r}"))
    one_poll = c.poll_interval_seconds * (1 + JITTER) + c.timeout_seconds
    if c.lease_seconds <= one_poll:
        problems.append(
            Problem(
                c.source,
                "lease_seconds",
                f"must be more than one jittered poll plus its timeout ({one_poll:g} s), or leases "
                "lapse between healthy polls",
            )
        )
    if c.max_stale_seconds < c.poll_interval_seconds:
        problems.append(
            Problem(c.source, "max_stale_seconds", "must be at least poll_interval_seconds")
        )
    return problems


def load_config(path: str | Path) -> FeedConfig:
    """Read and validate a YAML file; raise ConfigError naming the file and each field."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(source, "", f"cannot read: {exc.strerror}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([Problem(source, where, "not valid YAML")]) from None
    return parse_config(raw, source)
