"""Reproducible builds and the release script.

constraints.txt (deploy/scripts/lock.py, `make lock`) pins every runtime, test and build
requirement; `make install`, the Dockerfile (and so CI, which runs `make test`) install through
it, and this test suite runs on exactly those versions. deploy/release.py builds the image,
prints its digest and packages the chart; without a Docker daemon here, its image steps are
checked as a dry run and the chart is packaged for real (helm-python-sdk).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK = _load(REPO / "deploy" / "scripts" / "lock.py")


def _pins() -> dict[str, str]:
    """Canonical name -> pinned version, from constraints.txt."""
    out: dict[str, str] = {}
    for line in CONSTRAINTS.read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version
    return out


def _build_names() -> set[str]:
    return {canonicalize_name(r.name) for r in LOCK.build_requirements()}


def test_every_resolved_dependency_is_pinned_exactly() -> None:
    """Each distribution tokensvc[test] pulls in (transitively) has a `==` pin."""
    assert set() == {name for name, _ in _closure_names()} - set(_pins())


def _closure_names() -> list[tuple[str, str]]:
    """(canonical name, installed version) of tokensvc[test]'s dependency closure."""
    dist = metadata.distribution("tokensvc")
    queue = [(dist, ("test",))]
    seen: dict[str, str] = {}
    while queue:
        current, extras = queue.pop()
        for req in LOCK._requirements(current, extras):
            name = canonicalize_name(req.name)
            if name not in seen:
                seen[name] = metadata.version(req.name)
                queue.append((metadata.distribution(req.name), tuple(sorted(req.extras))))
    return sorted(seen.items())


def test_the_suite_runs_on_the_locked_versions() -> None:
    """The environment running these tests has exactly the pinned versions (what `make
    install` gives on a clean clone); build requirements live in pip's build env instead."""
    pins = _pins()
    drift = {
        name: (pins[name], version)
        for name, version in _closure_names()
        if name in pins and pins[name] != version
    }
    assert {} == drift


def test_pins_satisfy_pyproject() -> None:
    """Every pin of a direct requirement (runtime, test, build) meets pyproject.toml's range."""
    import tomllib

    doc = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    direct = [
        *doc["project"]["dependencies"],
        *doc["project"]["optional-dependencies"]["test"],
        *doc["build-system"]["requires"],
    ]
    pins = _pins()
    bad = [
        raw
        for raw in direct
        if (req := Requirement(raw)).marker is None or req.marker.evaluate()
        if not req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True)
    ]
    assert [] == bad


def test_build_requirements_are_pinned() -> None:
    """setuptools (the [build-system] backend) is pinned, so the wheel is built the same way."""
    assert set() == _build_names() - set(_pins())


def test_make_install_and_the_dockerfile_use_the_constraints() -> None:
    """The Makefile's install step and the Dockerfile's builder both set PIP_CONSTRAINT to it;
    CI runs `make test`, so it goes through the same install."""
    makefile = (REPO / "Makefile").read_text("utf-8")
    dockerfile = (REPO / "Dockerfile").read_text("utf-8")
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    assert (True, True, True, True) == (
        "PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install" in makefile,
        "COPY pyproject.toml README.md constraints.txt ./" in dockerfile,
        "ENV PIP_CONSTRAINT=/src/constraints.txt" in dockerfile,
        "make test" in ci,
    )


def _release(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "release.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


@pytest.mark.process
def test_release_dry_run_plans_build_push_digest_and_chart() -> None:
    """--dry-run lists docker build/push, lint, package and OCI push, and ends with the
    image.digest line for the chart values."""
    result = _release(
        "--image-repo",
        "registry.example.com/tokensvc",
        "--chart-repo",
        "oci://registry.example.com/charts",
        "--dry-run",
    )
    steps = [line.split()[1:3] for line in result.stderr.splitlines() if line.startswith("+ ")]
    steps = [[Path(s[0]).name, s[1]] for s in steps]
    assert (
        0,
        [
            ["docker", "build"],
            ["docker", "push"],
            ["helm", "lint"],
            ["helm", "package"],
            ["helm", "push"],
        ],
        True,
    ) == (
        result.returncode,
        steps,
        result.stdout.strip().splitlines()[-1].startswith("image.digest=sha256:"),
    )


@pytest.mark.process
def test_release_packages_the_chart(tmp_path: Path) -> None:
    """The chart-only release writes tokensvc-<version>.tgz with the regions, the examples
    and the monitoring files, and without the CI scenarios."""
    result = _release("--skip-image", "--no-push", "--out", str(tmp_path))
    archive = tmp_path / f"tokensvc-{_chart_version()}.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert (0, True, True, True, []) == (
        result.returncode,
        "tokensvc/regions/us-east.yaml" in names,
        "tokensvc/files/alerts.yaml" in names,
        "tokensvc/examples/openshift-values.yaml" in names,
        sorted(n for n in names if n.startswith("tokensvc/ci/")),
    )


def _chart_version() -> str:
    release = _load(REPO / "deploy" / "release.py")
    chart_version: str = release.versions()[2]
    return chart_version


def test_image_tag_chart_app_version_and_package_version_agree() -> None:
    """One version: pyproject.toml's equals Chart.yaml's appVersion (the image's default tag)."""
    release = _load(REPO / "deploy" / "release.py")
    package, app, _ = release.versions()
    assert package == app
