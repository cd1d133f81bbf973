"""Run what the chart runs: the rendered container command and environment, outside a cluster.

For each region overlay the chart is rendered, then the pod is imitated on this machine: the
rendered ConfigMap's files, the mounted Secrets (test values) and the /tmp emptyDir become
temporary directories, and every path under a mount point (in env values and client files)
is pointed at its directory, as the kubelet's mounts would. The only other changes: bind
127.0.0.1 on free ports instead of 0.0.0.0:8080/9090, and Redis is a real local Valkey
(with a password, read from the mounted Secret) instead of the overlay's Sentinels.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from chart_support import (
    CHART_DIR,
    RELEASE,
    container,
    load_values_file,
    merge,
    objects,
    one,
    scenarios,
)

from redis_servers import start_node
from support import free_port, wait_until


@pytest.fixture(scope="module", autouse=True)
def _service_installed() -> None:
    """The service must be installed: a missing `tokensvc` is a broken setup, not a skip."""
    missing = [
        what
        for what, present in (
            ("`tokensvc` on PATH", shutil.which("tokensvc") is not None),
            ("module tokensvc.server", importlib.util.find_spec("tokensvc.server") is not None),
        )
        if not present
    ]
    if missing:
        pytest.fail(f"the service is not installed ({', '.join(missing)}): run `make install`")


REGIONS = ("us-east", "eu-west", "ap-southeast")
#: Each region's pod uses its own (empty) Valkey database, so one region's keys never make
#: another region's Redis assertion pass.
REGION_DB = {region: index + 1 for index, region in enumerate(REGIONS)}
CALLER_SECRET = "run-test-caller-secret-0123456789abcdef"  # HS256, >= 32 characters
REDIS_PASSWORD = "run-test-redis-password"
ISSUER = "https://idp.example.test/"
IE_EDGES = ["dublin", "frankfurt", "roaming"]

#: A production-shaped client (no dev: true): secrets are files in the mounted Secret.
RUN_CLIENT: dict[str, Any] = {
    "twilio": {
        "account_sid": "AC" + "1" * 32,
        "api_key_sid": "SK" + "2" * 32,
        "api_key_secret": {"file": "/etc/tokensvc/secrets/runapp-api-key-secret"},
        "outgoing_application_sid": "AP" + "3" * 32,
        "home_region": "us1",
    },
    "auth": {
        "type": "jwt",
        "algorithms": ["HS256"],
        "hs256_secret": {"file": "/etc/tokensvc/secrets/runapp-caller-secret"},
        "issuer": ISSUER,
        "audience": "tokensvc",
    },
    "edges": {"default": ["ashburn", "umatilla", "roaming"], "by_country": {"IE": IE_EDGES}},
    "rate_limit": {"per_identity": "100/minute"},  # counters live in Redis
}

#: Secret name -> key -> content: what the cluster's Secrets would hold.
SECRETS = {
    "tokensvc-client-secrets": {
        "runapp-api-key-secret": "run-test-twilio-api-key-secret-0000",
        "runapp-caller-secret": CALLER_SECRET,
    },
    "tokensvc-redis": {"redis-password": REDIS_PASSWORD},
}


@dataclass
class Pod:
    region: str
    country_header: str
    public: str
    admin: str
    process: subprocess.Popen[bytes]
    log: Path


def _materialise(objs: list[dict[str, Any]], root: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Create each volume of the pod under root; return (mountPath -> local dir, volumes)."""
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in objs if cm["kind"] == "ConfigMap"}
    # Secrets the chart renders itself (the generated fingerprint key), decoded as mounted.
    rendered = {
        o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o["data"].items()}
        for o in objs
        if o["kind"] == "Secret"
    }
    mounts: dict[str, str] = {}
    for mount in container(objs)["volumeMounts"]:
        volume = volumes[mount["name"]]
        local = root / mount["name"]
        local.mkdir()
        if "configMap" in volume:
            files = configmaps[volume["configMap"]["name"]]
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            files = rendered[name] if name in rendered else SECRETS[name]
        else:
            assert "emptyDir" in volume
            files = {}
        for key, content in files.items():
            (local / key).write_text(content, "utf-8")
        mounts[mount["mountPath"]] = str(local)
    return mounts, {n: root / n for n in volumes}


def _remap(text: str, mounts: dict[str, str]) -> str:
    """Point every path under a mount point at its local directory (one pass, no re-mapping)."""
    if text in mounts:
        return mounts[text]
    points = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    return re.sub(rf"(?<![\w/.-])({points})/", lambda m: mounts[m.group(1)] + "/", text)


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey with a password, on a free loopback port (tests/redis_servers.py: bound by
    the kernel's port 0, so parallel suites never collide); yields its URL with no password and
    no database: each region's pod gets a database of its own, see REGION_DB."""
    node = start_node(tmp_path_factory.mktemp("valkey"))
    try:
        # Set after start: the start-up check pings without a password.
        admin = node.client(timeout=5)
        admin.config_set("requirepass", REDIS_PASSWORD)
        admin.close()
        yield f"redis://127.0.0.1:{node.port}"
    finally:
        node.stop()


@pytest.fixture(scope="module", params=REGIONS)
def pod(
    request: pytest.FixtureRequest, valkey: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pod]:
    """The service started exactly as the chart's container would start, for one region."""
    region: str = request.param
    overlay = load_values_file(CHART_DIR / "regions" / f"{region}.yaml")
    values = merge(
        overlay,
        {
            "clients": {"runapp": RUN_CLIENT},
            "secrets": {"existingSecret": "tokensvc-client-secrets"},
            "ports": {"http": free_port(), "admin": free_port()},
            "redis": {
                "url": f"{valkey}/{REGION_DB[region]}",
                "readUrl": "",
                "sentinel": {"hosts": [], "service": ""},
                "auth": {"existingSecret": "tokensvc-redis", "sentinelPasswordKey": ""},
            },
        },
    )
    objs = objects(values)
    c = container(objs)
    root = tmp_path_factory.mktemp(f"pod-{region}")
    mounts, _ = _materialise(objs, root)
    for client_file in Path(mounts["/etc/tokensvc/clients"]).iterdir():
        client_file.write_text(_remap(client_file.read_text("utf-8"), mounts), "utf-8")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "TMPDIR": mounts["/tmp"],  # the emptyDir at /tmp
    }
    for item in c["env"]:
        assert "value" in item, f"{item['name']}: valueFrom is not imitated here"
        env[item["name"]] = _remap(item["value"], mounts).replace("0.0.0.0", "127.0.0.1")
    argv = [arg.replace("0.0.0.0", "127.0.0.1") for arg in c["command"] + c["args"]]
    log = root / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    started = Pod(
        region=region,
        country_header=overlay["server"]["countryHeader"],
        public=f"http://127.0.0.1:{ports['http']}",
        admin=f"http://127.0.0.1:{ports['admin']}",
        process=process,
        log=log,
    )
    try:
        _wait_live(started)
        yield started
    finally:
        _stop(process, timeout=float(env["TOKENSVC_GRACEFUL_TIMEOUT"]) + 5)


def _wait_live(p: Pod) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if p.process.poll() is not None:
            pytest.fail(f"service exited with {p.process.returncode}:\n{p.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{p.admin}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"service not ready within 45 s:\n{p.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _caller_jwt(identity: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "tokensvc", "sub": identity, "iat": now, "exp": now + 300}
    return jwt.encode(claims, CALLER_SECRET, algorithm="HS256")


@pytest.mark.slow
@pytest.mark.parametrize("port", ["public", "admin"])
@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_probe_paths_answer_200(pod: Pod, port: str, path: str) -> None:
    """/livez and /readyz answer 200 on both the public and the admin port."""
    base = pod.public if port == "public" else pod.admin
    assert 200 == httpx.get(f"{base}{path}", timeout=5).status_code


@pytest.mark.slow
def test_metrics_are_served_on_the_admin_port(pod: Pod) -> None:
    """The admin port serves Prometheus text at /metrics (what the ServiceMonitor scrapes)."""
    response = httpx.get(f"{pod.admin}/metrics", timeout=5)
    assert (200, True) == (response.status_code, "# TYPE" in response.text)


@pytest.mark.slow
def test_token_response_names_the_overlay_region(pod: Pod) -> None:
    """A token minted by the rendered pod carries the overlay's region, uncached."""
    response = httpx.post(
        f"{pod.public}/v1/clients/runapp/token",
        headers={"Authorization": f"Bearer {_caller_jwt('alice')}"},
        json={"platform": "browser"},
        timeout=5,
    )
    body = response.json()
    assert (200, pod.region, "alice", "no-store") == (
        response.status_code,
        body["region"],
        body["identity"],
        response.headers["cache-control"],
    )


@pytest.mark.slow
def test_overlay_country_header_orders_the_edges(pod: Pod) -> None:
    """The country header named in the overlay is trusted: IE callers get the IE edge list."""
    response = httpx.post(
        f"{pod.public}/v1/clients/runapp/token",
        headers={"Authorization": f"Bearer {_caller_jwt('bob')}", pod.country_header: "IE"},
        timeout=5,
    )
    assert (200, IE_EDGES) == (response.status_code, response.json()["edges"])


# --- the rendered client files load in the service's own loader ------------------------------


@pytest.mark.parametrize(
    "scenario",
    sorted(n for n, v in scenarios().items() if not v.get("existingClientsConfigMap")),
)
def test_rendered_client_files_pass_the_service_loader(scenario: str, tmp_path: Path) -> None:
    """Every ConfigMap the chart renders is accepted by tokensvc.clients (no problems)."""
    from tokensvc.clients import scan_clients

    values = scenarios()[scenario]
    objs = objects(values)
    cm = one(objs, "ConfigMap", f"{RELEASE}-clients")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    config_dir = tmp_path / "clients"
    config_dir.mkdir()
    referenced: dict[str, str] = {}
    for name, text in cm["data"].items():
        (config_dir / name).write_text(
            text.replace("/etc/tokensvc/secrets/", f"{secrets_dir}/"), "utf-8"
        )
        for line in text.splitlines():
            if "/etc/tokensvc/secrets/" in line:
                key = line.split("/etc/tokensvc/secrets/")[1].split("}")[0].strip()
                referenced[key] = "x" * 40
    for key, content in referenced.items():
        (secrets_dir / key).write_text(content, "utf-8")
    env = {e["name"]: "y" * 40 for e in container(objs)["env"] if "valueFrom" in e}
    result = scan_clients(config_dir, env)
    assert ([], sorted(k.removesuffix(".yaml") for k in cm["data"])) == (
        [str(p) for p in result.problems],
        sorted(result.clients),
    )


@pytest.mark.slow
def test_the_pod_writes_to_redis_with_the_mounted_password(pod: Pod, valkey: str) -> None:
    """After a token request the region's own Redis database (password from the Secret) gets
    the caller's rate-limit counter, which the pod's background sync sends every 100 ms."""
    import redis

    identity = f"carol{REGION_DB[pod.region]}"  # alphanumeric: keys escape other characters
    pattern = f"tokensvc:rl:runapp:id:{identity}:*"
    client = redis.Redis.from_url(
        f"{valkey}/{REGION_DB[pod.region]}", password=REDIS_PASSWORD, socket_timeout=5
    )
    try:
        before = client.keys(pattern)
        response = httpx.post(
            f"{pod.public}/v1/clients/runapp/token",
            headers={"Authorization": f"Bearer {_caller_jwt(identity)}"},
            timeout=5,
        )
        wait_until(lambda: client.keys(pattern), 10, f"keys matching {pattern!r} in Redis")
        after = client.keys(pattern)
    finally:
        client.close()
    assert (200, [], 1) == (response.status_code, before, len(after))


@pytest.mark.slow
def test_both_workers_fingerprint_a_caller_alike(pod: Pod) -> None:
    """With the chart's fingerprint key file, the pod's two workers log one fingerprint for one
    caller (without it each worker draws its own random key)."""
    identity = f"dave{REGION_DB[pod.region]}"
    seen: dict[int, set[str]] = {}
    for _ in range(60):
        with httpx.Client(timeout=5) as fresh:  # a new connection each time: any worker
            response = fresh.post(
                f"{pod.public}/v1/clients/runapp/token",
                headers={"Authorization": f"Bearer {_caller_jwt(identity)}"},
            )
        assert 200 == response.status_code
        seen = _fingerprints_by_pid(pod.log, response.headers["x-request-id"], seen)
        if len(seen) >= 2:
            break
    assert (2, 1) == (len(seen), len(set().union(*seen.values())))


def _fingerprints_by_pid(
    log: Path, request_id: str, seen: dict[int, set[str]]
) -> dict[int, set[str]]:
    """Add the logged fingerprint of one request (by id) to pid -> fingerprints."""

    def logged() -> dict[str, Any] | None:
        for line in log.read_text("utf-8").splitlines():
            if request_id in line:
                record: dict[str, Any] = json.loads(line)
                return record
        return None

    wait_until(lambda: logged() is not None, 5, "the access log line")
    record = logged()
    assert record is not None
    seen.setdefault(record["pid"], set()).add(record["identity_fp"])
    return seen
