"""connectors.email.imap.Mailbox on the real Dovecot: UIDs, UIDVALIDITY, move, IDLE, polling, login, reconnect."""

from __future__ import annotations

import threading
import uuid

import pytest
from imapclient import IMAPClient

from connectors.base import AuthenticationError, NotFound
from connectors.email.parse import parse_message

from .conftest import USERS, doveadm

pytestmark = [pytest.mark.integration]


def subjects(raws):
    return [parse_message(r).subject for r in raws]


def test_fetch_new_by_uid_then_moved_and_not_fetched_again(mail_server):
    tag = uuid.uuid4().hex[:8]
    folder = f"Processed-{tag}"  # does not exist yet: mark_processed creates it
    mail_server.send_in_order((f"first {tag}", "Принтер не печатает"), (f"second {tag}", "VPN"))
    try:
        with mail_server.mailbox(processed_folder=folder) as box:
            assert box.uidvalidity > 0
            assert box.has_move  # announced only after login (pitfall M9)
            new = box.fetch_new(0)
            assert subjects(raw for _, raw in new) == [f"first {tag}", f"second {tag}"]
            (uid1, raw1), (uid2, _) = new
            assert uid1 < uid2
            assert parse_message(raw1).text == "Принтер не печатает"
            assert [u for u, _ in box.fetch_new(uid1)] == [uid2]
            assert box.fetch_new(uid2) == []  # "uid2+1:*" would also match uid2 without our filter
            assert [u for u, _ in box.fetch_new(0, limit=1)] == [uid1]

            box.mark_processed(uid1)
            assert [u for u, _ in box.fetch_new(0)] == [uid2]
            box.mark_processed(uid1)  # again: nothing to do, no error
        assert subjects(mail_server.messages("helpdesk", folder=folder)) == [f"first {tag}"]
        assert mail_server.count("helpdesk") == 1
        # BODY.PEEK: fetching did not mark the remaining message \Seen
        login, password = USERS["helpdesk"]
        with IMAPClient(mail_server.host, mail_server.imap_port, ssl=False, timeout=10) as c:
            c.login(login, password)
            c.select_folder("INBOX", readonly=True)
            assert c.search(["UNSEEN"]) == [uid2]
    finally:
        doveadm("mailbox", "delete", "-u", USERS["helpdesk"][0], "-s", folder)


def test_mark_processed_without_move_uses_copy_delete_uid_expunge(mail_server):
    mail_server.send_in_order(("no move", "x"), ("stays", "y"))
    with mail_server.mailbox() as box:
        box._caps = box.capabilities - {b"MOVE"}  # a server without RFC 6851
        (uid1, _), (uid2, _) = box.fetch_new(0)
        box.mark_processed(uid1)
        assert [u for u, _ in box.fetch_new(0)] == [uid2]  # UID EXPUNGE removed only uid1
    assert subjects(mail_server.messages("helpdesk", folder="Processed")) == ["no move"]


def test_idle_wakes_on_a_new_message(mail_server):
    with mail_server.mailbox() as box:
        assert box.has_idle
        assert box.wait(0.5) is False  # nothing arrives: times out
        timer = threading.Timer(0.5, mail_server.send_text, args=("wake up", "idle"))
        timer.start()
        try:
            assert box.wait(15) is True
        finally:
            timer.join()
        assert subjects(raw for _, raw in box.fetch_new(0)) == ["wake up"]


def test_polling_fallback_when_idle_is_off(mail_server):
    with mail_server.mailbox(idle=False, poll_interval_s=0.2) as box:
        timer = threading.Timer(0.5, mail_server.send_text, args=("polled", "noop"))
        timer.start()
        try:
            assert box.wait(15) is True
        finally:
            timer.join()
        assert subjects(raw for _, raw in box.fetch_new(0)) == ["polled"]


def test_bad_password_is_an_authentication_error(mail_server):
    box = mail_server.mailbox()
    box._password = "wrong"
    with pytest.raises(AuthenticationError) as info:
        box.connect()
    assert "wrong" not in str(info.value)


def test_missing_folder_is_not_found(mail_server):
    with pytest.raises(NotFound):
        mail_server.mailbox(folder="No-Such-Folder").connect()


def test_reconnects_after_the_server_drops_the_connection(mail_server):
    with mail_server.mailbox() as box:
        validity = box.uidvalidity
        assert box.fetch_new(0) == []
        doveadm("kick", USERS["helpdesk"][0])  # the server closes our session
        mail_server.send_text("after kick", "x")
        mail_server.messages("helpdesk")
        assert subjects(raw for _, raw in box.fetch_new(0)) == ["after kick"]
        assert box.uidvalidity == validity


def test_fetch_new_sees_mail_delivered_after_the_folder_was_selected(mail_server):
    """Issue 8 item 12: IMAP servers report new mail only in answer to a command; a connection that
    selected the folder before delivery must still find the message, without reconnecting."""
    with mail_server.mailbox() as box:
        box.connect()  # selected now, while the folder is empty
        mail_server.send_text("after select", "Принтер не печатает")
        mail_server.messages("helpdesk")  # Dovecot has it (seen on another connection)
        assert subjects(raw for _, raw in box.fetch_new(0)) == ["after select"]
