"""The short drill (one region loss, one Redis failover, one drain) runs and meets its targets.

This is `make drill`'s scenario cut to about a minute, so the drill itself cannot rot: a real
HAProxy, three Sentinel groups, six `tokensvc serve` processes and the real JS helper under
Node. Select it with `-m drill`; deselect with `-m "not drill"`. Without HAProxy (and no root to
install it) or Node it fails (`make test` installs both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        try:
            from drill.haproxy import ensure_installed

            ensure_installed()
        except (OSError, subprocess.SubprocessError) as exc:
            return f"haproxy is missing and could not be installed: {exc}"
    return None


@pytest.mark.slow
@pytest.mark.drill
def test_short_drill_meets_every_target(tmp_path: Path) -> None:
    """Region loss, Redis failover and a drain under load: no failed start-up, drain < 2 s."""
    missing = _missing()
    assert missing is None, f"the drill needs {missing}: run `make system-deps`"
    results = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "drill",
            "run",
            "--short",
            "--rate",
            "40",
            "--no-browser",
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    steps = json.loads((results / "steps.json").read_text())
    assert ["baseline", "region_loss", "redis_failover", "drain"] == [s["name"] for s in steps]
    assert 0 == run.returncode, run.stdout[-3000:] + run.stderr[-2000:]
    assert 0 == sum(s["failed"] for s in steps)
    assert [] == [s["name"] for s in steps if s["attempted"] == 0], "steps without load"
