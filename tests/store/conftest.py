"""Fixtures for tests/store: one body, both backends (the in-memory store and a real Valkey)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import pytest

from redis_servers import Node
from tokensvc.store.base import Store
from tokensvc.store.memory import MemoryStore
from tokensvc.store.redis import RedisStore
from tokensvc.store.shared import SharedState

BUDGET = 0.02  # the default TOKENSVC_REDIS_BUDGET_MS
#: The two backends; the Redis one starts a valkey-server inside the fixture, so it is marked here
#: (tests/conftest.py marks by the fixtures a test names, which cannot see getfixturevalue).
BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.valkey)]


class Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[C], C]]:
    """``closing(RegionAdmin(url))``: the object itself, closed at teardown (stores and
    admins opened by a test)."""
    made: list[Closable] = []

    def keep(thing: C) -> C:
        made.append(thing)
        return thing

    yield keep
    for thing in made:
        await thing.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A Store: the in-memory one, or a RedisStore on a fresh valkey-server."""
    if request.param == "memory":
        yield MemoryStore()
        return
    node: Node = request.getfixturevalue("redis_node")
    redis_store = RedisStore(node.url)
    yield redis_store
    await redis_store.close()


@pytest.fixture(params=BACKENDS)
async def pod(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    """One pod's SharedState, on the in-memory store or on a real Redis."""
    store: Store = MemoryStore()
    if request.param == "redis":
        store = RedisStore(request.getfixturevalue("redis_node").url)
    state = SharedState(store, budget=BUDGET)
    yield state
    await state.stop()
