"""Sending mail with smtplib: implicit TLS, STARTTLS or plain, optional AUTH.

Errors: 4xx answers and network failures raise :class:`TransientConnectorError` (retry later);
5xx answers raise :class:`RejectedByHelpdesk` (the server will not take this message); a refused
login raises :class:`AuthenticationError`.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from copy import copy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Literal

from connectors.base import (
    N_,
    AuthenticationError,
    CheckResult,
    ConnectorError,
    RejectedByHelpdesk,
    TransientConnectorError,
)
from connectors.email.compose import flatten
from connectors.email.imap import tls_advice

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]


def _recipients(msg: EmailMessage) -> list[str]:
    values = [str(v) for h in ("To", "Cc", "Bcc") for v in msg.get_all(h, [])]
    return [addr for _, addr in getaddresses(values) if addr]


def _sender(msg: EmailMessage) -> str:
    for header in ("Sender", "From"):
        found = getaddresses([str(v) for v in msg.get_all(header, [])])
        if found and found[0][1]:
            return found[0][1]
    return ""


def _flatten(msg: EmailMessage) -> bytes:
    """The message as bytes with CRLF line ends, Bcc left out."""
    if msg.get("Bcc") is not None:
        msg = copy(msg)
        del msg["Bcc"]
    return flatten(msg)


def _status_error(code: int, what: str, detail: object) -> Exception:
    text = f"SMTP {what} answered {code}: {detail!r}"
    if 400 <= code < 500:
        return TransientConnectorError(text)
    return RejectedByHelpdesk(text)


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str = "",
        password: str = "",
        timeout_s: float = 30.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=context, local_hostname=self._local_hostname
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s, local_hostname=self._local_hostname)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password)
        except BaseException:
            _quiet_close(smtp)
            raise
        return smtp

    def send(self, msg: EmailMessage, *, to: list[str] | None = None) -> list[str]:
        """Send ``msg`` to ``to`` (default: its To, Cc and Bcc). Envelope sender: Sender or From.

        Returns the recipients refused while others accepted the message (usually empty); raises
        when no recipient accepted it."""
        recipients = to if to is not None else _recipients(msg)
        if not recipients:
            raise RejectedByHelpdesk("message has no recipient")
        sender = _sender(msg)
        data = _flatten(msg)
        try:
            smtp = self._connect()
        except smtplib.SMTPAuthenticationError as e:
            raise AuthenticationError(f"SMTP login refused for {self.username} on {self.host}") from e
        except smtplib.SMTPNotSupportedError as e:
            raise ConnectorError(
                f"SMTP {self.host}:{self.port} offers no AUTH here (use STARTTLS or SSL, or no username)"
            ) from e
        except smtplib.SMTPResponseException as e:
            raise _status_error(e.smtp_code, "connection", e.smtp_error) from e
        except (OSError, smtplib.SMTPException) as e:
            raise TransientConnectorError(f"SMTP {self.host}:{self.port} unreachable: {type(e).__name__}") from e
        try:
            options: list[str] = []
            if not data.isascii():
                if smtp.has_extn("8bitmime"):
                    options.append("BODY=8BITMIME")
                else:
                    log.warning("email.smtp.no_8bitmime host=%s", self.host)
            refused = smtp.sendmail(sender, recipients, data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            code = min(codes) if codes else 550
            raise _status_error(code, "RCPT", f"{len(codes)} recipient(s) refused") from e
        except smtplib.SMTPResponseException as e:
            raise _status_error(e.smtp_code, "send", e.smtp_error) from e
        except (OSError, smtplib.SMTPException) as e:
            raise TransientConnectorError(f"SMTP send failed: {type(e).__name__}") from e
        finally:
            _quiet_close(smtp)
        if refused:
            # Some recipients took it: the message went out, so no error (a retry would duplicate it).
            log.warning("email.smtp.partly_refused refused=%s of=%s", len(refused), len(recipients))
        log.info("email.smtp.sent recipients=%s bytes=%s", len(recipients) - len(refused), len(data))
        return sorted(refused)

    def check(self, mail_from: str, recipients: list[tuple[str, str]]) -> list[CheckResult]:
        """Connect (TLS as configured), log in, and try an envelope: ``MAIL FROM:<mail_from>``, then
        ``RCPT TO`` for each ``(setting name, address)`` in ``recipients``, then ``RSET``: no message
        is sent. In plain words, naming the setting to fix; never shows the password."""
        where = f"{self.host}:{self.port} ({self.security})"
        context = self._ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=context, local_hostname=self._local_hostname
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s, local_hostname=self._local_hostname)
        except ssl.SSLError as e:
            return [CheckResult.of(N_("smtp"), False, tls_advice("SMTP", where, e, "smtp", 465, 587))]
        except (OSError, smtplib.SMTPException) as e:
            return [
                CheckResult.of(
                    N_("smtp"),
                    False,
                    N_("cannot reach SMTP at {where} ({error}): check email.smtp_host, "
                       "email.smtp_port and that the mail server accepts connections from this machine"),
                    where=where, error=type(e).__name__,
                )
            ]
        results = [CheckResult.of(N_("smtp"), True, N_("SMTP answers at {where}"), where=where)]
        try:
            results.extend(self._check_session(smtp, where, context, mail_from, recipients))
        except (OSError, smtplib.SMTPException) as e:
            results.append(
                CheckResult.of(N_("smtp"), False, N_("the SMTP connection to {where} broke ({error})"), where=where,
                               error=type(e).__name__)
            )
        finally:
            _quiet_close(smtp)
        return results

    def _check_session(
        self,
        smtp: smtplib.SMTP,
        where: str,
        context: ssl.SSLContext,
        mail_from: str,
        recipients: list[tuple[str, str]],
    ) -> list[CheckResult]:
        results: list[CheckResult] = []
        smtp.ehlo()
        if self.security == "starttls":
            try:
                smtp.starttls(context=context)
                smtp.ehlo()
            except smtplib.SMTPNotSupportedError:
                return [
                    CheckResult.of(
                        N_("smtp_tls"),
                        False,
                        N_("the SMTP server at {where} does not offer STARTTLS: set email.smtp_security to "
                           "ssl (usually port 465), or to none on a trusted network"),
                        where=where,
                    )
                ]
            except ssl.SSLError as e:
                return [CheckResult.of(N_("smtp_tls"), False, tls_advice("SMTP", where, e, "smtp", 465, 587))]
            results.append(CheckResult.of(N_("smtp_tls"), True, N_("STARTTLS negotiated")))
        if self.username:
            try:
                smtp.login(self.username, self._password)
            except smtplib.SMTPAuthenticationError:
                return [
                    *results,
                    CheckResult.of(
                        N_("smtp_login"),
                        False,
                        N_("SMTP refused the login for '{user}': check email.smtp_username and "
                           "email.smtp_password (or HELPDESK_ASSIST_EMAIL__SMTP_PASSWORD)"),
                        user=self.username,
                    ),
                ]
            except smtplib.SMTPNotSupportedError:
                return [
                    *results,
                    CheckResult.of(
                        N_("smtp_login"),
                        False,
                        N_("the SMTP server at {where} offers no AUTH on this connection: use "
                           "email.smtp_security starttls or ssl, or leave email.smtp_username empty"),
                        where=where,
                    ),
                ]
            results.append(CheckResult.of(N_("smtp_login"), True, N_("logged in as {user}"), user=self.username))
        code, reply = smtp.mail(mail_from)
        if code != 250:
            smtp.rset()
            return [
                *results,
                CheckResult.of(
                    N_("smtp_sender"),
                    False,
                    N_("SMTP refused '{address}' (email.address) as sender: {code} {reply}"),
                    address=mail_from, code=code, reply=_text(reply),
                ),
            ]
        results.append(CheckResult.of(
            N_("smtp_sender"), True, N_("MAIL FROM:<{address}> accepted"), address=mail_from
        ))
        for setting, address in recipients:
            name = setting.rpartition(".")[2]  # a setting's name: shown as it is written in the config
            code, reply = smtp.rcpt(address)
            accepted = code in (250, 251)
            detail = (
                N_("RCPT TO:<{address}> accepted ({code}); no message was sent") if accepted
                else N_("SMTP refused '{address}' ({setting}) as recipient: {code} {reply}; fix {setting}")
            )
            results.append(CheckResult.of(
                name, accepted, detail, address=address, code=code, reply=_text(reply), setting=setting
            ))
        smtp.rset()
        return results


def _text(reply: bytes) -> str:
    return " ".join(reply.decode("utf-8", errors="replace").split())[:200]


def _quiet_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:  # noqa: BLE001 - the connection is being dropped anyway
        try:
            smtp.close()
        except Exception:  # noqa: BLE001, S110 - nothing left to release
            pass
