"""The admin console in headless Chromium, against the real app on a real werkzeug server and the fake GLPI
(tests/fakes/glpi_server.py): sign in, a wrong password, the lockout; forged POSTs; a dead item retried
and completed; a category switched off; an analyst who cannot change anything; axe-core on every page
(screenshots kept in $HELPDESK_TEST_ARTIFACTS when set)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from plugin.service import console
from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import Services, build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder
from tests.drain import drain
from tests.fakes.glpi_server import FakeGLPI

pytestmark = [pytest.mark.integration]

SECRET = "glpi-webhook-secret-for-the-console-0123456789"
ADMIN_PW = "admin password for the browser"
ANALYST_PW = "analyst password for the browser"
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"


class Served:
    def __init__(self, base: str, services: Services, glpi: FakeGLPI) -> None:
        self.base, self.services, self.glpi = base, services, glpi

    def deliver(self, ticket_id: int) -> None:
        headers, body = self.glpi.webhook_delivery("new", "Ticket", ticket_id, SECRET)
        r = requests.post(self.base + "/webhooks/glpi", data=body, headers=headers, timeout=10)
        assert r.status_code == 202, r.text

    def drain(self) -> None:
        drain(self.services.worker, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    with FakeGLPI() as glpi:
        settings = load_settings(
            env={}, data_dir=str(tmp_path_factory.mktemp("var")), secret_key="s" * 40,
            links={"public_url": "https://ai.example.test"},
            decision={"threshold": 0.0},
            worker={"backoff_base_s": 0.05, "backoff_max_s": 0.1, "retry_for_h": 0.0003},
            glpi={"enabled": True, "url": glpi.url, "user_token": glpi.bot_token, "app_token": glpi.app_token,
                  "webhook_secret": SECRET},
            admin={"throttle": {"account_max_failures": 3, "ip_max_failures": 100}},
        )
        services = build_services(settings, embedder=HashingEmbedder())
        ensure_knowledge_base(services)
        console.create_user(services.store, "root", ADMIN_PW, role="admin")
        console.create_user(services.store, "ann", ANALYST_PW, role="analyst")
        app = create_app(settings, services=services)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="admin-test-server", daemon=True)
        thread.start()
        try:
            yield Served(f"http://127.0.0.1:{server.server_port}", services, glpi)
        finally:
            server.shutdown()
            thread.join(timeout=10)
            server.server_close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-US")
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = Path(os.environ.get("HELPDESK_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts")) / "admin"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(page, served: Served, login: str, password: str) -> None:
    page.goto(served.base + "/admin/login?lang=en")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def axe_violations(page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations of the page (evaluated over CDP: the page's CSP stays on)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))"
    )
    return list(result)


def test_wrong_password_then_lockout_then_sign_in(served, page, artifacts):
    console.create_user(served.services.store, "locky", "locky's real password", role="admin")
    sign_in(page, served, "locky", "not it at all")
    assert page.get_by_role("alert").inner_text() == "Wrong login or password."
    assert page.get_by_label("Login").input_value() == "locky"
    page.screenshot(path=str(artifacts / "login_wrong_password.png"), full_page=True)
    assert axe_violations(page) == []
    sign_in(page, served, "locky", "still not it")
    sign_in(page, served, "locky", "third time")
    assert "Too many failed attempts. Try again in 15 min." in page.get_by_role("alert").inner_text()
    sign_in(page, served, "locky", "locky's real password")  # the right one, during the lock
    assert "Too many failed attempts" in page.get_by_role("alert").inner_text()
    assert page.url.startswith(served.base + "/admin/login")
    page.screenshot(path=str(artifacts / "login_locked.png"), full_page=True)

    sign_in(page, served, "root", ADMIN_PW)
    assert page.url == served.base + "/admin/"
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    cookie = next(c for c in page.context.cookies() if c["name"] == "hda_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/admin"
    actions = [e.action for e in console.audit_entries(served.services.store, actor="locky")]
    assert actions.count("sign_in_failed") == 3 and "sign_in_locked" in actions


def test_every_page_passes_axe_on_a_laptop_and_a_phone(served, page, artifacts):
    sign_in(page, served, "root", ADMIN_PW)
    for name, path in (("overview", "/admin/"), ("check", "/admin/check"), ("queue", "/admin/queue"),
                       ("steering", "/admin/steering"), ("settings", "/admin/settings"), ("audit", "/admin/audit")):
        for lang in ("en", "ru"):
            response = page.goto(f"{served.base}{path}?lang={lang}")
            assert response is not None and response.status == 200
            assert page.locator("html").get_attribute("lang") == lang
            assert axe_violations(page) == [], (path, lang)
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    for name in ("overview", "steering", "queue"):
        page.goto(f"{served.base}/admin/{'' if name == 'overview' else name}?lang=ru")
        # Nothing wider than the phone's screen but the tables' own scroll boxes.
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => !e.closest('.table-wrap'))"
            ".filter(e => e.getBoundingClientRect().right > 391).map(e => e.tagName + '.' + e.className).slice(0, 5)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, (name, wide)
        page.screenshot(path=str(artifacts / f"{name}_phone.png"), full_page=True)
    page.goto(f"{served.base}/admin/steering?lang=en")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_a_forged_form_is_refused_and_changes_nothing(served, page):
    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/steering?lang=en")
    before = console.override_values(served.services.store)
    form = page.locator("form:has(input[name=what][value=threshold])")
    form.locator("input[name=value]").fill("0.99")
    form.locator("input[name=csrf_token]").evaluate("e => e.value = 'forged'")
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    assert page.get_by_role("heading", level=1).inner_text() == "The form was refused"
    page.goto(served.base + "/admin/steering?lang=en")
    form = page.locator("form:has(input[name=what][value=threshold])")
    form.locator("input[name=csrf_token]").evaluate("e => e.remove()")
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    assert page.get_by_role("heading", level=1).inner_text() == "The form was refused"
    assert console.override_values(served.services.store) == before
    assert served.services.policies.current().decision.threshold == 0.0


def test_retry_a_dead_item_and_watch_it_complete(served, page, artifacts):
    glpi = served.glpi
    tid = glpi.create_ticket(name="Не работает VPN", content="<p>Не могу подключиться к VPN из дома</p>")
    glpi.outage = 503
    try:
        served.deliver(tid)
        served.drain()  # retried until worker.retry_for_h is over, then parked as dead
    finally:
        glpi.outage = None
    [dead] = served.services.store.inbox.items(status="dead")
    assert "503" in (dead.last_error or "")
    assert glpi.followups(tid) == []

    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/queue?status=dead&lang=en")
    row = page.locator(f"#item-{dead.id}")
    assert row.get_attribute("data-status") == "dead"
    assert "503" in row.inner_text()
    page.screenshot(path=str(artifacts / "queue_dead.png"), full_page=True)
    with page.expect_navigation():
        row.get_by_role("button", name=f"Retry #{dead.id}").click()
    assert page.get_by_role("status").inner_text() == "The item is back in the queue."
    served.drain()
    page.goto(served.base + "/admin/queue?lang=en")
    assert page.locator(f"#item-{dead.id}").get_attribute("data-status") == "done"
    assert glpi.followups(tid), "the retried item posted its notes"
    [entry] = console.audit_entries(served.services.store, action="queue_retry")[:1]
    assert (entry.actor, entry.target) == ("root", f"#{dead.id}")


def test_discard_with_a_reason_keeps_the_item(served, page):
    tid = served.glpi.create_ticket(name="Принтер", content="<p>Принтер не печатает</p>")
    served.glpi.outage = 503
    try:
        served.deliver(tid)
        served.drain()
    finally:
        served.glpi.outage = None
    dead = served.services.store.inbox.items(status="dead")[0]
    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/queue?status=dead&lang=en")
    row = page.locator(f"#item-{dead.id}")
    row.locator("summary").click()
    row.get_by_label("Reason").fill("duplicate of a ticket already handled")
    with page.expect_navigation():
        row.get_by_role("button", name=f"Discard #{dead.id}").click()
    page.goto(served.base + "/admin/queue?status=discarded&lang=en")
    assert "duplicate of a ticket already handled" in page.locator(f"#item-{dead.id}").inner_text()
    assert served.services.store.inbox.get(dead.id).status == "discarded"


def _public_followups(glpi: FakeGLPI, tid: int) -> list[dict[str, Any]]:
    return [f for f in glpi.followups(tid) if not f.get("is_private")]


def test_a_category_switched_off_gets_no_public_suggestion(served, page, artifacts):
    glpi, services = served.glpi, served.services
    text = "Не могу подключиться к VPN из дома, пишет ошибка соединения"
    # Control: with the category on, a ticket like it gets a public suggestion.
    first = glpi.create_ticket(name="VPN", content=f"<p>{text}</p>")
    served.deliver(first)
    served.drain()
    assert _public_followups(glpi, first)
    seen = services.store.suggestions.for_ticket("glpi", str(first))
    assert seen is not None and seen.mode == "public"
    category = seen.category.split(" > ")[0]

    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/steering?lang=en")
    row = page.locator(f"tr[data-category='{category}']")
    row.get_by_label(f"Suggestions: {category}").select_option("off")
    with page.expect_navigation():
        row.get_by_role("button", name=f"Save: {category}").click()
    assert page.get_by_role("status").inner_text() == "Saved. It applies to the next request."
    assert "off" in page.locator(f"tr[data-category='{category}']").inner_text()
    page.screenshot(path=str(artifacts / "steering_category_off.png"), full_page=True)

    second = glpi.create_ticket(name="VPN", content=f"<p>{text}</p>")
    served.deliver(second)
    served.drain()
    assert _public_followups(glpi, second) == []
    assert glpi.followups(second), "the agents still get the private note"
    suggestion = services.store.suggestions.for_ticket("glpi", str(second))
    assert suggestion is not None and suggestion.mode == "abstain"
    assert "switched off" in suggestion.reason
    # Back on.
    page.goto(served.base + "/admin/steering?lang=en")
    row = page.locator(f"tr[data-category='{category}']")
    row.get_by_label(f"Suggestions: {category}").select_option("on")
    with page.expect_navigation():
        row.get_by_role("button", name=f"Save: {category}").click()
    assert category not in services.policies.current().decision.disabled_categories
    entries = console.audit_entries(services.store, action="override", text="disabled_categories")
    assert [(e.before, e.after) for e in entries[:2]] == [([category], None), (None, [category])]


def test_an_analyst_sees_but_cannot_change(served, page, artifacts):
    sign_in(page, served, "ann", ANALYST_PW)
    assert "analyst (view only)" in page.locator(".who").inner_text()
    page.goto(served.base + "/admin/steering?lang=en")
    assert page.get_by_role("button", name="Save").count() == 0
    page.goto(served.base + "/admin/queue?lang=en")
    assert page.get_by_role("button", name="Retry").count() == 0
    assert page.locator("form[action*='retry'], form[action*='discard']").count() == 0
    page.screenshot(path=str(artifacts / "queue_analyst.png"), full_page=True)
    page.goto(served.base + "/admin/kb?lang=en")
    assert page.get_by_role("button", name="Import").count() == 0
    entry = served.services.engine.store.entries()[0]
    page.goto(served.base + "/admin/kb/entry?lang=en&id=" + entry.id)
    assert page.get_by_role("button", name="Switch off").count() == 0
    # The POSTs an admin's buttons send, with the analyst's valid session and CSRF token: refused.
    token = page.locator("input[name=csrf_token]").first.input_value()
    before = console.override_values(served.services.store)
    for path, form in (("/admin/steering", {"what": "threshold", "value": "0.7"}),
                       ("/admin/queue/retry-dead", {}),
                       ("/admin/queue/1/discard", {"reason": "x"}),
                       ("/admin/kb/entry", {"entry_id": entry.id, "enabled": "off"}),
                       ("/admin/kb/learned/1/delete", {})):
        r = page.request.post(served.base + path, form={**form, "csrf_token": token},
                              headers={"Referer": served.base + "/admin/queue"})
        assert r.status == 403, (path, r.status)
        assert "Your role can see this console but not change it." in r.text()
    assert console.override_values(served.services.store) == before
    assert entry.id not in console.disabled_entries(served.services.store)


def test_tickets_are_searchable_with_what_was_posted_and_every_outcome(served, page, artifacts):
    glpi, services = served.glpi, served.services
    tid = glpi.create_ticket(name="Забыл пароль Ёлка", content="<p>Не помню пароль от учётной записи, как сбросить?</p>")
    served.deliver(tid)
    served.drain()
    s = services.store.suggestions.for_ticket("glpi", str(tid))
    assert s is not None and s.mode == "public"
    services.outcomes.record(s.id, "not_solved", reason="not_enough", comment="не помогло", via="link", client={})

    sign_in(page, served, "ann", ANALYST_PW)  # an analyst sees it all
    page.goto(served.base + "/admin/tickets?lang=en")
    page.get_by_label("Search").fill("ёлка")  # case-folded, Cyrillic included
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    rows = page.locator("tr.ticket-row")
    assert rows.count() == 1 and f"glpi #{tid}" in rows.first.inner_text()
    assert axe_violations(page) == []
    with page.expect_navigation():
        rows.first.get_by_role("link").click()
    main = page.locator("main").inner_text()
    assert "Не помню пароль от учётной записи" in main
    assert s.category.split(" > ")[0] in main
    assert s.entries[0].title in main
    assert f"#{s.public_comment_id}" in main and f"#{s.private_comment_id}" in main
    events = [e.inner_text() for e in page.locator("tr.event").all()]
    assert any("suggested" in e for e in events)
    assert any("rejected" in e and "link" in e and "не помогло" in e for e in events)
    link = page.get_by_role("link", name="Open the ticket in the helpdesk").get_attribute("href")
    assert link == f"{glpi.web_url}/front/ticket.form.php?id={tid}"
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts / "ticket.png"), full_page=True)
    assert page.goto(served.base + "/admin/tickets/nosuchid").status == 404


def test_import_a_spreadsheet_with_bad_rows_and_see_them_listed(served, page, artifacts, tmp_path):
    from tests.dataset.xlsx_util import FAQ_HEADER, write_xlsx

    book = write_xlsx(tmp_path / "новая база.xlsx", [
        FAQ_HEADER,
        ("Принтер зажевал бумагу", "Принтер зажевал бумагу, что делать?", "Откройте заднюю крышку и извлеките лист.",
         "Принтеры и сканеры", "Печать"),
        ("Без ответа", "Где взять новый картридж?", "", "Принтеры и сканеры", "Картриджи"),
        ("Без вопроса", "", "Позвоните по внутреннему номеру 1234.", "Телефония", "Звонки"),
        ("Монитор мерцает", "Мерцает второй монитор", "Замените кабель HDMI на DisplayPort.", "Рабочее место",
         "Мониторы"),
    ])
    before = served.services.engine.stats()["entries"]
    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/kb?lang=en")
    page.get_by_label("File").set_input_files(str(book))
    with page.expect_navigation():
        page.get_by_role("button", name="Import").click()
    # htmx polls the progress until the import is done (the page reloads nothing itself).
    page.wait_for_selector("#import-progress[data-state=done]", timeout=60_000)
    assert page.locator("#n-read").inner_text() == "4"
    assert page.locator("#n-new").inner_text() == "2"
    assert page.locator("#n-rejected").inner_text() == "2"
    rejected = [r.inner_text() for r in page.locator("tr.rejected").all()]
    assert len(rejected) == 2 and all(r.strip() for r in rejected)
    assert any("\t3\t" in r or " 3 " in r for r in rejected) and any("\t4\t" in r or " 4 " in r for r in rejected)
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts / "kb_import.png"), full_page=True)
    assert served.services.engine.stats()["entries"] == before + 2
    [entry] = console.audit_entries(served.services.store, action="kb_import")[:1]
    assert entry.target == "новая база.xlsx" and "2 new" in entry.detail and "2 rows rejected" in entry.detail


def test_switch_an_entry_off_and_it_is_never_suggested(served, page, artifacts):
    services = served.services
    text = "Принтер зажевал бумагу, что делать?"
    top = services.engine.ask(text, compose=False, policy=services.policies.current().decision).hits[0]
    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/kb?lang=en")
    page.get_by_label("Search").fill(top.title or top.entry_id)
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    with page.expect_navigation():
        page.locator("tr.kb-row").first.get_by_role("link").click()
    assert top.answer.split("\n")[0][:30] in page.locator("main").inner_text() or page.url.endswith(top.entry_id)
    page.goto(served.base + "/admin/kb/entry?lang=en&id=" + top.entry_id)
    assert axe_violations(page) == []
    with page.expect_navigation():
        page.get_by_role("button", name="Switch off").click()
    assert "Switched off: never suggested" in page.locator("main").inner_text()
    hits = services.engine.ask(text, compose=False, policy=services.policies.current().decision).hits
    assert top.entry_id not in [h.entry_id for h in hits]
    with page.expect_navigation():
        page.get_by_role("button", name="Switch on").click()
    hits = services.engine.ask(text, compose=False, policy=services.policies.current().decision).hits
    assert hits[0].entry_id == top.entry_id
    page.screenshot(path=str(artifacts / "kb_entry.png"), full_page=True)


def test_delete_a_wrong_learned_pair(served, page):
    services = served.services
    entry = services.engine.store.entries()[0]
    assert services.engine.learn("совсем не про это, ошибочная пара", entry.id, positive=True, origin="test")
    pair = console.learned_pairs(services.engine)[0]
    sign_in(page, served, "root", ADMIN_PW)
    page.goto(served.base + "/admin/kb/learned?lang=en")
    assert "ошибочная пара" in page.locator(f"#pair-{pair.id}").inner_text()
    assert axe_violations(page) == []
    with page.expect_navigation():
        page.get_by_role("button", name=f"Delete #{pair.id}").click()
    assert page.get_by_role("status").inner_text() == "The learned pair was deleted."
    assert page.locator(f"#pair-{pair.id}").count() == 0
    assert pair.id not in [p.id for p in console.learned_pairs(services.engine)]
    assert f"l{pair.id}" not in services.engine.vectors.ids("learned")
