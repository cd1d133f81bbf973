from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from support import make_client, write_client

pytest_plugins = ["redis_servers"]


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
