"""SmtpSender: error mapping (4xx/network -> transient, 5xx -> rejected, bad login) with a fake smtplib.SMTP."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import ClassVar

import pytest

from connectors.base import AuthenticationError, ConnectorError, RejectedByHelpdesk, TransientConnectorError
from connectors.email import smtp as smtp_module
from connectors.email.smtp import SmtpSender


class FakeSMTP:
    """Records the calls; ``fail`` maps a method name to the exception it raises."""

    instances: ClassVar[list[FakeSMTP]] = []
    fail: ClassVar[dict[str, BaseException]] = {}
    refused: ClassVar[dict[str, tuple[int, bytes]]] = {}
    extensions: ClassVar[set[str]] = {"8bitmime"}

    def __init__(self, host, port, timeout=None, local_hostname=None, context=None):
        self.host, self.port = host, port
        self.calls: list[tuple] = []
        self.closed = False
        FakeSMTP.instances.append(self)
        if "connect" in self.fail:
            raise self.fail["connect"]

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail[name]

    def ehlo(self):
        self.calls.append(("ehlo",))

    def starttls(self, context=None):
        self.calls.append(("starttls",))
        self._maybe_fail("starttls")

    def login(self, user, password):
        self.calls.append(("login", user))
        self._maybe_fail("login")

    def has_extn(self, name):
        return name in self.extensions

    def sendmail(self, sender, recipients, data, mail_options=()):
        self.calls.append(("sendmail", sender, list(recipients), data, list(mail_options)))
        self._maybe_fail("sendmail")
        return dict(self.refused)

    def quit(self):
        self.closed = True


@pytest.fixture(autouse=True)
def fake_smtp(monkeypatch):
    FakeSMTP.instances = []
    FakeSMTP.fail = {}
    FakeSMTP.refused = {}
    monkeypatch.setattr(smtp_module.smtplib, "SMTP", FakeSMTP)
    monkeypatch.setattr(smtp_module.smtplib, "SMTP_SSL", FakeSMTP)
    return FakeSMTP


def message(body="hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Помощник <helpdesk@example.test>"
    msg["To"] = "a@customer.example"
    msg["Cc"] = "b@customer.example"
    msg["Bcc"] = "hidden@customer.example"
    msg["Subject"] = "Re: x"
    msg.set_content(body)
    return msg


def test_send_starttls_login_recipients_and_no_bcc_header():
    sender = SmtpSender("mail.example", 587, "starttls", "helpdesk@example.test", "pw")
    assert sender.send(message()) == []
    calls = FakeSMTP.instances[0].calls
    assert [c[0] for c in calls] == ["ehlo", "starttls", "ehlo", "login", "sendmail"]
    _, envelope_from, rcpts, data, options = calls[-1]
    assert envelope_from == "helpdesk@example.test"
    assert rcpts == ["a@customer.example", "b@customer.example", "hidden@customer.example"]
    assert b"hidden@" not in data and b"\r\n" in data
    assert options == []  # ASCII only: no BODY=8BITMIME
    assert FakeSMTP.instances[0].closed


def test_explicit_recipients_no_auth_and_8bit_body():
    msg = message()
    msg.set_content("Привет", cte="8bit")  # raw UTF-8 bytes in the body
    SmtpSender("127.0.0.1", 25, "none").send(msg, to=["x@y.example"])
    calls = FakeSMTP.instances[0].calls
    assert [c[0] for c in calls] == ["ehlo", "sendmail"]
    assert calls[-1][2] == ["x@y.example"]
    assert calls[-1][4] == ["BODY=8BITMIME"]


@pytest.mark.parametrize(
    ("where", "error", "expected"),
    [
        ("connect", ConnectionRefusedError(), TransientConnectorError),
        ("connect", TimeoutError(), TransientConnectorError),
        ("connect", smtplib.SMTPConnectError(421, b"busy"), TransientConnectorError),
        ("connect", smtplib.SMTPConnectError(554, b"go away"), RejectedByHelpdesk),
        ("login", smtplib.SMTPAuthenticationError(535, b"bad credentials"), AuthenticationError),
        ("login", smtplib.SMTPNotSupportedError("no AUTH"), ConnectorError),
        ("starttls", smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), ConnectorError),
        ("sendmail", smtplib.SMTPSenderRefused(451, b"try later", "h@x"), TransientConnectorError),
        ("sendmail", smtplib.SMTPSenderRefused(553, b"not owned", "h@x"), RejectedByHelpdesk),
        ("sendmail", smtplib.SMTPDataError(452, b"insufficient storage"), TransientConnectorError),
        ("sendmail", smtplib.SMTPDataError(552, b"too big"), RejectedByHelpdesk),
        ("sendmail", smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}), RejectedByHelpdesk),
        ("sendmail", smtplib.SMTPRecipientsRefused({"a@x": (450, b"greylisted")}), TransientConnectorError),
        ("sendmail", smtplib.SMTPServerDisconnected("gone"), TransientConnectorError),
        ("sendmail", BrokenPipeError(), TransientConnectorError),
    ],
)
def test_error_mapping(where, error, expected):
    FakeSMTP.fail = {where: error}
    with pytest.raises(expected) as info:
        SmtpSender("mail.example", 587, "starttls", "u@example.test", "pw").send(message())
    assert type(info.value) is expected or expected is ConnectorError
    assert "pw" not in str(info.value)
    if where != "connect":
        assert FakeSMTP.instances[0].closed


def test_partly_refused_returns_the_refused_without_raising():
    FakeSMTP.refused = {"b@customer.example": (550, b"no such user")}
    assert SmtpSender("mail.example", 25, "none").send(message()) == ["b@customer.example"]


def test_no_recipient_is_rejected_before_connecting():
    msg = EmailMessage()
    msg["From"] = "h@x.example"
    msg.set_content("x")
    with pytest.raises(RejectedByHelpdesk):
        SmtpSender("mail.example", 25, "none").send(msg)
    assert FakeSMTP.instances == []
