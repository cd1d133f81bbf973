"""The whole deployment on loopback, started together and stopped together (always, by PID).

Topology(workdir).start()   3 Sentinel groups -> fake Statuspage + feed config -> client files
                            (checked) -> 6 tokensvc processes -> HAProxy -> every backend UP
.start_load(rate)           the Node start-up simulator writing startups.jsonl
.ops(*args)                 the real ops CLI (`tokensvc edges drain ...`) on every region
.statuspage                 the fake Statuspage every region's poller reads (drill/feed.py)
.stop()                     load, HAProxy, services, Redis, Statuspage; nothing left running
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from drill import callers, feed
from drill.fake_statuspage import FakeStatuspage
from drill.haproxy import GEO_HEADER, HAProxy
from drill.procs import Child, wait_until
from drill.regions import REGIONS, REPO, Region, base_environment

ATTEMPT_TIMEOUT_MS = 2000
LOAD_START_TIMEOUT_S = 30.0  # Node and the SDK bundle start slowly on a loaded machine


class Topology:
    def __init__(self, workdir: Path, *, origins: tuple[str, ...] = ()) -> None:
        self.dir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.creds = callers.make_credentials(workdir)
        self.origins = origins
        self.feed_config = workdir / "status-feed.yaml"
        env = base_environment() | {
            callers.API_KEY_ENV: self.creds.api_key_secret,
            "TOKENSVC_STATUS_FEED_CONFIG": str(self.feed_config),
        }
        self.env = env
        self.regions = [Region(spec, workdir, env) for spec in REGIONS]
        self.haproxy = HAProxy(self.regions, workdir, self.logs)
        self.ops_config = workdir / "ops.yaml"
        self.ops_config.write_text(
            yaml.safe_dump(
                {"regions": {r.name: r.redis.url for r in self.regions}}, sort_keys=False
            )
        )
        self.statuspage = FakeStatuspage()
        self.load: Child | None = None
        self.startups = workdir / "startups.jsonl"

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)

    @property
    def urls(self) -> dict[str, str]:
        return {name: self.haproxy.url(name) for name in self.haproxy.ports}

    def start(self) -> Topology:
        with ThreadPoolExecutor(len(self.regions)) as pool:
            list(pool.map(lambda r: r.start_redis(), self.regions))
        self.statuspage.start()
        feed.write_config(self.feed_config, self.statuspage.url)
        for region in self.regions:
            callers.write_client(region.config_dir, self.creds, self.origins)
        self.check_config()
        for region in self.regions:
            region.start_services()
        for region in self.regions:
            region.wait_ready()
        self.haproxy.start()
        wait_until(self.all_up, 20, "every HAProxy backend server UP", step=0.1)
        return self

    def check_config(self) -> None:
        """`tokensvc check-config` on one region's directory, as CI would before a deploy."""
        subprocess.run(
            [sys.executable, "-m", "tokensvc", "check-config", str(self.regions[0].config_dir)],
            check=True,
            env=self.env,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )

    def all_up(self) -> bool:
        stats = self.haproxy.stats()
        return all(
            stats.get((r.name, p.name), "").startswith("UP")
            for r in self.regions
            for p in r.processes
        )

    def ops(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        env = self.env | {"TOKENSVC_OPS_CONFIG": str(self.ops_config)}
        result = subprocess.run(
            [sys.executable, "-m", "tokensvc", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with (self.logs / "ops-cli.log").open("a") as log:
            log.write(f"$ tokensvc {' '.join(args)}\n{result.stdout}{result.stderr}")
        return result

    def start_load(
        self,
        rate: float,
        *,
        callers_per_country: int = 60,
        lifetime: float = 6 * 3600,
        global_share: float = 0.25,
    ) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed")
        countries = [c for spec in REGIONS for c in spec.countries]
        apps = callers.population(
            self.creds,
            [(s.name, s.location) for s in REGIONS],
            countries,
            self.urls,
            callers=callers_per_country,
            lifetime=lifetime,
            global_share=global_share,
        )
        plan: dict[str, Any] = {
            "client": callers.CLIENT,
            "rate": rate,
            "attemptTimeoutMs": ATTEMPT_TIMEOUT_MS,
            "out": str(self.startups),
            "geoHeader": GEO_HEADER,
            "apps": apps,
        }
        plan_file = self.dir / "secrets" / "load-plan.json"  # holds JWTs: not a log
        plan_file.write_text(json.dumps(plan))
        plan_file.chmod(0o600)
        self.load = Child(
            "load",
            [node, str(REPO / "drill" / "load.mjs"), str(plan_file)],
            self.logs / "load.log",
            env=self.env,
        ).start()
        # The steps are timed from here: wait until start-ups are being recorded, so the
        # baseline measures load, not the generator's own start (Node, the SDK bundle).
        load = self.load
        wait_until(
            lambda: not load.running() or self.startups.stat().st_size > 0,
            LOAD_START_TIMEOUT_S,
            "the load generator's first recorded start-up",
        )
        if not load.running():
            raise RuntimeError(f"the load generator exited: see {self.logs / 'load.log'}")

    def stop_load(self) -> None:
        if self.load is not None:
            self.load.stop(20)

    def stop(self) -> None:
        self.stop_load()
        self.haproxy.stop()
        processes = [p for r in self.regions for p in r.processes]
        with ThreadPoolExecutor(len(processes)) as pool:  # each takes the shutdown delay
            list(pool.map(lambda p: p.stop(), processes))
        for region in self.regions:
            region.redis.stop()
        self.statuspage.stop()
