"""What the start-up records and the steps show: per-step figures, targets, the Markdown report,
the PNG timeline, and the secret scan of every log the drill collected.

Targets (``Verdict.ok`` false -> the drill exits 1):
  * zero failed start-ups in every step;
  * no start-up slower than the helper's attempt timeout + 100 ms (one region down costs at
    most one attempt);
  * every edge list valid (known edge names), equal to the configured list for its country, and
    without the drained edge once the drain has had 2 s to spread (either list is accepted while
    the ops CLI runs and in the 2 s after it returns, for a drain or an undrain); the same for
    the status feed's drain, with its own bounds (``feed.BOUND_S`` after the outage,
    ``feed.CLEAR_BOUND_S`` after the recovery);
  * each step's own checks (drain seen by every region within 2 s of the CLI's return, the feed's
    edge gone and back within its bounds, broken config never served);
  * no secret in any log: the caller HS256 secret, the Twilio API key secret, or anything shaped
    like a JWT (a caller credential or a minted token).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drill import callers, feed
from drill.scenario import DRAIN_EDGE, DRAIN_TARGET_S, Step
from drill.topology import ATTEMPT_TIMEOUT_MS
from tokensvc.edges import EDGES

JWT_SHAPE = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
SLOW_MS = ATTEMPT_TIMEOUT_MS + 100


def load_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class StepFigures:
    step: Step
    attempted: int = 0
    failed: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    slow: int = 0
    gap_s: float = 0.0
    by_region: dict[str, int] = field(default_factory=dict)
    edges_bad: list[str] = field(default_factory=list)
    #: edge -> start-ups still handed it after its drain had had its bound to spread
    lingering: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def checks(self) -> dict[str, bool]:
        own = (
            {}
            if self.step.skipped
            else {
                "zero failed start-ups": self.failed == 0,
                f"no start-up over {SLOW_MS} ms": self.slow == 0,
                "every edge list valid, un-drained, in configured order": not self.edges_bad,
            }
        )
        return own | self.step.checks

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


@dataclass(frozen=True)
class DrainWindow:
    """A drain in force from ``on`` to ``off``; lists change within ``settle_on`` of ``on``
    and ``settle_off`` of ``off``, and ``drained(country)`` is the list while it holds."""

    edge: str
    on: float
    off: float
    settle_on: float
    settle_off: float
    drained: Callable[[str], list[str]]

    def steady(self, begin: float, end: float) -> bool:
        return begin >= self.on + self.settle_on and end <= self.off

    def overlaps(self, begin: float, end: float) -> bool:
        return not (end < self.on or begin > self.off + self.settle_off)


def _operator_drained(country: str) -> list[str]:
    return callers.expected_edges(country, frozenset({DRAIN_EDGE}))


def drain_windows(steps: list[Step]) -> list[DrainWindow]:
    """The operator drain step's and the status-feed step's windows, when they ran."""
    out = []
    for step in steps:
        facts = step.facts
        if "drained_at" in facts and "undrained_at" in facts:
            out.append(
                DrainWindow(
                    DRAIN_EDGE,
                    float(facts["drained_at"]),
                    float(facts["undrained_at"]),
                    # the target counts from the CLI's return: its run time comes first
                    float(facts.get("drain_cli_s", 0)) + DRAIN_TARGET_S,
                    float(facts.get("undrain_cli_s", 0)) + DRAIN_TARGET_S,
                    _operator_drained,
                )
            )
        if "feed_outage_at" in facts and "feed_restored_at" in facts:
            out.append(
                DrainWindow(
                    feed.EDGE,
                    float(facts["feed_outage_at"]),
                    float(facts["feed_restored_at"]),
                    feed.BOUND_S,
                    feed.CLEAR_BOUND_S,
                    feed.expected_edges,
                )
            )
    return out


def edge_problem(record: dict[str, Any], windows: list[DrainWindow]) -> str | None:
    edges = record.get("edges")
    country = str(record["country"])
    if not isinstance(edges, list) or not edges:
        return f"{country}: no edge list"
    unknown = [e for e in edges if e not in EDGES]
    if unknown:
        return f"{country}: unknown edges {unknown}"
    normal = callers.expected_edges(country)
    begin, end = record["t"] / 1000, (record["t"] + record["ms"]) / 1000
    allowed = [normal]
    for window in windows:
        if window.steady(begin, end):
            allowed = [window.drained(country)]
            break
        if window.overlaps(begin, end):
            allowed = [normal, window.drained(country)]
            break
    if edges not in allowed:
        return f"{country}: got {edges}, want {' or '.join(map(str, allowed))}"
    return None


def figures(records: list[dict[str, Any]], steps: list[Step]) -> list[StepFigures]:
    windows = drain_windows(steps)
    out = []
    for step in steps:
        fig = StepFigures(step)
        mine = [r for r in records if step.start <= r["t"] / 1000 < step.end]
        fig.attempted = len(mine)
        ok = [r for r in mine if r["ok"]]
        fig.failed = fig.attempted - len(ok)
        for r in mine:
            if not r["ok"]:
                fig.errors[str(r["error"])] = fig.errors.get(str(r["error"]), 0) + 1
        times = [float(r["ms"]) for r in mine]
        fig.p50_ms, fig.p99_ms = _percentile(times, 0.5), _percentile(times, 0.99)
        fig.max_ms = max(times) if times else None
        fig.slow = sum(1 for t in times if t > SLOW_MS)
        for r in ok:
            fig.by_region[str(r["region"])] = fig.by_region.get(str(r["region"]), 0) + 1
            problem = edge_problem(r, windows)
            if problem:
                fig.edges_bad.append(problem)
            begin, end = r["t"] / 1000, (r["t"] + r["ms"]) / 1000
            for w in windows:
                if w.steady(begin, end) and w.edge in r["edges"]:
                    fig.lingering[w.edge] = fig.lingering.get(w.edge, 0) + 1
        fig.gap_s = _longest_gap(ok, step)
        out.append(fig)
    return out


def _longest_gap(ok: list[dict[str, Any]], step: Step) -> float:
    """Longest time any one country went without a successful start-up completing."""
    by_country: dict[str, list[float]] = {}
    for r in ok:
        by_country.setdefault(str(r["country"]), []).append((r["t"] + r["ms"]) / 1000)
    gap = 0.0
    for done in by_country.values():
        marks = [step.start, *sorted(done), step.end]
        gap = max(gap, *(b - a for a, b in itertools.pairwise(marks)))
    return round(gap, 2)


def scan_secrets(roots: list[Path], secrets: list[str], skip: Path) -> list[str]:
    """Every collected log file holding a secret or a JWT-shaped string: 'file: what'."""
    found = []
    needles = [s.encode() for s in secrets if s]
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if skip in path.parents or path.suffix in (".cfg", ".conf", ".map", ".yaml"):
                continue
            data = path.read_bytes()
            for needle in needles:
                if needle in data:
                    found.append(f"{path}: a configured secret")
            if JWT_SHAPE.search(data):
                found.append(f"{path}: a JWT")
    return found


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def summary_table(figs: list[StepFigures]) -> str:
    head = (
        "| step | start-ups | failed | p50 ms | p99 ms | max ms | longest gap s | "
        "answered by | edges ok | targets |"
    )
    rows = [head, "|" + " --- |" * 10]
    for f in figs:
        answered = ", ".join(f"{k} {v}" for k, v in sorted(f.by_region.items()))
        verdict = "skipped" if f.step.skipped else ("met" if f.ok else "MISSED")
        rows.append(
            f"| {f.step.name} | {f.attempted} | {f.failed} | {_fmt(f.p50_ms)} | "
            f"{_fmt(f.p99_ms)} | {_fmt(f.max_ms)} | {f.gap_s:.2f} | {answered or '-'} | "
            f"{'yes' if not f.edges_bad else 'NO'} | {verdict} |"
        )
    return "\n".join(rows)


#: facts holding per-region seconds -> (what they time, the bound they are held to)
PROPAGATION_FACTS: dict[str, tuple[str, float | None]] = {
    "drain_seen_s": (f"drain of {DRAIN_EDGE} seen, from the command (no bound)", None),
    "drain_seen_after_cli_s": (f"drain of {DRAIN_EDGE} seen after the CLI", DRAIN_TARGET_S),
    "undrain_seen_s": (f"undrain of {DRAIN_EDGE} seen, from the command (no bound)", None),
    "undrain_seen_after_cli_s": (f"undrain of {DRAIN_EDGE} seen after the CLI", DRAIN_TARGET_S),
    "edge_gone_s": (f"{feed.EDGE} gone after {feed.COMPONENT} major_outage", feed.BOUND_S),
    "edge_back_s": (f"{feed.EDGE} back after {feed.COMPONENT} operational", feed.CLEAR_BOUND_S),
}


def propagation_lines(figs: list[StepFigures]) -> list[str]:
    """One line per timed drain change: the slowest region, each region, the bound."""
    out = []
    for f in figs:
        for key, (what, bound) in PROPAGATION_FACTS.items():
            seen = f.step.facts.get(key)
            if not isinstance(seen, dict):
                continue
            times = [v for v in seen.values() if v is not None]
            slowest = "never (in some region)" if None in seen.values() else f"{max(times):.2f} s"
            each = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in seen.items())
            limit = "" if bound is None else f"; bound {bound:g} s"
            out.append(f"{f.step.name}: {what} by every region in {slowest} ({each}{limit})")
    return out


def details(figs: list[StepFigures]) -> str:
    out = []
    for f in figs:
        out.append(f"### {f.step.name}: {f.step.what}")
        if f.step.skipped:
            out.append(f"Skipped: {f.step.skipped}\n")
            continue
        out.append(
            f"Window {f.step.end - f.step.start:.1f} s (fault undone after "
            f"{f.step.fault_end - f.step.start:.1f} s)."
        )
        for key, value in f.step.facts.items():
            if key not in ("drained_at", "undrained_at", "feed_outage_at", "feed_restored_at"):
                out.append(f"- {key}: {value}")
        if f.errors:
            out.append(f"- failures by error: {f.errors}")
        if f.edges_bad:
            out.append(f"- bad edge lists ({len(f.edges_bad)}), first: {f.edges_bad[:3]}")
        for edge, count in f.lingering.items():
            out.append(f"- start-ups still handed {edge} after its drain's bound: {count}")
        for name, passed in f.checks.items():
            out.append(f"- [{'x' if passed else ' '}] {name}")
        out.append("")
    return "\n".join(out)


def timeline_png(records: list[dict[str, Any]], steps: list[Step], path: Path) -> Path | None:
    """Start-ups per second by answering region, failures, p99 time to token; faults shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not records:
        return None
    t0 = steps[0].start
    seconds = int(max(s.end for s in steps) - t0) + 1
    regions = sorted({str(r["region"]) for r in records if r["ok"]})
    per_region = {name: [0] * seconds for name in regions}
    failures = [0] * seconds
    times: list[list[float]] = [[] for _ in range(seconds)]
    for r in records:
        i = int(r["t"] / 1000 - t0)
        if not 0 <= i < seconds:
            continue
        times[i].append(float(r["ms"]))
        if r["ok"]:
            per_region[str(r["region"])][i] += 1
        else:
            failures[i] += 1
    xs = list(range(seconds))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.stackplot(xs, *[per_region[n] for n in regions], labels=regions, alpha=0.8)
    top.plot(xs, failures, color="red", linewidth=1.5, label="failed")
    top.set_ylabel("start-ups / s")
    top.legend(loc="upper right", fontsize=8)
    p99 = [_percentile(t, 0.99) or float("nan") for t in times]
    bottom.plot(xs, p99, color="black", linewidth=1, label="p99 time to token")
    bottom.axhline(
        SLOW_MS,
        color="red",
        linestyle="--",
        linewidth=0.8,
        label=f"attempt timeout + 100 ms ({SLOW_MS} ms)",
    )
    bottom.set_yscale("log")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("seconds since the drill started")
    bottom.legend(loc="upper right", fontsize=8)
    for n, step in enumerate(s for s in steps if s.name != "baseline" and not s.skipped):
        for ax in (top, bottom):
            ax.axvspan(step.start - t0, step.fault_end - t0, color="orange", alpha=0.18)
        top.annotate(
            step.name,
            (step.start - t0, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            va="top",
            rotation=0,
            xytext=(2, -2 - 10 * (n % 2)),
            textcoords="offset points",
        )
    fig.suptitle("tokensvc three-region drill")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class Verdict:
    figs: list[StepFigures]
    leaks: list[str]
    png: Path | None
    markdown: Path

    @property
    def ok(self) -> bool:
        return not self.leaks and all(f.ok for f in self.figs)


def write(
    results: Path,
    records: list[dict[str, Any]],
    steps: list[Step],
    scan_roots: list[Path],
    secrets: list[str],
    skip: Path,
    header: str = "",
) -> Verdict:
    results.mkdir(parents=True, exist_ok=True)
    figs = figures(records, steps)
    leaks = scan_secrets(scan_roots, secrets, skip)
    png = timeline_png(records, steps, results / "timeline.png")
    md = results / "report.md"
    verdict = Verdict(figs, leaks, png, md)
    lines = [
        "# tokensvc drill report",
        "",
        header,
        "",
        f"Result: **{'every target met' if verdict.ok else 'TARGETS MISSED'}**",
        "",
        summary_table(figs),
        "",
        f"Secret scan of {len(scan_roots)} log locations: "
        f"{'clean' if not leaks else 'LEAKS: ' + '; '.join(leaks[:10])}",
        "",
    ]
    if png:
        lines += [f"![timeline]({png.name})", ""]
    else:
        lines += ["(no timeline: matplotlib missing; `pip install -e '.[drill]'`)", ""]
    lines += ["## Drain propagation", "", *(f"- {line}" for line in propagation_lines(figs)), ""]
    lines += ["## Steps", "", details(figs)]
    md.write_text("\n".join(lines))
    (results / "steps.json").write_text(
        json.dumps(
            [
                {
                    "name": f.step.name,
                    "start": f.step.start,
                    "fault_end": f.step.fault_end,
                    "end": f.step.end,
                    "facts": f.step.facts,
                    "checks": f.checks,
                    "attempted": f.attempted,
                    "failed": f.failed,
                    "p50_ms": f.p50_ms,
                    "p99_ms": f.p99_ms,
                    "max_ms": f.max_ms,
                    "gap_s": f.gap_s,
                    "skipped": f.step.skipped,
                }
                for f in figs
            ],
            indent=2,
            default=str,
        )
    )
    return verdict
