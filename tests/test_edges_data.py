"""Checks on tokensvc/data/edges.csv, the edge catalogue.

The JS SDK's list is typed out here from twilio-voice.js ``lib/twilio/regions.ts`` (``enum Edge``,
2.x) rather than derived from the data file, so a wrong ``js_sdk`` column fails.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tokensvc.edges import CATALOGUE, EDGES, NON_SDK_EDGES, PUBLIC_EDGES

DATA = Path(__file__).resolve().parent.parent / "tokensvc" / "data" / "edges.csv"
JS_SDK_EDGE_ENUM = {
    "sydney": "public",
    "sao-paulo": "public",
    "dublin": "public",
    "frankfurt": "public",
    "tokyo": "public",
    "singapore": "public",
    "ashburn": "public",
    "umatilla": "public",
    "roaming": "roaming",
    "ashburn-ix": "interconnect",
    "san-jose-ix": "interconnect",
    "london-ix": "interconnect",
    "frankfurt-ix": "interconnect",
    "singapore-ix": "interconnect",
    "sydney-ix": "interconnect",
    "tokyo-ix": "interconnect",
}


def rows() -> list[dict[str, str]]:
    with DATA.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_header_is_the_documented_columns() -> None:
    """The columns are the ones tokensvc.edges reads, in order."""
    with DATA.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert ["name", "kind", "location", "lat", "lon", "legacy_id", "js_sdk"] == header


def test_names_are_unique_lowercase_hostname_labels() -> None:
    """Each name appears once and can be a DNS label (voice-js.<edge>.twilio.com)."""
    names = [r["name"] for r in rows()]
    assert (len(names), []) == (
        len(set(names)),
        [n for n in names if not (n.replace("-", "").isalnum() and n == n.lower())],
    )


def test_kinds_and_sdk_column_match_the_js_sdk_enum() -> None:
    """Exactly the 16 names of the SDK's Edge enum say js_sdk=yes, with their kinds."""
    sdk = {r["name"]: r["kind"] for r in rows() if r["js_sdk"] == "yes"}
    assert (JS_SDK_EDGE_ENUM, set()) == (sdk, {r["js_sdk"] for r in rows()} - {"yes", "no"})


def test_sao_paulo_ix_is_catalogued_but_not_in_the_sdk() -> None:
    """Twilio's Interconnect docs list sao-paulo-ix; the SDK enum lacks it."""
    assert ("interconnect", frozenset({"sao-paulo-ix"})) == (
        CATALOGUE["sao-paulo-ix"].kind,
        NON_SDK_EDGES,
    )


def test_coordinates_are_on_earth_and_only_roaming_has_none() -> None:
    """Every located edge has a latitude and longitude in range; roaming is nowhere."""
    bad = [
        r["name"]
        for r in rows()
        if r["kind"] != "roaming"
        and not (-90 <= float(r["lat"]) <= 90 and -180 <= float(r["lon"]) <= 180)
    ]
    unlocated = [r["name"] for r in rows() if not r["lat"] and not r["lon"]]
    assert ([], ["roaming"]) == (bad, unlocated)


def test_legacy_ids_are_unique() -> None:
    """A legacy region id maps to one edge (empty when the edge never had one)."""
    ids = [r["legacy_id"] for r in rows() if r["legacy_id"]]
    assert (len(ids), "gll") == (len(set(ids)), CATALOGUE["roaming"].legacy_id)


def test_derived_sets_follow_the_file() -> None:
    """EDGES is the SDK's names; the geo table's candidates are the 8 public edges."""
    public = {n for n, kind in JS_SDK_EDGE_ENUM.items() if kind == "public"}
    assert (set(JS_SDK_EDGE_ENUM), public) == (set(EDGES), set(PUBLIC_EDGES))
