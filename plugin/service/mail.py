"""The support mailbox: answer before a ticket exists, forward only what still needs a person.

    IMAP (poll, woken by IDLE) --> inbox "mail_in" (durable, de-duplicated on Message-ID) --> moved to Processed
    worker: parse -> automatic? (never answered) -> a reply in one of our conversations?
        yes: first words "да, помогло" / "no, still broken" -> outcome; anything else -> forward to the helpdesk
        no:  allowed domains? rate limit per address written to -> ask the engine -> answer by SMTP
             with two signed links (abstention, shadow mode, a sender or Reply-To outside
             email.allowed_domains, rate limit: forward at once, with our note for the agents)
    outcome "solved"      -> short thanks, conversation closed: a deflection, no ticket ever
    outcome "not solved"  -> forward to the helpdesk intake with the original message attached intact
    no outcome in reply_timeout_h -> forward (the "mail_timeouts" job)

Exactly-once in practice: the conversation row is written with state ``sending`` before the reply
goes out; a retry that finds ``sending`` does not send again (it cannot know whether the first
attempt reached the user) and forwards to the helpdesk instead: nobody is answered twice and
nothing is lost. Forwards are the other way round (sent, then recorded): a duplicate forward is
better than a lost one.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from connectors.email import (
    IncomingMail,
    Mailbox,
    MailboxCheck,
    SmtpSender,
    automatic_reason,
    build_forward,
    build_reply,
    build_thanks,
    classify_reply,
    conversation_from_headers,
    find_subject_tag,
    parse_message,
    reply_address,
)
from plugin.i18n import N_, Translate, words
from plugin.jobs.worker import PermanentFailure, PollJob
from plugin.service.tickets import Pipeline
from plugin.settings import EmailSettings
from plugin.store.inbox import InboxItem
from plugin.store.suggestions import Suggestion, new_suggestion_id
from rag.models import ABSTAIN_REASONS

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Why:
    """Why a message goes to the helpdesk: a catalog key and its values. The agents read it in their
    language (the forward's); the log and the conversation row keep the English."""

    key: str
    #: A value that is itself a :class:`Why` (the engine's reason) is read in the same language.
    params: dict[str, str | Why] = field(default_factory=dict)

    def text(self, translate: Translate | None = None) -> str:
        values = {k: v.text(translate) if isinstance(v, Why) else v for k, v in self.params.items()}
        return (translate or _as_is)(self.key).format(**values)


def _as_is(key: str) -> str:
    return key


MAIL_IN = "mail_in"
MAIL_FORWARD = "mail_forward"
SOURCE = "email"

class MailFlow:
    def __init__(
        self,
        settings: EmailSettings,
        pipeline: Pipeline,
        *,
        mailbox: Mailbox | None = None,
        sender: SmtpSender | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = settings
        self.pipeline = pipeline
        self.store = pipeline.store
        self.conversations_db = pipeline.store.mail
        self.records = pipeline.records
        self.engine = pipeline.engine
        self.clock = clock
        self.domain = settings.message_id_domain or settings.address.rsplit("@", 1)[-1]
        self.mailbox = mailbox or _mailbox(settings)
        self.sender = sender or _sender(settings)
        self._due = threading.Event()
        self._last_poll = float("-inf")
        self._lock = threading.Lock()

    # -- registration ----------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Callable[[InboxItem], None]]:
        return {MAIL_IN: self.handle_mail, MAIL_FORWARD: self.handle_forward}

    def poll_jobs(self) -> list[PollJob]:
        return [
            PollJob(name="email", poll=self.poll, interval_s=1.0, enqueue=self.enqueue_arrival),
            PollJob(name="email-timeouts", poll=self.expired, interval_s=60.0, enqueue=self.enqueue_forward),
        ]

    # -- intake ------------------------------------------------------------------------------------------
    def poll(self, watermark: str | None) -> tuple[list[tuple[int, bytes]], str | None]:
        """New messages since the watermark ``"<uidvalidity>:<last uid>"``. Runs every second but
        reads the mailbox only every ``poll_interval_s`` or when IDLE announced new mail."""
        now = time.monotonic()  # an interval, not a date: never the injectable wall clock
        if not self._due.is_set() and now - self._last_poll < self.cfg.poll_interval_s:
            return [], watermark
        self._due.clear()
        self._last_poll = now
        with self._lock:
            validity = self.mailbox.uidvalidity
            last_validity, _, last_uid = (watermark or "").partition(":")
            after = int(last_uid) if last_validity == str(validity) and last_uid.isdigit() else 0
            # A changed UIDVALIDITY means every UID is new: read the folder again; Message-ID
            # de-duplication in the inbox keeps anything from being handled twice.
            messages = self.mailbox.fetch_new(after)
        new_mark = f"{validity}:{max([after] + [uid for uid, _ in messages])}"
        return messages, new_mark

    def enqueue_arrival(self, arrival: tuple[int, bytes]) -> None:
        """Persist one fetched message, then move it out of the folder we read."""
        uid, raw = arrival
        mail = parse_message(raw)
        key = f"email:{mail.message_id}"
        self.store.inbox.enqueue(SOURCE, MAIL_IN, key, {"raw": base64.b64encode(raw).decode("ascii"), "uid": uid})
        with self._lock:
            self.mailbox.mark_processed(uid)
        self.pipeline.wake()

    def watch(self, stop: threading.Event, wake: Callable[[], None]) -> threading.Thread:
        """A thread that waits on IMAP IDLE (its own connection) and makes the next poll immediate."""
        cfg = self.cfg
        watcher = _mailbox(cfg)

        def run() -> None:
            while not stop.is_set():
                try:
                    if watcher.wait(min(cfg.poll_interval_s, 300.0)):
                        self._due.set()
                        wake()
                except Exception as e:  # noqa: BLE001 - a watcher failure only delays polling
                    log.warning("mail_watch_failed: %s", e)
                    stop.wait(5.0)
            watcher.close()

        t = threading.Thread(target=run, name="helpdesk-mail-idle", daemon=True)
        t.start()
        return t

    # -- one message -------------------------------------------------------------------------------------
    def handle_mail(self, item: InboxItem) -> None:
        raw = base64.b64decode(item.payload["raw"])
        mail = parse_message(raw)
        reason = automatic_reason(
            mail,
            own_addresses=[self.cfg.address],
            ignore_patterns=self.cfg.ignore_senders,
            own_message_id_domains=[self.domain],
        )
        if reason:
            log.info("mail_not_answered: automatic message: %s", reason)
            self.records.log(SOURCE, mail.message_id, "ignored", f"automatic: {reason}")
            return
        conv_id = conversation_from_headers(mail.in_reply_to, mail.references, self.domain) or find_subject_tag(
            mail.subject
        )
        conv = self._conversation(conv_id) if conv_id else None
        if conv is not None:
            self._handle_reply(conv, mail, raw)
            return
        if self._conversation_by_message(mail.message_id) is not None:
            return  # this very message was handled before (a re-read after UIDVALIDITY changed)
        self._handle_new(mail, raw)

    def _handle_new(self, mail: IncomingMail, raw: bytes) -> None:
        conv_id = new_suggestion_id()
        language = mail.language or self.engine.config.default_language
        recipient = reply_address(mail).lower()
        self._insert(conv_id, mail, raw, language, recipient)
        text = "\n".join(p for p in (mail.subject.strip(), mail.text.strip()) if p)
        if not text:
            self._forward(conv_id, Why(N_("the message has no readable text{problems}"), {"problems": _problems(mail)}))
            return
        outside = self._outside_allowed_domains(mail, recipient)
        if outside:
            # No address in the reason: it is logged.
            self._forward(conv_id, Why(outside))
            return
        if self._replies_today(recipient) >= self.cfg.max_replies_per_sender_per_day:
            self._forward(conv_id, Why(
                N_("more than {limit} automatic answers to this address today: not answered, forwarded"),
                {"limit": str(self.cfg.max_replies_per_sender_per_day)},
            ))
            return
        s = self.pipeline.suggest(
            text, source=SOURCE, ticket_id=conv_id, title=mail.subject, requester_id=mail.from_addr,
            suggestion_id=conv_id,
        )
        s = self.records.create(s)
        if s.mode == "abstain":
            reason = ABSTAIN_REASONS.get(s.reason_code)
            why = Why(reason, dict(s.reason_params)) if reason else s.reason
            self._forward(conv_id, Why(N_("no confident answer ({reason})"), {"reason": why}), suggestion=s)
            return
        if s.mode == "shadow":
            self._forward(conv_id, Why(N_("shadow mode: the user got no automatic answer")), suggestion=s)
            return
        if s.mode == "holdout":
            self._forward(conv_id, Why(N_("holdout: drawn at random to measure the effect; the user got no "
                                          "automatic answer")), suggestion=s)
            return
        self._send_reply(conv_id, mail, s)

    def _send_reply(self, conv_id: str, mail: IncomingMail, s: Suggestion) -> None:
        state = self.conversations_db.start_sending(conv_id)
        if state == "sending":
            # An earlier attempt may or may not have reached the user: never risk a second answer.
            self._forward(
                conv_id, Why(N_("our answer may not have been delivered (interrupted while sending)")), suggestion=s
            )
            return
        if state != "new":
            return
        links = self.pipeline.links
        msg = build_reply(
            mail,
            from_addr=self.cfg.address,
            from_name=self.cfg.display_name,
            message_id_domain=self.domain,
            conversation_id=conv_id,
            language="ru" if s.language == "ru" else "en",
            answer_text=s.answer_text,
            entries=[
                (e.title or e.question, e.answer) for e in s.entries[: self.pipeline.settings.pipeline.max_entries]
            ],
            solved_url=links.url(s.id, "solved"),
            not_solved_url=links.url(s.id, "not_solved"),
            words=words(s.language),
        )
        self.sender.send(msg, to=[reply_address(mail)])
        now = self.clock()
        self.conversations_db.mark_answered(
            conv_id, reply_message_id=str(msg["Message-ID"]), at=now, deadline=now + self.cfg.reply_timeout_h * 3600
        )
        self.records.log(SOURCE, conv_id, "answered", f"p={s.confidence:.2f}")
        log.info("mail_answered: conversation=%s", conv_id)

    def _handle_reply(self, conv: dict[str, Any], mail: IncomingMail, raw: bytes) -> None:
        conv_id = conv["id"]
        if conv["state"] != "answered":
            # The conversation is already with the agents (or closed): pass the new message on.
            self._send_forward(conv_id, Why(N_("the user wrote again in a conversation already handled")), raw, mail)
            return
        verdict = classify_reply(mail.text)
        if verdict is None:
            self._forward(
                conv_id,
                Why(N_("the user answered, neither clearly solved nor not solved: please read their reply")),
                extra=(raw, mail),
            )
            return
        self.pipeline.record_outcome(conv_id, verdict, via="mail", comment=mail.text[:2000])

    # -- outcomes (from links or replies), applied by the worker -----------------------------------------
    def apply_outcome(self, s: Suggestion) -> None:
        conv = self._conversation(s.ticket_id)
        if conv is None:
            raise PermanentFailure(f"no mail conversation {s.ticket_id!r}")
        if s.outcome == "solved":
            if conv["state"] == "answered":
                original = parse_message(conv["raw"])
                msg = build_thanks(
                    original,
                    from_addr=self.cfg.address,
                    from_name=self.cfg.display_name,
                    message_id_domain=self.domain,
                    conversation_id=conv["id"],
                    language="ru" if conv["language"] == "ru" else "en",
                    words=words(conv["language"]),
                )
                self.conversations_db.mark_closed(conv["id"], at=self.clock())
                self.sender.send(msg, to=[reply_address(original)])
                self.records.log(SOURCE, conv["id"], "deflected", "the user confirmed: no ticket created")
            return
        reason = Why(N_("the user says the suggestion did not help"))
        self._forward(conv["id"], reason, suggestion=s, user_reason=s.outcome_comment or (s.outcome_reason or ""))

    def conversation_open(self, s: Suggestion) -> bool:
        """Whether a link click may still count: we are waiting for the user's answer. A conversation
        forwarded to the helpdesk (the user did not answer in time, wrote again...) or closed is not."""
        conv = self._conversation(s.ticket_id)
        return conv is not None and conv["state"] in ("new", "sending", "answered")

    # -- forwarding ----------------------------------------------------------------------------------------
    def expired(self, watermark: str | None) -> tuple[list[str], str | None]:
        return self.conversations_db.expired(self.clock()), None

    def enqueue_forward(self, conv_id: str) -> None:
        self.store.inbox.enqueue(
            SOURCE,
            MAIL_FORWARD,
            f"email:timeout:{conv_id}",
            {"conversation": conv_id, "reason_key": N_("no answer from the user within {hours} h"),
             "params": {"hours": f"{self.cfg.reply_timeout_h:g}"}},
        )

    def handle_forward(self, item: InboxItem) -> None:
        conv = self._conversation(str(item.payload["conversation"]))
        if conv is None or conv["state"] != "answered":
            return  # the user answered meanwhile
        if self.records.get(conv["id"]) is not None:
            self.records.add_event(conv["id"], "timed_out", channel="worker", at=self.clock())
        # Items queued before the reason was a catalog key carry the English text itself.
        why = Why(str(item.payload.get("reason_key") or item.payload.get("reason", "")),
                  dict(item.payload.get("params") or {}))
        self._forward(conv["id"], why, suggestion=self.records.get(conv["id"]))

    def _forward(
        self,
        conv_id: str,
        why: Why,
        *,
        suggestion: Suggestion | None = None,
        user_reason: str = "",
        extra: tuple[bytes, IncomingMail] | None = None,
    ) -> None:
        conv = self._conversation(conv_id)
        assert conv is not None
        if conv["state"] == "forwarded":
            return
        raw = bytes(conv["raw"])
        original = parse_message(raw)
        suggestion_text = ""
        if suggestion is not None and suggestion.answer_text:
            suggestion_text = suggestion.answer_text
        elif suggestion is not None and suggestion.entries:
            suggestion_text = "\n\n".join(f"{e.title or e.question}\n{e.answer}" for e in suggestion.entries)
        if extra is not None:
            user_reason = (user_reason + "\n" if user_reason else "") + extra[1].text
        self._send_forward(conv_id, why, raw, original, suggestion_text=suggestion_text, user_reason=user_reason)
        reason = why.text()
        self.conversations_db.mark_forwarded(conv_id, reason, at=self.clock())
        if self.records.get(conv_id) is not None:
            # The suggestion (if one was made) went on to the agents: part of its history.
            self.records.add_event(conv_id, "handed_off", channel="mail", reason=reason[:500], at=self.clock())
        self.records.log(SOURCE, conv_id, "forwarded", reason)
        log.info("mail_forwarded: conversation=%s reason=%s", conv_id, reason)

    def _send_forward(
        self,
        conv_id: str,
        why: Why,
        raw: bytes,
        original: IncomingMail,
        *,
        suggestion_text: str = "",
        user_reason: str = "",
    ) -> None:
        if self.cfg.forward_via != "smtp":
            raise PermanentFailure(f"forward_via {self.cfg.forward_via!r} is not supported yet; use smtp")
        language: Literal["ru", "en"] = "ru" if (original.language or "ru") == "ru" else "en"
        msg: EmailMessage = build_forward(
            raw,
            original,
            to_addr=self.cfg.forward_to,
            from_addr=self.cfg.address,
            note_text=why.text(words(language)),
            suggestion_text=suggestion_text,
            user_reason=user_reason,
            from_name=self.cfg.display_name,
            language=language,
            # Redmine's mail handler ignores mail marked Auto-Submitted: the helpdesk must take it.
            auto_submitted=False,
            conversation_id=conv_id,
            message_id_domain=self.domain,
            words=words(language),
        )
        self.sender.send(msg, to=[self.cfg.forward_to])

    # -- storage -------------------------------------------------------------------------------------------
    def _insert(self, conv_id: str, mail: IncomingMail, raw: bytes, language: str, recipient: str) -> None:
        self.conversations_db.insert(
            conv_id, message_id=mail.message_id, from_addr=mail.from_addr, reply_addr=recipient, subject=mail.subject,
            language=language, raw=raw, at=self.clock(),
        )

    def _conversation(self, conv_id: str) -> dict[str, Any] | None:
        return self.conversations_db.get(conv_id)

    def _conversation_by_message(self, message_id: str) -> dict[str, Any] | None:
        return self.conversations_db.by_message(message_id)

    def _replies_today(self, recipient: str) -> int:
        """Answers written to ``recipient`` (lower-cased) in the last 24 hours."""
        return self.conversations_db.replies_since(recipient, self.clock() - 86_400)

    def _outside_allowed_domains(self, mail: IncomingMail, recipient: str) -> str:
        """Which address is outside ``email.allowed_domains`` ("" when both are inside or no list is set):
        the company's assistant answers its own people, never the internet (its answers name internal
        hosts), and never writes to a Reply-To elsewhere."""
        allowed = self.cfg.allowed_domains
        if not allowed:
            return ""
        if not in_domains(mail.from_addr, allowed):
            return N_("the sender's domain is outside email.allowed_domains: not answered automatically")
        if not in_domains(recipient, allowed):
            return N_("the Reply-To address's domain is outside email.allowed_domains: not answered automatically")
        return ""

    def conversations(self) -> dict[str, int]:
        return self.conversations_db.counts()


def _sender(cfg: EmailSettings) -> SmtpSender:
    return SmtpSender(
        cfg.smtp_host, cfg.smtp_port, cfg.smtp_security, cfg.smtp_username, cfg.smtp_password.get_secret_value(),
        cfg.timeout_s,
    )


def mailbox_check(cfg: EmailSettings) -> MailboxCheck:
    """What ``helpdesk-assist check`` runs for the mailbox: the same IMAP and SMTP settings as the flow."""
    return MailboxCheck(_mailbox(cfg), _sender(cfg), address=cfg.address, forward_to=cfg.forward_to)


def _mailbox(cfg: EmailSettings) -> Mailbox:
    """One IMAP connection to the configured folder (the worker's, or the IDLE watcher's own)."""
    return Mailbox(
        cfg.imap_host, cfg.imap_port, cfg.imap_security, cfg.imap_username, cfg.imap_password.get_secret_value(),
        cfg.folder, cfg.processed_folder, cfg.timeout_s, idle=cfg.idle, poll_interval_s=cfg.poll_interval_s,
    )


def in_domains(address: str, domains: list[str]) -> bool:
    """True when ``address`` is in one of ``domains`` or a subdomain of one (case-insensitive;
    ``пример.рф`` and ``xn--e1afmkfd.xn--p1ai`` are the same domain)."""
    _, at, domain = address.strip().rpartition("@")
    if not at or not domain.strip().rstrip("."):
        return False
    mine = _ascii_domain(domain)
    return any(mine == d or mine.endswith("." + d) for d in map(_ascii_domain, domains))


def _ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _problems(mail: IncomingMail) -> str:
    return (": " + "; ".join(mail.problems)) if mail.problems else ""
