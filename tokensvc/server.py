"""Run the application on Hypercorn: one process, or a supervisor and N worker processes.

Shutdown (SIGTERM or SIGINT), per worker:
  1. ``/readyz`` answers 503 at once (the load balancer stops sending new requests);
  2. after ``TOKENSVC_SHUTDOWN_DELAY`` seconds (0 by default: in Kubernetes the preStop sleep
     covers endpoint propagation) the listeners close;
  3. in-flight requests get up to ``TOKENSVC_GRACEFUL_TIMEOUT`` seconds to finish;
  4. the process exits 0.
The supervisor forwards the signal to every worker and waits for them.

Binding happens once, in the first process, after ``tokensvc.startup`` has accepted every
input; an address that cannot be bound (a port in use, say) is one line naming it, exit 1.

Why our own supervisor instead of ``hypercorn.run``: Hypercorn's workers install their own
signal handlers and close listeners immediately, with no hook to flip readiness first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets

from tokensvc.settings import Settings, prometheus_multiproc_dir

log = logging.getLogger("tokensvc.server")
RESTART_LIMIT = 5  # worker crashes tolerated per minute before the supervisor gives up


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [_bind(settings.host, settings.port)]
    if settings.admin_port is not None:
        config.bind.append(_bind(settings.admin_host or settings.host, settings.admin_port))
    config.workers = settings.workers
    config.worker_class = settings.worker_class
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.h2_max_header_list_size = settings.max_header_bytes
    config.include_server_header = False
    config.accesslog = None  # one line per request comes from tokensvc.app instead
    config.errorlog = logging.getLogger("hypercorn.error")  # through our formatter
    config.backlog = 1024
    return config


def prepare_metrics_dir(settings: Settings) -> str | None:
    """With several workers, point prometheus-client at a multiprocess directory. Must run
    before prometheus_client is first imported (it picks its value class at import), so this
    module imports it lazily. Returns the directory when this process created it."""
    if settings.workers == 1:
        return None
    given = prometheus_multiproc_dir()
    if given:
        # Files left by an earlier run would be summed into this one's metrics.
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    own = tempfile.mkdtemp(prefix="tokensvc-metrics-")
    prometheus_multiproc_dir(assign=own)
    return own


def _worker(settings: Settings, sockets: Sockets) -> None:
    """One serving process (also the only one when workers == 1)."""
    # A forked worker inherits the supervisor's handlers; until the event loop installs its
    # own (below), a signal simply ends the starting worker.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from tokensvc.app import create_app
    from tokensvc.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    app = create_app(settings)
    config = hypercorn_config(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signame: str) -> None:
            service = app.state.service
            if service.draining:
                return
            service.draining = True
            log.info("shutdown: draining", extra={"signal": signame})
            loop.call_later(settings.shutdown_delay, stop.set)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        wrapped = ASGIWrapper(app)  # type: ignore[arg-type]  # Starlette's ASGI types are looser
        await worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=stop.wait)

    if settings.worker_class == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def bind(config: Config) -> Sockets:
    """Every listening socket of ``config``, bound here (before any worker forks).
    ``OSError`` names the address that failed; sockets bound before it are closed.

    One address at a time so that the error can name it. A fresh ``Config`` has
    ``workers == 1``, so no ``SO_REUSEPORT``: the workers inherit these sockets and need no
    port sharing, and without it a port another server holds is refused rather than shared."""
    bound: list[socket.socket] = []
    try:
        for address in config.bind:
            one = Config()
            one.bind = [address]
            try:
                bound += one.create_sockets().insecure_sockets
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {address}: {exc.strerror or exc}"
                ) from None
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return Sockets([], bound, [])


def run(settings: Settings, metrics_dir: str | None = None) -> int:
    """Bind, serve until a signal, return the exit code. ``metrics_dir``: the multiprocess
    directory ``prepare_metrics_dir`` created, removed at exit."""
    config = hypercorn_config(settings)
    try:
        sockets = bind(config)
    except OSError as exc:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        print(f"error: {exc.strerror}", file=sys.stderr)
        return 1
    log.info(
        "listening",
        extra={"bind": config.bind, "workers": settings.workers, "region": settings.region},
    )
    try:
        if settings.workers == 1:
            _worker(settings, sockets)
            return 0
        return _supervise(settings, sockets)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        for sock in (*sockets.insecure_sockets, *sockets.secure_sockets):
            sock.close()


def _supervise(settings: Settings, sockets: Sockets) -> int:
    # Import the application once here, then fork: workers start with every module loaded
    # (start-up is one import, not one per worker). The supervisor has no threads and no
    # event loop, so forking it is safe.
    from prometheus_client import multiprocess as prom_multiprocess

    import tokensvc.app  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    stopping = False
    processes: list[BaseProcess] = []
    crashes: list[float] = []

    def start_one() -> None:
        process = ctx.Process(target=_worker, args=(settings, sockets), daemon=False)
        process.start()
        processes.append(process)

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_code = 0
    try:
        for _ in range(settings.workers):
            start_one()
        while processes:
            multiprocessing.connection.wait([p.sentinel for p in processes], timeout=1.0)
            for process in [p for p in processes if p.exitcode is not None]:
                processes.remove(process)
                process.join()
                if process.pid is not None:  # drop its live gauges (counters are kept)
                    prom_multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                if stopping:
                    continue
                now = time.monotonic()
                crashes[:] = [t for t in crashes if now - t < 60] + [now]
                log.error(
                    "worker exited unexpectedly",
                    extra={"worker": process.pid, "result": process.exitcode},
                )
                if len(crashes) > RESTART_LIMIT:
                    exit_code = 1
                    on_signal(signal.SIGTERM, None)
                else:
                    start_one()
    finally:
        deadline = time.monotonic() + settings.shutdown_delay + settings.graceful_timeout + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
    return exit_code
