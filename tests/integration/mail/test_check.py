"""Issue 8 item 13: `helpdesk-assist check` with only the mailbox enabled, against the real Postfix +
Dovecot: all good exits 0; a wrong password, a missing folder, an unreachable port or a TLS mode the
server lacks are each explained in plain words with exit 1, and no password is ever printed."""

from __future__ import annotations

import socket
import uuid

import pytest
from click.testing import CliRunner, Result

from plugin.cli import main
from tests.integration.servers import require_server

from .conftest import HOST, USERS, doveadm

pytestmark = [pytest.mark.integration]

PASSWORD = USERS["helpdesk"][1]


@pytest.fixture(autouse=True)
def servers() -> None:
    require_server("mail server (Postfix)", HOST, 25)
    require_server("mail server (Dovecot IMAP)", HOST, 143)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def check(**over: str) -> Result:
    email = {
        "enabled": "true",
        "address": "helpdesk@example.test",
        "imap_host": HOST,
        "imap_port": "143",
        "imap_security": "none",
        "imap_username": "helpdesk@example.test",
        "imap_password": PASSWORD,
        "smtp_host": HOST,
        "smtp_port": "25",
        "smtp_security": "none",
        "smtp_username": "helpdesk@example.test",
        "smtp_password": PASSWORD,
        "forward_to": "intake@example.test",
        "timeout_s": "10",
    } | over
    env = {"HELPDESK_ASSIST_SECRET_KEY": "k" * 32, "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"} | {f"HELPDESK_ASSIST_EMAIL__{k.upper()}": v for k, v in email.items()}
    return CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)


def failures(r: Result) -> list[str]:
    return [line for line in r.output.splitlines() if line.startswith("[FAIL]")]


def _count(user: str) -> int:
    from imapclient import IMAPClient

    login, password = USERS[user]
    with IMAPClient(HOST, 143, ssl=False, timeout=10) as c:
        c.login(login, password)
        c.select_folder("INBOX", readonly=True)
        return len(c.search(["ALL"]))


def test_mailbox_only_all_good_exits_0_and_sends_nothing() -> None:
    before = _count("intake")
    r = check()
    assert r.exit_code == 0, r.output
    assert "no connector is enabled" not in r.output and failures(r) == []
    for part in ("email: imap_login", "email: folder", "email: processed_folder", "email: smtp_login",
                 "email: smtp_sender", "email: forward_to"):
        assert f"[ok] {part}" in r.output
    assert "no message was sent" in r.output
    assert _count("intake") == before
    assert PASSWORD not in r.output


def test_wrong_imap_password_is_explained_and_not_printed() -> None:
    r = check(imap_password="wrong-imap-secret")
    assert r.exit_code == 1
    (line,) = failures(r)
    assert line.startswith("[FAIL] email: imap_login") and "email.imap_password" in line
    assert "wrong-imap-secret" not in r.output and PASSWORD not in r.output
    assert "[ok] email: smtp_login" in r.output  # SMTP is still checked


def test_wrong_smtp_password_is_explained_and_not_printed() -> None:
    r = check(smtp_password="wrong-smtp-secret")
    assert r.exit_code == 1
    (line,) = failures(r)
    assert line.startswith("[FAIL] email: smtp_login") and "email.smtp_password" in line
    assert "wrong-smtp-secret" not in r.output and PASSWORD not in r.output


def test_missing_folder_is_named_with_the_folders_there_are() -> None:
    r = check(folder="Support-Nowhere")
    assert r.exit_code == 1
    (line,) = failures(r)
    assert "'Support-Nowhere' (email.folder) does not exist" in line and "INBOX" in line


def test_missing_processed_folder_is_created() -> None:
    folder = f"Processed-check-{uuid.uuid4().hex[:8]}"
    try:
        r = check(processed_folder=folder)
        assert r.exit_code == 0, r.output
        assert f"'{folder}' did not exist and was created" in r.output
        assert f"'{folder}' exists" in check(processed_folder=folder).output
    finally:
        doveadm("mailbox", "delete", "-u", USERS["helpdesk"][0], "-s", folder)


@pytest.mark.parametrize(("key", "needle"), [("imap_port", "cannot reach IMAP"), ("smtp_port", "cannot reach SMTP")])
def test_unreachable_port_is_explained(key: str, needle: str) -> None:
    r = check(**{key: str(closed_port())})
    assert r.exit_code == 1
    (line,) = failures(r)
    assert needle in line and f"email.{key}" in line


@pytest.mark.parametrize("key", ["imap_security", "smtp_security"])
def test_starttls_the_server_does_not_offer_is_explained(key: str) -> None:
    r = check(**{key: "starttls"})
    assert r.exit_code == 1
    (line,) = failures(r)
    assert "does not offer STARTTLS" in line and f"email.{key}" in line


def test_ssl_on_a_plain_port_is_explained() -> None:
    r = check(imap_security="ssl")
    assert r.exit_code == 1
    assert any("email.imap_security" in line for line in failures(r)), r.output
