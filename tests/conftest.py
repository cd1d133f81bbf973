"""Fixtures for every test, and the cost markers (see ``[tool.pytest.ini_options].markers``).

A test is marked by what it uses, so ``make test-fast`` (``-m unit``-style deselection of
``process``, ``valkey``, ``sentinel``, ``slow`` and ``drill``) runs only in-process tests:

- the fixtures ``redis_node`` and ``node_factory`` (valkey-server processes) and
  ``black_hole_factory`` (a dead Redis port) mark a test ``valkey``; ``sentinel_cluster`` marks it
  ``sentinel`` and ``valkey`` (tests/store parametrizes its backends with ``pytest.param(...,
  marks=...)`` instead, since it starts the server inside the fixture);
- a test that starts any other process (``tokensvc serve``, the CLI, npm, hadolint, promtool)
  carries ``@pytest.mark.process`` or a module ``pytestmark``, and the guard below fails a test
  that starts a process without a cost marker, so the markers cannot drift.

A skipped test fails the run: whatever a test needs, ``make test`` installs.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path
from unittest.mock import patch

import pytest
from starlette.testclient import TestClient

from support import make_client, write_client

pytest_plugins = ["redis_servers"]

#: Fixtures whose use alone decides a test's cost markers.
FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "redis_node": ("valkey",),
    "node_factory": ("valkey",),
    "black_hole_factory": ("valkey",),
    "sentinel_cluster": ("sentinel", "valkey"),
}
#: The markers under which a test may start processes.
COSTLY = frozenset({"process", "valkey", "sentinel", "slow", "drill"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the fixtures it uses (``FIXTURE_MARKERS``)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for name in sorted({m for f in fixtures for m in FIXTURE_MARKERS.get(f, ())}):
            item.add_marker(name)


def _refuse_processes(item: pytest.Item) -> contextlib.AbstractContextManager[object]:
    """Within the block, starting a process fails the test unless it has a cost marker."""
    if COSTLY & {mark.name for mark in item.iter_markers()}:
        return contextlib.nullcontext()

    def refuse(self: subprocess.Popen[bytes], args: object, *rest: object) -> None:
        raise AssertionError(
            f"this test started a process ({args!r}) without a cost marker: "
            "add @pytest.mark.process (see tests/conftest.py)"
        )

    # Every subprocess (subprocess.run, Popen, asyncio's subprocess transport) starts here.
    return patch.object(subprocess.Popen, "_execute_child", refuse)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    """Setup too (module-scoped fixtures are set up within the first test that needs them)."""
    with _refuse_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with _refuse_processes(item):
        return (yield)


#: Tests that skipped: the suite skips nothing (a missing tool is a broken setup, not a skip).
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run with a skipped test fails (the ``-ra`` summary names each one and why)."""
    if _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config directory holding one valid client, ``app``."""
    directory = tmp_path / "clients"
    write_client(directory)
    return directory


@pytest.fixture
def client(config_dir: Path) -> Iterator[TestClient]:
    """The service over ASGI (lifespan run), on its in-memory state."""
    with make_client(config_dir) as test_client:
        yield test_client
