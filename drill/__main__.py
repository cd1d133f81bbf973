"""``python -m drill run [--short] [--rate N]`` and ``python -m drill demo``.

``run`` starts the topology, the start-up load (and the Chromium pages unless ``--no-browser``),
runs the scripted faults, stops everything, writes ``report.md``, ``timeline.png`` and the
collected logs under ``--results`` and prints the summary. Exit 0 when every target is met, 1
when any is missed, 2 when the drill itself could not run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from drill import report, scenario
from drill.browser import Browser
from drill.procs import HOST, free_port
from drill.regions import REPO
from drill.topology import ATTEMPT_TIMEOUT_MS, Topology


def _run(ns: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tokensvc-drill-"))
    results: Path = ns.results
    if results.exists():
        shutil.rmtree(results)
    results.mkdir(parents=True)
    page_port = free_port()
    origin = f"http://{HOST}:{page_port}"
    topo = Topology(workdir, origins=(origin,))
    browser: Browser | None = None
    plan = scenario.short_plan() if ns.short else scenario.full_plan()
    started = time.monotonic()
    try:
        print(f"drill: starting 3 regions + HAProxy in {workdir}", flush=True)
        topo.start()
        print(f"drill: up in {time.monotonic() - started:.1f} s: {topo.urls}", flush=True)
        if ns.browser:
            browser = Browser(topo, workdir, page_port, pages=ns.pages)
            if browser.unavailable:
                print(f"drill: browser pages skipped: {browser.unavailable}", flush=True)
            else:
                browser.start()
        topo.start_load(ns.rate)
        steps = scenario.run(topo, plan, log=lambda m: print(m, flush=True))
    finally:
        if browser is not None:
            browser.stop()
        topo.stop()
    records = report.load_records(topo.startups)
    shutil.copytree(topo.logs, results / "logs")
    shutil.copy(topo.startups, results / "startups.jsonl")
    for region in topo.regions:
        for node in region.redis.nodes:
            shutil.copy(node.child.log, results / "logs" / f"{node.name}.log")
    header = (
        f"{'Short' if ns.short else 'Full'} run, {ns.rate:g} start-ups/s offered, "
        f"attempt timeout {ATTEMPT_TIMEOUT_MS} ms, {len(records)} start-ups, "
        f"{time.monotonic() - started:.0f} s wall clock."
    )
    extra = browser.report() if browser is not None else ""
    verdict = report.write(
        results,
        records,
        steps,
        [results / "logs", results / "startups.jsonl"],
        topo.creds.secrets(),
        workdir / "secrets",
        header=header + ("\n\n" + extra if extra else ""),
    )
    verdict_ok = verdict.ok and not (browser is not None and browser.failed)
    print("\n" + header)
    print(report.summary_table(verdict.figs))
    for line in report.propagation_lines(verdict.figs):
        print(line)
    for fig in verdict.figs:
        for name, passed in fig.checks.items():
            if not passed:
                print(f"MISSED {fig.step.name}: {name}")
    if extra:
        print(extra)
    print(f"secret scan: {'clean' if not verdict.leaks else verdict.leaks[:5]}")
    print(f"report: {verdict.markdown}\ntimeline: {verdict.png}")
    print(f"drill: {'every target met' if verdict_ok else 'TARGETS MISSED'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if verdict_ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the scripted fault run")
    run.add_argument(
        "--short", action="store_true", help="region loss, Redis failover, drain (about a minute)"
    )
    run.add_argument("--rate", type=float, default=200.0, help="start-ups per second offered")
    run.add_argument("--results", type=Path, default=REPO / "results" / "drill")
    run.add_argument("--no-browser", dest="browser", action="store_false")
    run.add_argument("--pages", type=int, default=3, help="Chromium pages with a Device")
    demo = sub.add_parser("demo", help="the regions + HAProxy with a live status page")
    demo.add_argument("--rate", type=float, default=20.0)
    demo.add_argument("--port", type=int, default=8099, help="status page port (loopback)")
    ns = parser.parse_args(argv)
    if ns.command == "demo":
        from drill.demo import serve_demo

        return serve_demo(ns.rate, ns.port)
    try:
        return _run(ns)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"drill: could not run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
