"""The intake mail that stands for a ticket when no helpdesk API is configured (built, not sent)."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from connectors.base import NewTicket, Person, RejectedByHelpdesk
from connectors.email.compose import flatten
from connectors.email.intake import IntakeTicketCreator, build_intake_ticket, intake_message_id, plain_address
from connectors.email.parse import parse_message
from connectors.email.smtp import SmtpSender
from plugin.i18n import words

MARKER = "ha-0000000a11ce"
PERSON = Person(id="email:rita@example.test", name="Рита\r\nBcc: evil@x.example", email="rita@example.test")
OURS = {"to_addr": "intake@example.test", "from_addr": "helpdesk@example.test", "from_name": "Помощник",
        "words": words("ru")}


def new_ticket(**kw: object) -> NewTicket:
    base: dict[str, object] = {"subject": "VPN не подключается", "requester": PERSON, "marker": MARKER,
                               "body": "Вопрос: не работает VPN\nОтвет: проверьте адрес\nОценка: не помогло",
                               "category": "VPN и удаленный доступ"}
    base.update(kw)
    return NewTicket.model_validate(base)


def test_headers_make_the_person_reachable_and_the_mail_recognisable() -> None:
    raw = flatten(build_intake_ticket(new_ticket(), **OURS))
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg["Message-ID"] == f"<{MARKER}.ticket@example.test>"
    assert msg["To"] == "intake@example.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "rita@example.test"
    assert msg["From"].addresses[0].addr_spec == "helpdesk@example.test"
    assert msg["From"].addresses[0].display_name == "Помощник"
    assert msg["Reply-To"].addresses[0].display_name == "Рита Bcc evil x.example"
    assert msg["Auto-Submitted"] is None  # Redmine's mail handler would ignore the mail
    assert msg.get_all("Bcc") is None and b"\r\nBcc:" not in raw  # no header injection from a name
    text = msg.get_content()
    assert "Оценка: не помогло" in text and f"ref {MARKER}" in text
    assert "Категория (предположение помощника): VPN и удаленный доступ" in text
    # What Redmine's mail handler ignores (ignored_emails_headers) is absent: it must import the mail.
    assert msg["X-Auto-Response-Suppress"].lower() != "oof" and msg["X-Autoreply"] is None
    assert parse_message(raw).reply_to == ["rita@example.test"]


def test_every_attempt_of_one_hand_off_has_the_same_message_id() -> None:
    first = build_intake_ticket(new_ticket(), **OURS)
    second = build_intake_ticket(new_ticket(subject="другая тема"), **OURS)
    other = build_intake_ticket(new_ticket(marker="ha-0000000b0b00"), **OURS)
    assert first["Message-ID"] == second["Message-ID"] != other["Message-ID"]
    assert intake_message_id(MARKER, "support.example.com") == f"<{MARKER}.ticket@support.example.com>"
    with pytest.raises(ValueError):
        intake_message_id(MARKER, "bad domain")


def test_english_texts() -> None:
    msg = build_intake_ticket(new_ticket(), **{**OURS, "words": words("en")}, language="en")
    assert "on behalf of" in msg.get_content() and msg["Content-Language"] == "en"


def test_a_requester_without_address_is_refused() -> None:
    with pytest.raises(RejectedByHelpdesk, match="e-mail address"):
        build_intake_ticket(new_ticket(requester=Person(id="7", login="jdoe")), **OURS)


@pytest.mark.parametrize(("typed", "found"), [("rita@example.test", "rita@example.test"),
                                              ("  Rita@Example.test ", "Rita@Example.test"),
                                              ("jdoe", None), ("a@b", None), ("Rita <rita@example.test>", None),
                                              ("a@b.c,d@e.fg", None)])
def test_find_requester_accepts_only_a_plain_address(typed: str, found: str | None) -> None:
    creator = IntakeTicketCreator(SmtpSender("127.0.0.1", 9, "none"), intake_address="intake@example.test",
                                  from_addr="helpdesk@example.test")
    try:
        person = creator.find_requester(typed)
    except ValueError:
        person = None
    assert (person.email if person else None) == found
    if person:
        assert person.id == f"email:{found.lower()}" if found else False
    assert plain_address("x@y.example") == "x@y.example"
