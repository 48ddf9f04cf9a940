"""automatic_reason: messages never answered automatically (RFC 3834 and friends)."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32

import pytest

from connectors.email.loops import automatic_reason
from connectors.email.parse import parse_message

from .conftest import fixture_bytes

OWN = ["helpdesk@example.test"]


def human(extra: str = "", sender: str = "ivan@corp.example", mid: str = "<x1@corp.example>"):
    raw = (
        f"From: Ivan <{sender}>\r\nTo: helpdesk@example.test\r\nSubject: hi\r\nMessage-ID: {mid}\r\n{extra}\r\nbody\r\n"
    )
    return parse_message(raw.encode())


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("auto_reply_ooo.eml", "Auto-Submitted: auto-replied"),
        ("mailing_list.eml", "Precedence: list"),
        ("bounce.eml", "Auto-Submitted: auto-replied"),
    ],
)
def test_fixtures_are_automatic(fixture, reason):
    assert automatic_reason(parse_message(fixture_bytes(fixture)), OWN) == reason


@pytest.mark.parametrize(
    "fixture",
    ["outlook_reply_ru.eml", "thunderbird_reply_en.eml", "gmail_reply_ru.eml", "koi8r_plain.eml", "html_only.eml"],
)
def test_people_are_answered(fixture):
    assert automatic_reason(parse_message(fixture_bytes(fixture)), OWN, ["^alerts@"]) is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("Auto-Submitted: auto-generated\r\n", "Auto-Submitted: auto-generated"),
        ("Auto-Submitted: auto-notified; owner-email=x@y\r\n", "Auto-Submitted: auto-notified"),
        ("Precedence: bulk\r\n", "Precedence: bulk"),
        ("Precedence: junk\r\n", "Precedence: junk"),
        ("List-Unsubscribe: <mailto:u@l.example>\r\n", "mailing list (list-unsubscribe header)"),
        ("List-Post: <mailto:p@l.example>\r\n", "mailing list (list-post header)"),
        ("X-Autoreply: yes\r\n", "x-autoreply: yes"),
        ("X-Autorespond: vacation\r\n", "x-autorespond: vacation"),
        ("Return-Path: <>\r\n", "empty Return-Path (a bounce or delivery report)"),
        ("X-Failed-Recipients: a@b.example\r\n", "X-Failed-Recipients (a bounce)"),
        (
            "X-Auto-Response-Suppress: OOF, AutoReply\r\n",
            "X-Auto-Response-Suppress: OOF, AutoReply (asks for no automatic reply)",
        ),
    ],
)
def test_headers(extra, expected):
    assert automatic_reason(human(extra), OWN) == expected


@pytest.mark.parametrize(
    "extra",
    [
        "Auto-Submitted: no\r\n",
        "Precedence: first-class\r\n",
        "X-Autoreply: no\r\n",
        "X-Auto-Response-Suppress: None\r\n",
        "Return-Path: <ivan@corp.example>\r\n",
    ],
)
def test_harmless_header_values(extra):
    assert automatic_reason(human(extra), OWN) is None


def test_multipart_report_without_other_signs():
    raw = (
        b"From: gw@corp.example\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nread\r\n--b--\r\n"
    )
    assert automatic_reason(parse_message(raw), OWN) == "multipart/report (a delivery or read report)"


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example",
        "postmaster@corp.example",
        "noreply@service.example",
        "no-reply@x.example",
        "do-not-reply@x.example",
        "donotreply@x.example",
        "bounces+123@lists.example",
    ],
)
def test_system_senders(sender):
    assert automatic_reason(human(sender=sender), OWN).startswith("system sender")


def test_our_own_address_and_message_id():
    assert automatic_reason(human(sender="Helpdesk@Example.test"), OWN) == "sent by our own address"
    ours = human(mid="<ha.3f9a1c.0123456789abcdef@example.test>")
    assert automatic_reason(ours, OWN) == "our own Message-ID (a copy of a message we sent)"
    other = human(mid="<ha.3f9a1c.0123456789abcdef@elsewhere.example>")
    assert automatic_reason(other, OWN) is None
    assert automatic_reason(other, OWN, own_message_id_domains=["elsewhere.example"]) is not None


def test_ignore_patterns_are_case_insensitive_regexes():
    msg = human(sender="Zabbix-Alerts@monitoring.corp.example")
    assert automatic_reason(msg, OWN, [r"^zabbix"]) == "sender matches ignore pattern '^zabbix'"
    assert automatic_reason(msg, OWN, [r"^nagios"]) is None


def test_accepts_a_stdlib_message_and_a_mapping():
    raw = fixture_bytes("auto_reply_ooo.eml")
    assert automatic_reason(message_from_bytes(raw, policy=compat32), OWN) == "Auto-Submitted: auto-replied"
    assert automatic_reason({"From": "a@b.example", "Precedence": "bulk"}) == "Precedence: bulk"
    assert automatic_reason({"From": "a@b.example"}) is None
    assert automatic_reason({}) == "no sender address"
