"""The words we post, in the requester's language (Russian first, English too).

Everything here builds :class:`connectors.base.OutgoingMessage` objects of plain text; the
connectors escape and render them in the helpdesk's markup.
"""

from __future__ import annotations

from connectors.base import Link, OutgoingMessage, SuggestedEntry
from plugin.records import Suggestion

_T = {
    "ru": {
        "public_heading": "Возможно, это решит вашу проблему",
        "public_intro": "Пока ваше обращение ждёт специалиста, вот что нашлось в базе знаний.",
        "entries": "Статьи базы знаний",
        "solved": "Да, это помогло — закрыть обращение",
        "not_solved": "Нет, мне нужна помощь специалиста",
        "public_footer": (
            "Ответ подготовлен автоматически. Если он не помог, специалист поддержки ответит вам как обычно."
        ),
        "draft_heading": "helpdesk-assist: черновик ответа (ИИ), виден только агентам",
        "shadow": "Теневой режим: заявителю ничего не отправлено.",
        "abstain_heading": "helpdesk-assist: уверенного ответа нет, виден только агентам",
        "public_sent": "Заявителю отправлено предложение со ссылками «помогло / не помогло».",
        "similar": "Похожие обращения, решённые этим ответом",
        "confirmed_public": "Заявитель подтвердил, что предложенное решение помогло. Обращение закрыто.",
        "not_solved_heading": "helpdesk-assist: заявитель ответил, что предложение НЕ помогло",
        "reason": "Причина",
        "comment": "Комментарий заявителя",
        "via": "Как получен ответ",
        "helpdesk_outcome": "helpdesk-assist: исход по предложению записан",
    },
    "en": {
        "public_heading": "This may solve your problem",
        "public_intro": "While your ticket waits for an agent, here is what the knowledge base says.",
        "entries": "Knowledge base articles",
        "solved": "Yes, this solved it: close my ticket",
        "not_solved": "No, I still need help",
        "public_footer": (
            "This answer was prepared automatically. If it did not help, an agent will answer you as usual."
        ),
        "draft_heading": "helpdesk-assist: AI draft reply, visible to agents only",
        "shadow": "Shadow mode: nothing was sent to the requester.",
        "abstain_heading": "helpdesk-assist: no confident answer, visible to agents only",
        "public_sent": "The requester got a suggestion with 'solved / not solved' links.",
        "similar": "Similar tickets this answer solved",
        "confirmed_public": "The requester confirmed that the suggested solution worked. The ticket is closed.",
        "not_solved_heading": "helpdesk-assist: the requester says the suggestion did NOT help",
        "reason": "Reason",
        "comment": "Requester's comment",
        "via": "Answered through",
        "helpdesk_outcome": "helpdesk-assist: outcome of the suggestion recorded",
    },
}

REASONS = {
    "ru": {"not_related": "ответ не о моей проблеме", "not_enough": "по теме, но не хватило", "other": "другое"},
    "en": {"not_related": "not related to my problem", "not_enough": "related but not enough", "other": "other"},
}


def texts(language: str) -> dict[str, str]:
    return _T.get(language, _T["en"])


def public_suggestion(s: Suggestion, *, solved_url: str, not_solved_url: str, max_entries: int) -> OutgoingMessage:
    t = texts(s.language)
    return OutgoingMessage(
        marker=s.marker("public"),
        heading=t["public_heading"],
        paragraphs=[t["public_intro"], s.answer_text],
        entries=[SuggestedEntry(title=e.title or e.question, text=e.answer) for e in s.entries[:max_entries]],
        links=[Link(label=t["solved"], url=solved_url), Link(label=t["not_solved"], url=not_solved_url)],
        footer=t["public_footer"],
    )


def agent_note(s: Suggestion, *, similar: list[Suggestion], fallback_reason: str = "") -> OutgoingMessage:
    t = texts(s.language)
    facts: list[tuple[str, str]] = [
        ("category", f"{s.category or '-'} ({s.category_confidence:.2f})"),
        ("confidence", f"{s.confidence:.2f} (threshold {s.threshold:.2f})"),
        ("decision", {"public": "answered", "shadow": "answered (shadow mode)", "abstain": "abstained"}[s.mode]),
    ]
    if s.reason:
        facts.append(("why", s.reason))
    if s.answer_mode:
        facts.append(("answer", s.answer_mode + (f" ({fallback_reason})" if fallback_reason else "")))
    for i, e in enumerate(s.entries, 1):
        origin = f", {e.origin}" if e.origin else ""
        label = e.title or e.question[:80]
        facts.append((f"entry {i}", f"{label} - score {e.score:.2f}, p {e.confidence:.2f}{origin}"))
    for past in similar:
        facts.append((t["similar"], f"{past.source} #{past.ticket_id}: {past.ticket_title[:80]}"))
    if s.mode == "abstain":
        heading = t["abstain_heading"]
        paragraphs = [s.reason] + ([s.answer_text] if s.answer_text else [])
    else:
        heading = t["draft_heading"]
        paragraphs = [s.answer_text, t["shadow"] if s.mode == "shadow" else t["public_sent"]]
    return OutgoingMessage(marker=s.marker("private"), heading=heading, paragraphs=paragraphs, facts=facts)


def confirmed_note(s: Suggestion) -> OutgoingMessage:
    t = texts(s.language)
    return OutgoingMessage(
        marker=s.marker("outcome"), paragraphs=[t["confirmed_public"], s.answer_text]
    )


def not_solved_note(s: Suggestion) -> OutgoingMessage:
    t = texts(s.language)
    facts = [(t["via"], s.outcome_via or "")]
    if s.outcome_reason:
        facts.append((t["reason"], REASONS.get(s.language, REASONS["en"]).get(s.outcome_reason, s.outcome_reason)))
    if s.outcome_comment:
        facts.append((t["comment"], s.outcome_comment))
    return OutgoingMessage(marker=s.marker("outcome"), heading=t["not_solved_heading"], facts=facts)


def helpdesk_outcome_note(s: Suggestion, detail: str) -> OutgoingMessage:
    t = texts(s.language)
    return OutgoingMessage(
        marker=s.marker("outcome"),
        heading=t["helpdesk_outcome"],
        facts=[("outcome", s.outcome or ""), (t["via"], s.outcome_via or ""), ("detail", detail)],
    )
