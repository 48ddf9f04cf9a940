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

The services (:func:`plugin.web.context.current_services`) provide ``links`` (a
:class:`plugin.service.links.LinkSigner`) and ``outcomes`` (a :class:`plugin.service.outcomes.OutcomeService`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, render_template, request
from werkzeug.exceptions import HTTPException

from plugin.i18n import N_, words
from plugin.service.links import Action, LinkClaim, LinkExpired, LinkInvalid, LinkSigner, other_action
from plugin.service.messages import reason_label
from plugin.service.outcomes import REASONS, Language, OutcomeService, Reason, StateCheck, SuggestionView
from plugin.web import i18n as web_i18n
from plugin.web.context import current_services
from plugin.web.security import SECURITY_HEADERS

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 2000
MAX_TOKEN_CHARS = 512
MAX_USER_AGENT_CHARS = 200



#: One-paragraph pages: (title, body, body naming the ticket) keys of the catalog.
MESSAGES: dict[str, tuple[str, str, str | None]] = {
    "closed": (N_("This ticket is already closed"),
               N_("If you still need help, reply in the ticket or open a new one."), None),
    "unavailable": (N_("We could not check your ticket"),
                    N_("The helpdesk cannot be reached right now and your answer was not recorded. "
                       "Please try again in a few minutes."), None),
    "expired": (N_("This link has expired"), N_("Please reply in your ticket or contact support."),
                N_("Please reply in your ticket {ref} or contact support.")),
    "invalid": (N_("This link is not valid"),
                N_("The link is damaged or not recognised. Check that it was copied whole, "
                   "or reply in your ticket or contact support."), None),
    "bad_request": (N_("The form was not accepted"), N_("Please check what you entered and send the form again."),
                    None),
    "error": (N_("We could not handle your request"), N_("Please try again later or reply in your ticket."), None),
}
SWITCH = {"solved": N_("It worked after all? Confirm the solution"), "not_solved": N_("Didn't help? Tell us")}

#: Pages for which the language is unknown (a bad token) are shown in both, Russian first.
BOTH: tuple[Language, ...] = ("ru", "en")

confirm_bp = Blueprint(
    "confirm",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/confirm/static",
)
confirm_bp.record_once(lambda state: web_i18n.install(state.app))


class _BadForm(Exception):
    """A form field outside what the page offers."""


def _links() -> LinkSigner:
    return current_services().links


def _outcomes() -> OutcomeService:
    return current_services().outcomes


def _message(status: int, key: str, languages: tuple[Language, ...] = BOTH, **fmt: str) -> tuple[str, int]:
    """A page with a title and one paragraph, in ``languages`` (the first is the page's language)."""
    title, body, body_with_ref = MESSAGES[key]
    text = body_with_ref if fmt and body_with_ref else body
    blocks = [
        {"lang": lang, "title": words(lang)(title), "body": words(lang)(text).format(**fmt)} for lang in languages
    ]
    web_i18n.use_language(languages[0])
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
    web_i18n.use_language(lang)
    return render_template(
        "confirm/suggestion.html",
        lang=lang,
        view=view,
        action=claim.action,
        entries=view.entries[:3],
        reasons=[(r, reason_label(r, lang)) for r in REASONS],
        other_url=_links().url(view.suggestion_id, other, issued_at=claim.issued_at),
        other_label=words(lang)(SWITCH[other]),
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
    web_i18n.use_language(lang)
    return render_template("confirm/done.html", lang=lang, result=result)


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
