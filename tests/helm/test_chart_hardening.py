"""Chart hardening: render-time refusals, Redis TLS files, the fingerprint key, security
contexts as values, the optional monitoring objects, and the stated supported versions.

Rendering is the real Helm v4 engine (helm-python-sdk, offline); `lookup` therefore sees no
cluster and the "reuse the live fingerprint Secret" branch is exercised only by its template
text, not by a render.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from chart_support import (
    CHART_DIR,
    CHART_EXAMPLES,
    CLIENT_FILE,
    RELEASE,
    REPO,
    WITH_CLIENT,
    by_kind,
    container,
    env_of,
    load_values_file,
    merge,
    objects,
    one,
    render,
    walk,
)
from helm_python.errors import HelmRenderError

from tokensvc.store.urls import parse_url

US_EAST = load_values_file(CHART_DIR / "regions" / "us-east.yaml")


def _pod_spec(values: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects(values), "Deployment")["spec"]["template"]["spec"]
    return spec


def _render_error(values: dict[str, Any]) -> str:
    with pytest.raises(HelmRenderError) as caught:
        render(values)
    return str(caught.value)


# --- refusals ------------------------------------------------------------------------------


def test_a_dev_client_file_is_refused() -> None:
    """A client file (string, as --set-file gives) with dev: true fails the render, naming it."""
    values = merge(WITH_CLIENT, {"clients": {"myapp": "dev: true\n" + CLIENT_FILE}})
    assert "clients.myapp: dev: true clients" in _render_error(values)


def test_a_dev_client_written_as_values_is_refused() -> None:
    """The same refusal for a client written as a YAML structure."""
    client = yaml.safe_load(CLIENT_FILE) | {"dev": True}
    values = merge(WITH_CLIENT, {"clients": {"myapp": client}})
    assert "clients.myapp: dev: true clients" in _render_error(values)


@pytest.mark.parametrize("text", ["# only a comment\n", "# a\n\n   # b\n", "   \n"])
def test_a_comment_only_client_file_is_refused(text: str) -> None:
    """A --set-file string with nothing but comments or blanks fails with a clear message."""
    values = merge(WITH_CLIENT, {"clients": {"myapp": text}})
    assert "clients.myapp: the client file is empty or only comments" in _render_error(values)


def test_a_zero_byte_client_file_is_refused_by_the_schema() -> None:
    """A 0-byte --set-file fails already at the values schema, naming the client's path."""
    from helm_python.errors import HelmValuesError

    with pytest.raises(HelmValuesError) as caught:
        render(merge(WITH_CLIENT, {"clients": {"myapp": ""}}))
    assert "at '/clients/myapp'" in str(caught.value)


def test_a_client_file_that_is_not_a_mapping_is_refused() -> None:
    """A client file whose YAML is not a mapping fails the render instead of crash-looping."""
    values = merge(WITH_CLIENT, {"clients": {"myapp": "- a\n- b\n"}})
    assert "clients.myapp: the client file is not a YAML mapping" in _render_error(values)


def test_the_image_example_client_is_refused() -> None:
    """The image's bundled clients_config example (a dev client) cannot be deployed."""
    example = next(iter(sorted((REPO / "clients_config").glob("*.yaml"))))
    values = merge(WITH_CLIENT, {"clients": {"myapp": example.read_text("utf-8")}})
    assert "dev: true clients" in _render_error(values)


# --- Redis TLS -----------------------------------------------------------------------------

TLS = load_values_file(CHART_EXAMPLES / "redis-tls-values.yaml")
TLS_DIR = "/etc/tokensvc/redis-tls"


def test_tls_mounts_the_secret_and_names_its_files_in_the_url() -> None:
    """redis.tls with a Secret: mounted read-only, and the Sentinel URL is rediss+sentinel://
    with the CA, certificate and key files as query options."""
    values = merge(US_EAST, TLS, WITH_CLIENT)
    objs = objects(values)
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod_spec(values)["volumes"]}
    url = env_of(container(objs))["TOKENSVC_REDIS_URL"]
    assert (
        TLS_DIR,
        True,
        "tokensvc-redis-tls",
        "rediss+sentinel",
        f"ssl_ca_certs={TLS_DIR}/ca.crt&ssl_certfile={TLS_DIR}/tls.crt"
        f"&ssl_keyfile={TLS_DIR}/tls.key",
    ) == (
        mounts["redis-tls"]["mountPath"],
        mounts["redis-tls"]["readOnly"],
        volumes["redis-tls"]["secret"]["secretName"],
        url.split("://")[0],
        url.split("?", 1)[1],
    )


def test_tls_urls_are_accepted_by_the_service_parser() -> None:
    """The service's own parse_url accepts the rendered TLS URLs and sees every file option."""
    values = merge(
        US_EAST,
        TLS,
        WITH_CLIENT,
        {
            "redis": {
                "sentinel": {"hosts": [], "service": ""},
                "url": "rediss://primary.example.internal:6380/0",
                "readUrl": "rediss://replica.example.internal:6380/0?ssl_check_hostname=true",
            }
        },
    )
    env = env_of(container(objects(values)))
    options = [
        dict(parse_url(env[name], source=name)[0].tls_options)
        for name in ("TOKENSVC_REDIS_URL", "TOKENSVC_REDIS_READ_URL")
    ]
    files = {
        "ssl_ca_certs": f"{TLS_DIR}/ca.crt",
        "ssl_certfile": f"{TLS_DIR}/tls.crt",
        "ssl_keyfile": f"{TLS_DIR}/tls.key",
    }
    assert [files, files | {"ssl_check_hostname": True}] == options


def test_tls_without_a_secret_uses_system_cas() -> None:
    """redis.tls.enabled alone switches the scheme but adds no file options or volume."""
    values = merge(US_EAST, WITH_CLIENT, {"redis": {"tls": {"enabled": True}}})
    url = env_of(container(objects(values)))["TOKENSVC_REDIS_URL"]
    volumes = {v["name"] for v in _pod_spec(values)["volumes"]}
    assert (True, False, False) == (
        url.startswith("rediss+sentinel://"),
        "?" in url,
        "redis-tls" in volumes,
    )


@pytest.mark.parametrize(
    ("scheme", "tls", "message"),
    [
        ("redis", {"enabled": True}, "redis.url: redis.tls.enabled needs a rediss:// URL"),
        (
            "rediss",
            {"enabled": True, "existingSecret": "s", "certKey": "tls.crt", "keyKey": ""},
            "redis.tls.keyKey is required with redis.tls.certKey",
        ),
        (
            "rediss",
            {"enabled": True, "certKey": "tls.crt"},
            "redis.tls.certKey needs redis.tls.existingSecret",
        ),
    ],
)
def test_inconsistent_tls_values_are_refused(
    scheme: str, tls: dict[str, Any], message: str
) -> None:
    """TLS on a redis:// URL, a certificate without its key or without a Secret: refused."""
    url = f"{scheme}://r.example.internal:6379/0"
    values = merge(WITH_CLIENT, {"redis": {"url": url, "tls": tls}})
    assert message in _render_error(values)


# --- the fingerprint key -------------------------------------------------------------------


def test_a_fingerprint_key_is_generated_kept_and_mounted_by_default() -> None:
    """Default: a kept Secret with a 48-character key, mounted, named by
    TOKENSVC_FINGERPRINT_KEY_FILE (so both workers of a pod share one key)."""
    import base64

    objs = objects(WITH_CLIENT)
    secret = one(objs, "Secret", f"{RELEASE}-fingerprint")
    key = base64.b64decode(secret["data"]["fingerprint-key"]).decode()
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    mounted = ("/etc/tokensvc/fingerprint/fingerprint-key", "/etc/tokensvc/fingerprint")
    assert ("keep", 48, *mounted) == (
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        len(key),
        env_of(container(objs))["TOKENSVC_FINGERPRINT_KEY_FILE"],
        mounts["fingerprint-key"],
    )


def test_the_generated_key_reuses_the_live_secret_on_upgrade() -> None:
    """The template looks the Secret up and reuses its value before generating a new one."""
    text = (CHART_DIR / "templates" / "secret-fingerprint.yaml").read_text("utf-8")
    assert (True, True) == (
        'lookup "v1" "Secret" .Release.Namespace $name' in text,
        text.index("index $live.data") < text.index("randAlphaNum 48"),
    )


def test_an_existing_fingerprint_secret_is_mounted_and_none_is_created() -> None:
    """fingerprintKey.existingSecret: that Secret is mounted; the chart renders no Secret."""
    values = merge(WITH_CLIENT, {"fingerprintKey": {"existingSecret": "shared-fp", "key": "k"}})
    objs = objects(values)
    volumes = {v["name"]: v for v in _pod_spec(values)["volumes"]}
    assert ([], "shared-fp", "/etc/tokensvc/fingerprint/k") == (
        by_kind(objs, "Secret"),
        volumes["fingerprint-key"]["secret"]["secretName"],
        env_of(container(objs))["TOKENSVC_FINGERPRINT_KEY_FILE"],
    )


def test_no_fingerprint_key_when_generation_is_off() -> None:
    """generate: false and no Secret: no env var, no volume (the service's per-process key)."""
    values = merge(WITH_CLIENT, {"fingerprintKey": {"generate": False}})
    assert (None, False) == (
        env_of(container(objects(values))).get("TOKENSVC_FINGERPRINT_KEY_FILE"),
        "fingerprint-key" in {v["name"] for v in _pod_spec(values)["volumes"]},
    )


# --- security contexts ---------------------------------------------------------------------


def test_security_contexts_come_from_values() -> None:
    """podSecurityContext and securityContext values reach the pod unchanged."""
    values = merge(WITH_CLIENT, {"podSecurityContext": {"runAsUser": 20002}})
    assert (20002, 10001) == (
        _pod_spec(values)["securityContext"]["runAsUser"],
        container(objects(values))["securityContext"]["runAsUser"],
    )


def test_openshift_example_drops_fixed_ids_and_keeps_the_rest() -> None:
    """The OpenShift example renders no runAsUser/runAsGroup/fsGroup anywhere, and keeps
    non-root, RuntimeDefault seccomp, a read-only root fs and no capabilities."""
    values = merge(US_EAST, load_values_file(CHART_EXAMPLES / "openshift-values.yaml"), WITH_CLIENT)
    objs = objects(values)
    deployment = one(objs, "Deployment")
    ids = [p for p, _ in walk(deployment) if re.search(r"\.(runAsUser|runAsGroup|fsGroup)$", p)]
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    sc = container(objs)["securityContext"]
    assert ([], True, "RuntimeDefault", True, True, {"drop": ["ALL"]}) == (
        ids,
        pod["runAsNonRoot"],
        pod["seccompProfile"]["type"],
        sc["runAsNonRoot"],
        sc["readOnlyRootFilesystem"],
        sc["capabilities"],
    )


# --- monitoring objects --------------------------------------------------------------------

MONITORING = load_values_file(CHART_DIR / "ci" / "monitoring-values.yaml")


def test_prometheus_rule_is_the_alerts_file() -> None:
    """The PrometheusRule's groups are deploy/alerts.yaml's groups, unchanged."""
    rule = one(objects(MONITORING), "PrometheusRule")
    alerts = yaml.safe_load((REPO / "deploy" / "alerts.yaml").read_text("utf-8"))
    assert (alerts["groups"], "kube-prometheus") == (
        rule["spec"]["groups"],
        rule["metadata"]["labels"]["release"],
    )


def test_dashboard_configmap_is_the_dashboard_file() -> None:
    """The dashboard ConfigMap holds deploy/grafana-dashboard.json, with the sidecar label."""
    cm = one(objects(MONITORING), "ConfigMap", f"{RELEASE}-dashboard")
    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text("utf-8"))
    assert (dashboard, "1", "tokensvc") == (
        json.loads(cm["data"]["tokensvc.json"]),
        cm["metadata"]["labels"]["grafana_dashboard"],
        cm["metadata"]["annotations"]["grafana_folder"],
    )


def test_deploy_files_are_links_to_the_chart_files() -> None:
    """deploy/alerts.yaml and deploy/grafana-dashboard.json are the chart's files (one source)."""
    assert [True, True] == [
        (REPO / "deploy" / name).resolve() == (CHART_DIR / "files" / name).resolve()
        and (REPO / "deploy" / name).is_symlink()
        for name in ("alerts.yaml", "grafana-dashboard.json")
    ]


def test_monitoring_objects_are_off_by_default() -> None:
    """No PrometheusRule or dashboard ConfigMap without opting in."""
    objs = objects(WITH_CLIENT)
    names = {o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")}
    assert ([], {f"{RELEASE}-clients"}) == (by_kind(objs, "PrometheusRule"), names)


# --- supported versions --------------------------------------------------------------------


def test_supported_versions_are_stated() -> None:
    """Chart.yaml declares kubeVersion >= 1.30 and the README states Helm and Kubernetes."""
    chart_yaml = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text("utf-8"))
    readme = (CHART_DIR / "README.md").read_text("utf-8")
    assert (">=1.30.0-0", True, True) == (
        chart_yaml["kubeVersion"],
        "Helm 3.14" in readme and "Helm 4" in readme,
        "Kubernetes 1.30" in readme,
    )
