"""The "not solved" link as a requester uses it: headless Chromium against a real werkzeug server.

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install chromium``); skipped without it, unless
HELPDESK_TEST_REQUIRE_SERVERS=1 (CI), where a missing browser fails the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.plugin.test_confirm import SID_EN, SID_RU, Services, build_app

pytestmark = [pytest.mark.integration]


@pytest.fixture
def served() -> Iterator[tuple[str, Services]]:
    """The test app on a real werkzeug server on 127.0.0.1, in a thread; links point at it."""
    app, services = build_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    services.links.public_url = base
    thread = threading.Thread(target=server.serve_forever, name="confirm-test-server", daemon=True)
    thread.start()
    try:
        yield base, services
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def page(browser):
    context = browser.new_context(java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_not_solved_link_in_a_browser(served, page):
    base, services = served
    url = services.links.url(SID_RU, "not_solved")
    assert url.startswith(base + "/r/")

    response = page.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert page.locator("html").get_attribute("lang") == "ru"
    assert "Переустановите клиент AnyConnect." in page.locator(".answer").inner_text()
    assert services.outcomes.records == []  # opening the page records nothing

    page.get_by_label("Ответ по теме, но его недостаточно").check()
    page.get_by_label("Комментарий (необязательно)").fill("Клиент ставится, но <подключение> рвётся")
    with page.expect_navigation():
        page.get_by_role("button", name="Нет, мне всё ещё нужна помощь").click()

    body = page.locator("main").inner_text()
    assert "Спасибо!" in body and "Специалист поддержки свяжется с вами." in body
    [record] = services.outcomes.records
    assert (record["suggestion_id"], record["outcome"], record["reason"], record["comment"], record["via"]) == (
        SID_RU,
        "not_solved",
        "not_enough",
        "Клиент ставится, но <подключение> рвётся",
        "link",
    )
    assert record["client"]["ip"] == "127.0.0.1"
    assert "Chrome" in record["client"]["user_agent"]

    page.goto(url)
    assert "Вы уже сообщили нам, что проблема не решена." in page.locator("main").inner_text()
    assert page.locator("form").count() == 0
    assert len(services.outcomes.records) == 1


def test_solved_page_switches_to_not_solved_and_is_styled(served, page):
    _, services = served
    page.goto(services.links.url(SID_EN, "solved"))
    # The stylesheet loaded under the page's CSP (the button is styled, not the browser default).
    assert page.locator("button.primary").evaluate("b => getComputedStyle(b).borderTopWidth") == "0px"
    assert page.get_by_role("button", name="Yes, this solved it").is_visible()
    with page.expect_navigation():
        page.get_by_role("link", name="Didn't help? Tell us").click()
    assert page.get_by_role("button", name="No, I still need help").is_visible()
    assert services.outcomes.records == []
