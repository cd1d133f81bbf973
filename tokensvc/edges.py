"""Twilio edge catalogue, the built-in geo table, and the ordered edge list for a request.

The Voice SDKs do not validate edge names (a typo only shows up at connect time as error
31005), so every configured edge is checked against ``EDGES`` when a config is loaded.
``sao-paulo-ix`` is listed by Twilio's Interconnect docs but missing from the JS SDK's enum;
it is rejected until the SDK knows it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: The 8 fixed public edges and where they are (latitude, longitude).
PUBLIC_EDGES: Mapping[str, tuple[float, float]] = {
    "sydney": (-33.87, 151.21),
    "sao-paulo": (-23.55, -46.63),
    "dublin": (53.35, -6.26),
    "frankfurt": (50.11, 8.68),
    "tokyo": (35.68, 139.69),
    "singapore": (1.35, 103.82),
    "ashburn": (39.04, -77.49),
    "umatilla": (45.92, -119.34),
}
ROAMING = "roaming"
INTERCONNECT_EDGES = frozenset(
    {
        "ashburn-ix",
        "san-jose-ix",
        "london-ix",
        "frankfurt-ix",
        "singapore-ix",
        "sydney-ix",
        "tokyo-ix",
    }
)
#: Every edge string the Voice JavaScript SDK knows (16).
EDGES: frozenset[str] = frozenset(PUBLIC_EDGES) | {ROAMING} | INTERCONNECT_EDGES

#: How many of the nearest public edges the geo table hands out, before ``roaming``.
GEO_EDGE_COUNT = 3


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def edges_by_distance(location: tuple[float, float]) -> tuple[str, ...]:
    """All 8 public edges, nearest first."""
    return tuple(sorted(PUBLIC_EDGES, key=lambda e: _distance_km(location, PUBLIC_EDGES[e])))


@cache
def country_locations() -> Mapping[str, tuple[float, float]]:
    """ISO 3166-1 alpha-2 code -> representative location, from ``data/countries.csv``."""
    text = resources.files("tokensvc").joinpath("data/countries.csv").read_text("utf-8")
    return {
        row["code"]: (float(row["lat"]), float(row["lon"]))
        for row in csv.DictReader(text.splitlines())
    }


@cache
def geo_table() -> Mapping[str, tuple[str, ...]]:
    """Country -> its nearest public edges, then ``roaming``."""
    return {
        code: (*edges_by_distance(loc)[:GEO_EDGE_COUNT], ROAMING)
        for code, loc in country_locations().items()
    }


def is_country(code: str) -> bool:
    return code in country_locations()


@dataclass(frozen=True)
class EdgePolicy:
    """A client's edge configuration, resolved once per country at load time."""

    default: tuple[str, ...]
    by_country: Mapping[str, tuple[str, ...]]
    geo: bool

    def for_country(self, country: str | None) -> tuple[str, ...]:
        if country:
            listed = self.by_country.get(country)
            if listed is not None:
                return listed
            if self.geo:
                nearest = geo_table().get(country)
                if nearest is not None:
                    return nearest
        return self.default


def without_drained(edges: Iterable[str], drained: frozenset[str]) -> list[str]:
    """Drop drained edges; when nothing is left, fall back to ``roaming``."""
    if not drained:
        return list(edges)
    kept = [e for e in edges if e not in drained]
    return kept or [ROAMING]


def normalize_country(raw: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code (or XK) from a header, or None when it is not one:
    any two letters are not a country (``ZZ``, ``QX`` are not in ``data/countries.csv``)."""
    if not raw:
        return None
    code = raw.strip().upper()
    return code if len(code) == 2 and is_country(code) else None
