"""The drill's callers: one non-dev client file, its secrets, caller JWTs, the app population.

The client file (``webphone.yaml``) is what an operator would deploy: no ``dev: true``, the Twilio
API key secret from ``{env: DRILL_TWILIO_API_KEY_SECRET}``, the caller HS256 secret from
``{file: ...}``. Secrets are random per run; ``secrets()`` lists every one so the log scan can
look for them. Each simulated caller has its own identity and its own JWT (issued here, as the
app's identity provider would, and handed to Node).

An app in a country lists the regional endpoints nearest first (great-circle distance from the
country's representative location, ``tokensvc/data/countries.csv``); a share of apps uses the
global endpoint first instead, then the two nearest regions.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml

from tokensvc.edges import EdgePolicy, country_locations, without_drained

CLIENT = "webphone"
ISSUER = "https://idp.drill.example/"
AUDIENCE = "tokensvc"
API_KEY_ENV = "DRILL_TWILIO_API_KEY_SECRET"
EDGES: dict[str, Any] = {
    "default": ["ashburn", "umatilla", "roaming"],
    "by_country": {"IE": ["dublin", "frankfurt", "ashburn"]},
    "geo": True,
}
POLICY = EdgePolicy(
    default=tuple(EDGES["default"]),
    by_country={k: tuple(v) for k, v in EDGES["by_country"].items()},
    geo=bool(EDGES["geo"]),
)


def expected_edges(country: str, drained: frozenset[str] = frozenset()) -> list[str]:
    """The edge list the service must hand a caller from ``country``."""
    return without_drained(POLICY.for_country(country), drained)


@dataclass
class Credentials:
    hs256_secret: str
    api_key_secret: str
    secret_file: Path

    def secrets(self) -> list[str]:
        return [self.hs256_secret, self.api_key_secret]


def write_client(config_dir: Path, creds: Credentials, origins: Sequence[str]) -> Path:
    """The good client file, written atomically (as Kubernetes swaps a ConfigMap)."""
    doc = client_document(creds, origins)
    return write_atomic(config_dir / f"{CLIENT}.yaml", yaml.safe_dump(doc, sort_keys=False))


def client_document(creds: Credentials, origins: Sequence[str]) -> dict[str, Any]:
    hexes = secrets.token_hex(48)
    return {
        "twilio": {
            "account_sid": "AC" + hexes[:32],
            "api_key_sid": "SK" + hexes[32:64],
            "api_key_secret": {"env": API_KEY_ENV},
            "outgoing_application_sid": "AP" + hexes[64:96],
            "incoming_allow": True,
            "home_region": "us1",
        },
        "token": {"ttl_seconds": 3600},
        "auth": {
            "type": "jwt",
            "algorithms": ["HS256"],
            "hs256_secret": {"file": str(creds.secret_file)},
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "identity_claim": "sub",
        },
        "cors": {"allow_origins": list(origins)},
        "edges": EDGES,
        # Generous on purpose: the drill measures availability, not the limiter. Every caller
        # reaches the service from 127.0.0.1 through HAProxy, so one IP carries them all.
        "rate_limit": {"per_identity": "600/minute", "per_ip": "1000000/minute"},
        "dev": False,
    }


def write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def make_credentials(workdir: Path) -> Credentials:
    secret_dir = workdir / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    creds = Credentials(
        hs256_secret=secrets.token_urlsafe(36),
        api_key_secret=secrets.token_hex(16),
        secret_file=secret_dir / "caller-hs256",
    )
    creds.secret_file.write_text(creds.hs256_secret)
    creds.secret_file.chmod(0o600)
    return creds


def caller_jwts(creds: Credentials, country: str, count: int, lifetime: float) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": f"drill-{country.lower()}-{i}",
                "iat": now,
                "exp": now + int(lifetime),
            },
            creds.hs256_secret,
            algorithm="HS256",
        )
        for i in range(count)
    ]


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371 * math.asin(math.sqrt(h))


def regions_by_distance(
    country: str, regions: Sequence[tuple[str, tuple[float, float]]]
) -> list[str]:
    where = country_locations()[country]
    return [name for name, loc in sorted(regions, key=lambda r: _distance(where, r[1]))]


def population(
    creds: Credentials,
    regions: Sequence[tuple[str, tuple[float, float]]],
    countries: Sequence[str],
    urls: dict[str, str],
    *,
    callers: int = 60,
    lifetime: float = 6 * 3600,
    global_share: float = 0.25,
) -> list[dict[str, Any]]:
    """Apps per country for load.mjs: endpoints in order, credentials, weight."""
    apps: list[dict[str, Any]] = []
    for country in countries:
        order = regions_by_distance(country, regions)
        tokens = caller_jwts(creds, country, callers, lifetime)
        apps.append(
            {
                "country": country,
                "kind": "regional",
                "weight": 1 - global_share,
                "endpoints": [urls[r] for r in order],
                "credentials": tokens,
            }
        )
        if global_share > 0:
            apps.append(
                {
                    "country": country,
                    "kind": "global",
                    "weight": global_share,
                    "endpoints": [urls["global"], *(urls[r] for r in order[:2])],
                    "credentials": tokens,
                }
            )
    return apps
