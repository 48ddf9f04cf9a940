"""The real loopback mail server of scripts/mail_up.sh: Postfix (SMTP 25) -> Dovecot (IMAP 143).

``mail_server`` skips (or fails in CI, see servers.py) when it is not running, and empties every
mailbox before each test with doveadm.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient

from connectors.email.imap import Mailbox
from connectors.email.smtp import SmtpSender
from tests.integration.servers import require_server

HOST = "127.0.0.1"
DOVECOT_CONF = "/etc/dovecot/helpdesk-test.conf"
USERS = {
    "helpdesk": ("helpdesk@example.test", "helpdesk-pass"),
    "intake": ("intake@example.test", "intake-pass"),
    "sink": ("sink@example.test", "sink-pass"),
}


def doveadm(*args: str) -> None:
    subprocess.run(["doveadm", "-c", DOVECOT_CONF, *args], check=True, capture_output=True, timeout=30)


@dataclass
class MailServer:
    host: str = HOST
    smtp_port: int = 25
    imap_port: int = 143

    def mailbox(self, user: str = "helpdesk", **kw: object) -> Mailbox:
        login, password = USERS[user]
        args: dict = {"folder": "INBOX", "processed_folder": "Processed", "timeout_s": 10.0}
        args.update(kw)
        return Mailbox(self.host, self.imap_port, "none", login, password, **args)

    def sender(self, user: str | None = None) -> SmtpSender:
        login, password = USERS[user] if user else ("", "")
        return SmtpSender(self.host, self.smtp_port, "none", login, password, timeout_s=10.0)

    def send_raw(self, raw: bytes, to: str = "helpdesk@example.test", sender: str = "customer@outside.example") -> None:
        """Submit bytes as they are (8BITMIME), the way another mail server would relay them."""
        with smtplib.SMTP(self.host, self.smtp_port, timeout=10) as s:
            s.ehlo()
            s.sendmail(sender, [to], raw, mail_options=[] if raw.isascii() else ["BODY=8BITMIME"])

    def send_text(self, subject: str, body: str, to: str = "helpdesk@example.test", **headers: str) -> None:
        msg = EmailMessage()
        msg["From"] = "Customer <customer@outside.example>"
        msg["To"] = to
        msg["Subject"] = subject
        for name, value in headers.items():
            msg[name.replace("_", "-")] = value
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.smtp_port, timeout=10) as s:
            s.send_message(msg)

    def send_in_order(self, *mails: tuple[str, str]) -> list[bytes]:
        """Send ``(subject, body)`` mails to helpdesk@ one by one, each delivered before the next is sent:
        Postfix delivers its queue in parallel, so two mails sent back to back can get their UIDs in
        either order. Returns the raw INBOX, oldest first."""
        raws: list[bytes] = []
        for n, (subject, body) in enumerate(mails, 1):
            self.send_text(subject, body)
            raws = self.messages("helpdesk", count=n)
        return raws

    def messages(self, user: str, count: int = 1, folder: str = "INBOX", timeout_s: float = 15.0) -> list[bytes]:
        """Wait until ``folder`` of ``user`` holds at least ``count`` messages; their raw bytes, oldest first."""
        login, password = USERS[user]
        deadline = time.monotonic() + timeout_s
        with IMAPClient(self.host, self.imap_port, ssl=False, timeout=10) as c:
            c.login(login, password)
            c.select_folder(folder, readonly=True)
            while True:
                c.noop()
                uids = sorted(c.search(["ALL"]))
                if len(uids) >= count:
                    data = c.fetch(uids, ["BODY.PEEK[]"])
                    return [data[u][b"BODY[]"] for u in uids]
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{login}/{folder}: {len(uids)} message(s) after {timeout_s} s, wanted {count}"
                    )
                time.sleep(0.05)

    def count(self, user: str, folder: str = "INBOX") -> int:
        login, password = USERS[user]
        with IMAPClient(self.host, self.imap_port, ssl=False, timeout=10) as c:
            c.login(login, password)
            if not c.folder_exists(folder):
                return 0
            c.select_folder(folder, readonly=True)
            return len(c.search(["ALL"]))


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    require_server("mail server (Postfix)", HOST, 25)
    require_server("mail server (Dovecot IMAP)", HOST, 143)
    for login, _ in USERS.values():
        doveadm("expunge", "-u", login, "mailbox", "*", "all")
    yield MailServer()
