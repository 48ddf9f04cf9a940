"""The admin console through the real app (Flask's test client): sign-in, lockout, CSRF, roles, steering
applied through the Policies the pipeline asks, the queue actions, the audit log, and no secret anywhere."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin.cli import main as cli
from plugin.service import console
from plugin.web import admin as admin_web
from plugin.web.app import create_app
from tests.plugin.web_app import API_KEYS, GLPI_SECRET, PLUGIN_TOKEN, REDMINE_SECRET, boundary_services

ADMIN_PW = "correct horse battery staple"
ANALYST_PW = "analyst password 12345"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    s = boundary_services(tmp_path_factory.mktemp("var"),
                          admin={"throttle": {"account_max_failures": 3, "ip_max_failures": 50}})
    console.create_user(s.store, "Root", ADMIN_PW, role="admin")
    console.create_user(s.store, "ann", ANALYST_PW, role="analyst")
    return s


@pytest.fixture(scope="module")
def app(services):
    return create_app(services.settings, services=services)


@pytest.fixture
def client(app):
    return app.test_client()


def token(client, path: str = "/admin/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = CSRF_RE.search(html)
    assert m, html[:500]
    return m.group(1)


def sign_in(client, login: str, password: str, **kw):
    return client.post("/admin/login", data={"login": login, "password": password, "csrf_token": token(client)}, **kw)


def test_pages_need_a_session(client):
    for path in ("/admin/", "/admin/queue", "/admin/steering", "/admin/settings", "/admin/audit"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login"), path


def test_the_analytics_pages_are_the_consoles_for_analysts_and_admins(app):
    c = app.test_client()
    r = c.get("/admin/analytics/economics?lang=en")
    assert r.status_code == 302
    r = sign_in(c, "ann", ANALYST_PW, query_string={"next": "/admin/analytics/economics?lang=en"})
    assert r.status_code == 302 and r.headers["Location"] == "/admin/analytics/economics?lang=en"
    page = c.get("/admin/analytics?lang=en")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ">Analytics</h1>" in html and 'href="/admin/analytics/economics"' in html
    assert 'href="/admin/analytics"' in c.get("/admin/?lang=en").get_data(as_text=True)  # in the console's menu
    assert c.get("/admin/analytics?format=json").status_code == 200
    c.post("/admin/logout", data={"csrf_token": token(c, "/admin/")})
    assert c.get("/admin/analytics?format=json").status_code == 401


def test_sign_in_sets_a_safe_cookie_and_shows_the_pages(client, services):
    r = sign_in(client, "root", "wrong password!")
    assert r.status_code == 401
    assert "Wrong login or password." in r.get_data(as_text=True) or "Неверный логин или пароль." in r.get_data(
        as_text=True)
    r = sign_in(client, "  ROOT ", ADMIN_PW)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/"
    [cookie] = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("hda_admin=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here
    for path in ("/admin/", "/admin/queue", "/admin/steering", "/admin/settings", "/admin/audit"):
        r = client.get(path + "?lang=en")
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
    [entry] = console.audit_entries(services.store, action="sign_in", actor="root")[:1]
    assert entry.detail == "via local, role admin" and entry.ip == "127.0.0.1"


def test_the_cookie_is_secure_over_https(app):
    c = app.test_client()
    html = c.get("/admin/login", base_url="https://console.example").get_data(as_text=True)
    tok = CSRF_RE.search(html).group(1)
    r = c.post("/admin/login", data={"login": "root", "password": ADMIN_PW, "csrf_token": tok},
               base_url="https://console.example", headers={"Referer": "https://console.example/admin/login"})
    assert r.status_code == 302
    [cookie] = [x for x in r.headers.getlist("Set-Cookie") if x.startswith("hda_admin=")]
    assert "Secure" in cookie


def test_repeated_failures_lock_the_account_even_for_the_right_password(app, services):
    c = app.test_client()
    services.store.throttle.purge(float("inf"))
    console.create_user(services.store, "victim", "victim password 1", role="analyst")
    statuses = [sign_in(c, "victim", f"guess {i} wrong").status_code for i in range(3)]
    assert statuses == [401, 401, 429]
    r = sign_in(c, "victim", "victim password 1")
    assert r.status_code == 429
    body = r.get_data(as_text=True)
    assert "Too many failed attempts" in body or "Слишком много неудачных попыток" in body
    assert c.get("/admin/").status_code == 302  # not signed in
    assert console.audit_entries(services.store, action="sign_in_locked", actor="victim")
    services.store.throttle.purge(float("inf"))


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(client, services):
    assert sign_in(client, "root", ADMIN_PW).status_code == 302
    before = console.override_values(services.store)
    audit_before = len(console.audit_entries(services.store))
    for data in ({"what": "threshold", "value": "0.9"},
                 {"what": "threshold", "value": "0.9", "csrf_token": "not-the-token"},
                 {"what": "threshold", "value": "0.9", "csrf_token": token(client, "/admin/steering") + "x"}):
        r = client.post("/admin/steering", data=data)
        assert r.status_code == 400
        assert "The form was refused" in r.get_data(as_text=True) or "Форма отклонена" in r.get_data(as_text=True)
    # The login form too.
    assert client.post("/admin/login", data={"login": "root", "password": ADMIN_PW}).status_code == 400
    assert console.override_values(services.store) == before
    assert len(console.audit_entries(services.store)) == audit_before
    assert services.policies.current().decision.threshold == services.settings.decision.threshold


def test_steering_applies_to_the_next_request_and_is_audited(client, services):
    sign_in(client, "root", ADMIN_PW)
    tok = token(client, "/admin/steering")
    r = client.post("/admin/steering", data={"what": "category", "category": "Печать", "enabled": "off",
                                             "threshold": "0.8", "csrf_token": tok})
    assert r.status_code == 302
    policy = services.policies.current()
    assert "Печать" in policy.decision.disabled_categories
    assert policy.decision.threshold_for("Печать") == 0.8
    r = client.post("/admin/steering", data={"what": "shadow", "source": "glpi", "value": "on", "csrf_token": tok})
    assert services.policies.current().shadow_mode_for("glpi") is True
    assert services.policies.current().shadow_mode_for("redmine") is False
    r = client.post("/admin/steering", data={"what": "lifetime", "value": "2", "csrf_token": tok})
    assert services.links.lifetime_s == 2 * 86_400
    [entry] = console.audit_entries(services.store, action="override", text="disabled_categories")[:1]
    assert (entry.actor, entry.before, entry.after) == ("root", None, ["Печать"])
    page = client.get("/admin/steering?lang=en").get_data(as_text=True)
    assert 'data-category="Печать"' in page and "root," in page
    # Back to the file's values.
    for key in ("disabled_categories", "category_thresholds", "shadow.glpi", "links.lifetime_days"):
        assert client.post("/admin/steering", data={"what": "reset", "key": key, "csrf_token": tok}).status_code == 302
    policy = services.policies.current()
    assert not policy.decision.disabled_categories and "Печать" not in policy.decision.category_thresholds
    assert services.links.lifetime_s == services.settings.links.lifetime_days * 86_400
    [entry] = console.audit_entries(services.store, action="override", text="links.lifetime_days")[:1]
    assert (entry.before, entry.after) == (2.0, None)


@pytest.mark.parametrize("data, field", [
    ({"what": "threshold", "value": "1.5"}, "threshold"),
    ({"what": "threshold", "value": "nan"}, "threshold"),
    ({"what": "lifetime", "value": "-1"}, "links.lifetime_days"),
    ({"what": "category", "category": "VPN", "threshold": "abc"}, "threshold of VPN"),
])
def test_bad_values_are_refused_naming_the_field(client, services, data, field):
    sign_in(client, "root", ADMIN_PW)
    before = console.override_values(services.store)
    r = client.post("/admin/steering", data={**data, "csrf_token": token(client, "/admin/steering")})
    assert r.status_code == 400
    assert field in r.get_data(as_text=True)
    assert console.override_values(services.store) == before


def test_malformed_requests_get_a_page_not_a_500(client):
    sign_in(client, "root", ADMIN_PW)
    tok = token(client, "/admin/queue")
    assert client.post("/admin/queue/1/discard", data={"csrf_token": tok}).status_code == 400  # no reason
    assert client.post("/admin/steering", data={"what": "nonsense", "csrf_token": tok}).status_code == 400
    assert client.post("/admin/steering", data={"what": "shadow", "source": "glpi", "value": "maybe",
                                                "csrf_token": tok}).status_code == 400
    assert client.post("/admin/steering", data={"what": "reset", "key": "secret_key",
                                                "csrf_token": tok}).status_code == 400
    assert client.post("/admin/queue/999999/retry", data={"csrf_token": tok}).status_code == 302
    assert client.get("/admin/queue?status=<script>").status_code == 200
    assert client.get("/admin/audit?action=x&actor=%00&q=" + "a" * 5000).status_code == 200


def test_an_analyst_sees_but_cannot_change(app, services):
    c = app.test_client()
    assert sign_in(c, "ann", ANALYST_PW).status_code == 302
    steering_page = c.get("/admin/steering?lang=en").get_data(as_text=True)
    assert 'name="what"' not in steering_page and "Save" not in steering_page
    queue_page = c.get("/admin/queue?lang=en").get_data(as_text=True)
    assert "Retry" not in queue_page and "Discard" not in queue_page
    tok = token(c, "/admin/steering")
    before = console.override_values(services.store)
    for path, data in (("/admin/steering", {"what": "threshold", "value": "0.1"}),
                       ("/admin/steering", {"what": "category", "category": "VPN", "enabled": "off"}),
                       ("/admin/queue/retry-dead", {}),
                       ("/admin/queue/1/retry", {}),
                       ("/admin/queue/1/discard", {"reason": "because"})):
        r = c.post(path, data={**data, "csrf_token": tok})
        assert r.status_code == 403, path
    assert console.override_values(services.store) == before
    assert console.audit_entries(services.store, action="refused", actor="ann")


def test_an_idle_session_ends(app, monkeypatch):
    c = app.test_client()
    sign_in(c, "root", ADMIN_PW)
    assert c.get("/admin/").status_code == 200
    real = admin_web._now()
    monkeypatch.setattr(admin_web, "_now", lambda: real + 31 * 60)
    r = c.get("/admin/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login")
    monkeypatch.setattr(admin_web, "_now", lambda: real)
    assert c.get("/admin/").status_code == 302  # the session was cleared, not only refused once


def test_create_user_from_the_command_line(tmp_path: Path, services):
    runner = CliRunner()
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path), "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"}
    r = runner.invoke(cli, ["admin", "create-user", "Olga", "--role", "admin", "--password-stdin"],
                      input="a long enough password\n", env=env)
    assert r.exit_code == 0, r.output
    assert "created olga (admin)" in r.output
    r = runner.invoke(cli, ["admin", "create-user", "Olga", "--role", "admin", "--password-stdin"],
                      input="a long enough password\n", env={**env, "HELPDESK_ASSIST_ADMIN_LANGUAGE": "ru"})
    assert r.exit_code == 0 and "olga (admin)" in r.output and "updated" not in r.output, r.output
    r = runner.invoke(cli, ["admin", "create-user", "petr", "--password-stdin"], input="short\n", env=env)
    assert r.exit_code == 2 and "password: at least" in r.output
    from plugin.store import Store

    store = Store.open(tmp_path / "state.sqlite3")
    user = store.admin.user("olga")
    assert user is not None and user.role == "admin" and user.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in user.password_hash
    assert store.admin.user("petr") is None


def test_no_secret_in_pages_logs_or_the_audit_log(app, services, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [GLPI_SECRET, REDMINE_SECRET, PLUGIN_TOKEN, *API_KEYS, "k" * 32, ADMIN_PW, ANALYST_PW,
               "wrong password!"]
    c = app.test_client()
    sign_in(c, "root", "wrong password!")
    sign_in(c, "root", ADMIN_PW)
    pages = [c.get(p + "?lang=" + lang).get_data(as_text=True)
             for p in ("/admin/", "/admin/check", "/admin/queue", "/admin/steering", "/admin/settings", "/admin/audit")
             for lang in ("ru", "en")]
    settings_page = pages[8]
    assert "glpi.webhook_secret" in settings_page and console.HIDDEN in settings_page
    assert "api.keys" in settings_page
    audit = [repr(e) for e in console.audit_entries(services.store, limit=10_000)]
    logs = [r.getMessage() for r in caplog.records]
    for secret in secrets:
        for where, texts in (("page", pages), ("audit", audit), ("log", logs)):
            assert not any(secret in t for t in texts), (where, secret[:6])


def test_the_audit_log_filters_by_action_who_and_text(client, services):
    sign_in(client, "root", ADMIN_PW)
    console.audit(services.store, actor="root", action="queue_discard", target="#7", detail="дубликат заявки Ёлка")
    rows = console.audit_entries(services.store, action="queue_discard", text="ЁЛКА")
    assert [(r.actor, r.target) for r in rows] == [("root", "#7")]
    assert console.audit_entries(services.store, action="queue_discard", actor="ann") == []
    page = client.get("/admin/audit?lang=en&action=queue_discard&q=ёлка").get_data(as_text=True)
    assert page.count('class="audit-row"') == 1 and "дубликат заявки Ёлка" in page
    # The form shows the filter it applied (the shared macros of admin/_filters.html).
    assert '<option value="queue_discard" selected>' in page and 'name="q" value="ёлка"' in page
    assert 'role="search"' in page


def test_knowledge_base_pages_switch_an_entry_and_import_a_file(client, services, tmp_path):
    from tests.dataset.xlsx_util import FAQ_HEADER, write_xlsx

    sign_in(client, "root", ADMIN_PW)
    entry = services.engine.store.entries()[0]
    query = entry.question
    assert services.engine.ask(query, compose=False, policy=services.policies.current().decision).hits[0].entry_id \
        == entry.id
    page = client.get(f"/admin/kb/entry?lang=en&id={entry.id}").get_data(as_text=True)
    assert "Switch off" in page and 'id="count-suggested">0<' in page
    tok = CSRF_RE.search(page).group(1)
    r = client.post("/admin/kb/entry", data={"entry_id": entry.id, "enabled": "off", "csrf_token": tok})
    assert r.status_code == 302
    hits = services.engine.ask(query, compose=False, policy=services.policies.current().decision).hits
    assert entry.id not in [h.entry_id for h in hits]
    assert f'href="/admin/kb/entry?id={entry.id}"' in client.get("/admin/steering").get_data(as_text=True)
    assert client.post("/admin/kb/entry", data={"entry_id": "no-such-entry", "enabled": "off",
                                               "csrf_token": tok}).status_code == 404
    client.post("/admin/kb/entry", data={"entry_id": entry.id, "enabled": "on", "csrf_token": tok})
    assert entry.id not in console.disabled_entries(services.store)

    book = write_xlsx(tmp_path / "kb.xlsx", [
        FAQ_HEADER,
        ("Сканер", "Сканер не видит компьютер", "Переустановите драйвер TWAIN.", "Принтеры и сканеры", "Сканеры"),
        ("Пусто", "Вопрос без ответа", "", "Принтеры и сканеры", "Сканеры"),
    ])
    with book.open("rb") as f:
        r = client.post("/admin/kb/import", data={"file": (f, "kb.xlsx"), "csrf_token": tok},
                        content_type="multipart/form-data")
    assert r.status_code == 302
    job_id = r.headers["Location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    while services.kb_imports.get(job_id).state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    job = services.kb_imports.get(job_id)
    assert (job.state, job.rows_read, job.imported, len(job.rejected)) == ("done", 2, 1, 1)
    page = client.get(f"/admin/kb/import/{job_id}?lang=en").get_data(as_text=True)
    assert page.count('class="rejected"') == 1 and 'data-state="done"' in page
    assert not list((services.settings.data_dir / "uploads").iterdir())  # the upload is removed
    with book.open("rb") as f:
        r = client.post("/admin/kb/import", data={"file": (f, "kb.exe"), "csrf_token": tok},
                        content_type="multipart/form-data")
    assert r.status_code == 400 and ".xlsx or .csv" in r.get_data(as_text=True)


FIELDS = ("what", "key", "value", "source", "category", "enabled", "threshold", "reason", "kind", "entry_id",
          "login", "password")
POSTS = ("/admin/steering", "/admin/queue/retry-dead", "/admin/queue/1/retry", "/admin/queue/1/discard",
         "/admin/kb/entry", "/admin/kb/learned/1/delete", "/admin/kb/import", "/admin/login")


def test_random_forms_to_every_console_post_never_get_a_500(app, services):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    c = app.test_client()
    sign_in(c, "root", ADMIN_PW)
    tok = token(c, "/admin/steering")
    values = st.sampled_from(["on", "off", "*", "glpi", "threshold", "shadow", "category", "reset", "lifetime",
                              "disabled_categories", "1e309", "-0", "nan", "0.5", ""]) | st.text(max_size=300)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(path=st.sampled_from(POSTS), form=st.dictionaries(st.sampled_from(FIELDS), values, max_size=6))
    def check(path: str, form: dict[str, str]) -> None:
        r = c.post(path, data={**form, "csrf_token": tok})
        assert r.status_code < 500, (path, form, r.get_data(as_text=True)[:300])
        if path == "/admin/login" and r.status_code == 302:  # a random form never signs anyone in
            raise AssertionError(form)

    check()
    # Whatever happened, the policy in effect is still a valid one.
    services.policies.current()
    for key in list(console.override_values(services.store)):
        services.store.admin.set_override(key, None, by="test", audit={})
    services.store.throttle.purge(float("inf"))  # the random sign-ins counted against 127.0.0.1


def test_the_last_24_hours_in_numbers(services, client):
    from plugin.store.suggestions import Suggestion

    store = services.store
    now = store.clock()
    before = console.last_24h(store)
    for i, (mode, at) in enumerate((("public", now - 60), ("abstain", now - 120), ("shadow", now - 3600),
                                    ("public", now - 2 * 86_400))):
        store.suggestions.create(Suggestion(id=f"d24h{i:08d}", source="glpi", ticket_id=f"24h-{i}", created_at=at,
                                            mode=mode, language="ru"))
    store.suggestions.record_outcome("d24h00000000", "solved", via="link")
    after = console.last_24h(store)
    assert {k: after[k] - before[k] for k in after} == {
        "seen": 3, "answered": 1, "agents_only": 2, "confirmed": 1, "rejected": 0, "handed_off": 0}
    sign_in(client, "root", ADMIN_PW)
    page = client.get("/admin/?lang=en").get_data(as_text=True)
    assert f"<dt>Tickets seen</dt><dd>{after['seen']}</dd>" in page


def test_the_queue_shows_retrying_and_dead_items_with_reason_and_attempts(client, services):
    inbox = services.store.inbox
    retrying = inbox.enqueue("glpi", "console_test", "console-test-retrying", {})
    dead = inbox.enqueue("glpi", "console_test", "console-test-dead", {})
    for item_id, bury in ((retrying, False), (dead, True)):
        item = inbox.claim("test-owner", 60, kinds=["console_test"])
        assert item is not None and item.id == item_id
        if bury:
            inbox.bury(item.id, "test-owner", "HTTP 503 from GLPI", gave_up=True)
        else:
            inbox.retry_later(item.id, "test-owner", "connection refused", 3600)
    sign_in(client, "root", ADMIN_PW)
    page = client.get("/admin/queue?lang=en").get_data(as_text=True)
    row = page[page.index(f'id="item-{retrying}"'):]
    row = row[: row.index("</tr>")]
    assert "retrying" in row and "connection refused" in row and "<td>1</td>" in row
    row = page[page.index(f'id="item-{dead}"'):]
    row = row[: row.index("</tr>")]
    assert 'data-status="dead"' in row and "HTTP 503 from GLPI" in row and "Retry" in row
    tok = token(client, "/admin/queue")
    r = client.post("/admin/queue/retry-dead", data={"kind": "console_test", "csrf_token": tok})
    assert r.status_code == 302
    assert inbox.get(dead).status == "pending"
    assert inbox.get(retrying).status == "pending"
    r = client.post(f"/admin/queue/{dead}/discard", data={"reason": "test item", "csrf_token": tok})
    assert inbox.get(dead).status == "discarded" and inbox.get(dead).discard_reason == "test item"
    [entry] = console.audit_entries(services.store, action="queue_discard", text="test item")[:1]
    assert entry.target == f"#{dead}"
    inbox.discard(retrying, reason="test over")


def test_a_new_password_or_role_ends_the_sessions_of_a_local_account(app, services):
    console.create_user(services.store, "temp", "first password 123", role="admin")
    c = app.test_client()
    assert sign_in(c, "temp", "first password 123").status_code == 302
    assert c.get("/admin/").status_code == 200
    time.sleep(0.01)
    console.create_user(services.store, "temp", "second password 123", role="analyst")
    r = c.get("/admin/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login")
    assert sign_in(c, "temp", "second password 123").status_code == 302
    assert 'name="what"' not in c.get("/admin/steering").get_data(as_text=True)  # now an analyst


def test_an_admin_rewords_and_closes_an_outage_incident_and_an_analyst_only_sees_it(app, services):
    from plugin.store.incidents import Member

    now = time.time()
    members = [Member(request_id=f"glpi:{n}", source="glpi", ticket_id=str(n), channel="glpi",
                      text="почта не работает", at=now) for n in (901, 902, 903)]
    assert services.store.incidents.open_incident("inc-console-test", opened_at=now,
                                                  representative="почта не работает", members=members)
    analyst = app.test_client()
    sign_in(analyst, "ann", ANALYST_PW)
    page = analyst.get("/admin/?lang=en").get_data(as_text=True)
    assert 'data-incident="inc-console-test"' in page and "почта не работает" in page
    assert "incident-banner" in page  # the banner on every console page
    assert "Close the incident" not in page
    tok = token(analyst, "/admin/")
    assert analyst.post("/admin/incidents/inc-console-test/close", data={"csrf_token": tok}).status_code == 403
    assert services.store.incidents.get("inc-console-test").status == "open"

    admin = app.test_client()
    sign_in(admin, "root", ADMIN_PW)
    tok = token(admin, "/admin/")
    assert admin.post("/admin/incidents/inc-console-test/close", data={}).status_code == 400  # no CSRF token
    r = admin.post("/admin/incidents/inc-console-test/message",
                   data={"message": "Почтовый сервер <b>недоступен</b>, чиним", "csrf_token": tok})
    assert r.status_code == 302
    page = admin.get("/admin/").get_data(as_text=True)
    assert "Почтовый сервер &lt;b&gt;недоступен&lt;/b&gt;, чиним" in page and "<b>недоступен" not in page
    assert admin.post("/admin/incidents/no-such/message", data={"message": "x", "csrf_token": tok}).status_code == 404
    r = admin.post("/admin/incidents/inc-console-test/close", data={"csrf_token": tok})
    assert r.status_code == 302
    assert services.store.incidents.get("inc-console-test").status == "closed"
    page = admin.get("/admin/?lang=en").get_data(as_text=True)
    assert 'data-incident="inc-console-test"' not in page and "No open incident." in page
    actions = [(a.action, a.target, a.actor) for a in services.store.admin.audit_entries(text="inc-console-test")]
    assert ("incident_close", "inc-console-test", "root") in actions
    assert ("incident_message", "inc-console-test", "root") in actions
    assert ("refused", "/admin/incidents/inc-console-test/close", "ann") in actions or any(
        a == "refused" for a, _, who in actions if who == "ann")


def test_chat_answers_are_listed_with_the_tickets(app, services):
    conv = services.chat.start("c:console-test-person", "Как подключить принтер, который стоит у меня в кабинете?")
    turn = conv.turns[0]
    assert turn.reply == "answer" and turn.suggestion_id
    c = app.test_client()
    sign_in(c, "ann", ANALYST_PW)
    page = c.get("/admin/tickets?source=chat&lang=en").get_data(as_text=True)
    assert f"chat #{conv.id}:1" in page and "Как подключить принтер" in page
    detail = c.get(f"/admin/tickets/{turn.suggestion_id}?lang=en")
    assert detail.status_code == 200 and "Как подключить принтер" in detail.get_data(as_text=True)
