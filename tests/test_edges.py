"""Edge catalogue, geo table and the ordered list for a request."""

from __future__ import annotations

from tokensvc.edges import (
    EDGES,
    PUBLIC_EDGES,
    EdgePolicy,
    country_locations,
    geo_table,
    normalize_country,
    without_drained,
)

POLICY = EdgePolicy(
    default=("ashburn", "umatilla", "roaming"),
    by_country={"IE": ("dublin", "frankfurt", "ashburn")},
    geo=True,
)


def test_catalogue_is_the_16_sdk_edges() -> None:
    """The catalogue holds exactly the 16 names of the JS SDK's Edge enum."""
    assert 16 == len(EDGES)
    assert {"roaming", "ashburn-ix", "sao-paulo", "frankfurt"} <= EDGES
    assert "sao-paulo-ix" not in EDGES


def test_geo_table_covers_every_country() -> None:
    """Every country in the data file has an entry of 3 public edges then roaming."""
    table = geo_table()
    assert set(country_locations()) == set(table)
    assert all(
        len(v) == 4 and v[-1] == "roaming" and set(v[:3]) <= set(PUBLIC_EDGES)
        for v in table.values()
    )


def test_geo_orders_by_distance() -> None:
    """Nearest edges come first: Japan starts with tokyo, Brazil with sao-paulo."""
    assert "tokyo" == geo_table()["JP"][0]
    assert "sao-paulo" == geo_table()["BR"][0]
    assert ("dublin", "frankfurt") == geo_table()["GB"][:2]
    assert "sydney" == geo_table()["NZ"][0]


def test_by_country_wins_over_geo() -> None:
    """A configured by_country entry is used before the geo table."""
    assert ("dublin", "frankfurt", "ashburn") == POLICY.for_country("IE")


def test_geo_used_when_no_by_country_entry() -> None:
    """With geo: true, a country without an entry gets its nearest edges."""
    assert geo_table()["JP"] == POLICY.for_country("JP")


def test_default_without_country_or_geo() -> None:
    """No country, or geo off, gives the default list."""
    assert POLICY.default == POLICY.for_country(None)
    no_geo = EdgePolicy(POLICY.default, {}, geo=False)
    assert POLICY.default == no_geo.for_country("JP")


def test_drained_edges_are_removed_in_order() -> None:
    """Drained edges disappear; the rest keep their order."""
    assert ["dublin", "ashburn"] == without_drained(
        ("dublin", "frankfurt", "ashburn"), frozenset({"frankfurt"})
    )


def test_all_drained_falls_back_to_roaming() -> None:
    """When every edge of a list is drained, the answer is roaming."""
    assert ["roaming"] == without_drained(("dublin",), frozenset({"dublin"}))


def test_country_normalization() -> None:
    """Country hints are upper-cased ISO alpha-2 or ignored."""
    assert ("IE", None, None, None) == (
        normalize_country(" ie "),
        normalize_country("IRL"),
        normalize_country("1E"),
        normalize_country(""),
    )


def test_only_table_countries_are_countries() -> None:
    """Two letters that are no ISO 3166-1 code are not a country; XK (in the table) is."""
    assert (None, None, "XK", "JP") == (
        normalize_country("ZZ"),
        normalize_country("QX"),
        normalize_country("xk"),
        normalize_country("JP"),
    )
