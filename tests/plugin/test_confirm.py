"""The confirmation pages with a fake outcome backend: GET shows and changes nothing, POST records once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from plugin.service.links import LinkSigner
from plugin.service.outcomes import RecordResult, SuggestionView
from plugin.web.confirm import confirm_bp
from plugin.web.context import EXTENSION

SECRET = "test-secret-0123456789abcdef0123"
DAY = 86_400.0
SID_RU, SID_EN = "sugg-ru-0001", "sugg-en-0002"


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeOutcomes:
    """Keeps the first outcome per suggestion, like the real backend, and records every call."""

    def __init__(self, views: dict[str, SuggestionView]) -> None:
        self.views = views
        self.viewed: list[str] = []
        #: How fresh each view asked the ticket's state to be.
        self.states: list[str] = []
        self.records: list[dict[str, Any]] = []

    def view(self, suggestion_id: str, *, state: str = "cached") -> SuggestionView | None:
        self.viewed.append(suggestion_id)
        self.states.append(state)
        return self.views.get(suggestion_id)

    def record(self, suggestion_id, outcome, *, reason, comment, via, client) -> RecordResult:
        self.records.append(
            {
                "suggestion_id": suggestion_id,
                "outcome": outcome,
                "reason": reason,
                "comment": comment,
                "via": via,
                "client": client,
            }
        )
        view = self.views[suggestion_id]
        first = view.outcome is None
        if first:
            self.views[suggestion_id] = view.model_copy(update={"outcome": outcome})
        result = RecordResult(outcome=self.views[suggestion_id].outcome, first_time=first)
        self.records[-1]["result"] = result
        return result


@dataclass
class Services:
    links: LinkSigner
    outcomes: FakeOutcomes
    clock: Clock = field(default_factory=Clock)


def _view(sid: str, language: str, **over: Any) -> SuggestionView:
    base: dict[str, Any] = {
        "suggestion_id": sid,
        "ticket_ref": "GLPI #123" if language == "ru" else "Redmine #45",
        "ticket_title": "Не работает VPN" if language == "ru" else "VPN does not connect",
        "answer_text": "Переустановите клиент AnyConnect.\nЗатем перезагрузите компьютер."
        if language == "ru"
        else "Reinstall the AnyConnect client.\nThen restart.",
        "entries": [
            ("VPN: переустановка", "Шаг 1. Удалите клиент."),
            ("VPN: сертификат", "Обновите сертификат."),
            ("VPN: сеть", "Проверьте сеть."),
            ("Fourth", "never shown"),
        ],
        "language": language,
        "outcome": None,
        "ticket_open": True,
    }
    return SuggestionView(**(base | over))


def build_app(views: dict[str, SuggestionView] | None = None) -> tuple[Flask, Services]:
    clock = Clock()
    views = views if views is not None else {SID_RU: _view(SID_RU, "ru"), SID_EN: _view(SID_EN, "en")}
    services = Services(LinkSigner(SECRET, 14 * DAY, "http://localhost", clock=clock), FakeOutcomes(views), clock)
    app = Flask(__name__)
    app.extensions[EXTENSION] = services
    app.register_blueprint(confirm_bp)
    return app, services


@pytest.fixture
def env():
    app, services = build_app()
    return app.test_client(), services


def path(services: Services, sid: str, action: str) -> str:
    return "/r/" + services.links.token(sid, action)


def text(response) -> str:
    return response.get_data(as_text=True)


# --- GET: shows, changes nothing ---------------------------------------------------------------


def test_get_solved_shows_the_answer_and_one_button_and_records_nothing(env):
    client, svc = env
    r = client.get(path(svc, SID_RU, "solved"))
    page = text(r)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    assert '<html lang="ru">' in page
    assert "GLPI #123" in page and "Не работает VPN" in page
    assert "Переустановите клиент AnyConnect." in page
    assert "VPN: переустановка" in page and "Проверьте сеть." in page
    assert "never shown" not in page  # at most three entries
    assert page.count("<form") == 1 and page.count('type="submit"') == 1
    assert "Да, это решило проблему" in page
    assert 'name="reason"' not in page
    assert svc.outcomes.records == []
    assert svc.outcomes.viewed == [SID_RU]


def test_get_not_solved_shows_reasons_and_comment(env):
    client, svc = env
    page = text(client.get(path(svc, SID_RU, "not_solved")))
    assert re.findall(r'name="reason" value="(\w+)"', page) == ["not_related", "not_enough", "other"]
    assert '<textarea id="comment" name="comment"' in page
    assert "Нет, мне всё ещё нужна помощь" in page
    assert svc.outcomes.records == []


def test_english_wording(env):
    client, svc = env
    solved = text(client.get(path(svc, SID_EN, "solved")))
    not_solved = text(client.get(path(svc, SID_EN, "not_solved")))
    assert '<html lang="en">' in solved
    assert "Yes, this solved it" in solved and "Redmine #45" in solved
    assert "No, I still need help" in not_solved and "Related, but not enough" in not_solved
    assert "Обращение" not in solved + not_solved


@pytest.mark.parametrize("action", ["solved", "not_solved"])
def test_each_page_links_to_the_other_choice_with_the_original_issue_time(env, action):
    client, svc = env
    issued = svc.clock.now
    svc.clock.now += 3 * DAY
    page = text(client.get("/r/" + svc.links.token(SID_EN, action, issued_at=issued)))
    other = "not_solved" if action == "solved" else "solved"
    hrefs = re.findall(r'<a href="http://localhost/r/([^"]+)"', page)
    assert len(hrefs) == 1
    claim = svc.links.read(hrefs[0])
    assert (claim.suggestion_id, claim.action, claim.issued_at) == (SID_EN, other, issued)


def test_user_and_kb_text_is_escaped():
    evil = "<script>alert(1)</script>"
    views = {
        "x": _view(
            "x",
            "en",
            ticket_title=f"title {evil}",
            answer_text=f"answer {evil}",
            ticket_ref=f'ref "{evil}',
            entries=[(f"entry {evil}", f"text {evil} & <b>bold</b>")],
        )
    }
    app, svc = build_app(views)
    page = text(app.test_client().get(path(svc, "x", "not_solved")))
    assert "<script" not in page and "<b>bold" not in page
    assert "title &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "answer &lt;script&gt;" in page and "entry &lt;script&gt;" in page
    assert "text &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "ref &#34;&lt;script&gt;" in page


def test_get_with_an_outcome_already_recorded_shows_it_instead_of_the_form():
    app, svc = build_app({"x": _view("x", "en", outcome="solved", ticket_open=False)})
    page = text(app.test_client().get(path(svc, "x", "not_solved")))
    assert "You already told us that the problem is solved." in page
    assert "<form" not in page
    assert svc.outcomes.records == []


def test_get_when_the_ticket_was_closed_by_someone_else():
    app, svc = build_app({"x": _view("x", "ru", ticket_open=False)})
    r = app.test_client().get(path(svc, "x", "solved"))
    assert r.status_code == 200
    assert "Обращение уже закрыто" in text(r) and "<form" not in text(r)


def test_head_records_nothing(env):
    client, svc = env
    assert client.head(path(svc, SID_RU, "solved")).status_code == 200
    assert svc.outcomes.records == []


# --- refused links ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_expired_link_gets_410_with_what_to_do_and_records_nothing(env, method):
    client, svc = env
    url = path(svc, SID_RU, "solved")
    svc.clock.now += 15 * DAY
    r = getattr(client, method)(url, data={"reason": ""})
    page = text(r)
    assert r.status_code == 410
    assert "Срок действия ссылки истёк" in page
    assert "Ответьте в обращении GLPI #123 или свяжитесь со службой поддержки." in page
    assert "<form" not in page
    assert svc.outcomes.records == []


def test_expired_link_of_an_unknown_suggestion_is_explained_in_both_languages():
    app, svc = build_app({})
    url = path(svc, "gone", "solved")
    svc.clock.now += 15 * DAY
    r = app.test_client().get(url)
    assert r.status_code == 410
    assert "Срок действия ссылки истёк" in text(r) and "This link has expired" in text(r)
    assert text(r).index("Срок") < text(r).index("This link")  # Russian first


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),
        lambda t: "A" + t[1:] if t[0] != "A" else "B" + t[1:],
        lambda t: "garbage",
        lambda t: "x" * 5000,
        lambda t: "%00%ff%3Cscript%3E",
    ],
)
def test_tampered_link_gets_404_and_records_nothing(env, method, mangle):
    client, svc = env
    r = getattr(client, method)("/r/" + mangle(svc.links.token(SID_RU, "solved")))
    assert r.status_code == 404
    assert "Ссылка недействительна" in text(r) and "This link is not valid" in text(r)
    assert "<script" not in text(r)
    assert svc.outcomes.records == []


def test_a_link_for_an_unknown_suggestion_gets_404(env):
    client, svc = env
    r = client.post(path(svc, "never-posted", "solved"))
    assert r.status_code == 404
    assert svc.outcomes.records == []


def test_a_link_signed_with_another_secret_gets_404(env):
    client, svc = env
    other = LinkSigner("another-secret-0123456789abcdef", 14 * DAY, "http://localhost", clock=svc.clock)
    assert client.get("/r/" + other.token(SID_RU, "solved")).status_code == 404


# --- POST: records once ---------------------------------------------------------------------------


def test_post_solved_records_once_then_says_already(env):
    client, svc = env
    url = path(svc, SID_RU, "solved")
    r = client.post(
        url, headers={"User-Agent": "Mozilla/5.0 " + "x" * 500}, environ_overrides={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert r.status_code == 200
    assert "Спасибо!" in text(r) and "Ваше обращение будет закрыто." in text(r)
    assert len(svc.outcomes.records) == 1
    rec = svc.outcomes.records[0]
    assert {k: rec[k] for k in ("suggestion_id", "outcome", "reason", "comment", "via")} == {
        "suggestion_id": SID_RU,
        "outcome": "solved",
        "reason": None,
        "comment": "",
        "via": "link",
    }
    assert rec["client"]["ip"] == "10.1.2.3"
    assert rec["client"]["user_agent"].startswith("Mozilla/5.0 xxx") and len(rec["client"]["user_agent"]) == 200

    again = client.post(url)
    assert again.status_code == 200
    assert "Ответ уже записан: проблема решена." in text(again)
    assert "Спасибо!" not in text(again)
    assert len(svc.outcomes.records) == 2
    assert svc.outcomes.records[1]["result"].first_time is False


def test_post_not_solved_after_solved_shows_the_outcome_that_stands(env):
    client, svc = env
    client.post(path(svc, SID_EN, "solved"))
    r = client.post(path(svc, SID_EN, "not_solved"), data={"reason": "other", "comment": "hm"})
    assert "Already recorded: the problem is solved." in text(r)
    assert [rec["outcome"] for rec in svc.outcomes.records] == ["solved", "not_solved"]


def test_post_not_solved_passes_reason_and_comment(env):
    client, svc = env
    comment = "  Клиент не ставится:\r\nошибка 1603 <b>  "
    r = client.post(path(svc, SID_EN, "not_solved"), data={"reason": "not_enough", "comment": comment})
    assert r.status_code == 200
    assert "Thank you!" in text(r) and "An agent will get back to you." in text(r)
    [rec] = svc.outcomes.records
    assert (rec["outcome"], rec["reason"], rec["comment"]) == (
        "not_solved",
        "not_enough",
        "Клиент не ставится:\nошибка 1603 <b>",
    )


def test_post_not_solved_without_reason_or_comment(env):
    client, svc = env
    assert client.post(path(svc, SID_EN, "not_solved")).status_code == 200
    [rec] = svc.outcomes.records
    assert (rec["reason"], rec["comment"]) == (None, "")


def test_a_reason_is_not_passed_with_solved(env):
    client, svc = env
    client.post(path(svc, SID_EN, "solved"), data={"reason": "other"})
    assert svc.outcomes.records[0]["reason"] is None


@pytest.mark.parametrize(
    "data",
    [
        {"reason": "because"},
        {"reason": "<script>"},
        {"reason": "not_related", "comment": "x" * 2001},
        {"comment": "a\x00b"},
    ],
)
def test_bad_form_gets_400_and_records_nothing(env, data):
    client, svc = env
    r = client.post(path(svc, SID_EN, "not_solved"), data=data)
    assert r.status_code == 400
    assert "The form was not accepted" in text(r)
    assert "<script" not in text(r)
    assert svc.outcomes.records == []


def test_a_comment_of_exactly_the_limit_is_accepted(env):
    client, svc = env
    assert client.post(path(svc, SID_EN, "not_solved"), data={"comment": "y" * 2000}).status_code == 200
    assert len(svc.outcomes.records[0]["comment"]) == 2000


def test_post_on_a_ticket_closed_by_someone_else_records_nothing():
    app, svc = build_app({"x": _view("x", "en", ticket_open=False)})
    r = app.test_client().post(path(svc, "x", "solved"))
    assert r.status_code == 409
    assert "This ticket is already closed" in text(r)
    assert svc.outcomes.records == []


def test_post_asks_the_tickets_state_afresh_and_get_may_use_a_cached_one(env):
    client, svc = env
    client.get(path(svc, SID_EN, "solved"))
    client.post(path(svc, SID_EN, "solved"))
    assert svc.outcomes.states == ["cached", "fresh"]


@pytest.mark.parametrize("language", ["ru", "en"])
def test_post_while_the_helpdesk_cannot_say_records_nothing_and_asks_to_retry(language):
    app, svc = build_app({"x": _view("x", language, state_known=False)})
    client = app.test_client()
    page = client.get(path(svc, "x", "solved"))
    assert page.status_code == 200 and "<form" in text(page)  # unknown counts as open for a GET
    r = client.post(path(svc, "x", "solved"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "60"
    assert ("Попробуйте ещё раз" if language == "ru" else "try again in a few minutes") in text(r)
    assert svc.outcomes.records == []


def test_an_oversized_body_gets_an_html_413(env):
    client, svc = env
    client.application.config["MAX_CONTENT_LENGTH"] = 4096
    r = client.post(path(svc, SID_EN, "not_solved"), data={"comment": "z" * 10_000})
    assert r.status_code == 413
    assert r.mimetype == "text/html" and "The form was not accepted" in text(r)
    assert svc.outcomes.records == []


def test_a_failing_backend_gets_an_html_error_page_not_a_traceback(env, caplog):
    client, svc = env

    def broken(*a, **kw):
        raise RuntimeError("database is locked")

    svc.outcomes.record = broken  # type: ignore[method-assign]
    r = client.post(path(svc, SID_EN, "solved"))
    assert r.status_code == 500
    assert "We could not handle your request" in text(r)
    assert "database is locked" not in text(r)
    assert "confirm_failed" in caplog.text


# --- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        lambda c, s: c.get(path(s, SID_RU, "solved")),
        lambda c, s: c.post(path(s, SID_RU, "not_solved"), data={"reason": "other"}),
        lambda c, s: c.get("/r/garbage"),
        lambda c, s: c.post(path(s, SID_RU, "not_solved"), data={"reason": "bad"}),
    ],
)
def test_security_headers_on_every_page(env, request_):
    client, svc = env
    r = request_(client, svc)
    csp = r.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'")
    assert "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in r.headers


def test_the_stylesheet_is_served(env):
    client, svc = env
    page = text(client.get(path(svc, SID_EN, "solved")))
    [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
    r = client.get(href)
    assert r.status_code == 200 and r.mimetype == "text/css"
    assert b"max-width" in r.data
    r.close()


def test_pages_carry_no_script(env):
    client, svc = env
    for action in ("solved", "not_solved"):
        assert "<script" not in text(client.get(path(svc, SID_EN, action)))
