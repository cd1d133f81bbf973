"""The live client set: reloads are all-or-nothing, refusals are visible, parsing is off the
event loop (issue 11, findings 1, 2 and 6)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from support import eventually, get, make_client, post_token, serve, write_client
from tokensvc.clientset import ClientSet
from tokensvc.settings import Settings
from tokensvc.store.factory import shared_state_from_settings


@pytest.fixture
async def live(config_dir: Path) -> AsyncIterator[tuple[ClientSet, list[str]]]:
    """A loaded ClientSet on the `app` client, with the reload-metric results it reported."""
    settings = Settings(config_dir=config_dir, reload_interval=0.0)
    clientset = ClientSet(settings, shared_state_from_settings(settings), environ={})
    results: list[str] = []
    clientset.on_reload = results.append
    await clientset.load()
    yield clientset, results
    await clientset.stop()


def _touch(path: Path) -> None:
    """Change the file's mtime so the directory signature changes."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(
    "content", ["# x\n", "", "edges:\n  default: [[dublin]]\n", "- not\n- a mapping\n"]
)
async def test_a_broken_file_is_refused_and_the_last_good_set_serves(
    live: tuple[ClientSet, list[str]], config_dir: Path, content: str
) -> None:
    """Comment-only, empty, wrong-typed or non-mapping content is refused: the old client
    keeps serving, the status says refused with the file named, the metric counts an error."""
    clientset, results = live
    (config_dir / "app.yaml").write_text(content)
    outcome = await clientset.reload()
    status = clientset.reload_status
    assert ("error", ["app"], "refused", True, ["error"]) == (
        outcome,
        sorted(clientset.clients),
        status.status,
        "app.yaml" in status.reason,
        results,
    )


async def test_deleting_every_client_is_refused(
    live: tuple[ClientSet, list[str]], config_dir: Path
) -> None:
    """A reload that would leave no client keeps the last good set."""
    clientset, _ = live
    (config_dir / "app.yaml").unlink()
    assert ("error", ["app"]) == (await clientset.reload(), sorted(clientset.clients))


async def test_deleting_one_client_of_two_is_applied(config_dir: Path) -> None:
    """Removing one file on purpose while another remains is a good reload."""
    write_client(config_dir, "other", auth={"identity_prefix": "o_"})
    write_client(config_dir, "app", auth={"identity_prefix": "a_"})
    settings = Settings(config_dir=config_dir, reload_interval=0.0)
    clientset = ClientSet(settings, shared_state_from_settings(settings), environ={})
    await clientset.load()
    (config_dir / "other.yaml").unlink()
    outcome = await clientset.reload()
    await clientset.stop()
    assert ("ok", ["app"], "ok") == (
        outcome,
        sorted(clientset.clients),
        clientset.reload_status.status,
    )


async def test_a_refusal_is_logged_once_per_distinct_failure(
    live: tuple[ClientSet, list[str]], config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same problems seen again (the file touched) count again but log no second line;
    different problems log a new line; `since` keeps the start of the unchanged failure."""
    clientset, results = live
    path = write_client(config_dir, edges={"default": ["frankfort"]})
    with caplog.at_level(logging.ERROR, logger="tokensvc.config"):
        await clientset.reload()
        since = clientset.reload_status.since
        _touch(path)
        await clientset.reload()
        repeated = (clientset.reload_status.since, len(caplog.records))
        write_client(config_dir, edges={"default": ["tokyyo"]})
        _touch(path)
        await clientset.reload()
    assert ((since, 1), 2, ["error"] * 3) == (repeated, len(caplog.records), results)


async def test_a_fixed_file_reloads_and_clears_the_refusal(
    live: tuple[ClientSet, list[str]], config_dir: Path
) -> None:
    """After a refusal, a good edit is applied and the status is ok again."""
    clientset, results = live
    path = write_client(config_dir, edges={"default": [["dublin"]]})
    await clientset.reload()
    write_client(config_dir, edges={"default": ["tokyo"], "by_country": None, "geo": False})
    _touch(path)
    outcome = await clientset.reload()
    assert ("ok", ("tokyo",), "ok", "", ["error", "ok"]) == (
        outcome,
        clientset.clients["app"].config.edges.default,
        clientset.reload_status.status,
        clientset.reload_status.reason,
        results,
    )


def test_readyz_shows_a_refused_reload_and_stays_ready(config_dir: Path) -> None:
    """/readyz keeps 200 (the last good config serves) and reports the refusal with its
    reason and since when."""
    with make_client(config_dir, reload_interval=0.05) as c:
        (config_dir / "app.yaml").write_text("# x\n")
        asyncio.run(
            eventually(
                lambda: c.get("/readyz").json()["checks"]["config_reload"]["status"] == "refused",
                within=10,
            )
        )
        r = c.get("/readyz")
    reload = r.json()["checks"]["config_reload"]
    assert (200, True, True) == (
        r.status_code,
        "app.yaml" in reload["reason"],
        reload["since"].endswith("Z"),
    )


def _huge_client_file(path: Path, megabytes: int) -> None:
    items = ", ".join(["dublin"] * (megabytes * 1024 * 1024 // 8))
    path.write_text(f"edges:\n  default: [{items}]\n")


def _max_livez_latency(c: TestClient, until: float) -> float:
    worst = 0.0
    while time.monotonic() < until:
        started = time.monotonic()
        assert 200 == c.get("/livez").status_code
        worst = max(worst, time.monotonic() - started)
    return worst


def test_parsing_a_5_mb_file_never_delays_livez(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the size cap lifted, a 5 MB file is read and parsed on reload while /livez keeps
    answering within 0.25 s (on the event loop it stalled for seconds); then it is refused."""
    import tokensvc.clients

    monkeypatch.setattr(tokensvc.clients, "MAX_FILE_BYTES", 64 * 1024 * 1024, raising=False)
    with make_client(config_dir, reload_interval=0.05) as c:
        _huge_client_file(config_dir / "huge.yaml", 5)
        started = time.monotonic()
        worst = _max_livez_latency(c, started + 1.0)
        assert worst < 0.25, f"/livez took {worst:.2f}s while the file was parsed"
        asyncio.run(
            eventually(
                lambda: c.get("/readyz").json()["checks"]["config_reload"]["status"] == "refused",
                within=30,
            )
        )
        reason = c.get("/readyz").json()["checks"]["config_reload"]["reason"]
    assert "huge.yaml" in reason


@pytest.mark.slow
def test_a_real_service_refuses_a_5_mb_file_and_keeps_serving(
    config_dir: Path, tmp_path: Path
) -> None:
    """`tokensvc serve` fed a 5 MB client file keeps answering, shows the size refusal in
    /readyz and counts it in the reload metric."""
    with serve(config_dir, tmp_path) as served:
        _huge_client_file(config_dir / "huge.yaml", 5)
        deadline = time.monotonic() + 10
        reload: dict[str, str] = {}
        while time.monotonic() < deadline and reload.get("status") != "refused":
            reload = json.loads(get(served.url + "/readyz")[1])["checks"]["config_reload"]
        edges = get(served.url + "/v1/clients/app/edges")[0]
        metrics = get(f"http://127.0.0.1:{served.admin_port}/metrics")[1].decode()
    assert ("refused", True, 200) == (
        reload.get("status"),
        "byte limit" in reload.get("reason", ""),
        edges,
    )
    assert 'tokensvc_config_reloads_total{result="error"} 1.0' in metrics


@pytest.mark.slow
@pytest.mark.process
def test_two_workers_survive_every_bad_push(config_dir: Path, tmp_path: Path) -> None:
    """A 2-worker service fed in turn a comment-only file, a wrong-typed file, a deletion of
    every client and a 5 MB file keeps answering tokens, and reports each refusal."""
    good = (config_dir / "app.yaml").read_text()
    pushes: list[tuple[str, Callable[[Path], object]]] = [
        ("empty or holds only comments", lambda p: p.write_text("# x\n")),
        (
            "edges.default[0]",
            lambda p: p.write_text(good.replace("- ashburn\n", "- - ashburn\n", 1)),
        ),
        ("no client files", lambda p: p.unlink()),
        ("byte limit", lambda p: _huge_client_file(p, 5)),
    ]
    seen: list[tuple[str, bool, list[int]]] = []
    with serve(config_dir, tmp_path, {"TOKENSVC_WORKERS": "2"}) as served:
        for expected, push in pushes:
            push(config_dir / "app.yaml")
            deadline = time.monotonic() + 10
            reasons: set[str] = set()
            while time.monotonic() < deadline and not (
                len(reasons) == 1 and expected in next(iter(reasons))
            ):
                # Both workers must have refused: sample several answers.
                reasons = {
                    json.loads(get(served.url + "/readyz")[1])["checks"]["config_reload"]["reason"]
                    for _ in range(6)
                }
            codes = [post_token(served.url)[0] for _ in range(10)]
            seen.append((expected, any(expected in r for r in reasons), codes))
            (config_dir / "app.yaml").write_text(good)
            _touch(config_dir / "app.yaml")
    assert [(e, True, [200] * 10) for e, _ in pushes] == seen
