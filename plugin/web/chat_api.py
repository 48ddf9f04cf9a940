"""The chat's JSON API, for a company's own portal or messenger bot: ``/api/chat/*``.

Like every ``/api/*`` route it needs an API key; the caller (a trusted server) names the person in
``X-Chat-User`` (their login: the same owner as the SSO header's on the pages). Conversations are the
person's own: another person's id is a 404. Bad input is a 400 naming the field; too many messages a
429 with ``Retry-After``. Never an internal score, a private note or an entry's source text.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request

from connectors import safejson
from plugin.service.chat import PENDING, ChatError, ChatService, RateLimited
from plugin.service.chat_identity import ChatIdentities, Identity
from plugin.web.api import _key_status, _unauthorized
from plugin.web.context import current_services

log = logging.getLogger(__name__)

USER_HEADER = "X-Chat-User"

chat_api = Blueprint("chat_api", __name__)


class _BadRequest(Exception):
    def __init__(self, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.field = field


def _chat() -> ChatService:
    return current_services().chat


@chat_api.before_request
def _require_key() -> Any:
    if _key_status() is not True:
        return _unauthorized()
    return None


def _person() -> Identity:
    found = ChatIdentities.from_login(request.headers.get(USER_HEADER, ""), "api")
    if found is None:
        raise _BadRequest(f"the {USER_HEADER} header must name the person (their login, one word)", USER_HEADER)
    return found


def _body() -> dict[str, Any]:
    if not request.is_json:
        raise _BadRequest("expected a JSON object (Content-Type: application/json)")
    try:
        data = safejson.loads(request.get_data(cache=False))
    except safejson.JSONTooDeep as e:
        raise _BadRequest(str(e)) from None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise _BadRequest("expected a JSON object")
    return data


@chat_api.errorhandler(_BadRequest)
def _bad(e: _BadRequest) -> Any:
    return jsonify(error="Bad Request", detail=str(e), field=e.field), 400


@chat_api.errorhandler(ChatError)
def _chat_error(e: ChatError) -> Any:
    response = jsonify(error=type(e).__name__, detail=str(e), field=e.field)
    if isinstance(e, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(e.retry_after_s)))
    return response, e.status


def _limit(person: Identity) -> None:
    _chat().check_rate(person.owner, request.remote_addr or "")


def as_json(conv: Any) -> dict[str, Any]:
    chat = _chat()
    turns = []
    for t in conv.turns:
        turn: dict[str, Any] = {"n": t.n, "at": t.at, "message": t.message, "reply": t.reply}
        if t.reply == "answer":
            s = chat.rating_of(t)
            turn.update(answer=t.answer_text, pending=t.answer_mode == PENDING,
                        sources=[src.model_dump() for src in t.sources],
                        rating=(None if s is None or s.outcome is None else
                                {"helpful": s.outcome == "solved", "reason": s.outcome_reason}))
        elif t.reply == "clarify" and t.clarification:
            turn.update(question=t.answer_text, options=[o["label"] for o in t.clarification["options"]])
        turns.append(turn)
    return {
        "id": conv.id, "title": conv.title, "language": conv.language, "created_at": conv.created_at,
        "updated_at": conv.updated_at, "turns": turns,
        "handoff": {"state": conv.handoff_state or None, "ticket_id": conv.ticket_id or None,
                    "ticket_url": conv.ticket_url or None, "error": conv.handoff_error or None},
    }


@chat_api.post("/api/chat/conversations")
def create() -> Any:
    person = _person()
    data = _body()
    _limit(person)
    conv = _chat().start(person.owner, data.get("text"))
    return jsonify(as_json(conv)), 201


@chat_api.get("/api/chat/conversations")
def list_conversations() -> Any:
    person = _person()
    rows = _chat().conversations(person.owner)
    return jsonify(conversations=[{k: r[k] for k in ("id", "title", "created_at", "updated_at", "turns", "outcome")}
                                  for r in rows])


@chat_api.get("/api/chat/conversations/<conv_id>")
def read(conv_id: str) -> Any:
    return jsonify(as_json(_chat().get(_person().owner, conv_id)))


@chat_api.post("/api/chat/conversations/<conv_id>/messages")
def message(conv_id: str) -> Any:
    person = _person()
    data = _body()
    _chat().get(person.owner, conv_id)  # a 404 before the message is counted
    _limit(person)
    if "option" in data:
        conv = _chat().choose(person.owner, conv_id, data["option"])
    else:
        conv = _chat().send(person.owner, conv_id, data.get("text"))
    return jsonify(as_json(conv))


@chat_api.post("/api/chat/conversations/<conv_id>/ratings")
def rate(conv_id: str) -> Any:
    person = _person()
    data = _body()
    result = _chat().rate(person.owner, conv_id, data.get("turn"), data.get("helpful"), reason=data.get("reason"),
                          comment=data.get("comment", ""))
    return jsonify(helpful=result.outcome == "solved", first_time=result.first_time)


@chat_api.post("/api/chat/conversations/<conv_id>/handoff")
def handoff(conv_id: str) -> Any:
    person = _person()
    data = _body()
    login = data.get("login", person.login)
    conv = _chat().handoff(person.owner, conv_id, login_or_email=login)
    return jsonify(as_json(conv)), 202
