"""Rendering the chart offline (helm-python-sdk: the real Helm v4 engine) and reading the result.

Shared by the chart tests. Values files are merged the way `helm -f a -f b` merges them: maps
deep-merge, every other value (lists included) is replaced by the later file.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from helm_python.chart import Chart, values_from_yaml

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
CHART_DIR = HELM_DIR / "tokensvc"
#: Values files layered over a region overlay (helm/tokensvc/examples/*-values.yaml) and the
#: alternative cross-region Sentinel overlays (examples/cross-region-sentinel/).
CHART_EXAMPLES = CHART_DIR / "examples"
#: The region overlays of the recommended topology, one release per region.
REGIONS = ("us-east", "eu-west", "ap-southeast")
RELEASE = "tokensvc"
NAMESPACE = "tokensvc"

#: Kubernetes minor versions every rendered object is validated against: the chart's floor
#: (Chart.yaml kubeVersion >= 1.30), one release later, and the newest we target.
KUBE_VERSIONS = ("1.30", "1.31", "1.34")

#: A client file as an operator writes it (given to the chart as a string, like --set-file).
CLIENT_FILE = """\
twilio:
  account_sid: AC0123456789abcdef0123456789abcdef
  api_key_sid: SK0123456789abcdef0123456789abcdef
  api_key_secret: {file: /etc/tokensvc/secrets/myapp-api-key-secret}
  outgoing_application_sid: AP0123456789abcdef0123456789abcdef
  incoming_allow: true
  home_region: us1
auth:
  type: jwt
  algorithms: [RS256]
  jwks_url: https://idp.example.com/.well-known/jwks.json
  issuer: https://idp.example.com/
  audience: tokensvc
edges:
  default: [ashburn, umatilla, roaming]
  by_country:
    IE: [dublin, frankfurt, roaming]
  geo: true
"""

#: What a region overlay needs besides itself to install: a client and its secret.
WITH_CLIENT: dict[str, Any] = {
    "clients": {"myapp": CLIENT_FILE},
    "secrets": {"existingSecret": "tokensvc-client-secrets"},
}


def load_values_file(path: Path) -> dict[str, Any]:
    """A values file parsed by Helm's own YAML reader."""
    return values_from_yaml(path.read_text("utf-8"))


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge values layers like successive `-f` files: maps merge, anything else is replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        _merge_into(out, layer)
    return out


def _merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)


def scenarios() -> dict[str, dict[str, Any]]:
    """Every values combination the tests render, by name.

    Pure defaults are not here: the chart refuses them on purpose (no client configured),
    which test_chart.py checks separately.
    """
    out: dict[str, dict[str, Any]] = {"default": merge(WITH_CLIENT)}
    for overlay in sorted((CHART_DIR / "regions").glob("*.yaml")):
        out[f"region-{overlay.stem}"] = merge(load_values_file(overlay), WITH_CLIENT)
    for ci in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        out[f"ci-{ci.stem.removesuffix('-values')}"] = load_values_file(ci)
    examples = HELM_DIR / "examples"
    us_east = load_values_file(CHART_DIR / "regions" / "us-east.yaml")
    out["example-valkey"] = merge(
        us_east, load_values_file(examples / "tokensvc-valkey-values.yaml"), WITH_CLIENT
    )
    out["example-managed-redis"] = merge(
        load_values_file(CHART_DIR / "regions" / "eu-west.yaml"),
        load_values_file(examples / "tokensvc-managed-redis-values.yaml"),
        WITH_CLIENT,
    )
    for overlay in sorted((CHART_EXAMPLES / "cross-region-sentinel").glob("*.yaml")):
        out[f"alt-cross-region-{overlay.stem}"] = merge(load_values_file(overlay), WITH_CLIENT)
    for example in sorted(CHART_EXAMPLES.glob("*-values.yaml")):
        name = example.stem.removesuffix("-values")
        out[f"example-{name}"] = merge(us_east, load_values_file(example), WITH_CLIENT)
    return out


@functools.cache
def chart() -> Chart:
    """The chart, loaded once per test session (immutable, safe to share)."""
    return Chart.load(CHART_DIR)


def render(values: Mapping[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce for an install."""
    return _render_cached(json.dumps(values, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _render_cached(values_json: str) -> dict[str, str]:
    return chart().render(
        json.loads(values_json), name=RELEASE, namespace=NAMESPACE, is_install=True
    )


def objects(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty documents dropped)."""
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of a kind (and name); fails the test when there is not exactly one."""
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The tokensvc container of the Deployment."""
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "tokensvc")


def env_of(c: Mapping[str, Any]) -> dict[str, str]:
    """A container's literal env vars (valueFrom entries are skipped)."""
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels selector matches a label set (an empty selector never counts)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a nested structure."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)
