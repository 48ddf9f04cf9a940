"""The support mailbox end to end on the real Postfix + Dovecot of scripts/test_servers.sh.

A user's mail -> our answer arrives in the user's mailbox (threading headers, Auto-Submitted) ->
"Да, помогло" closes the conversation (no ticket, a thank-you); "Нет, не помогло" forwards the
original message intact to the helpdesk intake; automatic mail and list mail are not answered; a
KOI8-R message is read; a restarted connector answers nothing twice; silence past the timeout
forwards.
"""

from __future__ import annotations

import email
import re
import smtplib
import subprocess
import time
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid

import pytest
from imapclient import IMAPClient

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "ivan.petrov@customer.example"
DOVECOT_CONF = "/etc/dovecot/helpdesk-test.conf"


def _mailboxes(login: str, password: str) -> list[EmailMessage]:
    with IMAPClient("127.0.0.1", 143, ssl=False, timeout=10) as c:
        c.login(login, password)
        c.select_folder("INBOX")
        uids = c.search(["ALL"])
        data = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [email.message_from_bytes(data[u][b"BODY[]"], policy=default_policy) for u in sorted(uids)]


def sink() -> list[EmailMessage]:
    return _mailboxes("sink@example.test", "sink-pass")


def intake() -> list[EmailMessage]:
    return _mailboxes("intake@example.test", "intake-pass")


def _empty_mailboxes() -> None:
    for user in ("helpdesk@example.test", "intake@example.test", "sink@example.test"):
        subprocess.run(["doveadm", "-c", DOVECOT_CONF, "expunge", "-u", user, "mailbox", "*", "all"],
                       check=True, capture_output=True)


def send(msg: EmailMessage | bytes, to: str = "helpdesk@example.test") -> None:
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as s:
        if isinstance(msg, bytes):
            s.sendmail(USER, [to], msg)
        else:
            s.send_message(msg)


def user_mail(subject: str, body: str, **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Иван Петров <{USER}>"
    m["To"] = "helpdesk@example.test"
    m["Subject"] = subject
    m["Message-ID"] = make_msgid(domain="customer.example")
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


def reply_to(ours: EmailMessage, body: str) -> EmailMessage:
    m = user_mail("Re: " + str(ours["Subject"]), body)
    m["In-Reply-To"] = ours["Message-ID"]
    m["References"] = f"{ours.get('References', '')} {ours['Message-ID']}".strip()
    return m


def _settings(tmp_path, **email_over):
    return load_settings(
        env={},
        data_dir=str(tmp_path),
        secret_key="k" * 32,
        links={"public_url": "https://ai.example.test"},
        decision={"threshold": 0.3},
        worker={"backoff_base_s": 0.05, "backoff_max_s": 0.1},
        email={"enabled": True, "address": "helpdesk@example.test", "imap_host": "127.0.0.1", "imap_port": 143,
               "imap_security": "none", "imap_username": "helpdesk@example.test", "imap_password": "helpdesk-pass",
               "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
               "forward_to": "intake@example.test", "poll_interval_s": 1, "idle": False,
               "max_replies_per_sender_per_day": 100, **email_over},
    )


@pytest.fixture(scope="module")
def services(tmp_path_factory, use_embedder):
    require_server("mail server (Postfix)", "127.0.0.1", 25)
    require_server("mail server (Dovecot IMAP)", "127.0.0.1", 143)
    s = build_services(_settings(tmp_path_factory.mktemp("var")), embedder=use_embedder)
    ensure_knowledge_base(s)
    yield s
    s.mail.mailbox.close()


@pytest.fixture(autouse=True)
def clean(services):
    _empty_mailboxes()
    yield


def run_until(services, condition, timeout=30.0):
    """Poll the mailbox and run the worker until ``condition()`` holds."""
    worker = services.new_worker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_due_pollers()
        while worker.run_once():
            pass
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"condition not reached; queue: {services.store.inbox.counts()}")


def test_answer_then_confirming_reply_closes_without_a_ticket(services):
    original = user_mail("Забыл пароль", "Добрый день! Как сбросить пароль от учетной записи? Не могу войти.")
    send(original)
    run_until(services, lambda: len(sink()) == 1)
    (answer,) = sink()
    assert answer["In-Reply-To"] == original["Message-ID"]
    assert original["Message-ID"] in answer["References"]
    assert answer["Auto-Submitted"] == "auto-replied"
    assert answer.get_body(("plain",)) is not None and answer.get_body(("html",)) is not None
    text = answer.get_body(("plain",)).get_content()
    assert "password.example.ru" in text and "https://ai.example.test/r/" in text

    send(reply_to(answer, "Да, помогло, спасибо!\n\n> цитата нашего письма"))
    run_until(services, lambda: len(sink()) == 2)
    thanks = sink()[1]
    assert thanks["Auto-Submitted"] == "auto-replied"
    time.sleep(1)
    assert intake() == [], "a confirmed conversation never reaches the helpdesk"
    conv = services.mail._conversation_by_message(original["Message-ID"].strip("<>"))
    assert conv["state"] == "closed"
    assert services.store.suggestions.get(conv["id"]).outcome == "solved"


def test_not_solved_reply_forwards_the_original_intact(services):
    original = user_mail("Outlook не отправляет письма", "Письма висят в исходящих, что делать?")
    raw = original.as_bytes()
    send(raw)
    run_until(services, lambda: len(sink()) == 1)
    send(reply_to(sink()[0], "Нет, не помогло. Письма так и висят."))
    run_until(services, lambda: len(intake()) == 1)
    (fwd,) = intake()
    attached = [p for p in fwd.iter_attachments() if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1
    inner = attached[0].get_content()
    assert inner["Message-ID"] == original["Message-ID"]
    assert "Письма висят в исходящих" in inner.get_body(("plain",)).get_content()
    body = fwd.get_body(("plain",)).get_content()
    assert "Письма так и висят" in body
    assert fwd["Reply-To"] and USER in fwd["Reply-To"]
    assert fwd["Auto-Submitted"] is None, "Redmine's mail handler would ignore an auto-submitted forward"


def test_automatic_and_list_mail_get_no_answer(services):
    send(user_mail("Автоответ: Забыл пароль", "Я в отпуске до понедельника.", Auto_Submitted="auto-replied"))
    send(user_mail("[it-news] Забыл пароль? Напоминание", "Рассылка отдела ИТ", List_Id="<it-news.example.test>",
                   Precedence="list"))
    run_until(services, lambda: services.store.inbox.counts().get("done", 0) >= 0 and not _pending(services), timeout=10)
    time.sleep(1.5)
    run_until(services, lambda: not _pending(services), timeout=10)
    assert sink() == [] and intake() == []


def _pending(services) -> int:
    c = services.store.inbox.counts()
    return c.get("pending", 0) + c.get("leased", 0)


def test_koi8r_message_is_read_and_answered_in_russian(services):
    raw = (
        "From: =?koi8-r?b?6dfBzg==?= <ivan.petrov@customer.example>\r\n"
        "To: helpdesk@example.test\r\n"
        "Subject: =?koi8-r?b?" + _b64("Забыл пароль".encode("koi8-r")) + "?=\r\n"
        f"Message-ID: {make_msgid(domain='customer.example')}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode("ascii") + "Не могу войти, забыл пароль от учетной записи. Как сбросить?\r\n".encode("koi8-r")
    send(raw)
    run_until(services, lambda: len(sink()) == 1)
    text = sink()[0].get_body(("plain",)).get_content()
    assert "пароль" in text.lower()


def _b64(b: bytes) -> str:
    import base64

    return base64.b64encode(b).decode()


def test_restarted_connector_answers_nothing_twice(services, use_embedder, tmp_path):
    original = user_mail("Забыл пароль", "Как сбросить пароль от учетной записи?")
    send(original)
    run_until(services, lambda: len(sink()) == 1)
    # A new process on the same state: the same message delivered again is not answered again.
    restarted = build_services(services.settings, embedder=use_embedder)
    send(original.as_bytes())
    run_until(restarted, lambda: not _pending(restarted) and _processed_all(), timeout=20)
    time.sleep(1.5)
    run_until(restarted, lambda: not _pending(restarted), timeout=10)
    restarted.mail.mailbox.close()
    assert len(sink()) == 1


def _processed_all() -> bool:
    with IMAPClient("127.0.0.1", 143, ssl=False, timeout=10) as c:
        c.login("helpdesk@example.test", "helpdesk-pass")
        c.select_folder("INBOX")
        return not c.search(["ALL"])


def test_silence_past_the_timeout_forwards_to_the_helpdesk(services, monkeypatch):
    send(user_mail("Забыл пароль от почты", "Как сбросить пароль от учетной записи?"))
    run_until(services, lambda: len(sink()) == 1)
    later = time.time() + 49 * 3600
    monkeypatch.setattr(services.mail, "clock", lambda: later)
    worker = services.new_worker()
    for job in services.mail.poll_jobs():
        if job.name == "email-timeouts":
            worker.run_poller(job)
    def forwarded() -> list[EmailMessage]:
        return [m for m in intake() if "Забыл пароль от почты" in str(m["Subject"])]

    run_until(services, lambda: len(forwarded()) == 1)
    assert "48" in forwarded()[0].get_body(("plain",)).get_content()


def test_link_clicked_after_the_conversation_went_to_the_helpdesk_records_nothing(services, monkeypatch):
    """Issue 8 item 10 for mail: the conversation's own state decides; forwarded means closed for us."""
    send(user_mail("Не работает VPN дома", "Как подключиться к VPN из дома? Пишет ошибку."))
    run_until(services, lambda: len(sink()) == 1)
    text = sink()[0].get_body(("plain",)).get_content()
    solved_path, _ = re.findall(r"https://ai\.example\.test(/r/[A-Za-z0-9_.\-]+)", text)
    client = create_app(services.settings, services=services).test_client()
    assert "<form" in client.get(solved_path).get_data(as_text=True)  # still waiting for the user: open
    later = time.time() + 49 * 3600
    monkeypatch.setattr(services.mail, "clock", lambda: later)
    worker = services.new_worker()
    for job in services.mail.poll_jobs():
        if job.name == "email-timeouts":
            worker.run_poller(job)
    run_until(services, lambda: any("VPN" in str(m["Subject"]) for m in intake()))

    page = client.get(solved_path)
    assert page.status_code == 200 and "Обращение уже закрыто" in page.get_data(as_text=True)
    assert client.post(solved_path).status_code == 409
    conv = next(c for c in _conversations(services) if c["subject"] == "Не работает VPN дома")
    assert conv["state"] == "forwarded" and services.store.suggestions.get(conv["id"]).outcome is None
    # The history says what happened: suggested, no answer in time, passed on to the agents.
    assert [e.kind for e in services.store.suggestions.events(conv["id"])] == ["suggested", "timed_out", "handed_off"]


def _conversations(services) -> list[dict]:
    rows = services.store.db.read().execute("SELECT * FROM mail_conversations ORDER BY created_at").fetchall()
    return [dict(r) for r in rows]


def test_rate_limit_per_sender_forwards_instead_of_answering(services, monkeypatch):
    monkeypatch.setattr(services.mail.cfg, "max_replies_per_sender_per_day", 1)
    first = user_mail("Забыл пароль", "Как сбросить пароль от учетной записи?")
    first.replace_header("From", "Мария <maria@other.example>")
    send(first)
    run_until(services, lambda: len(sink()) == 1)
    second = user_mail("Забыл пароль снова", "Как сбросить пароль от учетной записи? Опять не помню.")
    second.replace_header("From", "Мария <maria@other.example>")
    send(second)
    forwarded: list[EmailMessage] = []

    def got_forward() -> bool:
        forwarded[:] = intake()
        return len(forwarded) == 1

    run_until(services, got_forward)
    assert len(sink()) == 1, "the second message was not answered"
    assert "за сутки" in forwarded[0].get_body(("plain",)).get_content()  # why, in the mail's language


def _to(messages: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in messages if address in str(m["To"])]


def test_reply_to_cannot_bypass_the_rate_limit(services, monkeypatch):
    """Issue 8 item 6: the limit counts the address we write to, not the From that anyone can forge."""
    monkeypatch.setattr(services.mail.cfg, "max_replies_per_sender_per_day", 2)
    victim = "victim@customer.example"
    for n in range(5):
        m = user_mail(f"Забыл пароль {n}", "Как сбросить пароль от учетной записи?", Reply_To=victim)
        m.replace_header("From", f"Сотрудник {n} <forged{n}@customer.example>")
        send(m)
    run_until(services, lambda: len(sink()) + len(intake()) >= 5, timeout=60)
    time.sleep(1)
    run_until(services, lambda: not _pending(services), timeout=10)
    assert len(_to(sink(), victim)) == 2, "no more answers to one address than the limit"
    assert len(sink()) == 2
    forwarded = intake()
    assert len(forwarded) == 3, "the rest went to the helpdesk: nothing lost"
    assert all("за сутки" in f.get_body(("plain",)).get_content() for f in forwarded)


def test_mail_from_or_reply_to_outside_the_allowed_domains_is_forwarded_not_answered(services, monkeypatch):
    """Issue 8 item 6: with email.allowed_domains set, the assistant answers only its own company."""
    monkeypatch.setattr(services.mail.cfg, "allowed_domains", ["customer.example"])
    outsider = user_mail("Забыл пароль", "Как сбросить пароль от учетной записи?")
    outsider.replace_header("From", "Stranger <stranger@internet.example>")
    redirected = user_mail("Забыл пароль снова", "Как сбросить пароль от учетной записи?",
                           Reply_To="someone@internet.example")
    inside = user_mail("Не могу войти", "Забыл пароль от учетной записи, как сбросить?")
    for m in (outsider, redirected, inside):
        send(m)
    run_until(services, lambda: len(sink()) + len(intake()) >= 3, timeout=60)
    time.sleep(1)
    run_until(services, lambda: not _pending(services), timeout=10)

    answered = sink()
    assert [str(m["In-Reply-To"]) for m in answered] == [inside["Message-ID"]]
    assert _to(answered, "internet.example") == []
    forwarded = intake()
    assert len(forwarded) == 2
    for f in forwarded:
        assert "email.allowed_domains" in f.get_body(("plain",)).get_content()


def test_no_confident_answer_is_forwarded_with_the_engines_reason_in_the_mails_language(services, monkeypatch):
    """Issue 9 item 6: the engine's reason reaches the agents in the forward's language (here Russian),
    worded from the catalog; the conversation row keeps the English for the log."""
    monkeypatch.setattr(services.mail.pipeline.policies, "_overrides", lambda: {"threshold": 0.99})
    original = user_mail("Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти.")
    send(original)
    run_until(services, lambda: len(intake()) == 1)
    assert sink() == [], "no answer below the threshold"
    body = intake()[0].get_body(("plain",)).get_content()
    assert re.search(r"нет уверенного ответа \(уверенность 0\.\d\d ниже порога 0\.99\)", body), body
    assert "below the threshold" not in body
    conv = services.mail._conversation_by_message(original["Message-ID"].strip("<>"))
    assert "is below the threshold 0.99" in conv["forward_reason"]
    s = services.store.suggestions.get(conv["id"])
    assert (s.reason_code, s.reason_params["threshold"]) == ("below_threshold", "0.99")
