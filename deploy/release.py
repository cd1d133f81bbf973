"""Release tokensvc: build and push the image, print its digest, package and push the chart.

    python deploy/release.py --image-repo registry.example.com/tokensvc \\
        --chart-repo oci://registry.example.com/charts            # build, push, package, push
    python deploy/release.py --image-repo ... --dry-run           # print the plan only
    python deploy/release.py --skip-image --no-push --out dist    # the chart package only

Steps (docs/releasing.md):
1. Check that pyproject.toml's version equals Chart.yaml's appVersion (one version for the
   package, the image tag and the chart's default tag) and that the work tree is committed.
2. `docker build` (dependencies pinned by constraints.txt inside the Dockerfile), labelled with
   the version and git revision; `docker push`; the registry digest (RepoDigests) is printed as
   `image.digest=sha256:...`, the value every region's release pins.
3. The chart: linted strictly with a production-shaped client (the chart refuses to render
   without one), packaged with the real Helm engine (helm-python-sdk, so no helm binary is
   needed), and pushed as an OCI artifact (`helm push` equivalent) to --chart-repo; install it
   with `helm upgrade --install tokensvc oci://.../tokensvc --version <chart version>`.

Exit status: 0 done; 1 a step failed (the message says which); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "tokensvc"
CHECK_CLIENT = REPO / "deploy" / "release-check-client.yaml"


class ReleaseError(Exception):
    """A release step failed; the message names it."""


def _field(path: Path, pattern: str) -> str:
    match = re.search(pattern, path.read_text("utf-8"), re.M)
    if match is None:
        raise ReleaseError(f"{path.name}: no match for {pattern!r}")
    return match.group(1)


def versions() -> tuple[str, str, str]:
    """(package version, chart appVersion, chart version)."""
    package = _field(REPO / "pyproject.toml", r'^version = "([^"]+)"$')
    app = _field(CHART / "Chart.yaml", r'^appVersion: "?([^"\n]+)"?$')
    chart = _field(CHART / "Chart.yaml", r"^version: (\S+)$")
    return package, app, chart


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed git arguments from this script
        ["git", *args],  # noqa: S607 - git from PATH, like a developer's shell
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout.strip()


def _run(argv: list[str], dry_run: bool) -> str:
    print("+ " + shlex.join(argv), file=sys.stderr)
    if dry_run:
        return ""
    # argv is built by this script, never a shell string.
    result = subprocess.run(  # noqa: S603
        argv, cwd=REPO, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ReleaseError(f"{argv[0]} {argv[1]} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def build_image(repo: str, version: str, push: bool, dry_run: bool, platform: str) -> str:
    """Build (and push) the image; return its registry digest ("" when not pushed)."""
    docker = shutil.which("docker") or "docker"
    if not dry_run:
        info = subprocess.run(  # noqa: S603 - fixed arguments
            [docker, "info"], capture_output=True, text=True, check=False
        )
        if info.returncode != 0:
            raise ReleaseError(
                "docker: no daemon reachable (`docker info` failed); build on a "
                "machine with a container builder, or pass --skip-image"
            )
    image = f"{repo}:{version}"
    revision = _git("rev-parse", "HEAD") or "unknown"
    _run(
        [
            docker,
            "build",
            "--platform",
            platform,
            "--label",
            f"org.opencontainers.image.version={version}",
            "--label",
            f"org.opencontainers.image.revision={revision}",
            "-t",
            image,
            ".",
        ],
        dry_run,
    )
    if not push:
        return ""
    _run([docker, "push", image], dry_run)
    if dry_run:
        return "sha256:<digest printed after the push>"
    out = _run(
        [docker, "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", image],
        dry_run,
    )
    for line in out.splitlines():
        if line.startswith(f"{repo}@sha256:"):
            return line.split("@", 1)[1]
    raise ReleaseError(f"docker inspect: no registry digest for {image}")


def package_chart(out: Path, dry_run: bool) -> Path:
    """Lint strictly, then package the chart into out/; return the archive's path."""
    from helm_python import package, parse_set_file
    from helm_python.chart import lint

    print(
        f"+ helm lint --strict {CHART.relative_to(REPO)} "
        f"--set-file clients.release-check={CHECK_CLIENT.relative_to(REPO)}",
        file=sys.stderr,
    )
    report = lint(
        CHART,
        parse_set_file(f"clients.release-check={CHECK_CLIENT}"),
        strict=True,
        kube_version="v1.30.0",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    if report["errors"] or problems:
        raise ReleaseError(f"helm lint: {report['errors'] or problems}")
    print(f"+ helm package {CHART.relative_to(REPO)} --destination {out}", file=sys.stderr)
    if dry_run:
        return out / f"tokensvc-{versions()[2]}.tgz"
    out.mkdir(parents=True, exist_ok=True)
    return Path(package(CHART, destination=out))


def push_chart(archive: Path, remote: str, dry_run: bool) -> None:
    from helm_python import push

    print(f"+ helm push {archive} {remote}", file=sys.stderr)
    if not dry_run:
        push(archive, remote)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-repo", help="e.g. registry.example.com/tokensvc")
    parser.add_argument("--chart-repo", help="e.g. oci://registry.example.com/charts")
    parser.add_argument("--platform", default="linux/amd64")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--skip-image", action="store_true", help="chart only")
    parser.add_argument("--no-push", action="store_true", help="build and package locally")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run none")
    args = parser.parse_args(argv)
    push = not args.no_push
    if not args.skip_image and not args.image_repo:
        parser.error("--image-repo is required (or --skip-image)")
    if push and not args.chart_repo:
        parser.error("--chart-repo is required to push (or --no-push)")
    try:
        package_version, app_version, _ = versions()
        if package_version != app_version:
            raise ReleaseError(
                f"pyproject.toml version {package_version} != Chart.yaml "
                f"appVersion {app_version}: bump both together"
            )
        if not args.dry_run and push and _git("status", "--porcelain"):
            raise ReleaseError("the work tree has uncommitted changes; release a commit")
        digest = ""
        if not args.skip_image:
            digest = build_image(args.image_repo, app_version, push, args.dry_run, args.platform)
        archive = package_chart(args.out, args.dry_run)
        if push:
            push_chart(archive, args.chart_repo, args.dry_run)
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    print(f"chart={archive}")
    if digest:
        print(f"image.digest={digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
