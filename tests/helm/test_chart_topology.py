"""The three-region deployment the chart README describes, rendered exactly as documented.

The recommended topology (docs/redis.md, topology A): every region its own Sentinel group, no
cross-region dependency, one load balancer convention for the country header, and an ops
config (deploy/ops-config.yaml) that names the same Redis the chart gives each region. The
cross-region Sentinel layout survives only as a labelled alternative under
helm/tokensvc/examples/cross-region-sentinel/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    CHART_DIR,
    CHART_EXAMPLES,
    REGIONS,
    REPO,
    WITH_CLIENT,
    container,
    env_of,
    load_values_file,
    merge,
    objects,
    one,
)

from tokensvc.ops import load_ops_config

OPS_CONFIG = REPO / "deploy" / "ops-config.yaml"


def _region_env(region: str, *extra: dict[str, Any]) -> dict[str, str]:
    overlay = load_values_file(CHART_DIR / "regions" / f"{region}.yaml")
    return env_of(container(objects(merge(overlay, WITH_CLIENT, *extra))))


def _sentinel_hosts(url: str) -> list[str]:
    return url.split("://", 1)[1].split("/", 1)[0].split(",")


def test_the_overlays_are_exactly_the_three_regions() -> None:
    """regions/ holds one overlay per region of the README, named after its region."""
    overlays = sorted(p.stem for p in (CHART_DIR / "regions").glob("*.yaml"))
    regions = sorted(
        load_values_file(CHART_DIR / "regions" / f"{r}.yaml")["region"] for r in REGIONS
    )
    assert (sorted(REGIONS), sorted(REGIONS)) == (overlays, regions)


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_uses_only_its_own_sentinels(region: str) -> None:
    """The rendered Redis URL names only this region's Sentinels and no cross-region replica."""
    env = _region_env(region)
    hosts = _sentinel_hosts(env["TOKENSVC_REDIS_URL"])
    assert (3, [], None) == (
        len(hosts),
        [h for h in hosts if f".{region}." not in h],
        env.get("TOKENSVC_REDIS_READ_URL"),
    )


def test_regions_share_no_redis_endpoint() -> None:
    """No Sentinel endpoint appears in two regions' URLs (statically stable regions)."""
    seen = [h for r in REGIONS for h in _sentinel_hosts(_region_env(r)["TOKENSVC_REDIS_URL"])]
    assert len(seen) == len(set(seen))


def test_one_country_header_convention_for_all_regions() -> None:
    """Every region behind the one global load balancer sets the same country header."""
    headers = {_region_env(r)["TOKENSVC_COUNTRY_HEADER"] for r in REGIONS}
    assert {"CloudFront-Viewer-Country"} == headers


def test_the_gcp_example_switches_every_region_to_its_header() -> None:
    """Layering the Google Cloud example after any overlay gives X-Client-Geo-Country."""
    gcp = load_values_file(CHART_EXAMPLES / "gcp-global-lb-values.yaml")
    headers = {_region_env(r, gcp)["TOKENSVC_COUNTRY_HEADER"] for r in REGIONS}
    assert {"X-Client-Geo-Country"} == headers


def test_the_alternative_overlays_are_labelled_and_use_one_header() -> None:
    """The cross-region Sentinel overlays say ALTERNATIVE up front and also use CloudFront."""
    found = {}
    for path in sorted((CHART_EXAMPLES / "cross-region-sentinel").glob("*.yaml")):
        first = path.read_text("utf-8").splitlines()[0]
        found[path.stem] = (
            first.startswith("# ALTERNATIVE"),
            load_values_file(path)["server"]["countryHeader"],
        )
    assert {r: (True, "CloudFront-Viewer-Country") for r in REGIONS} == found


def _ops_regions(tmp_path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """The ops config loaded by the service's own loader, its password files made up here."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    text = OPS_CONFIG.read_text("utf-8")
    for line in text.splitlines():
        if "/run/secrets/tokensvc-ops/" in line:
            name = line.split("/run/secrets/tokensvc-ops/")[1].split("}")[0].strip()
            (secrets / name).write_text(f"pw-{name}", "utf-8")
    config = tmp_path / "ops.yaml"
    config.write_text(text.replace("/run/secrets/tokensvc-ops/", f"{secrets}/"), "utf-8")
    return {
        r.name: (
            r.url.reveal(),
            r.password.reveal() if r.password else None,
            r.sentinel_password.reveal() if r.sentinel_password else None,
        )
        for r in load_ops_config(config, {}).regions
    }


def test_ops_config_names_the_redis_of_every_region(tmp_path: Path) -> None:
    """deploy/ops-config.yaml loads, and each region's URL is the one the chart renders."""
    regions = _ops_regions(tmp_path)
    assert {r: _region_env(r)["TOKENSVC_REDIS_URL"] for r in REGIONS} == {
        name: url for name, (url, _, _) in regions.items()
    }


def test_ops_config_reads_both_passwords_per_region(tmp_path: Path) -> None:
    """Each region's Redis and Sentinel passwords come from files (never literals)."""
    regions = _ops_regions(tmp_path)
    assert {r: (f"pw-{r}-redis-password", f"pw-{r}-sentinel-password") for r in REGIONS} == {
        name: (pw, spw) for name, (_, pw, spw) in regions.items()
    }


def _checksum(values: dict[str, Any]) -> str:
    annotations = one(objects(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    checksum: str = annotations["checksum/clients"]
    return checksum


def test_clients_checksum_is_the_same_in_every_region() -> None:
    """Identical client files give an identical checksum/clients in all three regions."""
    sums = {
        _checksum(merge(load_values_file(CHART_DIR / "regions" / f"{r}.yaml"), WITH_CLIENT))
        for r in REGIONS
    }
    assert 1 == len(sums)
