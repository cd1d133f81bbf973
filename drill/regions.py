"""The drill's regions, and one region's deployment: its Sentinel group, its config directory
and its two ``tokensvc serve`` processes (2 workers each).

Region settings come from the chart, as an operator's overlay would give them:
``helm/tokensvc/regions/<region>.yaml`` (``region``, ``server.countryHeader``) over
``helm/tokensvc/values.yaml`` (``server.workers``, ``server.trustedHops``). Where the drill must
differ it says so: a 1 s reload interval (the chart's 5 s would only slow the config step), a
2.5 s shutdown delay standing in for the preStop sleep (HAProxy checks every 0.5 s and needs
two failures), and ``TOKENSVC_TWILIO_VERIFY=off`` (no calls to the real Twilio).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drill.procs import HOST, Child, free_port, http_get
from drill.valkey import SentinelGroup

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "tokensvc"
SHUTDOWN_DELAY = 2.5
RELOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class RegionSpec:
    name: str
    location: tuple[float, float]  # where the region is (latitude, longitude)
    countries: tuple[str, ...]  # the countries whose apps start up nearest to it


REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("us-east", (39.04, -77.49), ("US", "CA", "BR")),
    RegionSpec("eu-west", (53.35, -6.26), ("IE", "DE", "GB")),
    RegionSpec("ap-southeast", (1.35, 103.82), ("SG", "JP", "AU")),
)


def _chart_values(region: str) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    overlay_path = CHART / "regions" / f"{region}.yaml"
    overlay = yaml.safe_load(overlay_path.read_text()) if overlay_path.exists() else {}
    server = {**(values.get("server") or {}), **((overlay or {}).get("server") or {})}
    return {"region": (overlay or {}).get("region", region), "server": server}


def country_header(region: str) -> str:
    """The trusted country header this region's overlay configures."""
    header = str(_chart_values(region)["server"].get("countryHeader") or "")
    return header or "CloudFront-Viewer-Country"


class Process:
    """One ``tokensvc serve`` (a supervisor and its workers) on a fixed public port."""

    def __init__(
        self, region: str, index: int, env: dict[str, str], config_dir: Path, logs: Path
    ) -> None:
        self.region = region
        self.name = f"{region}-{index}"
        self.port = free_port()
        self.admin_port = free_port()
        self.logs = logs
        self.env = {**env, "TOKENSVC_ADMIN_PORT": str(self.admin_port)}
        self.config_dir = config_dir
        self.generation = 0
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Process:
        self.generation += 1
        args = [
            sys.executable,
            "-m",
            "tokensvc",
            "serve",
            "--config",
            str(self.config_dir),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        self.child = Child(
            self.name, args, self.logs / f"{self.name}.log", env=self.env, cwd=REPO
        ).start()
        return self

    def ready(self) -> bool:
        return http_get(self.url + "/readyz", timeout=0.5)[0] == 200

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /readyz answers 200; RuntimeError at once if the process exits."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.child is None or not self.child.running():
                log = self.child.log if self.child else ""
                raise RuntimeError(f"{self.name} exited; see {log}")
            try:
                if self.ready():
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.child is not None:
            self.child.stop(timeout)


class Region:
    """A deployed region: Sentinel group, config directory, two tokensvc processes."""

    def __init__(
        self, spec: RegionSpec, workdir: Path, base_env: dict[str, str], processes: int = 2
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.dir = workdir / spec.name
        self.config_dir = self.dir / "clients"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.redis = SentinelGroup(self.dir / "redis", spec.name)
        chart = _chart_values(spec.name)
        server = chart["server"]
        self.country_header = country_header(spec.name)
        self.env: dict[str, str] = {
            **base_env,
            "TOKENSVC_REGION": str(chart["region"]),
            "TOKENSVC_REDIS_URL": self.redis.url,
            "TOKENSVC_COUNTRY_HEADER": self.country_header,
            "TOKENSVC_CLIENT_IP_HEADER": "x-forwarded-for",
            "TOKENSVC_TRUSTED_HOPS": str(server.get("trustedHops", 1)),
            "TOKENSVC_WORKERS": str(server.get("workers", 2)),
            "TOKENSVC_LOG_FORMAT": "json",
            "TOKENSVC_LOG_LEVEL": "info",
            "TOKENSVC_RELOAD_INTERVAL": str(RELOAD_INTERVAL),
            "TOKENSVC_SHUTDOWN_DELAY": str(SHUTDOWN_DELAY),
            "TOKENSVC_TWILIO_VERIFY": "off",
        }
        self.processes = [
            Process(spec.name, i + 1, self.env, self.config_dir, workdir / "logs")
            for i in range(processes)
        ]

    def start_redis(self) -> None:
        self.redis.start()

    def start_services(self) -> None:
        for process in self.processes:
            process.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        for process in self.processes:
            process.wait_ready(timeout)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.redis.stop()


def base_environment() -> dict[str, str]:
    """The drill's own environment without any TOKENSVC_* variable the caller had set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env
