"""The browser helper in js/ is publishable: npm's own packer decides what ships.

`npm pack --dry-run --json` lists exactly the files a `npm publish` would upload; the test
pins that list (sources, types, README, package.json: no tests, scripts or lock file) and the
metadata a registry needs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent.parent / "js"


@pytest.fixture(scope="module")
def packed() -> dict[str, Any]:
    """npm's dry-run pack report for js/ (npm is required: the JS suite needs it too)."""
    npm = shutil.which("npm")
    assert npm is not None, "npm not on PATH (needed by `make test-js` as well)"
    result = subprocess.run(
        [npm, "pack", "--dry-run", "--json", "--ignore-scripts"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)[0]
    return report


@pytest.mark.process
def test_the_package_ships_only_sources_types_and_readme(packed: dict[str, Any]) -> None:
    """The tarball holds src/*.js, index.d.ts, README.md and package.json, nothing else."""
    expected = sorted(
        ["README.md", "index.d.ts", "package.json"]
        + [f"src/{p.name}" for p in (JS / "src").glob("*.js")]
    )
    assert expected == sorted(f["path"] for f in packed["files"])


def test_the_package_is_publishable() -> None:
    """Not private; a version, a repository, exports with types, and the declared types file."""
    meta = json.loads((JS / "package.json").read_text("utf-8"))
    assert (None, True, True, "./index.d.ts", "./index.d.ts", True) == (
        meta.get("private"),
        bool(meta.get("version")),
        meta["repository"]["directory"] == "js",
        meta["types"],
        meta["exports"]["."]["types"],
        (JS / meta["types"]).is_file(),
    )


@pytest.mark.process
def test_every_export_target_is_in_the_tarball(packed: dict[str, Any]) -> None:
    """Each path named by main, types or exports is among the packed files."""
    meta = json.loads((JS / "package.json").read_text("utf-8"))
    targets = {meta["main"], meta["types"]}
    for value in meta["exports"].values():
        targets.update(value.values() if isinstance(value, dict) else [value])
    files = {f"./{f['path']}" for f in packed["files"]}
    assert set() == targets - files
