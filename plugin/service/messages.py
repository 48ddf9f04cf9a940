"""The words we post, in the requester's language (Russian first, English too), from the catalog
(:mod:`plugin.i18n`).

Everything here builds :class:`connectors.base.OutgoingMessage` objects of plain text; the
connectors escape and render them in the helpdesk's markup.
"""

from __future__ import annotations

from connectors.base import Link, OutgoingMessage, SuggestedEntry
from plugin.i18n import N_, words
from plugin.store.suggestions import Suggestion
from rag.models import answer_mode_words, reason_words

#: Why a requester says a suggestion did not help: the same choices and words on every channel
#: (the confirmation page, the notes, the chat).
REASON_LABELS: dict[str, str] = {
    "not_related": N_("The answer is not related to my problem"),
    "not_enough": N_("Related, but not enough"),
    "other": N_("Other"),
}
_DECISIONS = {"public": N_("answered"), "shadow": N_("answered (shadow mode)"), "abstain": N_("abstained"),
              "holdout": N_("answered (holdout: not shown to the requester)"),
              "incident": N_("known problem: the requester got the incident's message")}
#: How an outcome reached us.
CHANNELS = {"link": N_("link in the message"), "mail": N_("reply by mail"), "helpdesk": N_("in the helpdesk"),
            "chat": N_("self-service chat")}
OUTCOMES = {"solved": N_("solved"), "not_solved": N_("not solved")}


def reason_label(reason: str, language: str) -> str:
    _ = words(language)
    return _(REASON_LABELS[reason]) if reason in REASON_LABELS else reason


def abstain_reason(s: Suggestion, language: str | None = None) -> str:
    """Why the engine abstained, in ``language`` (default: the suggestion's); a suggestion made before
    reasons had codes keeps its English words."""
    return reason_words(s.reason_code, s.reason_params, words(language or s.language)) or s.reason


def public_suggestion(s: Suggestion, *, solved_url: str, not_solved_url: str, max_entries: int) -> OutgoingMessage:
    _ = words(s.language)
    return OutgoingMessage(
        marker=s.marker("public"),
        heading=_("This may solve your problem"),
        paragraphs=[_("While your ticket waits for an agent, here is what the knowledge base says."), s.answer_text],
        entries=[SuggestedEntry(title=e.title or e.question, text=e.answer) for e in s.entries[:max_entries]],
        links=[
            Link(label=_("Yes, this solved it: close my ticket"), url=solved_url),
            Link(label=_("No, I still need help"), url=not_solved_url),
        ],
        footer=_("This answer was prepared automatically. If it did not help, an agent will answer you as usual."),
    )


def incident_reply(s: Suggestion) -> OutgoingMessage:
    """What a request that joined an open outage incident gets instead of a knowledge-base answer."""
    _ = words(s.language)
    return OutgoingMessage(
        marker=s.marker("public"),
        heading=_("This looks like a known problem"),
        paragraphs=[s.answer_text],
        footer=_("This answer was prepared automatically. If your problem is a different one, reply here and an "
                 "agent will answer you as usual."),
    )


def incident_note(s: Suggestion, heading: str, lines: list[str]) -> OutgoingMessage:
    """The one note the agents get when an incident opens (every ticket of it listed)."""
    return OutgoingMessage(marker=s.marker("incident"), heading=heading, paragraphs=["\n".join(lines)])


def agent_note(s: Suggestion, *, similar: list[Suggestion]) -> OutgoingMessage:
    _ = words(s.language)
    facts: list[tuple[str, str]] = [
        (_("category"), f"{s.category or '-'} ({s.category_confidence:.2f})"),
        (_("confidence"), _("{confidence} (threshold {threshold})").format(
            confidence=f"{s.confidence:.2f}", threshold=f"{s.threshold:.2f}")),
        (_("decision"), _(_DECISIONS[s.mode])),
    ]
    reason = abstain_reason(s)
    if reason:
        facts.append((_("why"), reason))
    if s.answer_mode:
        facts.append((_("answer"), answer_mode_words(s.answer_mode, _)))
    for i, e in enumerate(s.entries, 1):
        origin = f", {e.origin}" if e.origin else ""
        label = e.title or e.question[:80]
        facts.append((_("entry {n}").format(n=i), _("{title} - score {score}, confidence {confidence}").format(
            title=label, score=f"{e.score:.2f}", confidence=f"{e.confidence:.2f}") + origin))
    for past in similar:
        label = _("Similar tickets this answer solved")
        facts.append((label, f"{past.source} #{past.ticket_id}: {past.ticket_title[:80]}"))
    if s.mode == "abstain":
        heading = _("helpdesk-assist: no confident answer, visible to agents only")
        paragraphs = [reason] + ([s.answer_text] if s.answer_text else [])
    else:
        heading = _("helpdesk-assist: AI draft reply, visible to agents only")
        paragraphs = [
            s.answer_text,
            _("Known problem: the requester was told about the open incident {id} instead of an answer.").format(
                id=s.reason) if s.mode == "incident"
            else _("Shadow mode: nothing was sent to the requester.") if s.mode == "shadow"
            else _("Holdout: this ticket was drawn at random to measure the assistant's effect; nothing was "
                   "sent to the requester. Please answer it as usual.") if s.mode == "holdout"
            else _("The requester got a suggestion with 'solved / not solved' links."),
        ]
    return OutgoingMessage(marker=s.marker("private"), heading=heading, paragraphs=paragraphs, facts=facts)


def confirmed_note(s: Suggestion) -> OutgoingMessage:
    _ = words(s.language)
    return OutgoingMessage(
        marker=s.marker("outcome"),
        paragraphs=[_("The requester confirmed that the suggested solution worked. The ticket is closed."),
                    s.answer_text],
    )


def not_solved_note(s: Suggestion) -> OutgoingMessage:
    _ = words(s.language)
    facts = [(_("Answered through"), _(CHANNELS[s.outcome_via]) if s.outcome_via in CHANNELS else s.outcome_via or "")]
    if s.outcome_reason:
        facts.append((_("Reason"), reason_label(s.outcome_reason, s.language)))
    if s.outcome_comment:
        facts.append((_("Requester's comment"), s.outcome_comment))
    return OutgoingMessage(
        marker=s.marker("outcome"), heading=_("helpdesk-assist: the requester says the suggestion did NOT help"),
        facts=facts,
    )


def helpdesk_outcome_note(s: Suggestion, detail: str) -> OutgoingMessage:
    _ = words(s.language)
    return OutgoingMessage(
        marker=s.marker("outcome"),
        heading=_("helpdesk-assist: outcome of the suggestion recorded"),
        facts=[
            (_("outcome"), _(OUTCOMES[s.outcome]) if s.outcome in OUTCOMES else ""),
            (_("Answered through"), _(CHANNELS[s.outcome_via]) if s.outcome_via in CHANNELS else s.outcome_via or ""),
            (_("detail"), detail),
        ],
    )
