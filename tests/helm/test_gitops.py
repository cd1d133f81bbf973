"""The GitOps examples (deploy/gitops/), rendered the way Argo CD would render them.

The ApplicationSet's list generator is expanded here (its templates use only `{{.key}}`), each
generated Application is checked against a small strict schema written from the Argo CD
v1alpha1 API reference, and each of its Helm sources is rendered with the real Helm engine
(helm-python-sdk) from its path and valueFiles exactly as Argo CD resolves them (relative to
the source path, inside the repository). Every rendered object is validated strictly:
kubernetes-validate for core kinds, the chart tests' CRD schemas plus a small strict
ExternalSecret (external-secrets.io/v1) schema here. The ExternalSecrets must produce exactly the
Secrets and keys the tokensvc release mounts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import KUBE_VERSIONS, REGIONS, REPO, container, load_values_file, merge
from helm_python.chart import Chart
from test_chart import CRD_SCHEMAS, _strict, validate_object

GITOPS = REPO / "deploy" / "gitops"
APPSET = GITOPS / "applicationset.yaml"

_STR = {"type": "string", "minLength": 1}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}

_HELM_SOURCE = _strict(
    {
        "repoURL": _STR,
        "targetRevision": _STR,
        "path": _STR,
        "helm": _strict(
            {
                "releaseName": _STR,
                "valueFiles": {"type": "array", "items": _STR},
                "valuesObject": {"type": "object"},
            }
        ),
    },
    ["repoURL", "path"],
)

APPLICATION_SPEC = _strict(
    {
        "project": _STR,
        "sources": {"type": "array", "minItems": 1, "items": _HELM_SOURCE},
        "destination": _strict({"server": _STR, "namespace": _STR}, ["namespace"]),
        "syncPolicy": _strict(
            {
                "automated": _strict(
                    {"prune": {"type": "boolean"}, "selfHeal": {"type": "boolean"}}
                ),
                "syncOptions": {"type": "array", "items": _STR},
            }
        ),
    },
    ["project", "sources", "destination"],
)

APPLICATION_SET = _strict(
    {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "ApplicationSet"},
        "metadata": _strict({"name": _STR, "namespace": _STR}, ["name"]),
        "spec": _strict(
            {
                "goTemplate": {"type": "boolean"},
                "goTemplateOptions": {"type": "array", "items": _STR},
                "generators": {
                    "type": "array",
                    "minItems": 1,
                    "items": _strict(
                        {
                            "list": _strict(
                                {"elements": {"type": "array", "items": {"type": "object"}}},
                                ["elements"],
                            )
                        }
                    ),
                },
                "template": _strict(
                    {
                        "metadata": _strict({"name": _STR, "labels": _STRMAP}, ["name"]),
                        "spec": APPLICATION_SPEC,
                    },
                    ["metadata", "spec"],
                ),
            },
            ["generators", "template"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

EXTERNAL_SECRET = _strict(
    {
        "apiVersion": {"const": "external-secrets.io/v1"},
        "kind": {"const": "ExternalSecret"},
        "metadata": _strict(
            {"name": _STR, "namespace": _STR, "labels": _STRMAP, "annotations": _STRMAP},
            ["name"],
        ),
        "spec": _strict(
            {
                "refreshInterval": {"type": "string", "pattern": "^[0-9]+(s|m|h)$"},
                "secretStoreRef": _strict(
                    {"kind": {"enum": ["SecretStore", "ClusterSecretStore"]}, "name": _STR},
                    ["name"],
                ),
                "target": _strict(
                    {
                        "name": _STR,
                        "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
                        "deletionPolicy": {"enum": ["Delete", "Merge", "Retain"]},
                    },
                    ["name"],
                ),
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "items": _strict(
                        {
                            "secretKey": _STR,
                            "remoteRef": _strict(
                                {"key": _STR, "property": _STR, "version": _STR}, ["key"]
                            ),
                        },
                        ["secretKey", "remoteRef"],
                    ),
                },
            },
            ["secretStoreRef", "target", "data"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

SCHEMAS = {**CRD_SCHEMAS, ("external-secrets.io/v1", "ExternalSecret"): EXTERNAL_SECRET}


def _appset() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(APPSET.read_text("utf-8"))
    return doc


def _expand(node: Any, params: dict[str, str]) -> Any:
    """Substitute `{{.key}}` in every string, failing on an unknown key (missingkey=error)."""
    if isinstance(node, dict):
        return {k: _expand(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, params) for v in node]
    if isinstance(node, str):
        return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: params[m.group(1)], node)
    return node


def applications() -> dict[str, dict[str, Any]]:
    """Region -> the Application the ApplicationSet generates for it."""
    spec = _appset()["spec"]
    out = {}
    for generator in spec["generators"]:
        for element in generator["list"]["elements"]:
            out[element["region"]] = _expand(spec["template"], element)
    return out


def _render_source(source: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The objects Argo CD's `helm template` of this source renders."""
    chart_dir = REPO / source["path"]
    helm = source.get("helm", {})
    layers = []
    for name in helm.get("valueFiles", []):
        path = (chart_dir / name).resolve()
        assert path.is_relative_to(REPO), f"{name} leaves the repository"
        layers.append(load_values_file(path))
    layers.append(helm.get("valuesObject", {}))
    rendered = Chart.load(chart_dir).render(
        merge(*layers),
        name=helm.get("releaseName", "release"),
        namespace=namespace,
        is_install=True,
    )
    objs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            objs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objs


def _rendered(region: str) -> list[dict[str, Any]]:
    app = applications()[region]
    namespace = app["spec"]["destination"]["namespace"]
    return [o for s in app["spec"]["sources"] for o in _render_source(s, namespace)]


def test_the_application_set_is_valid() -> None:
    """The ApplicationSet passes its strict schema (a misspelt field would fail)."""
    jsonschema.Draft202012Validator(APPLICATION_SET).validate(_appset())


def test_it_generates_one_application_per_region_and_cluster() -> None:
    """Three Applications, one per region overlay, each to a different cluster."""
    apps = applications()
    for app in apps.values():
        jsonschema.Draft202012Validator(APPLICATION_SPEC).validate(app["spec"])
    servers = {a["spec"]["destination"]["server"] for a in apps.values()}
    assert (sorted(REGIONS), 3) == (sorted(apps), len(servers))


@pytest.mark.parametrize("region", REGIONS)
def test_each_application_uses_its_region_overlay(region: str) -> None:
    """The chart source layers regions/<region>.yaml, then the shared production values."""
    chart_source = next(
        s for s in applications()[region]["spec"]["sources"] if s["path"] == "helm/tokensvc"
    )
    assert [f"regions/{region}.yaml", "../../deploy/gitops/production-values.yaml"] == (
        chart_source["helm"]["valueFiles"]
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("region", REGIONS)
def test_every_object_argo_cd_would_apply_validates(region: str, version: str) -> None:
    """All objects of both sources validate strictly (Kubernetes or CRD schema)."""
    failures = []
    for obj in _rendered(region):
        schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        try:
            if schema is not None:
                jsonschema.Draft202012Validator(schema).validate(obj)
            else:
                validate_object(obj, version)
        except Exception as exc:  # noqa: BLE001 - collect every failure, report them together
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert [] == failures


@pytest.mark.parametrize("region", REGIONS)
def test_the_release_runs_the_region_and_mounts_only_existing_secrets(region: str) -> None:
    """The release serves its region and generates no Secret: all come from External Secrets."""
    objs = _rendered(region)
    env = {e["name"]: e.get("value") for e in container(objs)["env"]}
    assert (region, []) == (
        env["TOKENSVC_REGION"],
        [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"],
    )


def _mounted_secret_keys(objs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name -> keys the tokensvc pod needs from it (files named by env and clients)."""
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    by_dir = {
        mounts[v["name"]]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v
    }
    texts = [e.get("value", "") for e in container(objs)["env"]]
    texts += [t for o in objs if o["kind"] == "ConfigMap" for t in o["data"].values()]
    needed: dict[str, set[str]] = {name: set() for name in by_dir.values()}
    for text in texts:
        for directory, secret in by_dir.items():
            needed[secret].update(re.findall(rf"{re.escape(directory)}/([\w.-]+)", text))
    return needed


@pytest.mark.parametrize("region", REGIONS)
def test_external_secrets_provide_exactly_what_the_pod_mounts(region: str) -> None:
    """Each Secret the pod mounts is an ExternalSecret target holding every key the pod reads
    (Twilio API key secret, caller secret, Redis and Sentinel passwords, fingerprint key)."""
    objs = _rendered(region)
    provided = {
        o["spec"]["target"]["name"]: {d["secretKey"] for d in o["spec"]["data"]}
        for o in objs
        if o["kind"] == "ExternalSecret"
    }
    needed = _mounted_secret_keys(objs)
    assert needed == {name: provided.get(name, set()) & keys for name, keys in needed.items()}
    assert set(needed) == set(provided)


@pytest.mark.parametrize("region", REGIONS)
def test_redis_passwords_are_read_from_the_regions_own_store_key(region: str) -> None:
    """The Redis ExternalSecret of a region reads tokensvc/redis/<region>, no other region's."""
    objs = _rendered(region)
    redis = next(
        o
        for o in objs
        if o["kind"] == "ExternalSecret" and o["spec"]["target"]["name"] == "tokensvc-redis"
    )
    assert {f"tokensvc/redis/{region}"} == {d["remoteRef"]["key"] for d in redis["spec"]["data"]}


def test_the_secrets_chart_refuses_a_missing_region() -> None:
    """Without a region the secrets chart fails instead of reading an empty store path."""
    from helm_python.errors import HelmRenderError

    with pytest.raises(HelmRenderError) as caught:
        Chart.load(GITOPS / "tokensvc-secrets").render({}, name="s", namespace="tokensvc")
    assert "region is required" in str(caught.value)


def test_secrets_chart_path_is_inside_the_repository() -> None:
    """Every source path of the ApplicationSet exists in this repository."""
    paths = {s["path"] for a in applications().values() for s in a["spec"]["sources"]}
    assert [] == [p for p in sorted(paths) if not Path(REPO / p, "Chart.yaml").is_file()]
