"""The chat as an employee uses it: headless Chromium (Playwright, Debian's /usr/bin/chromium) against the
real app on a werkzeug server, the real engine on the sample knowledge base (USE encoder), and the real
Redmine for the hand-off (``scripts/test_servers.sh up``). axe-core checks the pages; screenshots of the
main states are kept in $HELPDESK_TEST_ARTIFACTS (else the test's tmp dir).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from connectors.redmine.connector import note_to_text
from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import Services, build_services, ensure_knowledge_base
from tests.browser import require_chromium
from tests.integration.redmine.conftest import RedmineServer
from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"
REDMINE = RedmineServer()


class HostPage:
    """A helpdesk's page on another origin, with the widget's one tag (its src set once the app runs)."""

    def __init__(self) -> None:
        self.widget_src = ""
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, name="host-page", daemon=True).start()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        html = (f'<!doctype html><html lang="ru"><head><title>Helpdesk</title></head><body><h1>Helpdesk</h1>'
                f'<script src="{self.widget_src}" defer></script></body></html>')
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [html.encode()]


@pytest.fixture(scope="module")
def host() -> Iterator[HostPage]:
    page = HostPage()
    yield page
    page.server.shutdown()
    page.server.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, use_embedder: Any, host: HostPage) -> Iterator[tuple[str, Services]]:
    require_server("Redmine", "127.0.0.1", 3000)
    require_chromium()
    settings = load_settings(
        chat={"frame_ancestors": [host.url]},
        env={}, data_dir=str(tmp_path_factory.mktemp("chat-browser")), secret_key="s" * 32,
        redmine={"enabled": True, "url": REDMINE.url, "api_key": REDMINE.admin_key, "create_project": REDMINE.project,
                 "create_tracker": "Support", "poll": False},
        worker={"embedded": False},
    )
    services = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(services)
    app = create_app(settings, services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="chat-test-server", daemon=True)
    thread.start()
    host.widget_src = f"http://127.0.0.1:{server.server_port}/static/widget.js"
    try:
        yield f"http://127.0.0.1:{server.server_port}", services
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("HELPDESK_TEST_ARTIFACTS", tmp_path)) / "chat"
    out.mkdir(parents=True, exist_ok=True)
    return out


def axe_violations(page: Any, errors: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page. evaluate() runs outside the page's CSP (an injected <script>
    would be refused, as it should be); axe's own inline styles are refused by the CSP, so the console
    errors they cause (``errors``) are dropped: they are not the page's."""
    before = len(errors) if errors is not None else 0
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))")
    # axe leaves style attributes behind (which htmx's settle would then copy, refused by the CSP):
    # the page is loaded again, clean, before the test goes on.
    page.reload()
    if errors is not None:
        del errors[before:]
    return result


def ask(page: Any, text: str) -> None:
    page.get_by_label("Ваш вопрос").fill(text)
    with page.expect_navigation():
        page.get_by_role("button", name="Спросить").click()


def send(page: Any, text: str, turns: int) -> None:
    """A message in the conversation (htmx swaps the conversation); waits for turn ``turns``."""
    page.get_by_label("Ваше сообщение").fill(text)
    page.get_by_role("button", name="Отправить", exact=True).click()
    page.locator(f"#turn-{turns}").wait_for()


def drain(services: Services) -> None:
    worker = services.new_worker()
    while worker.run_once():
        pass


def sources_of(page: Any, n: int) -> list[str]:
    return page.locator(f"#turn-{n} details.sources details.entry > summary").all_text_contents()


def test_the_chat_end_to_end(served: tuple[str, Services], browser: Any, artifacts: Path) -> None:
    base, services = served
    ctx = browser.new_context(locale="ru-RU", viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} @ {m.location}") if m.type == "error" else None)
    page.expose_function("reportViolation", lambda *a: errors.append("VIOLATION " + repr(a)))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => window.reportViolation("
                         "e.violatedDirective, e.sourceFile, e.lineNumber, e.sample,"
                         " (e.target && e.target.outerHTML || '').slice(0, 300)))")

    # --- the first page: ask; the answer comes with its sources (title and answer).
    page.goto(base + "/")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert axe_violations(page, errors) == []
    ask(page, "Как подключить принтер, который стоит у меня в кабинете?")
    conv_url = page.url.split("#")[0]
    assert re.search(r"/chat/c/[\w-]{22,}$", conv_url)
    first = page.locator("#turn-1")
    assert first.locator(".answer").inner_text().strip()
    assert sources_of(page, 1)[0] == "Как подключить принтер"
    first.locator("details.sources > summary").click()
    first.locator("details.entry").first.locator("summary").click()
    assert first.locator("details.entry").first.locator(".text").is_visible()
    page.screenshot(path=str(artifacts / "1-answer-with-sources.png"), full_page=True)
    assert axe_violations(page, errors) == []

    errors.append('# --- a follow-up')
    # --- a follow-up that only makes sense with the first question (htmx, no page load).
    send(page, "а если у меня убунту?", 2)
    assert sources_of(page, 2)[0] == "Принтер под Linux"
    assert page.url.split("#")[0] == conv_url

    errors.append('# --- rate the first')
    # --- rate the first answer.
    page.locator("#turn-1").get_by_role("button", name="Помогло").click()
    page.locator("#turn-1 .rated").wait_for()
    assert "помогло" in page.locator("#turn-1 .rated").inner_text()
    s = services.store.suggestions.get(services.store.chat.get_any(conv_url.rsplit("/", 1)[1]).turns[0].suggestion_id)
    assert s is not None and (s.source, s.outcome, s.outcome_via) == ("chat", "solved", "chat")

    errors.append('# --- a clarifying')
    # --- a clarifying question answered by a button.
    page.goto(base + "/chat")
    ask(page, "не подключается")
    options = page.locator("#turn-1 form.options button")
    assert "Удаленный рабочий стол" in options.all_inner_texts()
    page.screenshot(path=str(artifacts / "2-clarifying-question.png"), full_page=True)
    options.filter(has_text="Удаленный рабочий стол").click()
    page.locator("#turn-2").wait_for()
    assert sources_of(page, 2)[0] == "Удаленный рабочий стол не подключается"

    errors.append('# --- "didn\'t help"')
    # --- "didn't help" -> the next answer, then open a ticket in the real Redmine as the person.
    page.goto(base + "/chat")
    ask(page, "Отправляю на печать, документ висит в очереди и ничего не печатается")
    handoff_url = page.url.split("#")[0]
    given = sources_of(page, 1)[0]
    send(page, "не помогло", 2)
    assert sources_of(page, 2) and sources_of(page, 2)[0] != given
    page.locator("#turn-2 details.why > summary").click()  # "Не помогло": opens the reasons
    page.locator("#turn-2").get_by_label("Ответ не относится к моей проблеме").check()
    page.locator("#turn-2").get_by_role("button", name="Отправить: не помогло").click()
    page.locator("#turn-2 .rated").wait_for()
    page.get_by_text("Открыть заявку", exact=True).first.click()  # the <summary>
    page.get_by_label("Ваш логин или адрес почты").fill("nobody-such")
    page.get_by_role("button", name="Открыть заявку").click()
    page.locator("#chat-error").wait_for()
    assert "нет учётной записи" in page.locator("#chat-error").inner_text()
    page.get_by_label("Ваш логин или адрес почты").fill("requester@example.test")
    page.get_by_role("button", name="Открыть заявку").click()
    page.get_by_text("Заявка будет создана").wait_for()
    page.screenshot(path=str(artifacts / "3-ticket-pending.png"), full_page=True)
    drain(services)  # the worker creates it; the page polls and shows the number
    page.get_by_text("Ваша заявка создана").wait_for(timeout=15_000)
    link = page.locator(".handoff a")
    assert re.fullmatch(r"Redmine #\d+", link.inner_text())
    issue_id = int(link.inner_text().split("#")[1])
    assert link.get_attribute("href") == f"{REDMINE.url}/issues/{issue_id}"
    page.screenshot(path=str(artifacts / "4-ticket-created.png"), full_page=True)
    issue = REDMINE.issue(issue_id, REDMINE.requester_key)
    assert issue["author"]["name"] == "Rita Requester"
    text = note_to_text(issue["description"], "textile")
    assert "Отправляю на печать" in text and "Сотрудник: не помогло" in text and "Оценка: не помогло" in text
    assert axe_violations(page, errors) == []

    errors.append('# --- close the browser')
    # --- close the browser, come back with the cookie: the conversations are listed and continue.
    state = ctx.storage_state()
    ctx.close()
    ctx2 = browser.new_context(locale="ru-RU", storage_state=state)
    page2 = ctx2.new_page()
    page2.goto(base + "/")
    listed = page2.locator("ul.conversations li a").all_inner_texts()
    assert listed[0].startswith("Отправляю на печать") and len(listed) == 3
    assert "заявка открыта" in page2.locator("ul.conversations li").first.inner_text()
    page2.screenshot(path=str(artifacts / "5-previous-conversations.png"), full_page=True)
    page2.locator("ul.conversations li a", has_text="Как подключить принтер").click()
    page2.wait_for_url(conv_url + "*")
    send(page2, "а сканер как настроить?", 3)
    ctx2.close()

    errors.append('# --- another person')
    # --- another person (a fresh browser) cannot open it by its id.
    ctx3 = browser.new_context(locale="ru-RU")
    page3 = ctx3.new_page()
    response = page3.goto(handoff_url)
    assert response is not None and response.status == 404
    assert "принадлежит другому" in page3.locator("main").inner_text()
    assert "Отправляю на печать" not in page3.content()
    ctx3.close()
    assert [e for e in errors if "Content Security Policy" in e] == [], "\n".join(e[:400] for e in errors)


def test_phone_width_and_no_javascript(served: tuple[str, Services], browser: Any, artifacts: Path) -> None:
    base, _services = served
    ctx = browser.new_context(locale="en-US", java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.goto(base + "/chat")
    page.get_by_label("Your question").fill("How do I get my work email on my iPhone?")
    with page.expect_navigation():
        page.get_by_role("button", name="Ask").click()
    assert page.locator("#turn-1 .answer").inner_text().strip()
    page.get_by_label("Your message").fill("and on Android?")
    with page.expect_navigation():
        page.get_by_role("button", name="Send", exact=True).click()
    page.locator("#turn-2").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing wider than the phone's screen"
    page.screenshot(path=str(artifacts / "6-phone-no-js.png"), full_page=True)
    ctx.close()


def test_the_widget_opens_the_chat_on_a_helpdesk_page(served: tuple[str, Services], host: HostPage, browser: Any,
                                                      artifacts: Path) -> None:
    base, _services = served
    ctx = browser.new_context(locale="ru-RU", viewport={"width": 1200, "height": 800})
    page = ctx.new_page()
    page.goto(host.url)
    page.get_by_role("button", name="Чат ИТ-поддержки").click()
    button = page.locator("#helpdesk-assist-button")
    assert button.inner_text() == "Закрыть чат"
    assert button.get_attribute("aria-expanded") == "true"
    frame_el = page.locator("iframe#helpdesk-assist-chat")
    assert frame_el.get_attribute("src") == f"{base}/chat?embed=1&lang=ru"
    chat = page.frame_locator("iframe#helpdesk-assist-chat")
    chat.get_by_label("Ваш вопрос").fill("Как настроить рабочую почту на андроиде?")
    chat.get_by_role("button", name="Спросить").click()
    chat.locator("#turn-1 .answer").wait_for()
    assert chat.locator("header.top").count() == 1 and not chat.locator("header.top").is_visible()  # embedded
    page.screenshot(path=str(artifacts / "7-widget-on-a-helpdesk-page.png"))
    page.locator("h1").click()  # focus back on the helpdesk page
    page.keyboard.press("Escape")
    assert button.get_attribute("aria-expanded") == "false" and not frame_el.is_visible()
    ctx.close()


def test_with_an_llm_the_answer_arrives_by_server_sent_events(tmp_path: Path, browser: Any, artifacts: Path) -> None:
    """The extractive answer at once, then the LLM's checked answer swapped in (htmx SSE extension), no
    reload. A scripted LLM (a slow, valid answer): the real backends are tested in tests/rag/llm."""
    from rag.embeddings import HashingEmbedder
    from tests.rag.llm.fakes import ScriptedLLM

    def slow(_messages: Any) -> str:
        time.sleep(1.5)
        return "Переустановите клиент VPN и перезагрузите компьютер [1]."

    settings = load_settings(env={}, data_dir=str(tmp_path), decision={"threshold": 0.0},
                             chat={"max_clarify_rounds": 0}, worker={"embedded": False})
    services = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(services)
    services.engine.llm = ScriptedLLM([slow])
    server = make_server("127.0.0.1", 0, create_app(settings, services=services), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = browser.new_context(locale="ru-RU")
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{server.server_port}/chat")
        ask(page, "VPN не подключается из дома, что делать?")
        url = page.url
        assert page.locator("#turn-1 .writing").is_visible()
        assert "Возможно, вам поможет" in page.locator("#turn-1 .answer").inner_text()
        page.get_by_text("Переустановите клиент VPN и перезагрузите компьютер [1].").wait_for(timeout=20_000)
        assert page.url == url and page.locator("#turn-1 .writing").count() == 0
        page.screenshot(path=str(artifacts / "8-llm-answer-by-sse.png"), full_page=True)
        assert [e for e in errors if "Content Security Policy" in e] == []
        ctx.close()
    finally:
        server.shutdown()
        server.server_close()
        services.chat.wait_compositions(10)
