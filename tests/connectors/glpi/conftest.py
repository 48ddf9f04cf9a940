"""Fixtures: a running fake GLPI and a connector logged in to it as the technician bot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.glpi import GLPIConnector
from tests.fakes.glpi_server import FakeGLPI

SECRET = "webhook-secret-40-chars-xxxxxxxxxxxxxxxx"


@pytest.fixture
def fake() -> Iterator[FakeGLPI]:
    with FakeGLPI() as server:
        yield server


@pytest.fixture
def connector(fake: FakeGLPI) -> Iterator[GLPIConnector]:
    conn = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token, webhook_secret=SECRET,
                         webhook_max_age_s=3600, timeout_s=5, verify_tls=True, web_url="")
    yield conn
    conn.close()
