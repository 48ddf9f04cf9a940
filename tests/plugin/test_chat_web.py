"""The chat pages and the chat API through the real app (a fast embedder: these tests are about the web
boundary: identity, CSRF, owners, escaping, headers, bad input, rate limits; the answers themselves are
tested on the real engine in tests/plugin/service/test_chat.py and in the browser)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from plugin.web.app import create_app
from tests.plugin.web_app import auth, boundary_services


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return boundary_services(
        tmp_path_factory.mktemp("chat-web"),
        chat={"messages_per_minute": 5, "ip_messages_per_minute": 1000, "frame_ancestors": ["https://glpi.example.com"],
              "identity_header": "X-Remote-User"},
    )


@pytest.fixture
def app(services: Any) -> Any:
    return create_app(services.settings, services=services)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def start(client: Any, text: str = "Не могу подключиться к VPN из дома") -> tuple[str, str]:
    page = client.get("/chat")
    token = csrf_of(page.get_data(as_text=True))
    r = client.post("/chat", data={"text": text, "csrf": token})
    assert r.status_code == 303, r.get_data(as_text=True)[:500]
    conv_id = r.headers["Location"].split("/chat/c/")[1].split("#")[0]
    return conv_id, token


def test_first_visit_sets_a_signed_httponly_cookie_and_safe_headers(app: Any) -> None:
    client = app.test_client()
    r = client.get("/", headers={"Accept-Language": "en"})
    assert r.status_code == 200 and "Ask IT support" in r.get_data(as_text=True)
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("hda_chat=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors https://glpi.example.com" in csp
    assert "X-Frame-Options" not in r.headers
    # A second page keeps the cookie (no new one), and the Russian page by the browser's language.
    r2 = client.get("/chat", headers={"Accept-Language": "ru"})
    assert "Set-Cookie" not in r2.headers or not r2.headers["Set-Cookie"].startswith("hda_chat=")
    assert "Вопрос в ИТ-поддержку" in r2.get_data(as_text=True)


def test_a_conversation_without_javascript_and_its_privacy(app: Any) -> None:
    alice = app.test_client()
    conv_id, token = start(alice, "<script>alert(1)</script> VPN не подключается")
    page = alice.get(f"/chat/c/{conv_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(conv_id) >= 22
    r = alice.post(f"/chat/c/{conv_id}", data={"text": "а на маке?", "csrf": token})
    assert r.status_code == 303
    assert alice.get(f"/chat/c/{conv_id}").get_data(as_text=True).count('class="turn"') == 2
    # Another browser (another cookie) gets a 404 for the same id, and cannot post to it.
    bob = app.test_client()
    assert bob.get(f"/chat/c/{conv_id}").status_code == 404
    bob_token = csrf_of(bob.get("/chat").get_data(as_text=True))
    assert bob.post(f"/chat/c/{conv_id}", data={"text": "hi", "csrf": bob_token}).status_code == 404
    assert bob.post(f"/chat/c/{conv_id}", data={"text": "hi", "csrf": token}).status_code == 403  # not his token
    assert conv_id not in bob.get("/chat").get_data(as_text=True)
    # A forged cookie is not an identity: a new anonymous one is made.
    forged = app.test_client()
    forged.set_cookie("hda_chat", "c:" + conv_id)
    assert forged.get(f"/chat/c/{conv_id}").status_code == 404


def test_csrf_and_bad_input_name_the_problem(app: Any) -> None:
    client = app.test_client()
    conv_id, token = start(client)
    assert client.post("/chat", data={"text": "x"}).status_code == 403
    r = client.post("/chat", data={"text": "   ", "csrf": token}, headers={"Accept-Language": "en"})
    assert r.status_code == 400 and "Your question: Please check this field" in r.get_data(as_text=True)
    r = client.post(f"/chat/c/{conv_id}", data={"text": "x" * 5000, "csrf": token}, headers={"Accept-Language": "en"})
    assert r.status_code == 400 and "Your question" in r.get_data(as_text=True)
    r = client.post(f"/chat/c/{conv_id}/rate", data={"turn": "99", "helpful": "1", "csrf": token})
    assert r.status_code == 400
    r = client.post(f"/chat/c/{conv_id}/choose", data={"option": "zz", "csrf": token})
    assert r.status_code == 400
    r = client.post(f"/chat/c/{conv_id}/handoff", data={"login": "a", "csrf": token}, headers={"Accept-Language": "en"})
    assert r.status_code == 409 and "not configured" in r.get_data(as_text=True)  # no helpdesk opens tickets here


def test_htmx_gets_the_fragment(app: Any) -> None:
    client = app.test_client()
    conv_id, token = start(client)
    r = client.post(f"/chat/c/{conv_id}", data={"text": "не помогло", "csrf": token}, headers={"HX-Request": "true"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and html.lstrip().startswith('<div id="conversation"') and "<html" not in html


def test_the_sso_header_is_the_identity_when_configured(app: Any) -> None:
    a = app.test_client()
    page = a.get("/chat", headers={"X-Remote-User": "Ivanov"})
    token = csrf_of(page.get_data(as_text=True))
    r = a.post("/chat", data={"text": "Как настроить почту на телефоне", "csrf": token},
               headers={"X-Remote-User": "ivanov"})
    conv_id = r.headers["Location"].split("/chat/c/")[1].split("#")[0]
    # The same person from another browser (the proxy says who), and from the API, sees it.
    assert app.test_client().get(f"/chat/c/{conv_id}", headers={"X-Remote-User": "IVANOV"}).status_code == 200
    r = a.get(f"/api/chat/conversations/{conv_id}", headers={**auth(), "X-Chat-User": "ivanov"})
    assert r.status_code == 200 and r.get_json()["id"] == conv_id
    # With the header, the hand-off form does not ask for the login.
    assert 'name="login"' not in a.get(f"/chat/c/{conv_id}", headers={"X-Remote-User": "ivanov"}).get_data(as_text=True)


def test_rate_limit_per_person_is_a_clear_429(app: Any) -> None:
    client = app.test_client()
    conv_id, token = start(client)
    statuses = [client.post(f"/chat/c/{conv_id}", data={"text": f"вопрос {i}", "csrf": token},
                            headers={"Accept-Language": "en"}) for i in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and "Too many messages" in limited[0].get_data(as_text=True)
    assert int(limited[0].headers["Retry-After"]) >= 1


def test_the_api(app: Any) -> None:
    client = app.test_client()
    headers = {**auth(), "X-Chat-User": "petrov"}
    assert client.post("/api/chat/conversations", json={"text": "VPN"}).status_code == 401
    r = client.post("/api/chat/conversations", json={"text": "VPN"}, headers=auth())
    assert r.status_code == 400 and r.get_json()["field"] == "X-Chat-User"
    r = client.post("/api/chat/conversations", json={"text": 5}, headers=headers)
    assert r.status_code == 400 and r.get_json()["field"] == "text"
    r = client.post("/api/chat/conversations", data="{", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/api/chat/conversations", json={"text": "Не печатает принтер"}, headers=headers)
    assert r.status_code == 201, r.get_data(as_text=True)
    conv = r.get_json()
    assert conv["turns"][0]["message"] == "Не печатает принтер"
    body = r.get_data(as_text=True)
    assert "confidence" not in body and "score" not in body and "entry_id" not in body  # nothing internal
    r = client.post(f"/api/chat/conversations/{conv['id']}/messages", json={"text": "не помогло"}, headers=headers)
    assert r.status_code == 200 and len(r.get_json()["turns"]) == 2
    answer = next((t for t in r.get_json()["turns"] if t["reply"] == "answer"), None)
    if answer is not None:
        r = client.post(f"/api/chat/conversations/{conv['id']}/ratings",
                        json={"turn": answer["n"], "helpful": False, "reason": "not_related"}, headers=headers)
        assert r.status_code == 200 and r.get_json()["first_time"] in (True, False)
    r = client.post(f"/api/chat/conversations/{conv['id']}/ratings", json={"turn": 1, "helpful": "no"},
                    headers=headers)
    assert r.status_code == 400 and r.get_json()["field"] in ("turn", "helpful")
    other = {**auth(), "X-Chat-User": "sidorov"}
    assert client.get(f"/api/chat/conversations/{conv['id']}", headers=other).status_code == 404
    assert client.get("/api/chat/conversations", headers=other).get_json() == {"conversations": []}
    listed = client.get("/api/chat/conversations", headers=headers).get_json()["conversations"]
    assert [c["id"] for c in listed] == [conv["id"]]


def test_a_restore_link_changes_nothing_on_get_and_restores_on_post(app: Any, services: Any) -> None:
    alice = app.test_client()
    conv_id, _token = start(alice, "Как настроить почту на андроиде")
    cookie = alice.get_cookie("hda_chat")
    assert cookie is not None
    me = services.chat.identities.from_cookie(cookie.value)
    link = "/chat/restore/" + services.chat.identities.restore_token(me)
    other = app.test_client()
    page = other.get(link, headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "Restore my conversations" in page.get_data(as_text=True)
    assert other.get(f"/chat/c/{conv_id}").status_code == 404  # the GET restored nothing
    assert other.post(link, data={}).status_code == 403  # no CSRF token
    r = other.post(link, data={"csrf": csrf_of(page.get_data(as_text=True))})
    assert r.status_code == 303
    assert other.get(f"/chat/c/{conv_id}").status_code == 200
    assert other.get("/chat/restore/garbage").status_code == 404


def test_with_an_llm_the_page_listens_for_the_answer_by_server_sent_events(tmp_path: Any) -> None:
    import time

    from tests.rag.llm.fakes import ScriptedLLM

    def slow(_messages: Any) -> str:
        time.sleep(0.8)
        return "Переустановите клиент VPN и перезагрузите компьютер [1]."

    # Every first message answered (no threshold, no clarifying question): this test is about the page.
    services = boundary_services(tmp_path, decision={"threshold": 0.0}, chat={"max_clarify_rounds": 0})
    services.engine.llm = ScriptedLLM([slow])
    app = create_app(services.settings, services=services)
    client = app.test_client()
    conv_id, _token = start(client, "VPN не подключается из дома, что делать?")
    page = client.get(f"/chat/c/{conv_id}").get_data(as_text=True)
    assert "vendor/htmx-ext-sse.js" in page and 'sse-swap="update"' in page
    assert "A fuller answer" in page or "более полный ответ" in page
    r = client.get(f"/chat/c/{conv_id}/events")
    assert r.mimetype == "text/event-stream"
    body = r.get_data(as_text=True)
    assert body.startswith(": writing") and "event: update\ndata: <div id=\"conversation\"" in body
    assert "Переустановите клиент VPN и перезагрузите компьютер [1]." in body and "sse-connect" not in body
    assert app.test_client().get(f"/chat/c/{conv_id}/events").status_code == 404  # another person
    services.chat.wait_compositions(10)


def test_an_open_outage_shows_its_banner_and_answers_its_requests_with_its_message(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    services = boundary_services(tmp_path_factory.mktemp("chat-outage"),
                                 outages={"enabled": True, "min_requests": 3},
                                 chat={"ip_messages_per_minute": 1000, "messages_per_minute": 1000})
    app = create_app(services.settings, services=services)
    said = ["Не работает почта, Outlook не подключается к серверу", "не работает почта, аутлук не подключается",
            "Почта не работает! Outlook не может подключиться к серверу",
            "Не работает почта: Outlook не подключается к серверу"]
    last = ""
    for text in said:
        client = app.test_client()  # each one another person
        conv_id, _ = start(client, text)
        last = client.get(f"/chat/c/{conv_id}", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    [incident] = services.store.incidents.find(status="open")
    services.store.incidents.set_message(incident.id, "Почтовый сервер недоступен <b>, чиним")
    # The banner on the chat's pages (escaped), and the known-problem reply in the conversation.
    page = app.test_client().get("/chat", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert 'class="notice warn incident-banner"' in page
    assert "Почтовый сервер недоступен &lt;b&gt;, чиним" in page and "<b>," not in page
    assert "incident-reply" in last
