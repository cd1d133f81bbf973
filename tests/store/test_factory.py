"""The backend by URL scheme: store_from_settings / shared_state_from_settings."""

from __future__ import annotations

import pytest

from tokensvc.errors import ConfigError
from tokensvc.secret import Secret
from tokensvc.settings import Settings
from tokensvc.store.factory import shared_state_from_settings, store_from_settings
from tokensvc.store.redis import RedisStore


def test_without_url_is_memory() -> None:
    """No TOKENSVC_REDIS_URL: in-memory state."""
    assert "memory" == shared_state_from_settings(Settings()).backend


def test_with_url_is_redis_and_budget_from_settings() -> None:
    """A Redis URL gives a Redis-backed state (no connection is made yet) with the budget and
    the default rate-limit sync interval (100 ms)."""
    shared = shared_state_from_settings(
        Settings(redis_url=Secret("redis://127.0.0.1:1/0"), redis_budget_ms=15)
    )
    assert ("redis", 0.015, 0.1, True) == (
        shared.backend,
        shared.budget,
        shared.sync_interval,
        shared.remote,
    )


def test_sentinel_url_is_redis_with_read_replica_and_passwords() -> None:
    """A Sentinel URL with a read URL gives one RedisStore reading from the replica endpoint;
    the passwords come from settings and never show in its repr."""
    store = store_from_settings(
        Settings(
            redis_url=Secret("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc"),
            redis_read_url=Secret("redis://127.0.0.1:3/0"),
            redis_password=Secret("hunter2"),
        )
    )
    assert isinstance(store, RedisStore)
    assert (True, ("127.0.0.1", 3), False) == (
        store.connection.endpoint.sentinel,
        store.connection.read_endpoint.hosts[0] if store.connection.read_endpoint else None,
        "hunter2" in repr(store),
    )


def test_unknown_scheme_is_a_config_error_naming_the_variable() -> None:
    """An unknown URL scheme is refused at construction, naming TOKENSVC_REDIS_URL."""
    with pytest.raises(ConfigError) as info:
        store_from_settings(Settings(redis_url=Secret("memcached://h:11211")))
    assert ["TOKENSVC_REDIS_URL"] == [p.field for p in info.value.problems]
