"""The browser helper in js/ is publishable: npm's own packer decides what ships.

`npm pack --dry-run --json` lists exactly the files a `npm publish` would upload; the test
pins that list (sources, types, README, package.json: no tests, scripts or lock file) and the
metadata a registry needs.
"""

from __future__ import annotations

import json
import re
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


def test_the_helper_knows_every_problem_code_of_the_service() -> None:
    """js/src/errors.js PROBLEM_CODES and index.d.ts's ProblemCode list tokensvc/errors.py's
    codes, in api_errors() order."""
    from tokensvc.errors import api_errors

    source = (JS / "src" / "errors.js").read_text("utf-8")
    block = re.search(r"PROBLEM_CODES = Object\.freeze\(\[(.*?)\]\)", source, re.S)
    types = (JS / "index.d.ts").read_text("utf-8")
    union = re.search(r"export type ProblemCode =(.*?);", types, re.S)
    assert block is not None and union is not None
    expected = [cls.code for cls in api_errors()]
    assert (expected, expected) == (
        re.findall(r"'([a-z_]+)'", block.group(1)),
        re.findall(r"'([a-z_]+)'", union.group(1)),
    )
