"""The backend by URL scheme: ``Settings`` -> ``Store`` -> ``SharedState``.

    (no TOKENSVC_REDIS_URL)                              MemoryStore
    redis:// rediss:// redis+sentinel:// rediss+sentinel://  RedisStore (tokensvc.store.redis)
    anything else                                        ConfigError naming TOKENSVC_REDIS_URL

Called once, from the composition root (``tokensvc.app.create_app``). redis-py is imported
only when a Redis URL is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokensvc.store.base import Store
from tokensvc.store.memory import MemoryStore
from tokensvc.store.shared import SharedState
from tokensvc.store.urls import SCHEMES, parse_url

if TYPE_CHECKING:
    from tokensvc.settings import Settings


def store_from_settings(settings: Settings) -> Store:
    """The Store the service runs on. Raises ConfigError for a malformed URL."""
    if settings.redis_url is None:
        return MemoryStore()
    url = settings.redis_url.reveal()
    if url.partition("://")[0].lower() not in SCHEMES:
        parse_url(url)  # raises the ConfigError that names the variable and the known schemes
    # redis-py is imported only when configured
    from tokensvc.store.connection import RedisConnection
    from tokensvc.store.redis import RedisStore

    connection = RedisConnection(
        url,
        read_url=settings.redis_read_url.reveal() if settings.redis_read_url else None,
        password=settings.redis_password.reveal() if settings.redis_password else None,
        sentinel_password=(
            settings.redis_sentinel_password.reveal() if settings.redis_sentinel_password else None
        ),
    )
    return RedisStore(connection)


def shared_state_from_settings(settings: Settings) -> SharedState:
    """The SharedState the service runs with, with its budgets from settings."""
    return SharedState(
        store_from_settings(settings),
        budget=settings.redis_budget_ms / 1000.0,
        refresh_interval=settings.redis_refresh,
        sync_interval=settings.rate_sync_ms / 1000.0,
    )
