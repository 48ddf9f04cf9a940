"""The pages behind the signed "solved / not solved" links: ``GET /r/<token>`` shows, ``POST /r/<token>`` acts.

GET never changes anything (mail security gateways and link scanners open every link in a message):
it reads the suggestion and shows the answer with a form. Only the form's POST records an outcome, and
recording is idempotent: the backend keeps the first outcome and says whether this POST was the first.

Why there is no separate CSRF token: the signed token in the URL is the capability. A cross-site form
can only post to ``/r/<token>`` if its author already knows the token, and whoever knows the token can
post the form themselves; a hidden CSRF field would be derived from, and travel beside, the very same
token. No cookie or session is read or set here, so there is no ambient authority for another site to
ride on. ``Referrer-Policy: no-referrer`` keeps the token from leaking to other sites, ``form-action
'self'`` and ``frame-ancestors 'none'`` keep the form from being re-targeted or framed.

The services object in ``app.extensions["helpdesk_assist"]`` provides ``links`` (a
:class:`plugin.links.LinkSigner`) and ``outcomes`` (an :class:`OutcomeBackend`).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol, get_args

from flask import Blueprint, Response, current_app, render_template, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from plugin.links import Action, LinkClaim, LinkExpired, LinkInvalid, LinkSigner, other_action

log = logging.getLogger(__name__)

Reason = Literal["not_related", "not_enough", "other"]
REASONS: tuple[Reason, ...] = get_args(Reason)
Language = Literal["ru", "en"]
MAX_COMMENT_CHARS = 2000
MAX_TOKEN_CHARS = 512
MAX_USER_AGENT_CHARS = 200

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class SuggestionView(BaseModel):
    """What the page shows about one suggestion."""

    suggestion_id: str
    #: e.g. "GLPI #123", "Redmine #45", "mail".
    ticket_ref: str
    ticket_title: str
    #: Our short answer.
    answer_text: str
    #: (title, text) of up to three knowledge-base entries.
    entries: list[tuple[str, str]]
    language: Language
    #: The outcome already recorded, if any.
    outcome: Action | None
    #: False when the ticket was closed meanwhile by someone else.
    ticket_open: bool
    #: False when the helpdesk could not say whether the ticket is still open (it is shown as open;
    #: a POST then records nothing and asks to try again later).
    state_known: bool = True


class RecordResult(BaseModel):
    #: The outcome that stands (the first one recorded).
    outcome: Action
    #: False on a repeated POST.
    first_time: bool


#: How fresh the ticket's state must be: "skip" (not needed), "cached" (a GET: cheap, may be a
#: minute old, unknown counts as open), "fresh" (a POST about to record: asked now).
StateCheck = Literal["skip", "cached", "fresh"]


class OutcomeBackend(Protocol):
    def view(self, suggestion_id: str, *, state: StateCheck = "cached") -> SuggestionView | None: ...

    def record(
        self,
        suggestion_id: str,
        outcome: Action,
        *,
        reason: Reason | None,
        comment: str,
        via: str,
        client: dict[str, str],
    ) -> RecordResult: ...


TEXTS: dict[Language, dict[str, str]] = {
    "ru": {
        "title_solved": "Подтвердите решение",
        "title_not_solved": "Нужна ещё помощь?",
        "ticket": "Обращение",
        "answer": "Наш ответ",
        "entries": "Статьи базы знаний",
        "solved_prompt": "Если предложенное решение помогло, подтвердите — и обращение будет закрыто.",
        "solved_button": "Да, это решило проблему",
        "not_solved_prompt": "Обращение останется у специалистов поддержки. Если хотите, расскажите, что не так.",
        "reason": "Причина (необязательно)",
        "reason_not_related": "Ответ не относится к моей проблеме",
        "reason_not_enough": "Ответ по теме, но его недостаточно",
        "reason_other": "Другое",
        "comment": "Комментарий (необязательно)",
        "not_solved_button": "Нет, мне всё ещё нужна помощь",
        "switch_to_solved": "Всё-таки помогло? Подтвердите решение",
        "switch_to_not_solved": "Не помогло? Сообщите нам",
        "already_solved": "Вы уже сообщили нам, что проблема решена.",
        "already_not_solved": "Вы уже сообщили нам, что проблема не решена. Специалист поддержки свяжется с вами.",
        "thanks": "Спасибо!",
        "done_solved": "Ваше обращение будет закрыто.",
        "done_not_solved": "Специалист поддержки свяжется с вами.",
        "already_recorded": "Ответ уже записан",
        "recorded_solved": "проблема решена",
        "recorded_not_solved": "нужна помощь специалиста",
        "closed_title": "Обращение уже закрыто",
        "closed_body": "Если вам всё ещё нужна помощь, ответьте в обращении или создайте новое.",
        "unavailable_title": "Не удалось проверить обращение",
        "unavailable_body": (
            "Система поддержки сейчас недоступна, ваш ответ не записан. Попробуйте ещё раз через несколько минут."
        ),
        "expired_title": "Срок действия ссылки истёк",
        "expired_body": "Ответьте в обращении или свяжитесь со службой поддержки.",
        "expired_body_ref": "Ответьте в обращении {ref} или свяжитесь со службой поддержки.",
        "invalid_title": "Ссылка недействительна",
        "invalid_body": (
            "Ссылка повреждена или не распознана. Проверьте, что она скопирована целиком, "
            "или ответьте в обращении либо свяжитесь со службой поддержки."
        ),
        "bad_request_title": "Форма не принята",
        "bad_request_body": "Проверьте введённые данные и отправьте форму ещё раз.",
        "error_title": "Не удалось обработать запрос",
        "error_body": "Попробуйте позже или ответьте в обращении.",
    },
    "en": {
        "title_solved": "Confirm the solution",
        "title_not_solved": "Still need help?",
        "ticket": "Ticket",
        "answer": "Our answer",
        "entries": "Knowledge base articles",
        "solved_prompt": "If the suggested solution worked, confirm it and your ticket will be closed.",
        "solved_button": "Yes, this solved it",
        "not_solved_prompt": "Your ticket stays with the support team. If you like, tell us what was missing.",
        "reason": "Reason (optional)",
        "reason_not_related": "The answer is not related to my problem",
        "reason_not_enough": "Related, but not enough",
        "reason_other": "Other",
        "comment": "Comment (optional)",
        "not_solved_button": "No, I still need help",
        "switch_to_solved": "It worked after all? Confirm the solution",
        "switch_to_not_solved": "Didn't help? Tell us",
        "already_solved": "You already told us that the problem is solved.",
        "already_not_solved": "You already told us that you still need help. An agent will get back to you.",
        "thanks": "Thank you!",
        "done_solved": "Your ticket will be closed.",
        "done_not_solved": "An agent will get back to you.",
        "already_recorded": "Already recorded",
        "recorded_solved": "the problem is solved",
        "recorded_not_solved": "you still need help",
        "closed_title": "This ticket is already closed",
        "closed_body": "If you still need help, reply in the ticket or open a new one.",
        "unavailable_title": "We could not check your ticket",
        "unavailable_body": (
            "The helpdesk cannot be reached right now and your answer was not recorded. "
            "Please try again in a few minutes."
        ),
        "expired_title": "This link has expired",
        "expired_body": "Please reply in your ticket or contact support.",
        "expired_body_ref": "Please reply in your ticket {ref} or contact support.",
        "invalid_title": "This link is not valid",
        "invalid_body": (
            "The link is damaged or not recognised. Check that it was copied whole, "
            "or reply in your ticket or contact support."
        ),
        "bad_request_title": "The form was not accepted",
        "bad_request_body": "Please check what you entered and send the form again.",
        "error_title": "We could not handle your request",
        "error_body": "Please try again later or reply in your ticket.",
    },
}
#: Pages for which the language is unknown (a bad token) are shown in both, Russian first.
BOTH: tuple[Language, ...] = ("ru", "en")

confirm_bp = Blueprint(
    "confirm",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/confirm/static",
)


class _BadForm(Exception):
    """A form field outside what the page offers."""


def _services() -> Any:
    from plugin.app import EXTENSION  # plugin.app imports this module: resolve at request time

    return current_app.extensions[EXTENSION]


def _links() -> LinkSigner:
    links: LinkSigner = _services().links
    return links


def _outcomes() -> OutcomeBackend:
    outcomes: OutcomeBackend = _services().outcomes
    return outcomes


def _message(status: int, key: str, languages: tuple[Language, ...] = BOTH, **fmt: str) -> tuple[str, int]:
    """A page with a title and one paragraph, in ``languages`` (the first is the page's language)."""
    body_key = f"{key}_body_ref" if fmt and f"{key}_body_ref" in TEXTS["ru"] else f"{key}_body"
    blocks = [
        {"lang": lang, "title": TEXTS[lang][f"{key}_title"], "body": TEXTS[lang][body_key].format(**fmt)}
        for lang in languages
    ]
    return render_template("confirm/message.html", lang=languages[0], blocks=blocks), status


def _claim(token: str, state: StateCheck = "cached") -> tuple[LinkClaim, SuggestionView]:
    """The token's claim and the suggestion it names; raises LinkInvalid / LinkExpired."""
    if len(token) > MAX_TOKEN_CHARS:
        raise LinkInvalid("the link is too long")
    claim = _links().read(token)
    view = _outcomes().view(claim.suggestion_id, state=state)
    if view is None:
        log.info("confirm_unknown_suggestion: %s", claim.suggestion_id)
        raise LinkInvalid("the suggestion is unknown")
    return claim, view


@confirm_bp.errorhandler(LinkInvalid)
def _invalid(e: LinkInvalid) -> tuple[str, int]:
    log.info("confirm_link_invalid: %s", e)
    return _message(404, "invalid")


@confirm_bp.errorhandler(LinkExpired)
def _expired(e: LinkExpired) -> tuple[str, int]:
    log.info("confirm_link_expired: suggestion %s", e.claim.suggestion_id)
    try:
        view = _outcomes().view(e.claim.suggestion_id, state="skip")
    except Exception:
        log.exception("confirm_view_failed: suggestion %s", e.claim.suggestion_id)
        view = None
    if view is None:
        return _message(410, "expired")
    return _message(410, "expired", (view.language,), ref=view.ticket_ref)


@confirm_bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> tuple[str, int]:
    status = e.code or 500
    return _message(status, "bad_request" if 400 <= status < 500 else "error")


@confirm_bp.errorhandler(Exception)
def _unexpected(e: Exception) -> tuple[str, int]:
    log.exception("confirm_failed")
    return _message(500, "error")


@confirm_bp.after_request
def _security_headers(response: Response) -> Response:
    if request.endpoint != "confirm.static":
        response.headers.update(SECURITY_HEADERS)
    return response


@confirm_bp.get("/r/<token>")
def show(token: str) -> Any:
    """The page: the answer and the form. Reads only."""
    claim, view = _claim(token)
    lang = view.language
    if view.outcome is None and not view.ticket_open:
        return _message(200, "closed", (lang,))
    other = other_action(claim.action)
    return render_template(
        "confirm/suggestion.html",
        lang=lang,
        t=TEXTS[lang],
        view=view,
        action=claim.action,
        entries=view.entries[:3],
        reasons=[(r, TEXTS[lang][f"reason_{r}"]) for r in REASONS],
        other_url=_links().url(view.suggestion_id, other, issued_at=claim.issued_at),
        other_label=TEXTS[lang][f"switch_to_{other}"],
    )


@confirm_bp.post("/r/<token>")
def act(token: str) -> Any:
    """Record the outcome the link stands for (idempotent: the first one recorded stands).

    The ticket's state is asked afresh: a click after an agent closed the ticket records nothing,
    and neither does one while the helpdesk cannot say (the page asks to try again later)."""
    claim, view = _claim(token, state="fresh")
    lang = view.language
    try:
        reason, comment = _read_form(claim.action)
    except _BadForm as e:
        log.info("confirm_bad_form: %s", e)
        return _message(400, "bad_request", (lang,))
    if view.outcome is None and not view.ticket_open:
        log.info("confirm_ticket_closed: suggestion %s: nothing recorded", claim.suggestion_id)
        return _message(409, "closed", (lang,))
    if view.outcome is None and not view.state_known:
        log.warning("confirm_ticket_state_unknown: suggestion %s: nothing recorded", claim.suggestion_id)
        page, status = _message(503, "unavailable", (lang,))
        return page, status, {"Retry-After": "60"}
    result = _outcomes().record(
        claim.suggestion_id,
        claim.action,
        reason=reason,
        comment=comment,
        via="link",
        client={
            "ip": request.remote_addr or "",
            "user_agent": (request.user_agent.string or "")[:MAX_USER_AGENT_CHARS],
        },
    )
    log.info("confirm_recorded: suggestion %s %s first_time=%s", claim.suggestion_id, result.outcome, result.first_time)
    return render_template("confirm/done.html", lang=lang, t=TEXTS[lang], result=result)


def _read_form(action: Action) -> tuple[Reason | None, str]:
    raw_reason = request.form.get("reason", "")
    if raw_reason and raw_reason not in REASONS:
        raise _BadForm("unknown reason")
    comment = request.form.get("comment", "").replace("\r\n", "\n").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise _BadForm(f"comment longer than {MAX_COMMENT_CHARS} characters")
    if "\x00" in comment:
        raise _BadForm("comment with a NUL character")
    reason: Reason | None = next((r for r in REASONS if r == raw_reason), None)
    # A reason explains "not solved"; the "solved" page has no reason to give.
    return (reason if action == "not_solved" else None), comment
