"""``email.forward_via: redmine`` end to end on the real Postfix + Dovecot and the real Redmine: a mail the
assistant cannot answer becomes a Redmine issue whose author is the mail's sender (found by e-mail
address, opened with X-Redmine-Switch-User), with our note and the original text; a sender with no
Redmine account is mailed to the intake address as before; a retry opens nothing twice."""

from __future__ import annotations

import time
import uuid

import pytest

from connectors.email import parse_message
from connectors.redmine.connector import note_to_text
from plugin.service.mail import Why, mail_marker
from plugin.settings import load_settings
from plugin.wiring import build_services, ensure_knowledge_base
from tests.integration.redmine.conftest import RedmineServer
from tests.integration.servers import require_server
from tests.integration.test_mail_loop import _empty_mailboxes, intake, run_until, send, user_mail

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDMINE = RedmineServer()
OFF_TOPIC = "Подскажите, пожалуйста, где в офисе можно заказать пиццу на пятницу для всего отдела?"


@pytest.fixture(scope="module")
def services(tmp_path_factory, use_embedder):
    require_server("mail server (Postfix)", "127.0.0.1", 25)
    require_server("mail server (Dovecot IMAP)", "127.0.0.1", 143)
    require_server("Redmine", "127.0.0.1", 3000)
    settings = load_settings(
        env={}, data_dir=str(tmp_path_factory.mktemp("var")), secret_key="k" * 32,
        # A threshold nothing reaches: every mail goes on to the helpdesk.
        links={"public_url": "https://ai.example.test"}, decision={"threshold": 1.0},
        worker={"backoff_base_s": 0.05, "backoff_max_s": 0.1},
        redmine={"enabled": True, "url": REDMINE.url, "api_key": REDMINE.admin_key, "create_project": REDMINE.project,
                 "create_tracker": "Support", "poll": False},
        email={"enabled": True, "address": "helpdesk@example.test", "imap_host": "127.0.0.1", "imap_port": 143,
               "imap_security": "none", "imap_username": "helpdesk@example.test", "imap_password": "helpdesk-pass",
               "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none", "forward_via": "redmine",
               "forward_to": "intake@example.test", "poll_interval_s": 1, "idle": False},
    )
    s = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(s)
    _empty_mailboxes()
    yield s
    s.mail.mailbox.close()


def _issues_with(marker: str) -> list[dict]:
    found = REDMINE.call("GET", "/issues.json", REDMINE.admin_key,
                         params={"project_id": REDMINE.project, "status_id": "*", "limit": 100,
                                 "sort": "id:desc"}).json()["issues"]
    return [i for i in found if marker in (i.get("description") or "")]


def _conversation_of(services, subject: str) -> str:
    rows = services.store.db.read().execute("SELECT id FROM mail_conversations WHERE subject = ?", (subject,))
    [(conv_id,)] = rows.fetchall()
    return str(conv_id)


def test_an_unanswerable_mail_opens_an_issue_as_its_sender(services):
    subject = f"Пицца в пятницу {uuid.uuid4().hex[:6]}"
    msg = user_mail(subject, OFF_TOPIC)
    msg.replace_header("From", "Rita Requester <requester@example.test>")
    send(msg)
    run_until(services, lambda: services.store.db.read().execute(
        "SELECT COUNT(*) FROM mail_conversations WHERE subject = ? AND state = 'forwarded'", (subject,)).fetchone()[0] == 1,
        timeout=60)
    marker = mail_marker(_conversation_of(services, subject))
    [issue] = _issues_with(marker)
    seen = REDMINE.issue(int(issue["id"]), REDMINE.requester_key)  # the requester can read it: it is theirs
    assert seen["author"]["name"] == "Rita Requester"
    assert seen["subject"] == subject and seen["tracker"]["name"] == "Support"
    text = note_to_text(seen["description"], "textile")
    assert "пиццу на пятницу" in text and "requester@example.test" in text
    # Nothing was mailed to the intake address for it.
    time.sleep(1)
    assert not [m for m in intake() if subject in str(m["Subject"])]

    # A retry of the forward (the worker runs an item at least once) opens nothing new.
    opened = services.mail._open_ticket(_conversation_of(services, subject), Why("retry"),
                                        parse_message(msg.as_bytes()), "ru", suggestion_text="", user_reason="")
    assert opened
    assert len(_issues_with(marker)) == 1


def test_a_sender_without_a_redmine_account_is_mailed_to_the_intake_address(services):
    subject = f"Пицца для гостей {uuid.uuid4().hex[:6]}"
    send(user_mail(subject, OFF_TOPIC))  # from ivan.petrov@customer.example: not a Redmine user
    run_until(services, lambda: any(subject in str(m["Subject"]) for m in intake()), timeout=60)
    assert not _issues_with(mail_marker(_conversation_of(services, subject)))
