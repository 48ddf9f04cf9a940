"""Issue 8 item 6 without a mail server: who counts for the rate limit, which domains are ours, and the
upgrade of an existing mail table (the real Postfix + Dovecot runs are in tests/integration/test_mail_loop.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from connectors.email import Mailbox, SmtpSender, parse_message, reply_address
from plugin.service.mail import MailFlow, in_domains
from plugin.settings import load_settings
from plugin.store import Store
from plugin.store.db import Database
from plugin.store.migrations import MAIL_V1


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("ivan@example.ru", True),
        ("Ivan@EXAMPLE.RU", True),
        ("ivan@msk.example.ru", True),
        ("ivan@example.ru.", True),
        ("ivan@evilexample.ru", False),
        ("ivan@example.ru.evil.com", False),
        ("ivan@example.com", False),
        ("no-at-sign", False),
        ("", False),
    ],
)
def test_in_domains(address: str, inside: bool) -> None:
    assert in_domains(address, ["example.ru"]) is inside


def test_in_domains_compares_international_domains_in_one_form() -> None:
    assert in_domains("ivan@xn--e1afmkfd.xn--p1ai", ["пример.рф"])
    assert in_domains("ivan@пример.рф", ["xn--e1afmkfd.xn--p1ai"])
    assert not in_domains("ivan@xn--e1afmkfd.xn--p1ai", ["example.ru"])


def test_the_reply_goes_to_reply_to_so_that_is_what_counts() -> None:
    forged = parse_message(
        b"From: Boss <boss@example.ru>\r\nReply-To: victim@other.example\r\nSubject: x\r\nMessage-ID: <1@x>\r\n\r\nhi"
    )
    plain = parse_message(b"From: Boss <Boss@Example.ru>\r\nSubject: x\r\nMessage-ID: <2@x>\r\n\r\nhi")
    assert reply_address(forged) == "victim@other.example"
    assert reply_address(plain).lower() == "boss@example.ru"


def test_an_existing_mail_table_is_upgraded_and_old_answers_still_count(tmp_path) -> None:
    old = Database(tmp_path / "state.sqlite3")
    old.ensure_schema("mail", 1, MAIL_V1)  # a database from before the Reply-To column
    now = time.time()
    with old.transaction() as db:
        db.execute(
            "INSERT INTO mail_conversations (id, message_id, from_addr, raw, created_at, state, answered_at)"
            " VALUES ('c1', 'm1', 'Ivan@Example.ru', x'00', ?, 'answered', ?)",
            (now, now),
        )
    old.close()
    store = Store.open(tmp_path / "state.sqlite3")
    settings = load_settings(
        env={}, secret_key="s" * 32,
        email={"enabled": True, "address": "helpdesk@example.ru", "imap_username": "helpdesk",
               "forward_to": "intake@example.ru"},
    )
    pipeline = SimpleNamespace(store=store, records=None, engine=None)
    flow = MailFlow(
        settings.email, pipeline,
        mailbox=Mailbox("127.0.0.1", 1, "none", "u", "p"), sender=SmtpSender("127.0.0.1", 1, "none"),
    )

    assert store.db.schema_version("mail") == 2
    assert flow._replies_today("ivan@example.ru") == 1
    assert flow._replies_today("someone@example.ru") == 0
