"""Twilio edge catalogue, the built-in geo table, and the ordered edge list for a request.

The catalogue is data: ``tokensvc/data/edges.csv``, one row per edge Twilio documents
(``name, kind, location, lat, lon, legacy_id, js_sdk``). ``kind`` is ``public``,
``interconnect`` or ``roaming``; ``legacy_id`` is the region id the SDKs used before edges
(``ie1``, ``us1-ix``; empty when there was none); ``js_sdk`` says whether the Voice JavaScript
SDK's ``Edge`` enum has the name. A new Twilio edge is a new row; everything here derives
from it: ``EDGES`` (the SDK's names), ``PUBLIC_EDGES`` (the geo table's candidates, with
their coordinates) and ``NON_SDK_EDGES``.

The Voice SDKs do not validate edge names (a typo only shows up at connect time as error
31005), so every configured edge is checked against the catalogue when a config is loaded.
``EDGES`` is what a client may use by default. An edge missing from the SDK enum
(``sao-paulo-ix``, listed by Twilio's Interconnect docs) is refused unless the client file
sets ``edges.allow_non_sdk_edges: true``, and then loads with a warning.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

EdgeKind = Literal["public", "interconnect", "roaming"]
EDGE_KINDS: tuple[EdgeKind, ...] = ("public", "interconnect", "roaming")
ROAMING = "roaming"


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of ``data/edges.csv``. ``location`` is None for ``roaming`` (no one place)."""

    name: str
    kind: EdgeKind
    place: str
    location: tuple[float, float] | None
    legacy_id: str
    in_js_sdk: bool


def _kind(text: str) -> EdgeKind:
    for kind in EDGE_KINDS:
        if text == kind:
            return kind
    raise ValueError(f"edges.csv: unknown kind {text!r}")


def _row(row: Mapping[str, str]) -> Edge:
    location = (float(row["lat"]), float(row["lon"])) if row["lat"] else None
    return Edge(
        name=row["name"],
        kind=_kind(row["kind"]),
        place=row["location"],
        location=location,
        legacy_id=row["legacy_id"],
        in_js_sdk=row["js_sdk"] == "yes",
    )


def _load_catalogue() -> dict[str, Edge]:
    text = resources.files("tokensvc").joinpath("data/edges.csv").read_text("utf-8")
    return {edge.name: edge for edge in map(_row, csv.DictReader(text.splitlines()))}


#: Every edge Twilio documents, in file order.
CATALOGUE: Mapping[str, Edge] = _load_catalogue()
#: The edge strings the Voice JavaScript SDK knows: what a client may use by default.
EDGES: frozenset[str] = frozenset(e.name for e in CATALOGUE.values() if e.in_js_sdk)
#: Catalogue edges the SDK enum lacks: allowed only with ``edges.allow_non_sdk_edges``.
NON_SDK_EDGES: frozenset[str] = frozenset(CATALOGUE) - EDGES
#: The public edges (the geo table's candidates) and where they are (latitude, longitude).
PUBLIC_EDGES: Mapping[str, tuple[float, float]] = {
    e.name: e.location
    for e in CATALOGUE.values()
    if e.kind == "public" and e.in_js_sdk and e.location is not None
}
INTERCONNECT_EDGES: frozenset[str] = frozenset(
    e.name for e in CATALOGUE.values() if e.kind == "interconnect" and e.in_js_sdk
)

#: Edges a client of a non-US1 home region should list first: Twilio's guidance is to match
#: the edge to the home region (media travels from the edge to the home region's servers).
HOME_REGION_EDGES: Mapping[str, tuple[str, ...]] = {
    "ie1": ("dublin", "london-ix"),
    "au1": ("sydney", "sydney-ix"),
}

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
    """All public edges, nearest first."""
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
