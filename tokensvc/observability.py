"""Logging (one JSON line per request, no secrets) and Prometheus metrics.

Logs go to stdout: JSON lines when stdout is not a TTY (or ``TOKENSVC_LOG_FORMAT=json``),
``key=value`` text on a TTY. Structured fields are passed with ``extra={...}``; only names in
``LOG_FIELDS`` are emitted, so an accidental ``extra={"token": ...}`` cannot leak. Identities
appear only as a keyed, non-reversible fingerprint.

In text mode every field (and the message) has its control characters escaped, so a
``%0a`` in a path cannot write a forged second line.

Metrics use prometheus-client for their definitions and exposition, but the hot path never
touches it: ``Metrics.child`` hands out plain per-worker cells (a float, or bucket counts and
a sum for a histogram) and ``Metrics.publish`` adds what they gathered to the prometheus-client
metrics. Publishing runs every 0.5 s (the app's housekeeping), before every collection of the
registry and at shutdown. With several Hypercorn workers the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; a scrape reaches one worker, which
publishes its own cells and then sums every worker's files, so another worker's counts are at
most 0.5 s old. Why files still: a scrape must see every worker and the workers share nothing
else; writing them twice a second instead of on every increment keeps their cost off the
request (prometheus-client's multiprocess value writes an mmap'd file per increment, behind a
lock). No ``_created`` series are exported. Process metrics (``process_*``: resident memory,
CPU seconds, open fds, start time) are exported per worker: with one process by
prometheus-client's ``ProcessCollector``, with several as gauges carrying a ``pid`` label.
``tokensvc_redis_up`` exists only when shared state is in Redis (``Telemetry(redis=True)``):
without Redis it is absent, so an alert on ``== 0`` never fires for a memory-only pod.
Label values are bounded: configured client ids (else ``unknown``), ISO country codes (else
``unknown``), edge names from the catalogue, fixed outcome words.

``Telemetry`` is the only writer of metrics. Per request, the request context fills one
``RequestFacts`` (a slotted record: what the access log and the request metrics need) and
hands it to ``Telemetry.request`` once; the other methods are the hooks for events that are
not requests (config reloads, JWKS refreshes, Redis operations, state gauges, Twilio
verification rounds).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import sys
import time
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tokensvc import __version__
from tokensvc.settings import prometheus_multiproc_dir

LOG_FIELDS = (
    "request_id",
    "method",
    "path",
    "client",
    "status",
    "code",
    "latency_ms",
    "region",
    "identity_fp",
    "country",
    "edge",
    "outcome",
    "reason",
    "error",
    "backend",
    "problems",
    "problem",
    "clients",
    "result",
    "worker",
    "jwks_url",
    "bind",
    "workers",
    "version",
    "signal",
    "warning",
    "count",
    "pid",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, separators=(",", ":"), default=str)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}"


def escape_text(value: object) -> str:
    """``value`` as text with control characters (and the backslash) escaped: one line."""
    return _CONTROL.sub(_escape_control, str(value))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            time.strftime("%H:%M:%S", time.localtime(record.created)),
            f"{record.levelname:<7}",
            escape_text(record.getMessage()),
        ]
        for name in LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                parts.append(f"{name}={escape_text(value)}")
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(f"exception={record.exc_info[0].__name__}")
        return " ".join(parts)


_json_lines = False


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    global _json_lines
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    _json_lines = use_json
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's own access log would duplicate ours (and log raw paths); keep its errors.
    logging.getLogger("hypercorn.access").disabled = True
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, root.level))


class AccessLog:
    """The one line per request, on the hot path.

    In JSON mode the line is serialized directly and written to stdout's buffer: no LogRecord,
    no handler lock, no flush (a write system call) per request. ``flush()`` runs every half
    second from the app's lifespan and at shutdown, and any other log line flushes the same
    buffer, so lines stay in order. In text mode (a TTY) it goes through ``logging``.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.pid = os.getpid()
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
        self._second = -1
        self._second_text = ""
        self._fixed = (
            f'"level":"info","logger":{encode_basestring_ascii(logger.name)},'
            f'"msg":"request","pid":{self.pid},'
        )

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # strftime once a second, not once a request
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def write(self, fields: dict[str, Any]) -> None:
        """A line of ``fields`` (``None`` values left out), after the fixed ones."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if not _json_lines:
            self.logger.info("request", extra={**fields, "pid": self.pid})
            return
        line = {
            "ts": self._timestamp(time.time()),
            "level": "info",
            "logger": self.logger.name,
            "msg": "request",
            "pid": self.pid,
        }
        for key, value in fields.items():
            if value is not None:
                line[key] = value
        # stdout closed or broken: never fail a request for a log line
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.write(self._encode(line) + "\n")

    def request(self, facts: RequestFacts, elapsed: float, region: str) -> None:
        """The request's line: the fields and order of ``write(request_fields(...))``, written
        as one string (every string field escaped as ``json.dumps`` does, no dict built)."""
        if not _json_lines or not self.logger.isEnabledFor(logging.INFO):
            self.write(request_fields(facts, elapsed, region))
            return
        esc = encode_basestring_ascii
        line = (
            f'{{"ts":"{self._timestamp(time.time())}",{self._fixed}'
            f'"request_id":{esc(facts.request_id)},"method":{esc(facts.method)},'
            f'"path":{esc(facts.path[:200])},"client":{esc(facts.client)},'
            f'"status":{facts.status:d}'
        )
        if facts.code is not None:
            line += ',"code":' + esc(facts.code)
        if facts.reason is not None:
            line += ',"reason":' + esc(facts.reason)
        line += f',"latency_ms":{round(elapsed * 1000, 3)!r},"region":{esc(region)}'
        if facts.identity_fp is not None:
            line += ',"identity_fp":' + esc(facts.identity_fp)
        if facts.edge is not None:
            line += ',"edge":' + esc(facts.edge)
        line += "}\n"
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.write(line)

    @staticmethod
    def flush() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()


class Fingerprinter:
    """Keyed, non-reversible identity fingerprints for logs (keyed BLAKE2b, 16 hex chars).

    The key comes from ``TOKENSVC_FINGERPRINT_KEY`` when set (stable across pods, so an
    operator can correlate), else a random per-process key.
    """

    def __init__(self, key: bytes | None = None) -> None:
        # BLAKE2b takes a key of at most 64 bytes; a longer one is hashed down to 64.
        raw = key or secrets.token_bytes(32)
        self._key = raw if len(raw) <= 64 else hashlib.sha512(raw).digest()

    def __call__(self, client: str, identity: str) -> str:
        msg = f"{client}\x00{identity}".encode("utf-8", "replace")
        return hashlib.blake2b(msg, key=self._key, digest_size=8).hexdigest()

    def __repr__(self) -> str:
        return "Fingerprinter(<SECRET>)"


#: The values of the Twilio check gauges (tokensvc.verifier's CheckStatus and ClientStatus).
TWILIO_CHECK_RESULTS = ("ok", "rejected", "missing", "mismatch", "unknown")
TWILIO_CLIENT_STATUSES = ("ok", "rejected", "missing", "unknown")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
EDGE_RTT_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.7, 1.0, 2.0)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: nothing reads them, they double the output


class CounterCell:
    """One labelled counter, counted in a plain float until ``Metrics.publish``."""

    __slots__ = ("pending", "target")

    def __init__(self, target: Any) -> None:
        self.target = target
        self.pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def publish(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self.target.inc(amount)


class HistogramCell:
    """One labelled histogram: per-bucket counts and a sum, kept until ``Metrics.publish``.

    Publishing adds them to prometheus-client's child through its per-bucket values (the
    ``_buckets``/``_sum`` attributes ``Histogram.observe`` itself updates; a test pins that
    the exported series equal those of ``observe`` for the same observations)."""

    __slots__ = ("bounds", "counts", "sum", "target")

    def __init__(self, target: Any) -> None:
        self.target = target
        self.bounds: list[float] = list(target._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount

    def publish(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        total, self.sum = self.sum, 0.0
        self.counts = [0] * len(counts)
        self.target._sum.inc(total)
        for value, count in zip(self.target._buckets, counts, strict=True):
            if count:
                value.inc(count)


class _PublishFirst(Collector):
    """Registered first: every collection of the registry publishes the cells before the
    metrics after it are read (so ``registry.get_sample_value`` sees every count)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self.metrics.publish()
        return ()

    def describe(self) -> Iterable[Metric]:
        return ()


class _WorkerProcess:
    """Process metrics of this worker as ``pid``-labelled multiprocess gauges (with several
    workers, where one process's ``ProcessCollector`` would show only the scraped worker)."""

    NAMES = (
        ("process_resident_memory_bytes", "Resident memory size in bytes."),
        ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
        ("process_open_fds", "Number of open file descriptors."),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.source = ProcessCollector(registry=None)
        self.gauges = {
            name: Gauge(name, doc, registry=registry, multiprocess_mode="all")
            for name, doc in self.NAMES
        }

    def update(self) -> None:
        for family in self.source.collect():
            for sample in family.samples:
                gauge = self.gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)


def _gauge(
    r: CollectorRegistry,
    name: str,
    doc: str,
    labels: list[str] | None = None,
    mode: Literal["livemax", "livemin", "livemostrecent"] = "livemax",
) -> Gauge:
    """A gauge on ``r``; across workers (multiprocess mode) the live maximum unless ``mode``
    says otherwise."""
    return Gauge(name, doc, labels or [], registry=r, multiprocess_mode=mode)


def _counter(r: CollectorRegistry, name: str, doc: str, labels: list[str] | None = None) -> Counter:
    return Counter(name, doc, labels or [], registry=r)


class FeedMetrics:
    """The status feed's metrics (tokensvc.statusfeed); label values are bounded by its
    config (mapped components, the edge catalogue, the rule and action enums)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.up = _gauge(
            r,
            "tokensvc_status_feed_up",
            "1 when this pod's last poll of the status feed succeeded (poller pods only)",
        )
        self.poller = _gauge(
            r, "tokensvc_status_feed_poller", "1 when this process holds its region's poller lock"
        )
        self.last_good = _gauge(
            r,
            "tokensvc_status_feed_last_good_poll_timestamp",
            "Unix time of the last good poll of the status feed",
        )
        self.max_stale = _gauge(
            r,
            "tokensvc_status_feed_max_stale_seconds",
            "The feed config's max_stale_seconds (for the stale alert)",
        )
        self.component = _gauge(
            r,
            "tokensvc_status_feed_component_status",
            "1 for the status a mapped component last reported",
            ["component", "status"],
        )
        self.auto_drained = _gauge(
            r,
            "tokensvc_status_feed_auto_drained",
            "1 while the status feed holds a lease on an edge",
            ["edge"],
        )
        self.decisions = _counter(
            r,
            "tokensvc_status_feed_decisions",
            "Status-feed decisions by action and the rule that made them (skip, demote and "
            "expire are suppressions by a safety rule)",
            ["action", "rule"],
        )


class Metrics:
    """Every metric tokensvc exports, on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._cells: list[CounterCell | HistogramCell] = []
        r = self.registry
        r.register(_PublishFirst(self))
        self.requests = _counter(
            r,
            "tokensvc_token_requests",
            "Token requests by outcome",
            ["client", "outcome", "status"],
        )
        self.minted = _counter(
            r, "tokensvc_tokens_minted", "Tokens minted", ["client", "home_region"]
        )
        self.latency = Histogram(
            "tokensvc_request_duration_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_edge = _counter(
            r,
            "tokensvc_edges_returned",
            "Edge lists returned, by first edge",
            ["client", "country", "first_edge"],
        )
        self.drained = _gauge(r, "tokensvc_drained_edges", "1 when an edge is drained", ["edge"])
        self.rate_limited = _counter(
            r, "tokensvc_rate_limited", "Requests refused by a rate limit", ["client", "scope"]
        )
        self.rate_local = _counter(
            r,
            "tokensvc_rate_limit_local",
            "Rate-limit checks counted locally (shared store unavailable)",
        )
        #: created by ``enable_redis`` only: absent without Redis (see the module docstring)
        self.redis_up: Gauge | None = None
        self.redis_failovers = _counter(r, "tokensvc_redis_failovers", "Redis primary changes seen")
        self.redis_latency = Histogram(
            "tokensvc_redis_operation_seconds",
            "Redis operation latency",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = _counter(
            r, "tokensvc_config_reloads", "Config reloads by result", ["result"]
        )
        self.auth_failures = _counter(
            r, "tokensvc_auth_failures", "Caller-auth failures by reason", ["client", "reason"]
        )
        self.jwks_refreshes = _counter(
            r, "tokensvc_jwks_refreshes", "JWKS refreshes by result", ["result"]
        )
        # Twilio credential checks (tokensvc.verifier): state sets, 1 for the current value
        # and 0 for the others, so a change never leaves two 1s and a key or client that left
        # the config drops to all zeros. "livemostrecent": every worker runs its own checks;
        # the latest verdict wins.
        self.twilio_check = _gauge(
            r,
            "tokensvc_twilio_check",
            "Twilio credential check result (1 = current) per client, key and check",
            ["client", "key_sid", "check", "result"],
            mode="livemostrecent",
        )
        self.twilio_client = _gauge(
            r,
            "tokensvc_twilio_client_status",
            "Twilio credential status per client (1 = current): ok|rejected|missing|unknown",
            ["client", "status"],
            mode="livemostrecent",
        )
        self.twilio_rounds = _counter(
            r, "tokensvc_twilio_verification_rounds", "Twilio verification rounds completed"
        )
        self.edge_reports = _counter(
            r,
            "tokensvc_edge_reports",
            "Edge outcomes from edge reports (connected | failed)",
            ["client", "country", "edge", "outcome"],
        )
        self.edge_report_errors = _counter(
            r,
            "tokensvc_edge_report_errors",
            "Error codes in edge reports, by kind (token | connection | media | other)",
            ["client", "country", "edge", "kind"],
        )
        self.edge_rtt = Histogram(
            "tokensvc_edge_preflight_rtt_seconds",
            "Preflight round-trip times reported per edge",
            ["client", "country", "edge"],
            buckets=EDGE_RTT_BUCKETS,
            registry=r,
        )
        self.build = _gauge(r, "tokensvc_build_info", "Build information", ["version", "region"])
        self.feed = FeedMetrics(r)
        self._process: _WorkerProcess | None = None
        if prometheus_multiproc_dir():
            self._process = _WorkerProcess(r)
        elif registry is None:
            ProcessCollector(registry=r)

    def enable_redis(self) -> Gauge:
        """Create ``tokensvc_redis_up`` (shared state is in Redis); idempotent."""
        if self.redis_up is None:
            self.redis_up = _gauge(
                self.registry, "tokensvc_redis_up", "1 when shared state is healthy", mode="livemin"
            )
        return self.redis_up

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)`` for the hot path: for a counter or a histogram a cell
        that counts in plain numbers until ``publish``; for a gauge the child itself. Label
        values are bounded (see the module docstring), so this map is too."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            target = metric.labels(*values) if values else metric
            if isinstance(metric, Counter):
                found = CounterCell(target)
                self._cells.append(found)
            elif isinstance(metric, Histogram):
                found = HistogramCell(target)
                self._cells.append(found)
            else:
                found = target
            self._children[key] = found
        return found

    def publish(self) -> None:
        """Hand every cell's counts to prometheus-client (and refresh the process gauges)."""
        for cell in self._cells:
            cell.publish()
        if self._process is not None:
            self._process.update()

    def set_build(self, region: str) -> None:
        self.build.labels(__version__, region).set(1)

    def render(self) -> tuple[bytes, str]:
        if prometheus_multiproc_dir():
            self.publish()
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """The process-wide metrics (prometheus-client's multiprocess files are per process)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


@dataclass(slots=True)
class RequestFacts:
    """What one request contributes to its access-log line and to the request metrics.

    Created by the request context, filled along the one path a request takes (the token
    endpoint names the client, ``issue`` adds the identity fingerprint and the edge, errors
    their code and reason), read once by ``Telemetry.request``.
    """

    request_id: str
    method: str
    path: str
    route: str
    status: int = 500
    client: str = "unknown"
    code: str | None = None
    reason: str | None = None  # why the caller was not authenticated (a bounded word)
    limited: str | None = None  # the rate-limit scope that refused it: "ip" | "identity"
    local_rate_checks: int = 0  # rate-limit checks counted locally (store unavailable)
    identity_fp: str | None = None
    home_region: str | None = None  # set once a token is minted
    country: str | None = None
    edge: str | None = None  # the first edge handed out
    response_headers: dict[str, str] | None = None  # e.g. CORS, added to any answer


def request_fields(facts: RequestFacts, elapsed: float, region: str) -> dict[str, Any]:
    """The access-log fields of one request, in their order (``None`` ones are left out)."""
    return {
        "request_id": facts.request_id,
        "method": facts.method,
        "path": facts.path[:200],
        "client": facts.client,
        "status": facts.status,
        "code": facts.code,
        "reason": facts.reason,
        "latency_ms": round(elapsed * 1000, 3),
        "region": region,
        "identity_fp": facts.identity_fp,
        "edge": facts.edge,
    }


class Telemetry:
    """The one place metrics are written (and the request's access-log line).

    ``redis`` says whether shared state lives in Redis: only then is ``tokensvc_redis_up``
    exported."""

    def __init__(
        self, metrics: Metrics, access_log: AccessLog, region: str, *, redis: bool = True
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.region = region
        self.redis = redis
        if redis:
            metrics.enable_redis()
        self._failovers_reported = 0
        self._twilio_checks: set[tuple[str, str, str]] = set()
        self._twilio_clients: set[str] = set()

    def request(self, facts: RequestFacts, elapsed: float) -> None:
        """Called once per request (probes excepted), after the answer was sent."""
        m = self.metrics
        client = facts.client
        m.child(m.latency, facts.route).observe(elapsed)
        if facts.route == "token" and facts.method == "POST":
            outcome = "ok" if facts.status == 200 else (facts.code or "error")
            m.child(m.requests, client, outcome, str(facts.status)).inc()
        if facts.local_rate_checks:
            m.child(m.rate_local).inc(facts.local_rate_checks)
        if facts.limited is not None:
            m.child(m.rate_limited, client, facts.limited).inc()
        if facts.reason is not None:
            m.child(m.auth_failures, client, facts.reason).inc()
        if facts.home_region is not None and facts.edge is not None:
            m.child(m.minted, client, facts.home_region).inc()
            m.child(m.first_edge, client, facts.country or "unknown", facts.edge).inc()
        self.access_log.request(facts, elapsed, self.region)

    def publish(self) -> None:
        """Publish this worker's counts (the housekeeping timer, and at shutdown)."""
        self.metrics.publish()

    def build(self) -> None:
        self.metrics.set_build(self.region)

    def config_reload(self, result: str) -> None:
        self.metrics.child(self.metrics.reloads, result).inc()

    def jwks_refresh(self, result: str) -> None:
        self.metrics.child(self.metrics.jwks_refreshes, result).inc()

    def edge_report(
        self,
        client: str,
        country: str | None,
        outcomes: Collection[tuple[str, bool]],
        error: tuple[str, str] | None,
        rtt: tuple[str, float] | None,
    ) -> None:
        """One accepted edge report (tokensvc.reports): edges from the catalogue, error kinds
        from a fixed set, the country from the trusted header; rtt in milliseconds."""
        m, where = self.metrics, country or "unknown"
        for edge, ok in outcomes:
            m.child(m.edge_reports, client, where, edge, "connected" if ok else "failed").inc()
        if error is not None:
            m.child(m.edge_report_errors, client, where, *error).inc()
        if rtt is not None:
            m.child(m.edge_rtt, client, where, rtt[0]).observe(rtt[1] / 1000)

    def store_operation(self, op: str, seconds: float, outcome: str) -> None:
        self.metrics.child(self.metrics.redis_latency, op).observe(seconds)

    def status_feed(
        self,
        *,
        poller: bool,
        up: bool | None,
        last_good_at: float | None,
        max_stale: float,
        statuses: Mapping[str, str],
        decisions: Iterable[tuple[str, str]],
        feed_drained: Collection[str],
        edges: Collection[str],
        all_statuses: Collection[str],
    ) -> None:
        """After each status-feed tick: ``up`` None when this pod is not the poller."""
        m, f = self.metrics, self.metrics.feed
        f.poller.set(1 if poller else 0)
        f.max_stale.set(max_stale)
        if up is not None:
            f.up.set(1 if up else 0)
        if last_good_at is not None:
            f.last_good.set(last_good_at)
        for component, current in statuses.items():
            for status in all_statuses:
                m.child(f.component, component, status).set(1 if status == current else 0)
        for action, rule in decisions:
            m.child(f.decisions, action, rule).inc()
        for edge in edges:
            m.child(f.auto_drained, edge).set(1 if edge in feed_drained else 0)

    def state(
        self,
        *,
        degraded: bool,
        failovers_seen: int,
        drained: Collection[str],
        edges: Collection[str],
    ) -> None:
        """Copy shared-state health into gauges (periodically and on scrape)."""
        m = self.metrics
        if self.redis and m.redis_up is not None:
            m.redis_up.set(0 if degraded else 1)
        if failovers_seen > self._failovers_reported:
            m.redis_failovers.inc(failovers_seen - self._failovers_reported)
            self._failovers_reported = failovers_seen
        for edge in edges:
            m.drained.labels(edge).set(1 if edge in drained else 0)

    def twilio_round(
        self, statuses: Mapping[str, str], checks: Collection[tuple[str, str, str, str]]
    ) -> None:
        """One verification round: ``statuses`` is client -> ok|rejected|missing|unknown,
        ``checks`` one ``(client, key SID, check, result)`` per check made. Series of keys,
        checks and clients no longer reported are set to 0 (never left at their last 1)."""
        m = self.metrics
        current = {(c, k, n): result for c, k, n, result in checks}
        for labels in self._twilio_checks - current.keys():
            for result in TWILIO_CHECK_RESULTS:
                m.child(m.twilio_check, *labels, result).set(0)
        for labels, value in current.items():
            for result in TWILIO_CHECK_RESULTS:
                m.child(m.twilio_check, *labels, result).set(1 if result == value else 0)
        for client in self._twilio_clients | statuses.keys():
            now = statuses.get(client)  # None: the client left the config
            for status in TWILIO_CLIENT_STATUSES:
                m.child(m.twilio_client, client, status).set(1 if status == now else 0)
        self._twilio_checks = set(current)
        self._twilio_clients = set(statuses)
        m.twilio_rounds.inc()

    def render(self) -> tuple[bytes, str]:
        return self.metrics.render()


FACTS_KEY = "tokensvc.facts"


def facts_of(scope: Mapping[str, Any]) -> RequestFacts:
    """The request's facts, which the request context put in its ASGI scope."""
    facts: RequestFacts = scope[FACTS_KEY]
    return facts
