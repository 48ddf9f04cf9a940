"""The self-service chat (issue 10): a conversation that keeps its context, takes ratings, and opens a
ticket when it cannot help. No Flask here: the pages and the JSON API call this with an *owner* (an
opaque identity: the signed cookie's id, a trusted login) and get conversations back.

One message of the person becomes one turn:

1. a reply to a pending clarifying question (a button, or typed words that pick an option) is answered
   within the chosen option (:func:`rag.clarify.answer_choice`);
2. otherwise the message is resolved against the earlier turns (:func:`rag.followup.resolve_followup`:
   a follow-up becomes a standalone request, "не помогло" sets the last answer aside for good);
3. when the best answers are close and about different things, one short question with the options as
   buttons (at most ``chat.max_clarify_rounds`` per conversation);
4. an answer when the best one is sure enough (the decision policy in effect), composed like a ticket's
   and recorded as a suggestion with ``source="chat"``; else "an agent will help" with the hand-off.

A rating is that suggestion's outcome (:meth:`plugin.service.tickets.Pipeline.record_outcome`, channel
``chat``): stored as an outcome event and learned by the engine exactly as a ticket's "solved / not
solved" is. The hand-off is an inbox item (``chat_handoff``) handled by the worker with the configured
:class:`~connectors.base.TicketCreator`, so nothing is lost while the helpdesk is down; the ticket's
number is written to the conversation when it exists.

Every read and write takes the owner: another owner's conversation is :class:`ConversationNotFound`,
the same as one that does not exist.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any, Literal

from pydantic import BaseModel

from connectors.base import ConnectorError, NewTicket, Person, TicketCreator, clean_lookup
from helpdesk_errors import HelpdeskError
from plugin.i18n import N_, words
from plugin.jobs.worker import PermanentFailure
from plugin.service.chat_identity import ChatIdentities, Identity
from plugin.service.mail import in_domains
from plugin.service.outcomes import REASONS, Reason
from plugin.service.throttle import ip_key
from plugin.service.tickets import Pipeline
from plugin.settings import Settings
from plugin.store import Store
from plugin.store.chat import Conversation, Source, Turn
from plugin.store.inbox import InboxItem
from plugin.store.suggestions import EntryRef, Suggestion, new_suggestion_id
from rag.clarify import Clarification, ClarifyOption, answer_choice, clarify, match_choice
from rag.compose import compose_answer
from rag.engine import Engine
from rag.followup import PastTurn, resolve_followup
from rag.models import AnswerHit, ComposedAnswer
from rag.privacy import mask_pii
from rag.text import detect_language

log = logging.getLogger(__name__)

SOURCE = "chat"
CHAT_HANDOFF = "chat_handoff"
CHAT_LINK = "chat_link"
_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")
#: Sources shown with an answer (title + answer).
MAX_SOURCES = 3
MAX_COMMENT_CHARS = 2000
#: ``Turn.answer_mode`` while the LLM writes the answer (the extractive one is shown meanwhile).
PENDING = "pending"
#: After this many answers said not to help, the next "не помогло" offers the hand-off instead.
MAX_REJECTED = 3


class ChatError(HelpdeskError):
    """Something the person (or the API caller) must be told; ``field`` names the input at fault."""

    status = 400

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ConversationNotFound(ChatError):
    status = 404


class ConversationFull(ChatError):
    status = 409


class RateLimited(ChatError):
    status = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HandoffUnavailable(ChatError):
    """No helpdesk (nor intake mailbox) is configured to open tickets."""

    status = 409


class RequesterNotFound(ChatError):
    """The helpdesk has no active account with that login or e-mail address."""

    status = 422


class LinkUnavailable(ChatError):
    """No mailbox is configured to send links."""

    status = 409


class ChatLimiter:
    """Messages per minute, per identity and per client address (a fixed one-minute window each)."""

    def __init__(self, per_identity: int, per_ip: int, clock: Callable[[], float] = time.time) -> None:
        self.per_identity = per_identity
        self.per_ip = per_ip
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, owner: str, ip: str) -> float:
        """Count one message; 0 when allowed, else the seconds until it may be sent (nothing counted)."""
        now = self.clock()
        window = now - now % 60
        keys = (("id:" + owner, self.per_identity), (ip_key(ip or "?"), self.per_ip))
        with self._lock:
            if len(self._counts) > 50_000:  # forget old windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            for key, limit in keys:
                start, n = self._counts.get(key, (window, 0))
                if start == window and n >= limit:
                    return window + 60 - now
            for key, _limit in keys:
                start, n = self._counts.get(key, (window, 0))
                self._counts[key] = (window, n + 1 if start == window else 1)
        return 0.0


class RateResult(BaseModel):
    outcome: Literal["solved", "not_solved"]
    first_time: bool


def marker_for(conversation_id: str) -> str:
    """The marker written into the ticket a conversation opens (a retry finds that ticket)."""
    return "ha-" + hashlib.sha256(f"chat:{conversation_id}".encode()).hexdigest()[:12]


class ChatService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: Store,
        pipeline: Pipeline,
        creator: TicketCreator | None,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] | None = None,
        identities: ChatIdentities | None = None,
        mailer: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.pipeline = pipeline
        self.creator = creator
        self.wake = wake or (lambda: None)
        self.clock = clock or store.clock
        #: Sends "send me a link" mail (``SmtpSender.send``), when the mailbox is configured.
        self.mailer = mailer
        #: Signs the anonymous cookie, the CSRF tokens and the restore links.
        self.identities = identities or ChatIdentities(secrets.token_hex(32))
        self._composer: ThreadPoolExecutor | None = None
        self._compositions: set[Future[None]] = set()
        #: One turn at a time per conversation (two tabs sending at once): a fixed pool, by id.
        self._locks = [threading.Lock() for _ in range(64)]
        self.limiter = ChatLimiter(settings.chat.messages_per_minute, settings.chat.ip_messages_per_minute)

    def _lock(self, conversation_id: str) -> threading.Lock:
        return self._locks[int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) % len(self._locks)]

    # -- reading -----------------------------------------------------------------------------------------
    def get(self, owner: str, conversation_id: str) -> Conversation:
        conv = self.store.chat.get(owner, conversation_id) if conversation_id and len(conversation_id) <= 64 else None
        if conv is None:
            raise ConversationNotFound("no such conversation", field="conversation_id")
        return conv

    def conversations(self, owner: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The owner's conversations, newest first, with the first question and the outcome
        (``answered``, ``helpful``, ``not_helpful``, ``agent``, ``ticket``)."""
        out = []
        for row in self.store.chat.list(owner, limit=limit):
            out.append({**row, "outcome": self._outcome(row)})
        return out

    def _outcome(self, row: dict[str, Any]) -> str:
        if row["handoff_state"] == "created":
            return "ticket"
        if row["handoff_state"] == "pending":
            return "ticket_pending"
        ratings = self.ratings(row["id"])
        if ratings:
            return "helpful" if ratings[-1] == "solved" else "not_helpful"
        return {"answer": "answered", "clarify": "question", "handoff": "agent"}.get(row["last_reply"] or "", "")

    def ratings(self, conversation_id: str) -> list[str]:
        """The outcomes of the conversation's rated answers, in turn order."""
        conv = self.store.chat.get_any(conversation_id)
        out: list[str] = []
        for t in conv.turns if conv else []:
            s = self.store.suggestions.get(t.suggestion_id) if t.suggestion_id else None
            if s is not None and s.outcome:
                out.append(s.outcome)
        return out

    def rating_of(self, turn: Turn) -> Suggestion | None:
        return self.store.suggestions.get(turn.suggestion_id) if turn.suggestion_id else None

    # -- writing -----------------------------------------------------------------------------------------
    def check_rate(self, owner: str, ip: str, language: str = "en") -> None:
        wait = self.limiter.hit(owner, ip)
        if wait > 0:
            raise RateLimited(
                words(language)(N_("Too many messages in a short time. Please wait a minute and try again.")),
                retry_after_s=wait,
            )

    def _clean(self, text: Any, field: str = "text") -> str:
        if not isinstance(text, str):
            raise ChatError(f"'{field}' must be a string", field=field)
        text = text.replace("\r\n", "\n").strip()
        if not text:
            raise ChatError(f"'{field}' is empty: write your question", field=field)
        limit = self.settings.chat.max_message_chars
        if len(text) > limit:
            raise ChatError(f"'{field}' is longer than {limit} characters", field=field)
        if "\x00" in text:
            raise ChatError(f"'{field}' contains a NUL character", field=field)
        return text

    def start(self, owner: str, text: Any, *, language: str | None = None) -> Conversation:
        """A new conversation with its first message answered."""
        message = self._clean(text)
        lang = language or detect_language(message, default=self.settings.default_language)
        conv = self.store.chat.create(owner, language="ru" if lang == "ru" else "en", title=" ".join(message.split()))
        self._answer(conv, message)
        return self.get(owner, conv.id)

    def send(self, owner: str, conversation_id: str, text: Any) -> Conversation:
        """The next message of a conversation, answered in its context."""
        self.get(owner, conversation_id)
        message = self._clean(text)
        with self._lock(conversation_id):
            conv = self.get(owner, conversation_id)
            if len(conv.turns) >= self.settings.chat.max_turns:
                raise ConversationFull(
                    f"this conversation has reached {self.settings.chat.max_turns} messages: start a new one "
                    "or open a ticket", field="text")
            self._answer(conv, message)
        return self.get(owner, conversation_id)

    def choose(self, owner: str, conversation_id: str, option: Any) -> Conversation:
        """The answer to a pending clarifying question, by the option's number (1-based)."""
        self.get(owner, conversation_id)
        with self._lock(conversation_id):
            conv = self.get(owner, conversation_id)
            last = conv.turns[-1] if conv.turns else None
            if last is None or last.reply != "clarify" or not last.clarification:
                raise ChatError("there is no question to answer in this conversation", field="option")
            c = Clarification.model_validate(last.clarification)
            try:
                n = int(option)
            except (TypeError, ValueError):
                raise ChatError("'option' must be the number of one of the offered options",
                                field="option") from None
            if not 1 <= n <= len(c.options):
                raise ChatError(f"'option' must be between 1 and {len(c.options)}", field="option")
            picked = c.options[n - 1]
            self._answer_choice(conv, picked.label, last, picked)
        return self.get(owner, conversation_id)

    # -- one turn ----------------------------------------------------------------------------------------
    def _history(self, conv: Conversation) -> list[PastTurn]:
        return [
            PastTurn(message=t.message, query=t.query, answer_ids=tuple(t.answer_ids), entry_ids=tuple(t.entry_ids),
                     rejected=t.rejected)
            for t in conv.turns if t.reply != "clarify"
        ]

    def _answer(self, conv: Conversation, message: str) -> Turn:
        last = conv.turns[-1] if conv.turns else None
        if last is not None and last.reply == "clarify" and last.clarification:
            c = Clarification.model_validate(last.clarification)
            picked = match_choice(message, c)
            if picked is not None:
                return self._answer_choice(conv, message, last, picked)
        history = self._history(conv)
        policy = self.pipeline.policies.current().decision
        fu = resolve_followup(self.engine, message, history, llm=self.engine.llm, threshold=policy.threshold,
                              timeout_s=self.settings.llm.timeout_s)
        n = len(conv.turns) + 1
        base: dict[str, Any] = {"conversation_id": conv.id, "n": n, "at": self.clock(), "message": message,
                                "query": fu.query, "kind": fu.kind, "method": fu.method}
        hits = list(fu.hits)
        outages = self.pipeline.outages
        if outages is not None and fu.kind == "new":
            # A new question counts towards outage bursts across channels; one of an open incident gets
            # the incident's message instead of an answer (the hand-off stays offered).
            seen = outages.observe(source="chat", ticket_id=f"{conv.id}:{n}", text=message, channel="chat")
            if seen.known_problem and seen.incident_id is not None:
                return self.store.chat.add_turn(Turn(
                    **base, reply="incident", answer_text=outages.message(seen.incident_id, fu.language)))
        if fu.kind == "not_helped":
            self._reject_last_answer(conv, message)
            rejected = sum(1 for t in conv.turns if t.reply == "answer" and t.rejected) + 1
            if rejected >= MAX_REJECTED:
                # Enough tries: an agent will help (the hand-off is offered).
                return self.store.chat.add_turn(Turn(**base, reply="handoff"))
        if fu.kind != "not_helped" and conv.clarify_rounds < self.settings.chat.max_clarify_rounds:
            question = clarify(hits, language=fu.language, rounds_done=conv.clarify_rounds,
                               max_rounds=self.settings.chat.max_clarify_rounds)
            if question is not None:
                return self.store.chat.add_turn(
                    Turn(**base, reply="clarify", answer_text=question.question,
                         clarification=question.model_dump(mode="json")),
                    clarify_rounds=conv.clarify_rounds + 1)
        # A message understood on its own must be answered with the engine's confidence; a follow-up
        # (its confidence is judged without the answers set aside, so often low although right: see
        # README, "Conversation memory") gets the best remaining answer, rated by the person, with the
        # hand-off at hand.
        return self._reply(conv, base, hits, fu.language, category=None, lenient=fu.kind != "new")

    def _answer_choice(self, conv: Conversation, message: str, question_turn: Turn, picked: ClarifyOption) -> Turn:
        query = question_turn.query or question_turn.message
        result = answer_choice(self.engine, query, picked)
        rejected = {t.answer_ids[0] for t in conv.turns if t.rejected and t.answer_ids}
        hits = [h for h in result.hits if h.answer_id not in rejected]
        base: dict[str, Any] = {"conversation_id": conv.id, "n": len(conv.turns) + 1, "at": self.clock(),
                                "message": message, "query": result.query, "kind": "clarified", "method": "choice"}
        return self._reply(conv, base, hits, result.language, category=picked.category, lenient=True)

    def _reply(self, conv: Conversation, base: dict[str, Any], hits: list[AnswerHit], language: str,
               category: str | None, lenient: bool) -> Turn:
        policy = self.pipeline.policies.current().decision
        # An entry the admin switched off is never suggested, here as on tickets.
        hits = policy.enabled(hits)
        best = hits[0] if hits else None
        level1 = category or (best.categories[0] if best and best.categories else None)
        threshold = policy.threshold_for(level1, default=self.engine.default_threshold())
        if best is None or (best.confidence < threshold and not lenient) or policy.is_disabled(level1):
            # An agent will help: the person is offered the hand-off (nothing is recorded as a suggestion).
            return self.store.chat.add_turn(Turn(**base, reply="handoff"))
        # The extractive answer at once; with an LLM, its answer is composed in the background and
        # replaces the extractive one when it passes the checks (the page is told by server-sent events).
        translate = self.engine.words(language) if self.engine.words is not None else words(language)
        composed = compose_answer(base["query"], hits, language=language, llm=None, words=translate)
        shown = hits[:MAX_SOURCES]
        suggestion = self._suggest(conv, base, shown, composed, language, threshold)
        llm = self.engine.llm
        turn = self.store.chat.add_turn(Turn(
            **base, reply="answer", answer_text=composed.text,
            answer_mode=PENDING if llm is not None else "extractive",
            sources=[Source(title=h.title or "", answer=h.answer) for h in shown],
            answer_ids=[h.answer_id for h in shown], entry_ids=[h.entry_id for h in shown],
            suggestion_id=suggestion.id,
        ))
        if llm is not None:
            self._compose_later(conv.id, turn.n, base["query"], hits, language, llm, translate)
        return turn

    def _compose_later(self, conv_id: str, n: int, query: str, hits: list[AnswerHit], language: str, llm: Any,
                       translate: Callable[[str], str]) -> None:
        def job() -> None:
            try:
                composed: ComposedAnswer | None = compose_answer(query, hits, language=language, llm=llm,
                                                                 words=translate, **self.engine.llm_options)
            except Exception:
                log.exception("chat_compose_failed: conversation=%s turn=%s", conv_id, n)
                composed = None
            if composed is not None and composed.mode == "llm":
                self.store.chat.update_answer(conv_id, n, text=composed.text, mode="llm")
            else:
                reason = composed.fallback_reason if composed is not None else "LLM failed"
                self.store.chat.update_answer(conv_id, n, text=None, mode=f"extractive: {reason}")

        if self._composer is None:
            self._composer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-llm")
        future = self._composer.submit(job)
        self._compositions.add(future)
        future.add_done_callback(self._compositions.discard)

    def wait_compositions(self, timeout_s: float = 60.0) -> None:
        """Wait for the answers the LLM is writing (tests, benchmarks)."""
        wait(list(self._compositions), timeout=timeout_s)

    def _suggest(self, conv: Conversation, base: dict[str, Any], shown: list[AnswerHit], composed: ComposedAnswer,
                 language: str, threshold: float) -> Suggestion:
        best = shown[0]
        s = Suggestion(
            id=new_suggestion_id(), source=SOURCE, ticket_id=f"{conv.id}:{base['n']}", created_at=self.clock(),
            mode="public", language=language, ticket_title=conv.title[:300], query=mask_pii(base["query"])[:4000],
            category=" > ".join(best.categories), confidence=best.confidence, threshold=threshold,
            answer_text=composed.text, answer_mode=composed.mode,
            entries=[EntryRef(entry_id=h.entry_id, answer_id=h.answer_id, title=h.title, answer=h.answer,
                              score=round(h.score, 4), confidence=round(h.confidence, 4)) for h in shown],
            requester_id=conv.owner,
        )
        return self.store.suggestions.create(s)

    def _reject_last_answer(self, conv: Conversation, message: str) -> None:
        """A "не помогло" after an answer: the answer is marked rejected (never given again in this
        conversation) and, unless the person rated it already, recorded as not helpful."""
        last = next((t for t in reversed(conv.turns) if t.reply == "answer"), None)
        if last is None:
            return
        self.store.chat.mark_rejected(conv.id, last.n)
        if last.suggestion_id:
            self.pipeline.record_outcome(last.suggestion_id, "not_solved", via=SOURCE, reason=None,
                                         comment=message[:MAX_COMMENT_CHARS])

    # -- ratings -----------------------------------------------------------------------------------------
    def rate(self, owner: str, conversation_id: str, n: Any, helpful: Any, *, reason: Any = None,
             comment: Any = "") -> RateResult:
        conv = self.get(owner, conversation_id)
        try:
            number = int(n)
        except (TypeError, ValueError):
            raise ChatError("'turn' must be the number of an answer in this conversation", field="turn") from None
        turn = next((t for t in conv.turns if t.n == number), None)
        if turn is None or turn.reply != "answer" or not turn.suggestion_id:
            raise ChatError("'turn' must be the number of an answer in this conversation", field="turn")
        if not isinstance(helpful, bool):
            raise ChatError("'helpful' must be true or false", field="helpful")
        if reason in ("", None):
            reason = None
        elif reason not in REASONS:
            raise ChatError(f"'reason' must be one of {', '.join(REASONS)}", field="reason")
        if comment is None:
            comment = ""
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS or "\x00" in comment:
            raise ChatError(f"'comment' must be text of at most {MAX_COMMENT_CHARS} characters", field="comment")
        why: Reason | None = None if helpful else next((r for r in REASONS if r == reason), None)
        s, first = self.pipeline.record_outcome(
            turn.suggestion_id, "solved" if helpful else "not_solved", via=SOURCE, reason=why, comment=comment.strip(),
        )
        if not helpful and first:
            self.store.chat.mark_rejected(conv.id, turn.n)
        return RateResult(outcome=s.outcome or ("solved" if helpful else "not_solved"), first_time=first)

    def apply_outcome(self, s: Suggestion) -> None:
        """Nothing to do in a helpdesk for a chat answer's rating: the pipeline learns it after this."""

    def conversation_open(self, s: Suggestion) -> bool:
        """A chat answer takes a rating as long as it exists."""
        return True

    # -- hand-off ----------------------------------------------------------------------------------------
    @property
    def handoff_available(self) -> bool:
        return self.creator is not None

    def find_requester(self, login_or_email: Any) -> Person | None:
        """The helpdesk account of ``login_or_email`` (None: none). Raises ChatError on a malformed
        value, ConnectorError when the helpdesk cannot be asked."""
        if self.creator is None:
            raise HandoffUnavailable("no helpdesk is configured to open tickets", field="login")
        if not isinstance(login_or_email, str):
            raise ChatError("'login' must be a string", field="login")
        try:
            value = clean_lookup(login_or_email)
        except ValueError as e:
            raise ChatError(str(e), field="login") from None
        return self.creator.find_requester(value)

    def handoff(self, owner: str, conversation_id: str, *, login_or_email: Any) -> Conversation:
        """Open a ticket on the person's behalf, through the inbox. The login (or e-mail address) is
        checked against the helpdesk now when it answers; when it does not, the worker checks it when
        it creates the ticket (the person is told the ticket will be created)."""
        conv = self.get(owner, conversation_id)
        if conv.handoff_state in ("pending", "created"):
            return conv
        if not conv.turns:
            raise ChatError("there is nothing to hand over yet: ask your question first", field="text")
        person: Person | None = None
        try:
            person = self.find_requester(login_or_email)
        except ConnectorError as e:
            if getattr(e, "transient", False):
                log.warning("chat_handoff_lookup_deferred: conversation=%s: %s", conv.id, e)
            else:
                raise
        else:
            if person is None:
                raise RequesterNotFound(
                    "the helpdesk has no active account with this login or e-mail address", field="login")
        if not self.store.chat.start_handoff(conv.id):
            return self.get(owner, conversation_id)
        assert isinstance(login_or_email, str)
        payload = {"conversation_id": conv.id, "lookup": login_or_email.strip(),
                   "person": person.model_dump(mode="json") if person else None}
        self.store.inbox.enqueue(SOURCE, CHAT_HANDOFF, f"chat-handoff:{conv.id}:{secrets.token_hex(4)}", payload)
        for t in conv.turns:
            if t.suggestion_id:
                self.store.suggestions.add_event(t.suggestion_id, "handed_off", channel=SOURCE, ref=conv.id)
        log.info("chat_handoff_queued: conversation=%s", conv.id)
        self.wake()
        return self.get(owner, conversation_id)

    def handlers(self) -> dict[str, Callable[[InboxItem], None]]:
        return {CHAT_HANDOFF: self.handle_handoff, CHAT_LINK: self.handle_link}

    # -- "send me a link" ----------------------------------------------------------------------------------
    @property
    def link_available(self) -> bool:
        return self.mailer is not None

    def request_link(self, identity: Identity, address: Any, *, language: str) -> bool:
        """Queue a mail with a signed link that restores this browser's conversations on another device.
        True when queued; False when the address is outside ``email.allowed_domains`` (the page says the
        same either way: it does not tell which addresses are accepted)."""
        if self.mailer is None:
            raise LinkUnavailable("sending links by mail is not configured", field="email")
        if identity.kind != "cookie":
            raise ChatError("signed-in people see their conversations on every device already", field="email")
        if not isinstance(address, str) or len(address.strip()) > 254 or not _ADDRESS.fullmatch(address.strip()):
            raise ChatError("'email' must be an e-mail address like name@example.com", field="email")
        to = address.strip()
        allowed = self.settings.email.allowed_domains
        if allowed and not in_domains(to, allowed):
            log.info("chat_link_refused: address outside email.allowed_domains")
            return False
        payload = {"to": to, "cid": identity.owner.removeprefix("c:"), "language": language}
        self.store.inbox.enqueue(SOURCE, CHAT_LINK, f"chat-link:{secrets.token_hex(8)}", payload)
        self.wake()
        return True

    def handle_link(self, item: InboxItem) -> None:
        if self.mailer is None:
            raise PermanentFailure("no mailbox is configured to send links")
        p = item.payload
        token = self.identities.restore_token(Identity(owner=f"c:{p['cid']}", kind="cookie"))
        url = f"{self.settings.links.public_url.rstrip('/')}/chat/restore/{token}"
        _ = words(p.get("language"))
        e = self.settings.email
        msg = EmailMessage()
        msg["From"] = formataddr((e.display_name, e.address))
        msg["To"] = p["to"]
        msg["Subject"] = _("Your conversations with the IT support assistant")
        msg["Auto-Submitted"] = "auto-generated"
        domain = e.message_id_domain or e.address.rpartition("@")[2] or "localhost"
        msg["Message-ID"] = f"<ha.chat-link.{secrets.token_hex(12)}@{domain}>"
        hours = f"{self.settings.chat.restore_link_hours:g}"
        msg.set_content("\n\n".join([
            _("Open this link to see your conversations with the IT support assistant on this device:"), url,
            _("The link works for {hours} hours. If you did not ask for it, ignore this mail.").format(hours=hours),
        ]) + "\n")
        self.mailer(msg, to=[p["to"]])
        log.info("chat_link_sent")

    def handle_handoff(self, item: InboxItem) -> None:
        """The worker's part: create the ticket (idempotent: the marker finds an earlier attempt's)."""
        conv = self.store.chat.get_any(str(item.payload.get("conversation_id", "")))
        if conv is None:
            raise PermanentFailure("the conversation no longer exists")
        if conv.handoff_state == "created":
            return
        if self.creator is None:
            self.store.chat.set_handoff(conv.id, "failed", error="no helpdesk is configured to open tickets")
            raise PermanentFailure("no helpdesk is configured to open tickets")
        try:
            raw = item.payload.get("person")
            person = Person.model_validate(raw) if raw else self.creator.find_requester(str(item.payload["lookup"]))
            if person is None:
                raise PermanentFailure(f"the helpdesk has no account {item.payload['lookup']!r}")
            new = NewTicket(subject=_subject(conv), body=self.transcript(conv), requester=person,
                            marker=marker_for(conv.id),
                            category=next((s.category for s in map(self.rating_of, conv.turns) if s), ""))
            ticket = self.creator.create_ticket(new)
        except PermanentFailure as e:
            self.store.chat.set_handoff(conv.id, "failed", error=str(e))
            raise
        except ConnectorError as e:
            if getattr(e, "transient", False):
                raise  # retried by the worker; the conversation stays "pending"
            self.store.chat.set_handoff(conv.id, "failed", error=str(e))
            raise PermanentFailure(str(e)) from e
        self.store.chat.set_handoff(conv.id, "created", ticket_source=getattr(self.creator, "name", ""),
                                    ticket_id=ticket.id, ticket_url=ticket.url)
        log.info("chat_ticket_created: conversation=%s ticket=%s", conv.id, ticket.id)

    def transcript(self, conv: Conversation) -> str:
        """The conversation for the ticket's description: questions, our answers, their ratings."""
        _ = words(conv.language)
        parts = [_("The employee asked the self-service assistant first. The conversation:")]
        employee, assistant, articles, rating_label = _("Employee"), _("Assistant"), _("Knowledge base articles"), \
            _("Rating")
        for t in conv.turns:
            parts.append(f"{employee}: {t.message}")
            if t.reply == "answer":
                titles = "; ".join(s.title for s in t.sources if s.title)
                line = f"{assistant}: {t.answer_text}"
                if titles:
                    line += f"\n({articles}: {titles})"
                s = self.rating_of(t)
                if s is not None and s.outcome:
                    rating = _("helpful") if s.outcome == "solved" else _("not helpful")
                    line += f"\n{rating_label}: {rating}"
                parts.append(line)
            elif t.reply in ("clarify", "incident"):
                parts.append(f"{assistant}: {t.answer_text}")
            else:
                parts.append(f"{assistant}: " + _("No sure answer was found; an agent will help."))
        return "\n\n".join(parts)[:58_000]


def _subject(conv: Conversation) -> str:
    title = " ".join(conv.title.split()) or "Chat"
    return title if len(title) <= 120 else title[:119] + "…"
