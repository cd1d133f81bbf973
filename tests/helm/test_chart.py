"""The Helm chart, proven without a cluster.

Rendering and linting use helm-python-sdk (the real Helm v4 engine, offline). Every rendered
object is validated with kubernetes-validate (strict: unknown fields fail) for several
Kubernetes minor versions; an apiVersion/kind it has no schema for is a failure, except the
three CRD kinds the chart can render (HTTPRoute, ServiceMonitor, PrometheusRule).
kubernetes-validate ships no CRD schemas and the upstream CRDs are not vendored here, so those
are checked against small strict schemas below, written from the Gateway API v1 and Prometheus
Operator v1 API references, covering exactly the fields the chart renders (a misspelt field
still fails).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_support import (
    CHART_DIR,
    CLIENT_FILE,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    WITH_CLIENT,
    by_kind,
    chart,
    container,
    env_of,
    load_values_file,
    load_yaml,
    merge,
    objects,
    one,
    render,
    scenarios,
    selects,
    walk,
)
from helm_python.chart import lint
from helm_python.errors import HelmRenderError, HelmValuesError

from tokensvc.settings import ENV_VARS

SCENARIOS = scenarios()

#: The 16 edge strings of the Voice JavaScript SDK (twilio-voice.js `enum Edge`).
SDK_EDGES = {
    "sydney",
    "sao-paulo",
    "dublin",
    "frankfurt",
    "tokyo",
    "singapore",
    "ashburn",
    "umatilla",
    "roaming",
    "ashburn-ix",
    "san-jose-ix",
    "london-ix",
    "frankfurt-ix",
    "singapore-ix",
    "sydney-ix",
    "tokyo-ix",
}


def _strict(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required or [],
    }


_METADATA = _strict(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    ["name"],
)
_MATCH_LABELS = _strict(
    {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}, ["matchLabels"]
)

#: Strict schemas for the CRD kinds, keyed by (apiVersion, kind).
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _strict(
        {
            "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
            "kind": {"const": "HTTPRoute"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "parentRefs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 32,
                        "items": _strict(
                            {
                                "name": {"type": "string", "minLength": 1},
                                "namespace": {"type": "string"},
                                "sectionName": {"type": "string"},
                            },
                            ["name"],
                        ),
                    },
                    "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string"}},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "matches": {
                                    "type": "array",
                                    "items": _strict(
                                        {
                                            "path": _strict(
                                                {
                                                    "type": {
                                                        "enum": [
                                                            "Exact",
                                                            "PathPrefix",
                                                            "RegularExpression",
                                                        ]
                                                    },
                                                    "value": {"type": "string", "pattern": "^/"},
                                                },
                                                ["type", "value"],
                                            )
                                        }
                                    ),
                                },
                                "backendRefs": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": _strict(
                                        {
                                            "name": {"type": "string"},
                                            "port": {
                                                "type": "integer",
                                                "minimum": 1,
                                                "maximum": 65535,
                                            },
                                        },
                                        ["name", "port"],
                                    ),
                                },
                            }
                        ),
                    },
                },
                ["parentRefs", "rules"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "name": {"type": "string", "minLength": 1},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": _strict(
                                        {
                                            "alert": {"type": "string", "minLength": 1},
                                            "record": {"type": "string", "minLength": 1},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": {
                                                "type": "string",
                                                "pattern": "^[0-9]+(ms|s|m|h)$",
                                            },
                                            "keep_firing_for": {"type": "string"},
                                            "labels": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                            "annotations": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                        ["expr"],
                                    ),
                                },
                            },
                            ["name", "rules"],
                        ),
                    }
                },
                ["groups"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "selector": _MATCH_LABELS,
                    "namespaceSelector": _strict(
                        {"matchNames": {"type": "array", "items": {"type": "string"}}}
                    ),
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {
                                    "type": "string",
                                    "pattern": "^[0-9]+(ms|s|m|h)$",
                                },
                                "relabelings": {
                                    "type": "array",
                                    "items": _strict(
                                        {
                                            "targetLabel": {"type": "string"},
                                            "replacement": {"type": "string"},
                                        }
                                    ),
                                },
                            },
                            ["port"],
                        ),
                    },
                },
                ["selector", "endpoints"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
}


def validate_object(obj: dict[str, Any], version: str) -> None:
    """Raise if the object is not valid for this Kubernetes version (or unknown)."""
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        jsonschema.Draft202012Validator(crd).validate(obj)
        return
    kubernetes_validate.validate(obj, version, strict=True)


# --- rendering and linting ----------------------------------------------------------------


def test_pure_defaults_refuse_to_render_without_clients() -> None:
    """With no client configured the chart fails with a message saying how to add one."""
    with pytest.raises(HelmRenderError) as caught:
        chart().render({}, name=RELEASE, namespace=NAMESPACE)
    assert "no clients" in str(caught.value)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_strict_reports_no_warning_or_error(scenario: str) -> None:
    """`helm lint --strict` (floor Kubernetes version) finds nothing above info level."""
    report = lint(CHART_DIR, SCENARIOS[scenario], strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert (report["errors"], problems) == ([], [])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_validates(scenario: str, version: str) -> None:
    """Every object validates strictly against the Kubernetes (or CRD) schema."""
    objs = objects(SCENARIOS[scenario])
    assert objs, "nothing rendered"
    failures = []
    for obj in objs:
        try:
            validate_object(obj, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            failures.append(f"unknown kind: {exc.message}")
    assert failures == []


def test_crd_kinds_are_rendered_when_enabled() -> None:
    """The gateway scenario renders both CRD kinds, so their schemas above are exercised."""
    kinds = {o["kind"] for o in objects(SCENARIOS["ci-gateway"])}
    assert {"HTTPRoute", "ServiceMonitor"} <= kinds


def test_a_misspelt_field_fails_validation() -> None:
    """Strict validation rejects an unknown field, for a core kind and for a CRD kind."""
    objs = objects(SCENARIOS["ci-gateway"])
    deployment = one(objs, "Deployment")
    deployment["spec"]["replica"] = 3
    route = one(objs, "HTTPRoute")
    route["spec"]["hostname"] = ["x.example.com"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(deployment, "1.31")
    with pytest.raises(jsonschema.ValidationError):
        validate_object(route, "1.31")


def test_the_default_render_has_the_expected_kinds() -> None:
    """Defaults (plus a client) give the workload and its guard rails, no optional CRDs."""
    kinds = sorted(o["kind"] for o in objects(SCENARIOS["default"]))
    expected = sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "Pod",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
        ]
    )
    assert expected == kinds


# --- the Deployment ------------------------------------------------------------------------


def _pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_default_scale_is_at_least_three_and_left_to_the_hpa() -> None:
    """By default the HPA owns the scale (min 3) and the Deployment sets no replicas."""
    objs = objects(SCENARIOS["default"])
    hpa = one(objs, "HorizontalPodAutoscaler")["spec"]
    assert (one(objs, "Deployment")["spec"].get("replicas"), hpa["minReplicas"] >= 3) == (
        None,
        True,
    )


def test_without_autoscaling_the_deployment_has_fixed_replicas() -> None:
    """With autoscaling off the Deployment carries replicaCount and no HPA is rendered."""
    objs = objects(merge(WITH_CLIENT, {"autoscaling": {"enabled": False}}))
    assert (
        one(objs, "Deployment")["spec"]["replicas"],
        by_kind(objs, "HorizontalPodAutoscaler"),
    ) == (3, [])


def test_rollout_never_reduces_serving_pods() -> None:
    """RollingUpdate with maxUnavailable 0."""
    strategy = one(objects(SCENARIOS["default"]), "Deployment")["spec"]["strategy"]
    assert (strategy["type"], strategy["rollingUpdate"]["maxUnavailable"]) == ("RollingUpdate", 0)


def test_pods_spread_over_zones_and_nodes() -> None:
    """A zone topology spread constraint and node anti-affinity select the service's pods."""
    objs = objects(SCENARIOS["default"])
    spec = _pod_spec(objs)
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    spread = spec["topologySpreadConstraints"][0]
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    affinity = term[0]["podAffinityTerm"]
    assert (
        (spread["topologyKey"], selects(spread["labelSelector"]["matchLabels"], labels)),
        (affinity["topologyKey"], selects(affinity["labelSelector"]["matchLabels"], labels)),
    ) == (("topology.kubernetes.io/zone", True), ("kubernetes.io/hostname", True))


def test_probes_use_livez_and_readyz_on_the_admin_port() -> None:
    """startup and liveness probe /livez, readiness probes /readyz, all on the admin port."""
    c = container(objects(SCENARIOS["default"]))
    got = {
        name: (c[name]["httpGet"]["path"], c[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert got == {
        "startupProbe": ("/livez", "admin"),
        "livenessProbe": ("/livez", "admin"),
        "readinessProbe": ("/readyz", "admin"),
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_termination_budget_fits_the_grace_period(scenario: str) -> None:
    """preStop sleep + TOKENSVC_GRACEFUL_TIMEOUT + 5 s margin <= terminationGracePeriodSeconds."""
    objs = objects(SCENARIOS[scenario])
    spec = _pod_spec(objs)
    c = container(objs)
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = float(env_of(c)["TOKENSVC_GRACEFUL_TIMEOUT"])
    assert sleep + graceful + 5 <= spec["terminationGracePeriodSeconds"]


def test_a_budget_over_the_grace_period_is_refused() -> None:
    """Raising the graceful timeout past the grace period fails the render, naming the sum."""
    values = merge(WITH_CLIENT, {"server": {"gracefulTimeoutSeconds": 25}})
    with pytest.raises(HelmRenderError) as caught:
        render(values)
    assert "termination budget" in str(caught.value)


def test_pod_and_container_security() -> None:
    """Non-root, read-only root fs, no capabilities, RuntimeDefault seccomp, no SA token."""
    objs = objects(SCENARIOS["default"])
    spec = _pod_spec(objs)
    sc = container(objs)["securityContext"]
    got = (
        spec["automountServiceAccountToken"],
        spec["securityContext"]["runAsNonRoot"],
        spec["securityContext"]["seccompProfile"]["type"],
        sc["runAsNonRoot"],
        sc["readOnlyRootFilesystem"],
        sc["allowPrivilegeEscalation"],
        sc["capabilities"],
        sc["seccompProfile"]["type"],
        one(objs, "ServiceAccount")["automountServiceAccountToken"],
    )
    assert got == (
        False,
        True,
        "RuntimeDefault",
        True,
        True,
        False,
        {"drop": ["ALL"]},
        "RuntimeDefault",
        False,
    )


def test_service_links_are_disabled() -> None:
    """enableServiceLinks is false, so no Service can inject TOKENSVC_PORT=tcp://... env vars."""
    assert False is _pod_spec(objects(SCENARIOS["default"]))["enableServiceLinks"]


def test_resources_are_set() -> None:
    """CPU and memory requests and a memory limit are set."""
    res = container(objects(SCENARIOS["default"]))["resources"]
    assert {"cpu", "memory"} == set(res["requests"]) and "memory" in res["limits"]


def test_tmp_is_a_size_limited_empty_dir() -> None:
    """/tmp is a writable emptyDir with a size limit (read-only root filesystem)."""
    objs = objects(SCENARIOS["default"])
    mounts = {m["mountPath"]: m["name"] for m in container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod_spec(objs)["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"] == "64Mi"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_client_config_is_mounted_whole_without_subpath(scenario: str) -> None:
    """The clients ConfigMap is mounted as a directory (no subPath) at TOKENSVC_CONFIG_DIR."""
    objs = objects(SCENARIOS[scenario])
    c = container(objs)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "clients")
    volume = next(v for v in _pod_spec(objs)["volumes"] if v["name"] == "clients")
    expected_cm = SCENARIOS[scenario].get("existingClientsConfigMap") or f"{RELEASE}-clients"
    assert (env_of(c)["TOKENSVC_CONFIG_DIR"], None, expected_cm) == (
        mount["mountPath"],
        mount.get("subPath"),
        volume["configMap"]["name"],
    )


def test_container_command_and_environment() -> None:
    """The container runs `tokensvc serve --host 0.0.0.0 --port 8080` with the admin env set."""
    c = container(objects(SCENARIOS["region-eu-west"]))
    env = env_of(c)
    assert (
        c["command"] + c["args"],
        {
            k: env[k]
            for k in (
                "TOKENSVC_REGION",
                "TOKENSVC_ADMIN_PORT",
                "TOKENSVC_ADMIN_HOST",
                "TOKENSVC_CONFIG_DIR",
                "TOKENSVC_COUNTRY_HEADER",
                "TOKENSVC_WORKERS",
                "TOKENSVC_WORKER_CLASS",
                "TOKENSVC_GRACEFUL_TIMEOUT",
                "TOKENSVC_LOG_FORMAT",
                "TOKENSVC_REDIS_BUDGET_MS",
            )
        },
    ) == (
        ["tokensvc", "serve", "--host", "0.0.0.0", "--port", "8080"],
        {
            "TOKENSVC_REGION": "eu-west",
            "TOKENSVC_ADMIN_PORT": "9090",
            "TOKENSVC_ADMIN_HOST": "0.0.0.0",
            "TOKENSVC_CONFIG_DIR": "/etc/tokensvc/clients",
            "TOKENSVC_COUNTRY_HEADER": "CloudFront-Viewer-Country",
            "TOKENSVC_WORKERS": "2",
            "TOKENSVC_WORKER_CLASS": "uvloop",
            "TOKENSVC_GRACEFUL_TIMEOUT": "10",
            "TOKENSVC_LOG_FORMAT": "json",
            "TOKENSVC_REDIS_BUDGET_MS": "20",
        },
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_env_var_is_one_the_service_reads(scenario: str) -> None:
    """Each TOKENSVC_* variable the chart sets is in tokensvc.settings.ENV_VARS."""
    known = {v.name for v in ENV_VARS}
    names = {e["name"] for e in container(objects(SCENARIOS[scenario]))["env"]}
    chart_vars = {n for n in names if n.startswith("TOKENSVC_")}
    file_vars = {n.removesuffix("_FILE") for n in chart_vars if n.endswith("_FILE")}
    assert set() == (chart_vars - known) - {f"{n}_FILE" for n in file_vars & known}


def test_extra_env_is_appended() -> None:
    """extraEnv entries appear in the container env unchanged."""
    c = container(objects(SCENARIOS["ci-sentinel"]))
    extra = [e for e in c["env"] if e["name"] == "MYAPP_CALLER_KEY"]
    assert extra == [
        {
            "name": "MYAPP_CALLER_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": "tokensvc-client-secrets", "key": "myapp-caller-key"}
            },
        }
    ]


# --- Redis ---------------------------------------------------------------------------------


def test_sentinel_hosts_build_a_sentinel_url_and_password_files() -> None:
    """Sentinel hosts become redis+sentinel://h1:p1,h2:p2/<service>; passwords are files."""
    objs = objects(SCENARIOS["ci-sentinel"])
    env = env_of(container(objs))
    volumes = {v["name"]: v for v in _pod_spec(objs)["volumes"]}
    assert (
        env["TOKENSVC_REDIS_URL"],
        env["TOKENSVC_REDIS_READ_URL"],
        env["TOKENSVC_REDIS_PASSWORD_FILE"],
        env["TOKENSVC_REDIS_SENTINEL_PASSWORD_FILE"],
        volumes["redis-auth"]["secret"]["secretName"],
    ) == (
        "redis+sentinel://valkey-sentinel.redis.svc.cluster.local:26379,"
        "valkey-sentinel-1.redis.svc.cluster.local:26379/mymaster",
        "redis://valkey-read.redis.svc.cluster.local:6379/0",
        "/etc/tokensvc/redis/default",
        "/etc/tokensvc/redis/sentinel",
        "tokensvc-redis",
    )


def test_no_redis_means_no_redis_env() -> None:
    """Without Redis values the container gets no TOKENSVC_REDIS_URL (in-memory state)."""
    env = env_of(container(objects(SCENARIOS["default"])))
    assert "TOKENSVC_REDIS_URL" not in env


def test_plain_url_is_passed_through() -> None:
    """redis.url is passed as TOKENSVC_REDIS_URL unchanged."""
    env = env_of(container(objects(SCENARIOS["example-managed-redis"])))
    assert env["TOKENSVC_REDIS_URL"] == "rediss://primary.tokensvc-global.cache.example.net:6379/0"


# --- cross-object checks -------------------------------------------------------------------


def _pod_labels(objs: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_services_select_the_pods_and_target_container_ports(scenario: str) -> None:
    """Both Services select the pods, and each targetPort names a container port."""
    objs = objects(SCENARIOS[scenario])
    port_names = {p["name"] for p in container(objs)["ports"]}
    for svc in by_kind(objs, "Service"):
        assert selects(svc["spec"]["selector"], _pod_labels(objs)), svc["metadata"]["name"]
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names


def test_public_service_does_not_expose_the_admin_port() -> None:
    """The public Service has only the http port; /metrics stays on the admin Service."""
    objs = objects(SCENARIOS["default"])
    ports = {
        s["metadata"]["name"]: [p["targetPort"] for p in s["spec"]["ports"]]
        for s in by_kind(objs, "Service")
    }
    assert {RELEASE: ["http"], f"{RELEASE}-admin": ["admin"]} == ports


def test_probe_ports_resolve_to_container_ports() -> None:
    """Each probe port names a container port, whose number is TOKENSVC_ADMIN_PORT."""
    c = container(objects(SCENARIOS["default"]))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probe_ports = {
        c[n]["httpGet"]["port"] for n in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert ({"admin"}, int(env_of(c)["TOKENSVC_ADMIN_PORT"]), 8080) == (
        probe_ports & set(ports),
        ports["admin"],
        ports["http"],
    )


def test_pdb_selects_the_pods_and_allows_a_disruption() -> None:
    """The PDB selects the pods with maxUnavailable >= 1 (never blocks a drain)."""
    objs = objects(SCENARIOS["default"])
    pdb = one(objs, "PodDisruptionBudget")["spec"]
    assert (
        selects(pdb["selector"]["matchLabels"], _pod_labels(objs)),
        pdb.get("minAvailable"),
        pdb["maxUnavailable"] >= 1,
    ) == (True, None, True)


def test_pdb_allows_a_disruption_with_a_single_replica() -> None:
    """Even with one replica the budget lets one pod go."""
    objs = objects(merge(WITH_CLIENT, {"autoscaling": {"enabled": False}, "replicaCount": 1}))
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_hpa_targets_the_deployment() -> None:
    """The HPA's scaleTargetRef is the rendered Deployment."""
    objs = objects(SCENARIOS["default"])
    ref = one(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(objs, "Deployment")["metadata"]["name"],
    } == ref


def test_network_policy_selects_the_pods_and_names_real_ports() -> None:
    """The NetworkPolicy selects the pods; its ingress ports are the container's port names."""
    objs = objects(SCENARIOS["default"])
    np = one(objs, "NetworkPolicy")["spec"]
    port_names = {p["name"] for p in container(objs)["ports"]}
    used = {p["port"] for rule in np["ingress"] for p in rule["ports"]}
    egress_ports = sorted(p["port"] for rule in np["egress"] for p in rule["ports"])
    assert (True, {"http", "admin"}, [53, 53, 443, 6379, 26379]) == (
        selects(np["podSelector"]["matchLabels"], _pod_labels(objs)),
        used & port_names,
        egress_ports,
    )


def test_network_policy_admits_the_helm_test_pod() -> None:
    """The helm test pod's labels match the NetworkPolicy's test rule, not the Services."""
    objs = objects(SCENARIOS["default"])
    test_pod = one(objs, "Pod")
    rule = one(objs, "NetworkPolicy")["spec"]["ingress"][2]["from"][0]["podSelector"]
    services_select = [
        selects(s["spec"]["selector"], test_pod["metadata"]["labels"])
        for s in by_kind(objs, "Service")
    ]
    assert (selects(rule["matchLabels"], test_pod["metadata"]["labels"]), services_select) == (
        True,
        [False, False],
    )


def test_helm_test_pod_checks_readyz_on_both_services() -> None:
    """The test hook runs python (no curl in the image) against /readyz of both Services."""
    objs = objects(SCENARIOS["default"])
    pod = one(objs, "Pod")
    c = pod["spec"]["containers"][0]
    services = {
        s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in by_kind(objs, "Service")
    }
    expected_urls = [
        f"http://{RELEASE}-admin:{services[f'{RELEASE}-admin']}/readyz",
        f"http://{RELEASE}:{services[RELEASE]}/readyz",
    ]
    assert ("test", ["python", "-c"], expected_urls, container(objs)["image"]) == (
        pod["metadata"]["annotations"]["helm.sh/hook"],
        c["command"][:2],
        c["command"][3:],
        c["image"],
    )


def test_helm_test_script_is_valid_python() -> None:
    """The inline test script compiles and uses a timeout on every request."""
    c = one(objects(SCENARIOS["default"]), "Pod")["spec"]["containers"][0]
    compile(c["command"][2], "helm-test", "exec")
    assert "timeout=5" in c["command"][2]


def test_service_monitor_scrapes_metrics_on_the_admin_service() -> None:
    """The ServiceMonitor selects only the admin Service and scrapes its admin port /metrics."""
    objs = objects(SCENARIOS["ci-gateway"])
    sm = one(objs, "ServiceMonitor")["spec"]
    matched = [
        s["metadata"]["name"]
        for s in by_kind(objs, "Service")
        if selects(sm["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert ([f"{RELEASE}-admin"], "admin", "/metrics") == (
        matched,
        sm["endpoints"][0]["port"],
        sm["endpoints"][0]["path"],
    )


def test_http_route_and_ingress_point_at_the_public_service() -> None:
    """HTTPRoute and Ingress backends are the public Service on its http port."""
    route = one(objects(SCENARIOS["ci-gateway"]), "HTTPRoute")["spec"]["rules"][0]
    ingress = one(objects(SCENARIOS["ci-ingress"]), "Ingress")["spec"]["rules"][0]
    backend = ingress["http"]["paths"][0]["backend"]["service"]
    assert (route["backendRefs"], backend) == (
        [{"name": RELEASE, "port": 8080}],
        {"name": RELEASE, "port": {"name": "http"}},
    )


# --- client configuration ------------------------------------------------------------------


def _configmap_files(values: dict[str, Any]) -> dict[str, Any]:
    cm = one(objects(values), "ConfigMap")
    return {k: load_yaml(v) for k, v in cm["data"].items()}


def test_string_client_is_rendered_verbatim() -> None:
    """A client given as text (--set-file) lands unchanged as <id>.yaml."""
    files = _configmap_files(SCENARIOS["default"])
    assert {"myapp.yaml": load_yaml(WITH_CLIENT["clients"]["myapp"])} == files


def test_structured_client_is_rendered_as_yaml() -> None:
    """A client given as structured values lands as the same structure in <id>.yaml."""
    values = SCENARIOS["ci-gateway"]
    assert {"webphone.yaml": values["clients"]["webphone"]} == _configmap_files(values)


def test_set_file_gives_the_file_content(tmp_path: Path) -> None:
    """`--set-file clients.myapp=path` puts the file's content in the ConfigMap."""
    path = tmp_path / "myapp.yaml"
    path.write_text(WITH_CLIENT["clients"]["myapp"], "utf-8")
    values = merge(helm_python.parse_set_file(f"clients.myapp={path}"))
    assert {"myapp.yaml": load_yaml(path.read_text("utf-8"))} == _configmap_files(values)


def test_existing_configmap_renders_no_configmap() -> None:
    """With existingClientsConfigMap the chart creates no ConfigMap of its own."""
    assert by_kind(objects(SCENARIOS["ci-existing-configmap"]), "ConfigMap") == []


def _checksum(values: dict[str, Any]) -> str:
    annotations = one(objects(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    checksum: str = annotations["checksum/clients"]
    return checksum


def test_checksum_changes_when_a_client_changes() -> None:
    """Editing a client file changes the pod template's checksum annotation (pods roll)."""
    changed = merge(
        WITH_CLIENT,
        {
            "clients": {
                "myapp": WITH_CLIENT["clients"]["myapp"]
                .replace("ttl_seconds", "ttl_seconds")
                .replace("[ashburn, umatilla, roaming]", "[umatilla, ashburn, roaming]")
            }
        },
    )
    assert _checksum(SCENARIOS["default"]) != _checksum(changed)


def test_checksum_ignores_unrelated_values() -> None:
    """Changing a non-client value leaves the checksum alone."""
    changed = merge(WITH_CLIENT, {"server": {"logLevel": "debug"}})
    assert _checksum(SCENARIOS["default"]) == _checksum(changed)


def test_client_secrets_come_only_from_an_existing_secret() -> None:
    """Client secrets are the existing Secret mounted at /etc/tokensvc/secrets; the only
    Secret the chart renders is the generated fingerprint key."""
    objs = objects(SCENARIOS["default"])
    mount = next(m for m in container(objs)["volumeMounts"] if m["name"] == "client-secrets")
    volume = next(v for v in _pod_spec(objs)["volumes"] if v["name"] == "client-secrets")
    assert (
        mount["mountPath"],
        mount.get("subPath"),
        volume["secret"]["secretName"],
        by_kind(objs, "Secret"),
    ) == (
        "/etc/tokensvc/secrets",
        None,
        "tokensvc-client-secrets",
        [one(objs, "Secret", f"{RELEASE}-fingerprint")],
    )


# --- regions -------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east", "eu-west", "ap-southeast"])
def test_region_overlay_is_short_and_sets_only_region_specific_values(region: str) -> None:
    """An overlay sets region, the country header and Redis endpoints, and nothing else."""
    path = CHART_DIR / "regions" / f"{region}.yaml"
    values = load_values_file(path)
    keys = {
        f"{top}.{sub}" if isinstance(v, dict) else top
        for top, v in values.items()
        for sub in (v if isinstance(v, dict) else [None])
    }
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip()]
    assert (region, True, True) == (
        values["region"],
        keys
        <= {
            "region",
            "server.countryHeader",
            "redis.sentinel",
            "redis.url",
            "redis.readUrl",
            "redis.auth",
        },
        len(lines) <= 30,
    )


@pytest.mark.parametrize("region", ["us-east", "eu-west", "ap-southeast"])
def test_region_overlay_reaches_the_container(region: str) -> None:
    """The overlay's region and country header become TOKENSVC_REGION / _COUNTRY_HEADER."""
    overlay = load_values_file(CHART_DIR / "regions" / f"{region}.yaml")
    env = env_of(container(objects(SCENARIOS[f"region-{region}"])))
    assert (region, overlay["server"]["countryHeader"]) == (
        env["TOKENSVC_REGION"],
        env["TOKENSVC_COUNTRY_HEADER"],
    )


# --- the values schema ---------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    schema = chart().schema
    assert schema is not None
    return schema


def test_schema_edge_enum_is_the_sdk_edge_list() -> None:
    """The schema's edge enum is exactly the 16 Voice SDK edge strings."""
    assert SDK_EDGES == set(_schema()["$defs"]["client"]["$defs"]["edge"]["enum"])


def test_schema_edge_enum_matches_the_service() -> None:
    """The schema and the service's own catalogue (tokensvc.edges.EDGES) agree."""
    from tokensvc.edges import EDGES

    assert set(EDGES) == set(_schema()["$defs"]["client"]["$defs"]["edge"]["enum"])


def test_chart_embeds_the_client_schema() -> None:
    """`$defs.client` is the generated copy of tokensvc/data/client.schema.json
    (regenerate with `python -m tokensvc.clientschema`)."""
    from tokensvc.clientschema import chart_copy

    assert chart_copy() == _schema()["$defs"]["client"]


def test_schema_closes_every_object() -> None:
    """Every object in the schema sets additionalProperties (false, or a typed map)."""
    open_objects = [
        path
        for path, node in walk(_schema())
        if isinstance(node, dict)
        and node.get("type") == "object"
        and node.get("additionalProperties", True) is True
    ]
    assert open_objects == []


def test_every_default_validates() -> None:
    """The chart's own defaults (plus a client) pass the schema."""
    chart().validate_schema(WITH_CLIENT)


BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown edge in a client": {
        "clients": {
            "x": {
                "twilio": {"account_sid": "AC" + "0" * 32},
                "auth": {"type": "none"},
                "dev": True,
                "edges": {"default": ["frankfort", "roaming"]},
            }
        }
    },
    "unknown edge by country": {
        "clients": {
            "x": {
                "twilio": {"account_sid": "AC" + "0" * 32},
                "auth": {"type": "none"},
                "dev": True,
                "edges": {"default": ["roaming"], "by_country": {"IE": ["dublin", "londn-ix"]}},
            }
        }
    },
    "old blocked_identities key in a client": {
        "clients": {
            "x": {
                "twilio": {"account_sid": "AC" + "0" * 32},
                "auth": {"type": "none"},
                "dev": True,
                "blocked_identities": ["mallory"],
            }
        }
    },
    "unknown top-level key": {"replicas": 3},
    "unknown nested key (overlay typo)": {"server": {"contryHeader": "CF-IPCountry"}},
    "replicas 0": {"replicaCount": 0},
    "hpa floor 0": {"autoscaling": {"minReplicas": 0}},
    "pdb that blocks drains": {"pdb": {"maxUnavailable": 0}},
    "unknown worker class": {"server": {"workerClass": "trio"}},
    "invalid client id": {"clients": {"My_App": "twilio: {}"}},
    "url and sentinel together": {
        "redis": {"url": "redis://r:6379", "sentinel": {"hosts": [{"host": "s"}], "service": "m"}}
    },
    "sentinel without service": {"redis": {"sentinel": {"hosts": [{"host": "s"}]}}},
    "extraEnv overriding a chart variable": {
        "extraEnv": [{"name": "TOKENSVC_REGION", "value": "x"}]
    },
    "password in a typo'd key": {"redis": {"auth": {"password": "hunter2"}}},
}


EXPECTED_ERROR = {
    "unknown edge in a client": "/edges/default/0",
    "unknown edge by country": "/edges/by_country/IE/1",
    "old blocked_identities key in a client": "/clients/x/blocked_identities",
    "unknown top-level key": "'replicas' not allowed",
    "unknown nested key (overlay typo)": "'contryHeader' not allowed",
    "replicas 0": "/replicaCount",
    "hpa floor 0": "/autoscaling/minReplicas",
    "pdb that blocks drains": "/pdb/maxUnavailable",
    "unknown worker class": "/server/workerClass",
    "invalid client id": "'My_App'",
    "url and sentinel together": "/redis/url",
    "sentinel without service": "/redis/sentinel/service",
    "extraEnv overriding a chart variable": "/extraEnv/0/name",
    "password in a typo'd key": "'password' not allowed",
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_rejected_by_the_schema(case: str) -> None:
    """Each bad value fails schema validation, naming the offending key."""
    with pytest.raises(HelmValuesError) as caught:
        chart().validate_schema(merge(WITH_CLIENT, BAD_VALUES[case]))
    assert EXPECTED_ERROR[case] in str(caught.value)


def test_bad_values_also_fail_the_render() -> None:
    """Rendering (what install does) applies the same schema."""
    with pytest.raises(HelmValuesError):
        render(merge(WITH_CLIENT, BAD_VALUES["unknown edge in a client"]))


# --- values.yaml documentation ---------------------------------------------------------------

_KEY = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9_.-]*):(.*)$")
#: Blocks that are Kubernetes objects documented by the comment on the block itself.
_K8S_BLOCKS = (
    "resources.",
    "ingress.hosts",
    "httpRoute.parentRefs",
    "networkPolicy.ingressNamespaceSelector.",
    "networkPolicy.metricsNamespaceSelector.",
    "podSecurityContext.",
    "securityContext.",
    "metrics.grafanaDashboard.labels.",
)


def test_every_value_has_a_comment() -> None:
    """Every leaf in values.yaml has a comment line directly above it."""
    stack: list[tuple[int, str]] = []
    missing = []
    previous = ""
    for line in (CHART_DIR / "values.yaml").read_text("utf-8").splitlines():
        m = _KEY.match(line)
        if m and not line.lstrip().startswith("-"):
            indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([k for _, k in stack] + [key])
            is_leaf = rest != "" and not rest.startswith("#")
            if (
                is_leaf
                and not previous.lstrip().startswith("#")
                and not path.startswith(_K8S_BLOCKS)
            ):
                missing.append(path)
            stack.append((indent, key))
        if line.strip():
            previous = line
    assert missing == []


def test_client_object_with_every_auth_key_passes_the_schema() -> None:
    """A client written as a YAML object may use every auth key the service accepts,
    identity_prefix and identity_encoding included (the schema mirrors clients.py)."""
    client = yaml.safe_load(CLIENT_FILE)
    client["auth"].update(
        {
            "identity_prefix": "web_",
            "identity_encoding": "strict",
            "identity_claim": "sub",
            "leeway_seconds": 10,
        }
    )
    values = merge(WITH_CLIENT, {"clients": {"myapp": client}})
    cm = one(objects(values), "ConfigMap", f"{RELEASE}-clients")
    assert "web_" == yaml.safe_load(cm["data"]["myapp.yaml"])["auth"]["identity_prefix"]
