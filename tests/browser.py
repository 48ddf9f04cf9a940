"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright (Playwright's own
browser download does not work here). The ``browser`` fixture (tests/conftest.py) launches it once per test
module; without it installed a test is skipped, or fails where the servers are required (CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import REQUIRE_ENV

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_chromium() -> None:
    """Skip the test without Chromium; fail it where the servers are required (``HELPDESK_TEST_REQUIRE_SERVERS=1``)."""
    if CHROMIUM.exists():
        return
    message = f"Chromium is not installed at {CHROMIUM}; install it with: apt-get install chromium"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed at the end of the block."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
