"""Issue 13: the analytics and economic pages with data in headless Chromium, on a phone and a laptop:
the stylesheet and charts load under the page's CSP, the period form and the parameter form work with the
keyboard and without JavaScript, and axe-core finds no serious accessibility violation. Screenshots are
kept in $HELPDESK_TEST_ARTIFACTS when set."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from plugin.web.app import create_app
from tests.plugin.service.test_analytics import fill_january
from tests.plugin.web_app import API_KEYS, boundary_services

pytestmark = [pytest.mark.integration]

AXE = Path(__file__).parents[1] / "vendor" / "axe.min.js"
JANUARY = "from=2026-01-01&to=2026-01-31"


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    services = boundary_services(tmp_path / "var")
    fill_january(services.settings.data_dir / "state.sqlite3").close()
    server = make_server("127.0.0.1", 0, create_app(services.settings, services=services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="analytics-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _artifacts(tmp_path: Path) -> Path:
    path = Path(os.environ.get("HELPDESK_TEST_ARTIFACTS", tmp_path))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _axe(page) -> list[dict]:
    """axe-core's serious and critical violations (run with JavaScript on, through the devtools protocol)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
            for v in result if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize(("viewport", "name"), [({"width": 1280, "height": 900}, "laptop"),
                                                ({"width": 390, "height": 844}, "phone")])
def test_analytics_page(served, browser, tmp_path, viewport, name):
    auth = {"Authorization": f"Bearer {API_KEYS[0]}"}
    context = browser.new_context(viewport=viewport, extra_http_headers=auth, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{served}/admin/analytics?{JANUARY}&lang=en")
    # Stylesheet loaded under CSP: the tiles are laid out by app.css.
    assert page.locator("ul.tiles").evaluate("e => getComputedStyle(e).display") == "flex"
    assert page.locator("h1").inner_text() == "Analytics"
    charts = page.locator("section.report svg[role=img]")
    assert charts.count() == 4
    box = charts.first.bounding_box()
    assert box is not None and box["width"] <= viewport["width"] and box["height"] > 50
    assert "11" in page.locator("ul.tiles li").first.inner_text()
    # The page does not scroll sideways as a whole (tables scroll in their own box).
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1
    artifacts = _artifacts(tmp_path)
    page.screenshot(path=str(artifacts / f"analytics_{name}.png"), full_page=True)
    # The period form, by keyboard, without JavaScript: a GET that changes nothing.
    page.locator("#f-from").fill("2026-01-03")
    page.locator("#f-to").fill("2026-01-03")
    page.locator("#f-to").focus()
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "from=2026-01-03" in page.url
    assert page.locator("ul.tiles li").first.inner_text().startswith("2")
    context.close()
    js = browser.new_context(viewport=viewport, extra_http_headers=auth, bypass_csp=True)
    page = js.new_page()
    page.goto(f"{served}/admin/analytics?{JANUARY}&lang=ru")
    assert _axe(page) == []
    js.close()


def test_economic_page(served, browser, tmp_path):
    auth = {"Authorization": f"Bearer {API_KEYS[0]}"}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=auth,
                                  java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{served}/admin/analytics/economics?{JANUARY}&lang=en")
    assert page.locator("h1").inner_text() == "Economic report"
    assert "9\u202f800\u202f000 RUB" in page.locator("table").first.inner_text()
    page.locator("#p-deflection").fill("0.5")
    page.locator("#p-support_staff").fill("1")
    page.locator("#p-users").fill("0")
    with page.expect_navigation():
        page.get_by_role("button", name="Recalculate").click()
    first = page.locator("table").first.inner_text()
    assert "410\u202f000 RUB" in first  # 0.5 × 1 × 820,000
    artifacts = _artifacts(tmp_path)
    page.screenshot(path=str(artifacts / "economics.png"), full_page=True)
    page.emulate_media(media="print")
    assert page.locator("header.top").evaluate("e => getComputedStyle(e).display") == "none"
    page.screenshot(path=str(artifacts / "economics_print.png"), full_page=True)
    # A bad value: the field is named, marked invalid, the page is not a 500.
    page.emulate_media(media="screen")
    response = page.goto(f"{served}/admin/analytics/economics?{JANUARY}&users=lots&lang=en")
    assert response is not None and response.status == 400
    assert page.locator("#p-users").get_attribute("aria-invalid") == "true"
    assert "users: expected a number" in page.locator("#e-users").inner_text()
    context.close()
    js = browser.new_context(viewport={"width": 390, "height": 844}, extra_http_headers=auth, bypass_csp=True)
    page = js.new_page()
    page.goto(f"{served}/admin/analytics/economics?{JANUARY}&lang=ru")
    assert _axe(page) == []
    page.screenshot(path=str(artifacts / "economics_phone.png"), full_page=True)
    js.close()
