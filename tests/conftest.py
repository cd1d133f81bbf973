from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from support import write_client
from tokensvc.app import create_app
from tokensvc.settings import Settings

pytest_plugins = ["redis_servers"]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config directory holding one valid client, ``app``."""
    directory = tmp_path / "clients"
    write_client(directory)
    return directory


def make_client(config_dir: Path, **settings: object) -> TestClient:
    values: dict[str, object] = {"config_dir": config_dir, "reload_interval": 0.0,
                                 "twilio_verify": "off"}  # no calls to the real Twilio
    values.update(settings)
    app = create_app(Settings(**values))  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:8080", client=("203.0.113.9", 5555))


@pytest.fixture
def client(config_dir: Path) -> Iterator[TestClient]:
    """The service over ASGI (lifespan run), on its in-memory state."""
    with make_client(config_dir) as test_client:
        yield test_client
