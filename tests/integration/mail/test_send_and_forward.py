"""Through the real Postfix: our reply reaches the customer (caught by sink@), the forward reaches the
helpdesk intake with the original bytes intact, a KOI8-R message is read correctly after fetching."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from connectors.base import AuthenticationError
from connectors.email.compose import build_forward, build_reply, build_thanks
from connectors.email.keywords import classify_reply
from connectors.email.loops import automatic_reason
from connectors.email.parse import parse_message
from connectors.email.threads import conversation_from_headers, find_subject_tag
from plugin.i18n import words

pytestmark = [pytest.mark.integration]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "email"
OURS = dict(from_addr="helpdesk@example.test", from_name="Помощник ИТ-поддержки", message_id_domain="example.test")


def fetch_one(mail_server):
    """The one message in helpdesk@'s INBOX, once Dovecot has it (waited for before we select)."""
    mail_server.messages("helpdesk")
    with mail_server.mailbox() as box:
        [(uid, raw)] = box.fetch_new(0)
        box.mark_processed(uid)
    return raw


def rfc822_body(flat: bytes) -> bytes:
    boundary = re.search(rb'boundary="([^"]+)"', flat).group(1)
    for chunk in flat.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        if b"message/rfc822" in head.lower():
            return body[:-2] if body.endswith(b"\r\n") else body
    raise AssertionError("no message/rfc822 part")


def test_reply_reaches_the_customer_threaded_with_both_parts(mail_server):
    mail_server.send_text("Не печатает принтер", "Принтер в 305 не печатает", Message_ID="<q1@outside.example>")
    original = parse_message(fetch_one(mail_server))
    assert automatic_reason(original, ["helpdesk@example.test"]) is None

    reply = build_reply(
        original,
        **OURS,
        conversation_id="3f9a1c",
        language="ru",
        answer_text="Проверьте <бумагу> & картридж.",
        entries=[("Замятие бумаги", "Откройте крышку.")],
        solved_url="http://127.0.0.1:8080/c/s?t=1&u=2",
        not_solved_url="http://127.0.0.1:8080/c/n",
    )
    mail_server.sender("helpdesk").send(reply)  # with SMTP AUTH (Dovecot SASL)

    [raw] = mail_server.messages("sink")
    got = message_from_bytes(raw, policy=default_policy)
    assert got["To"] == "Customer <customer@outside.example>"
    assert got["In-Reply-To"] == "<q1@outside.example>"
    assert got["References"] == "<q1@outside.example>"
    assert got["Message-ID"] == reply["Message-ID"]
    assert got["Auto-Submitted"] == "auto-replied"
    assert got["X-Auto-Response-Suppress"] == "All"
    assert got["Subject"] == "Re: Не печатает принтер [HA-3f9a1c]"
    assert got.get_content_type() == "multipart/alternative"
    text = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    assert "Проверьте <бумагу> & картридж." in text
    assert "Проверьте &lt;бумагу&gt; &amp; картридж." in html
    assert 'href="http://127.0.0.1:8080/c/s?t=1&amp;u=2"' in html

    # the customer answers in their mail client: the answer comes back threaded and is understood
    quoted = "\n".join("> " + line for line in text.splitlines())
    answer = (
        f"From: Customer <customer@outside.example>\r\nTo: helpdesk@example.test\r\nSubject: {got['Subject']}\r\n"
        f"Message-ID: <q2@outside.example>\r\nIn-Reply-To: {got['Message-ID']}\r\n"
        f"References: {got['References']} {got['Message-ID']}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"Да, помогло, спасибо!\r\n\r\nOn Mon, 24 Nov 2026 at 10:00, Помощник wrote:\r\n{quoted}\r\n"
    ).encode()
    mail_server.send_raw(answer)
    back = parse_message(fetch_one(mail_server))
    assert conversation_from_headers(back.in_reply_to, back.references, "example.test") == "3f9a1c"
    assert find_subject_tag(back.subject) == "3f9a1c"
    assert classify_reply(back.text) == "solved"

    mail_server.sender().send(build_thanks(back, **OURS, conversation_id="3f9a1c", language="ru"))
    thanks = message_from_bytes(mail_server.messages("sink", count=2)[1], policy=default_policy)
    assert thanks["In-Reply-To"] == "<q2@outside.example>"
    assert thanks["Auto-Submitted"] == "auto-replied"


def test_bad_smtp_password_is_an_authentication_error(mail_server):
    sender = mail_server.sender("helpdesk")
    sender._password = "wrong"
    with pytest.raises(AuthenticationError):
        sender.send(
            build_thanks(parse_message(b"From: a@b.example\r\n\r\nx"), **OURS, conversation_id="x1", language="en")
        )


@pytest.mark.parametrize("fixture", ["outlook_reply_ru.eml", "undecodable.eml", "attachment.eml"])
def test_forward_reaches_intake_with_the_original_bytes_intact(mail_server, fixture):
    mail_server.send_raw((FIXTURES / fixture).read_bytes())
    raw = fetch_one(mail_server)  # as the mailbox has it: with Return-Path, Delivered-To, Received added
    original = parse_message(raw)

    forward = build_forward(
        raw,
        original,
        to_addr="intake@example.test",
        **{k: v for k, v in OURS.items() if k != "message_id_domain"},
        note_text="Пользователь ответил, что не помогло.",
        suggestion_text="1. Замятие бумаги",
        user_reason="Нет, не помогло.",
        words=words("ru"),
    )
    mail_server.sender().send(forward)

    [got_raw] = mail_server.messages("intake")
    assert rfc822_body(got_raw) == raw  # byte for byte
    assert mail_server.count("sink") == 0  # intake@ has its own mailbox, not the catch-all
    got = message_from_bytes(got_raw, policy=default_policy)
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["Reply-To"] == (
        f"{original.from_name} <{original.from_addr}>" if original.from_name else original.from_addr
    )
    note = got.get_body(("plain",)).get_content()
    assert "Что предложил помощник:\n1. Замятие бумаги" in note
    assert "Ответ пользователя:\nНет, не помогло." in note


def test_koi8r_message_through_postfix_is_parsed(mail_server):
    mail_server.send_raw((FIXTURES / "koi8r_plain.eml").read_bytes(), sender="sergey@old.example")
    m = parse_message(fetch_one(mail_server))
    assert m.subject == "Не могу войти в 1С"
    assert m.from_name == "Сергей Кузнецов"
    assert m.from_addr == "sergey@old.example"
    assert 'Не могу войти в 1С: пишет "Неверный пароль"' in m.text
    assert m.problems == []
    assert m.headers["return-path"] == "<sergey@old.example>"  # added by delivery: not empty, not a bounce


def test_intake_ticket_reaches_the_intake_mailbox(mail_server):
    """The chat's hand-off without a helpdesk API: the mail arrives at intake@ with the conversation,
    Reply-To the person, the deterministic Message-ID; a retry sends the same id (recognisable)."""
    from connectors.base import NewTicket
    from connectors.email.intake import IntakeTicketCreator

    creator = IntakeTicketCreator(mail_server.sender("helpdesk"), intake_address="intake@example.test",
                                  from_addr="helpdesk@example.test", from_name="Помощник ИТ-поддержки")
    assert [r.ok for r in creator.check()] == [True]
    person = creator.find_requester("customer@outside.example")
    new = NewTicket(subject="Не печатает принтер в 305", body="Вопрос: не печатает\nОценка: не помогло",
                    requester=person.model_copy(update={"name": "Клиент Тестовый"}), marker="ha-00000000face")
    ticket = creator.create_ticket(new)
    assert ticket.id == "ha-00000000face.ticket@example.test"
    creator.create_ticket(new)  # a retry after a crash
    first, second = mail_server.messages("intake", count=2)
    for raw in (first, second):
        mail = parse_message(raw)
        assert mail.message_id == "ha-00000000face.ticket@example.test"
        assert mail.reply_to == ["customer@outside.example"] and mail.from_addr == "helpdesk@example.test"
        assert "Оценка: не помогло" in mail.text and "ref ha-00000000face" in mail.text
        assert mail.subject == "Не печатает принтер в 305"


def test_intake_check_reports_a_refused_login_without_the_password(mail_server):
    from connectors.email.intake import IntakeTicketCreator
    from connectors.email.smtp import SmtpSender

    bad = SmtpSender(mail_server.host, mail_server.smtp_port, "none", "helpdesk@example.test", "wrong-password",
                     timeout_s=10)
    creator = IntakeTicketCreator(bad, intake_address="intake@example.test", from_addr="helpdesk@example.test")
    [result] = creator.check()
    assert not result.ok and "intake@example.test" in result.detail and "refused the login" in result.detail
    assert "wrong-password" not in result.detail
    assert mail_server.count("intake") == 0
