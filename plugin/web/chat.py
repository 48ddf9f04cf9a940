"""The chat pages: ``/`` and ``/chat`` (server-rendered, plain forms that work without JavaScript; htmx
swaps the conversation in place when it is there).

Identity (:mod:`plugin.service.chat_identity`): the SSO proxy's header when ``chat.identity_header`` is
set and present, else a signed HttpOnly SameSite=Lax cookie (set on the first page). Every form carries
a CSRF token bound to the identity; a POST without the right one changes nothing (403). Conversation
ids are unguessable and checked against the owner: another person's id is a 404, like a wrong one.
GET never changes anything (the restore link's GET shows a button; its POST acts).

With ``?embed=1`` (the widget's iframe) the header is left out; ``chat.frame_ancestors`` names the
origins that may frame these pages (CSP ``frame-ancestors``), none by default.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from plugin.i18n import N_, words
from plugin.service.chat import PENDING, ChatError, ChatService, ConversationNotFound, RateLimited
from plugin.service.chat_identity import Identity
from plugin.service.messages import reason_label
from plugin.service.outages import banners
from plugin.service.outcomes import REASONS
from plugin.web import i18n as web_i18n
from plugin.web.context import current_services
from plugin.web.security import page_headers

log = logging.getLogger(__name__)

COOKIE = "hda_chat"
MAX_FIELD_CHARS = 20_000

chat_bp = Blueprint("chat", __name__, template_folder="templates")
chat_bp.record_once(lambda state: web_i18n.install(state.app))

#: What each field is called on the page, for an error that names it.
FIELDS = {"text": N_("Your question"), "option": N_("Option"), "turn": N_("Answer"), "helpful": N_("Rating"),
          "reason": N_("Reason (optional)"), "comment": N_("Comment (optional)"),
          "login": N_("Your login or e-mail address"), "conversation_id": N_("Conversation"),
          "email": N_("Your e-mail address")}
#: How a conversation ended, in the list of previous ones.
OUTCOMES = {"ticket": N_("ticket opened"), "ticket_pending": N_("ticket being opened"), "helpful": N_("helpful"),
            "not_helpful": N_("not helpful"), "answered": N_("answered"), "question": N_("waiting for your choice"),
            "agent": N_("an agent will help")}
ERRORS = {
    "csrf": N_("The form has expired. Please reload the page and try again."),
    "not_found": N_("This conversation does not exist or belongs to someone else."),
    "requester": N_("The helpdesk has no account with this login or e-mail address. Check it and try again."),
    "unavailable": N_("Opening a ticket is not configured here. Please contact the IT support directly."),
    "full": N_("This conversation is long enough. Please start a new one or open a ticket."),
    "invalid": N_("Please check this field and try again."),
    "restore_invalid": N_("This link is not valid or has expired. Ask for a new one."),
    "link_unavailable": N_("Sending links by mail is not configured here."),
}


def _chat() -> ChatService:
    return current_services().chat


def identity() -> Identity:
    """This request's person (computed once per request; a new anonymous one gets its cookie after)."""
    known: Identity | None = g.get("chat_identity")
    if known is not None:
        return known
    services = current_services()
    ids = services.chat.identities
    header = services.settings.chat.identity_header
    found = ids.from_login(request.headers.get(header, ""), "header") if header else None
    if found is None:
        found = ids.from_cookie(request.cookies.get(COOKIE))
    if found is None:
        found, value = ids.new_cookie()
        g.chat_new_cookie = value
    g.chat_identity = found
    return found


def _set_cookie(response: Any, value: str) -> None:
    days = current_services().settings.chat.cookie_days
    response.set_cookie(COOKIE, value, max_age=int(days * 86_400), httponly=True, samesite="Lax",
                        secure=request.is_secure, path="/")


@chat_bp.after_request
def _after(response: Response) -> Response:
    value = g.pop("chat_new_cookie", None)
    if value is not None:
        _set_cookie(response, value)
    response.headers.update(page_headers(frame_ancestors=current_services().settings.chat.frame_ancestors))
    response.headers["Vary"] = "Cookie, Accept-Language, HX-Request"
    return web_i18n.remember_language(response, request, web_i18n.current_language())


def _embed() -> bool:
    return request.args.get("embed") == "1"


def _args() -> dict[str, Any]:
    """Query arguments kept across the chat's links and forms (the embedded view)."""
    return {"embed": "1"} if _embed() else {}


def _lang() -> str:
    return web_i18n.use_language(web_i18n.negotiate_language(request, current_services().settings.default_language))


def _context(**extra: Any) -> dict[str, Any]:
    me = identity()
    chat = _chat()
    lang = web_i18n.current_language()
    return {
        "lang": lang, "embed": _embed(), "args": _args(), "csrf": chat.identities.csrf_token(me.owner),
        "me": me, "handoff_available": chat.handoff_available, "link_available": chat.link_available,
        "reasons": [(r, reason_label(r, lang)) for r in REASONS],
        "max_chars": current_services().settings.chat.max_message_chars, "use_htmx": True,
        "use_sse": current_services().engine.llm is not None, "pending": PENDING,
        "outcome_labels": {k: words(lang)(v) for k, v in OUTCOMES.items()}, "ticket_label": _ticket_label,
        "banners": banners(current_services().store, lang), **extra,
    }


def _ticket_label(conv: Any) -> str:
    if conv.ticket_source == "email":
        return words(web_i18n.current_language())(N_("sent to the support mailbox"))
    name = {"glpi": "GLPI", "redmine": "Redmine"}.get(conv.ticket_source, conv.ticket_source)
    return f"{name} #{conv.ticket_id}".strip()


@chat_bp.app_template_filter("chat_time")
def _chat_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _form(name: str) -> str:
    value = request.form.get(name, "")
    return value[:MAX_FIELD_CHARS]


def _check_csrf() -> bool:
    return _chat().identities.csrf_ok(identity().owner, request.form.get("csrf"))


def _error_text(e: ChatError) -> str:
    _ = words(web_i18n.current_language())
    if isinstance(e, RateLimited):
        return str(e)
    key = {"ConversationNotFound": "not_found", "RequesterNotFound": "requester", "HandoffUnavailable": "unavailable",
           "ConversationFull": "full", "LinkUnavailable": "link_unavailable"}.get(type(e).__name__, "invalid")
    text = _(ERRORS[key])
    if key == "invalid" and e.field in FIELDS:
        return f"{_(FIELDS[e.field])}: {text}"
    return text


# -- pages -------------------------------------------------------------------------------------------------
@chat_bp.get("/")
@chat_bp.get("/chat")
def index() -> Any:
    _lang()
    me = identity()
    return render_template("chat/index.html", **_context(conversations=_chat().conversations(me.owner)))


@chat_bp.post("/chat")
def start() -> Any:
    _lang()
    if not _check_csrf():
        return _page_error(403, "csrf")
    me = identity()
    try:
        _chat().check_rate(me.owner, request.remote_addr or "", web_i18n.current_language())
        conv = _chat().start(me.owner, _form("text"), language=web_i18n.current_language())
    except ChatError as e:
        return _index_error(e)
    return redirect(url_for("chat.conversation", conv_id=conv.id, **_args()) + f"#turn-{len(conv.turns)}", 303)


def _index_error(e: ChatError) -> Any:
    me = identity()
    status = e.status
    response = make_response(render_template(
        "chat/index.html", **_context(conversations=_chat().conversations(me.owner), error=_error_text(e),
                                      error_field=e.field, text=_form("text"))), status)
    if isinstance(e, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(e.retry_after_s)))
    return response


def _page_error(status: int, key: str) -> Any:
    _ = words(web_i18n.current_language())
    return render_template("chat/message.html", **_context(message=_(ERRORS[key]))), status


@chat_bp.get("/chat/c/<conv_id>")
def conversation(conv_id: str) -> Any:
    _lang()
    try:
        conv = _chat().get(identity().owner, conv_id)
    except ConversationNotFound:
        return _page_error(404, "not_found")
    if request.headers.get("HX-Request") == "true":
        return _partial(conv)
    return render_template("chat/conversation.html", **_context(conv=conv, view=_view(conv)))


def _view(conv: Any) -> dict[str, Any]:
    """What the templates need beyond the conversation: each answer's rating."""
    chat = _chat()
    ratings = {}
    for t in conv.turns:
        s = chat.rating_of(t)
        if s is not None and s.outcome:
            ratings[t.n] = s.outcome
    return {"ratings": ratings}


def _partial(conv: Any, *, error: str = "", error_field: str = "", status: int = 200) -> Any:
    return render_template("chat/_conversation.html",
                           **_context(conv=conv, view=_view(conv), error=error, error_field=error_field)), status


def _act(conv_id: str, action: Any) -> Any:
    """Run ``action(owner)`` for a POST on a conversation, then show it (a redirect without htmx, the
    conversation's fragment with it); errors are shown on the conversation, naming the field."""
    _lang()
    htmx = request.headers.get("HX-Request") == "true"
    if not _check_csrf():
        return _page_error(403, "csrf")
    me = identity()
    try:
        conv = _chat().get(me.owner, conv_id)
    except ConversationNotFound:
        return _page_error(404, "not_found")
    try:
        action(me.owner)
    except ConversationNotFound:
        return _page_error(404, "not_found")
    except ChatError as e:
        conv = _chat().get(me.owner, conv_id)
        text = _error_text(e)
        headers = {"Retry-After": str(max(1, int(e.retry_after_s)))} if isinstance(e, RateLimited) else {}
        if htmx:  # htmx swaps only 2xx answers: the error is shown in the fragment
            page, status = _partial(conv, error=text, error_field=e.field)
            return page, status, headers
        page = render_template("chat/conversation.html",
                               **_context(conv=conv, view=_view(conv), error=text, error_field=e.field,
                                          text=_form("text"), login=_form("login")))
        return page, e.status, headers
    conv = _chat().get(me.owner, conv_id)
    if htmx:
        return _partial(conv)
    return redirect(url_for("chat.conversation", conv_id=conv_id, **_args()) + f"#turn-{len(conv.turns)}", 303)


@chat_bp.post("/chat/c/<conv_id>")
def send(conv_id: str) -> Any:
    def action(owner: str) -> None:
        _chat().check_rate(owner, request.remote_addr or "", web_i18n.current_language())
        _chat().send(owner, conv_id, _form("text"))
    return _act(conv_id, action)


@chat_bp.post("/chat/c/<conv_id>/choose")
def choose(conv_id: str) -> Any:
    def action(owner: str) -> None:
        _chat().check_rate(owner, request.remote_addr or "", web_i18n.current_language())
        _chat().choose(owner, conv_id, _form("option"))
    return _act(conv_id, action)


@chat_bp.post("/chat/c/<conv_id>/rate")
def rate(conv_id: str) -> Any:
    def action(owner: str) -> None:
        helpful = {"1": True, "0": False}.get(_form("helpful"))
        _chat().rate(owner, conv_id, _form("turn"), helpful, reason=_form("reason") or None,
                     comment=_form("comment"))
    return _act(conv_id, action)


@chat_bp.post("/chat/c/<conv_id>/handoff")
def handoff(conv_id: str) -> Any:
    def action(owner: str) -> None:
        me = identity()
        _chat().handoff(owner, conv_id, login_or_email=me.login or _form("login"))
    return _act(conv_id, action)


@chat_bp.post("/chat/link")
def link() -> Any:
    """"Send me a link": a mail with a signed link that restores this browser's conversations elsewhere."""
    lang = _lang()
    if not _check_csrf():
        return _page_error(403, "csrf")
    me = identity()
    try:
        _chat().check_rate(me.owner, request.remote_addr or "", lang)
        _chat().request_link(me, _form("email"), language=lang)
    except ChatError as e:
        return _index_error(e)
    hours = f"{current_services().settings.chat.restore_link_hours:g}"
    notice = words(lang)(N_("If this address can receive mail, a link is on its way. It works for {hours} hours."))
    return render_template("chat/index.html", **_context(conversations=_chat().conversations(me.owner),
                                                         notice=notice.format(hours=hours)))


@chat_bp.get("/chat/c/<conv_id>/events")
def events(conv_id: str) -> Any:
    """Server-sent events while the LLM writes an answer: one ``update`` event with the conversation's
    fragment once no answer is pending any more (or at the LLM's timeout), then the stream ends."""
    _lang()
    owner = identity().owner
    try:
        _chat().get(owner, conv_id)
    except ConversationNotFound:
        return _page_error(404, "not_found")
    deadline = time.monotonic() + current_services().settings.llm.timeout_s + 15

    def stream() -> Any:
        while True:
            conv = _chat().get(owner, conv_id)
            if time.monotonic() > deadline or all(t.answer_mode != PENDING for t in conv.turns):
                html, _status = _partial(conv)
                yield "event: update\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                return
            yield ": writing\n\n"
            time.sleep(0.5)

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"X-Accel-Buffering": "no"})


# -- restore links ---------------------------------------------------------------------------------------
@chat_bp.get("/chat/restore/<token>")
def restore_page(token: str) -> Any:
    """Shows a button only: a link scanner's GET changes nothing."""
    _lang()
    if _chat().identities.from_restore(token) is None:
        return _page_error(404, "restore_invalid")
    return render_template("chat/restore.html", **_context(token=token))


@chat_bp.post("/chat/restore/<token>")
def restore(token: str) -> Any:
    _lang()
    if not _check_csrf():
        return _page_error(403, "csrf")
    ids = _chat().identities
    restored = ids.from_restore(token)
    if restored is None:
        return _page_error(404, "restore_invalid")
    response = redirect(url_for("chat.index", **_args()), 303)
    g.pop("chat_new_cookie", None)
    _set_cookie(response, ids.cookie_for(restored))
    return response
