"""The scripted run: a baseline, then each fault with a pause to recover, every step timed.

    region_loss      kill -9 every process of a region (tokensvc and its Redis), bring it back
    redis_failover   kill -9 a region's Redis primary; Sentinel promotes the replica
    redis_partition  SIGSTOP all of a region's Redis for 20 s, then SIGCONT
    drain            `tokensvc edges drain` (every region via the ops config), then undrain
    broken_config    a comment-only and a wrong-typed client file pushed to one region
    rolling_restart  SIGTERM each process of a region in turn (shutdown delay = preStop)
    status_feed      the hook for the status-feed step (``STATUS_FEED`` below)

Each step returns a ``Step`` (window, facts measured, checks passed or failed); ``report.py``
adds what the start-up records show for that window.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drill import callers
from drill.procs import http_get, wait_until
from drill.regions import RELOAD_INTERVAL, Process, Region
from drill.topology import Topology

DRAIN_EDGE = "ashburn"
DRAIN_PROBE_COUNTRY = "US"  # ashburn is in US's list
DRAIN_TARGET_S = 2.0


@dataclass
class Step:
    name: str
    what: str
    start: float = 0.0  # epoch seconds
    fault_end: float = 0.0  # when the fault was undone (recovery began)
    end: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    skipped: str = ""


#: Set by the status-feed work: a callable (topology, step) -> None that marks an edge
#: `major_outage` on a fake Statuspage, waits, restores it, and fills ``step.checks``.
STATUS_FEED: Callable[[Topology, Step], None] | None = None


def _wait_region_up(topo: Topology, region: Region) -> float:
    region.wait_ready()
    return wait_until(
        lambda: all(topo.haproxy.server_up(region.name, p.name) for p in region.processes),
        20,
        f"{region.name} UP in HAProxy",
        step=0.1,
    )


def region_loss(topo: Topology, step: Step, region_name: str, down_s: float) -> None:
    region = topo.region(region_name)
    for process in region.processes:
        if process.child is not None:
            process.child.kill9()
    for node in region.redis.nodes:
        node.child.kill9()
    step.facts["killed"] = f"{region_name}: 2 tokensvc process groups, 5 valkey-server"
    time.sleep(down_s)
    step.fault_end = time.time()
    started = time.monotonic()
    region.redis.primary.start()
    region.redis.replica.start()
    for sentinel in region.redis.sentinels:
        sentinel.start()
    region.start_services()
    _wait_region_up(topo, region)
    step.facts["back_in_s"] = round(time.monotonic() - started, 2)


def redis_failover(topo: Topology, step: Step, region_name: str) -> None:
    group = topo.region(region_name).redis
    old = group.current_primary()
    old.child.kill9()
    took = group.wait_failover(old.port)
    step.facts["failover_s"] = round(took, 2)
    step.checks["sentinel promoted the replica"] = True
    step.fault_end = time.time()
    old.start()  # comes back as a primary on its own; the sentinels demote it to a replica
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: old.role() == "slave", 15, "old primary demoted", step=0.2)
    step.facts["old_primary_role"] = old.role()


def redis_partition(topo: Topology, step: Step, region_name: str, pause_s: float) -> None:
    group = topo.region(region_name).redis
    for node in group.nodes:
        node.child.pause()
    time.sleep(pause_s)
    for node in group.nodes:
        node.child.resume()
    step.fault_end = time.time()
    step.facts["paused_s"] = pause_s


def _edges_seen(topo: Topology, region: Region) -> list[str] | None:
    """The list one of ``region``'s processes answers now (alternating processes)."""
    lists = []
    for process in region.processes:
        status, body = http_get(
            f"{process.url}/v1/clients/{callers.CLIENT}/edges?country={DRAIN_PROBE_COUNTRY}",
            timeout=0.5,
        )
        if status != 200:
            return None
        lists.append(json.loads(body)["edges"])
    return lists[0] if all(x == lists[0] for x in lists) else None


def _propagation(topo: Topology, drained: bool, within: float) -> dict[str, float | None]:
    """Seconds until every process of each region hands out the list (3 polls in a row)."""
    want = callers.expected_edges(
        DRAIN_PROBE_COUNTRY, frozenset({DRAIN_EDGE}) if drained else frozenset()
    )
    started = time.monotonic()
    seen: dict[str, float | None] = {r.name: None for r in topo.regions}
    streak: dict[str, tuple[int, float]] = {r.name: (0, 0.0) for r in topo.regions}
    while time.monotonic() - started < within + 3 and None in seen.values():
        for region in topo.regions:
            if seen[region.name] is not None:
                continue
            now = time.monotonic() - started
            with contextlib.suppress(OSError, ValueError, KeyError):
                if _edges_seen(topo, region) == want:
                    count, first = streak[region.name]
                    streak[region.name] = (count + 1, first if count else now)
                    if count + 1 >= 3:
                        seen[region.name] = round(streak[region.name][1], 3)
                    continue
            streak[region.name] = (0, 0.0)
        time.sleep(0.05)
    return seen


def drain(topo: Topology, step: Step, hold_s: float) -> None:
    # Times count from when the operator runs the command (the CLI's own start-up included).
    step.facts["drained_at"] = time.time()
    issued = time.monotonic()
    result = topo.ops("edges", "drain", DRAIN_EDGE, "--for", "10m", "--reason", "drill")
    cli_s = time.monotonic() - issued
    step.facts["drain_cli_s"] = round(cli_s, 2)
    seen = _propagation(topo, True, DRAIN_TARGET_S)
    step.facts["drain_seen_s"] = {
        k: None if v is None else round(v + cli_s, 3) for k, v in seen.items()
    }
    step.checks["ops CLI drained every region"] = result.returncode == 0
    step.checks[f"drain seen by every region within {DRAIN_TARGET_S:g} s"] = all(
        v is not None and v + cli_s <= DRAIN_TARGET_S for v in seen.values()
    )
    time.sleep(hold_s)
    step.fault_end = step.facts["undrained_at"] = time.time()
    issued = time.monotonic()
    result = topo.ops("edges", "undrain", DRAIN_EDGE)
    cli_s = time.monotonic() - issued
    back = _propagation(topo, False, DRAIN_TARGET_S)
    step.facts["undrain_seen_s"] = {
        k: None if v is None else round(v + cli_s, 3) for k, v in back.items()
    }
    step.checks["ops CLI undrained every region"] = result.returncode == 0
    step.checks[f"undrain seen by every region within {DRAIN_TARGET_S:g} s"] = all(
        v is not None and v + cli_s <= DRAIN_TARGET_S for v in back.values()
    )


BROKEN_CONFIGS = {
    "comment-only": "# webphone: emptied by a bad merge\n# (nothing but comments)\n",
    "wrong-typed": (
        "twilio: [not, a, mapping]\ntoken: {ttl_seconds: one hour}\n"
        "auth: {type: jwt}\nedges: {default: ashburn}\ndev: 'no'\n"
    ),
}


class _Watch(threading.Thread):
    """Polls a region's processes during the step: every answer must be the good config."""

    def __init__(self, region: Region) -> None:
        super().__init__(daemon=True)
        self.region = region
        self.halt = threading.Event()
        self.polls = 0
        self.bad: list[str] = []
        self.want = callers.expected_edges("IE")

    def run(self) -> None:
        while not self.halt.is_set():
            for process in self.region.processes:
                with contextlib.suppress(OSError):
                    status, body = http_get(
                        f"{process.url}/v1/clients/{callers.CLIENT}/edges?country=IE", timeout=1.0
                    )
                    self.polls += 1
                    if status != 200 or json.loads(body).get("edges") != self.want:
                        self.bad.append(f"{process.name}: {status} {body[:120]!r}")
            self.halt.wait(0.2)


def _rejections(region: Region) -> int:
    count = 0
    for process in region.processes:
        if process.child is not None and process.child.log.exists():
            count += process.child.log.read_text(errors="replace").count("reload rejected")
    return count


def _rejected_by(region: Region, count: int) -> bool:
    return _rejections(region) >= count


def _out_of_lb(topo: Topology, region: Region, process: Process) -> bool:
    return not topo.haproxy.server_up(region.name, process.name)


def broken_config(topo: Topology, step: Step, region_name: str) -> None:
    region = topo.region(region_name)
    good = (region.config_dir / f"{callers.CLIENT}.yaml").read_text()
    watch = _Watch(region)
    watch.start()
    try:
        for case, text in BROKEN_CONFIGS.items():
            before = _rejections(region)
            callers.write_atomic(region.config_dir / f"{callers.CLIENT}.yaml", text)
            try:
                workers = 2 * len(region.processes)
                took = wait_until(
                    functools.partial(_rejected_by, region, before + workers),
                    RELOAD_INTERVAL * 6,
                    f"{case} rejected by every worker",
                    step=0.25,
                )
                step.facts[f"{case}_rejected_after_s"] = round(took, 2)
                step.checks[f"{case} file refused by every worker"] = True
            except TimeoutError:
                step.checks[f"{case} file refused by every worker"] = False
            time.sleep(RELOAD_INTERVAL * 2)  # serve with the broken file in place a while
    finally:
        callers.write_atomic(region.config_dir / f"{callers.CLIENT}.yaml", good)
        step.fault_end = time.time()
        time.sleep(RELOAD_INTERVAL * 2)
        watch.halt.set()
        watch.join(5)
    step.facts["config_polls"] = watch.polls
    step.facts["config_bad_answers"] = watch.bad[:5]
    step.checks["broken config never served"] = not watch.bad and watch.polls > 0


def rolling_restart(topo: Topology, step: Step, region_name: str) -> None:
    region = topo.region(region_name)
    timings = []
    for process in region.processes:
        started = time.monotonic()
        if process.child is not None:
            process.child.signal(15)  # SIGTERM: /readyz 503 at once, listeners kept for the delay
            wait_until(
                functools.partial(_out_of_lb, topo, region, process),
                10,
                f"HAProxy takes {process.name} out",
                step=0.05,
            )
            out_s = time.monotonic() - started
            exit_code = process.child.wait(30)
            step.checks[f"{process.name} exited 0 after SIGTERM"] = exit_code == 0
        else:
            out_s = 0.0
        process.start()
        process.wait_ready()
        wait_until(
            functools.partial(topo.haproxy.server_up, region.name, process.name),
            20,
            f"{process.name} back in HAProxy",
            step=0.1,
        )
        timings.append(
            {
                "process": process.name,
                "out_of_lb_s": round(out_s, 2),
                "cycle_s": round(time.monotonic() - started, 2),
            }
        )
    step.fault_end = time.time()
    step.facts["restarts"] = timings


def status_feed(topo: Topology, step: Step) -> None:
    if STATUS_FEED is None:
        step.skipped = "the status-feed feature is not on this branch (scenario.STATUS_FEED)"
        step.fault_end = time.time()
        return
    STATUS_FEED(topo, step)


Action = Callable[[Topology, Step], None]


def _act(action: Action) -> Action:
    return action


@dataclass
class Plan:
    baseline_s: float
    recover_s: float
    steps: list[tuple[str, str, Action]]


def full_plan() -> Plan:
    return Plan(
        baseline_s=10,
        recover_s=8,
        steps=[
            (
                "region_loss",
                "kill -9 every process of us-east, back after 10 s",
                _act(lambda t, s: region_loss(t, s, "us-east", 10)),
            ),
            (
                "redis_failover",
                "kill -9 eu-west's Redis primary",
                _act(lambda t, s: redis_failover(t, s, "eu-west")),
            ),
            (
                "redis_partition",
                "SIGSTOP ap-southeast's Redis for 20 s",
                _act(lambda t, s: redis_partition(t, s, "ap-southeast", 20)),
            ),
            (
                "drain",
                f"drain {DRAIN_EDGE} everywhere (ops CLI), undrain after 8 s",
                _act(lambda t, s: drain(t, s, 8)),
            ),
            (
                "broken_config",
                "comment-only, then wrong-typed client file in eu-west",
                _act(lambda t, s: broken_config(t, s, "eu-west")),
            ),
            (
                "rolling_restart",
                "SIGTERM each ap-southeast process in turn",
                _act(lambda t, s: rolling_restart(t, s, "ap-southeast")),
            ),
            ("status_feed", "fake Statuspage marks an edge major_outage", status_feed),
        ],
    )


def short_plan() -> Plan:
    return Plan(
        baseline_s=4,
        recover_s=5,
        steps=[
            (
                "region_loss",
                "kill -9 every process of us-east, back after 6 s",
                _act(lambda t, s: region_loss(t, s, "us-east", 6)),
            ),
            (
                "redis_failover",
                "kill -9 eu-west's Redis primary",
                _act(lambda t, s: redis_failover(t, s, "eu-west")),
            ),
            (
                "drain",
                f"drain {DRAIN_EDGE} everywhere (ops CLI), undrain after 4 s",
                _act(lambda t, s: drain(t, s, 4)),
            ),
        ],
    )


def run(topo: Topology, plan: Plan, log: Callable[[str], None] = print) -> list[Step]:
    steps = [Step("baseline", "no fault", start=time.time())]
    time.sleep(plan.baseline_s)
    steps[0].fault_end = steps[0].end = time.time()
    for name, what, action in plan.steps:
        step = Step(name, what, start=time.time())
        log(f"drill: step {name}: {what}")
        try:
            action(topo, step)
        except Exception as exc:  # noqa: BLE001 - a step that breaks is a failed step, not a crash
            step.checks[f"step ran ({type(exc).__name__}: {exc})"] = False
            step.fault_end = step.fault_end or time.time()
        if not step.skipped:
            time.sleep(plan.recover_s)
        step.end = time.time()
        steps.append(step)
    return steps
