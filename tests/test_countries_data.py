"""Checks on tokensvc/data/countries.csv, the country -> representative location table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "tokensvc" / "data" / "countries.csv"

# The 249 officially assigned ISO 3166-1 alpha-2 codes, one line per first letter,
# typed out here by hand rather than derived from the data file.
ISO_3166_1_ALPHA_2 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
DE DJ DK DM DO DZ
EC EE EG EH ER ES ET
FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU
ID IE IL IM IN IO IQ IR IS IT
JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ
LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ
OM
PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA
RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
UA UG UM US UY UZ
VA VC VE VG VI VN VU
WF WS
YE YT
ZA ZM ZW
"""

EXPECTED_CODES = frozenset(ISO_3166_1_ALPHA_2.split()) | {"XK"}


def _read_rows() -> list[dict[str, str]]:
    with DATA.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return _read_rows()


@pytest.fixture(scope="module")
def by_code(rows: list[dict[str, str]]) -> dict[str, tuple[float, float]]:
    return {r["code"]: (float(r["lat"]), float(r["lon"])) for r in rows}


def test_expected_literal_has_249_iso_codes() -> None:
    """The hand-written ISO list in this test holds 249 distinct two-letter codes."""
    codes = ISO_3166_1_ALPHA_2.split()
    assert len(codes) == 249
    assert len(set(codes)) == 249
    assert all(len(c) == 2 and c.isupper() and c.isalpha() for c in codes)


def test_header_is_code_lat_lon_name() -> None:
    """The file starts with the header code,lat,lon,name."""
    with DATA.open(encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == ["code", "lat", "lon", "name"]


def test_codes_are_exactly_iso_plus_xk(rows: list[dict[str, str]]) -> None:
    """The file's codes are exactly the 249 ISO 3166-1 alpha-2 codes plus XK."""
    codes = {r["code"] for r in rows}
    assert sorted(EXPECTED_CODES - codes) == [], "missing codes"
    assert sorted(codes - EXPECTED_CODES) == [], "unexpected codes"
    assert len(rows) == 250


def test_no_duplicate_codes(rows: list[dict[str, str]]) -> None:
    """No code appears on more than one row."""
    codes = [r["code"] for r in rows]
    dups = sorted({c for c in codes if codes.count(c) > 1})
    assert dups == []


def test_every_row_has_four_non_empty_fields(rows: list[dict[str, str]]) -> None:
    """Every row has a code, lat, lon and name, and nothing more."""
    for r in rows:
        assert None not in r, f"extra fields on {r}"
        assert all(r[k] and r[k].strip() == r[k] for k in ("code", "lat", "lon", "name")), r


def test_coordinates_have_two_decimals(rows: list[dict[str, str]]) -> None:
    """lat and lon are written with exactly two decimal places."""
    for r in rows:
        for key in ("lat", "lon"):
            whole, _, frac = r[key].lstrip("-").partition(".")
            assert whole.isdigit() and len(frac) == 2 and frac.isdigit(), (r["code"], r[key])


def test_latitudes_and_longitudes_in_range(by_code: dict[str, tuple[float, float]]) -> None:
    """Every lat lies in [-90, 90] and every lon in [-180, 180]."""
    for code, (lat, lon) in by_code.items():
        assert -90.0 <= lat <= 90.0, (code, lat)
        assert -180.0 <= lon <= 180.0, (code, lon)


def test_ireland_is_near_dublin(by_code: dict[str, tuple[float, float]]) -> None:
    """IE sits near 53N, 6W (Dublin)."""
    lat, lon = by_code["IE"]
    assert abs(lat - 53.0) < 1.0 and abs(lon - -6.0) < 1.0


def test_japan_is_near_tokyo(by_code: dict[str, tuple[float, float]]) -> None:
    """JP sits near 35N, 139E (Tokyo)."""
    lat, lon = by_code["JP"]
    assert abs(lat - 35.0) < 1.5 and abs(lon - 139.0) < 1.5


def test_brazil_is_south_of_equator(by_code: dict[str, tuple[float, float]]) -> None:
    """BR lies south of the equator."""
    assert by_code["BR"][0] < 0.0


def test_new_zealand_is_east_of_165(by_code: dict[str, tuple[float, float]]) -> None:
    """NZ lies east of 165E."""
    lat, lon = by_code["NZ"]
    assert lon > 165.0 and lat < 0.0


def test_names_with_commas_survive_quoting(rows: list[dict[str, str]]) -> None:
    """Names containing commas are quoted, so they read back whole."""
    names = {r["code"]: r["name"] for r in rows}
    assert names["BQ"] == "Bonaire, Sint Eustatius and Saba"
    assert names["SH"] == "Saint Helena, Ascension and Tristan da Cunha"
    assert names["XK"] == "Kosovo"
