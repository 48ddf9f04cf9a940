"""The message catalogs: every text a person reads has its Russian wording, no catalog entry is stale,
and a translation keeps the key's placeholders (a lost ``{ref}`` would raise at run time)."""

from __future__ import annotations

import re
import string

import pytest
from babel.messages.pofile import read_po

from plugin import i18n
from plugin.store.suggestions import Suggestion
from scripts.messages import catalog_path, extracted

KEYS = extracted()


def _catalog(language: str):
    with catalog_path(language).open("rb") as f:
        return read_po(f, locale=language)


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_the_catalog_holds_exactly_the_keys_of_the_code(language: str) -> None:
    keys = {m.id for m in _catalog(language) if m.id}
    assert sorted(set(KEYS) - keys) == [], "keys without a catalog entry: run `make messages`"
    assert sorted(keys - set(KEYS)) == [], "catalog entries no code uses: run `make messages`"


def test_every_key_has_a_russian_wording() -> None:
    ru = _catalog("ru")
    assert [m.id for m in ru if m.id and not m.string] == []


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_translations_keep_the_placeholders() -> None:
    for language in i18n.LANGUAGES:
        for m in _catalog(language):
            if m.id and m.string:
                assert _fields(m.string) == _fields(m.id), (language, m.id)


def test_words_translate_and_fall_back_to_english() -> None:
    assert i18n.words("ru")("This may help:") == "Возможно, вам поможет:"
    assert i18n.words("ru-RU")("Thank you!") == "Спасибо!"
    assert i18n.words("en")("Thank you!") == "Thank you!"
    assert i18n.words("de")("Thank you!") == "Thank you!"  # no German catalog: English
    assert i18n.words("ru")("a key nobody wrote") == "a key nobody wrote"


def test_one_wording_for_one_thing() -> None:
    """A reason a requester gives is worded the same on the page, in the notes and in the chat."""
    from plugin.service.messages import REASON_LABELS, reason_label

    assert reason_label("not_related", "ru") == "Ответ не относится к моей проблеме"
    assert reason_label("not_enough", "en") == REASON_LABELS["not_enough"]
    ru = {m.string for m in _catalog("ru") if m.id}
    assert not any(re.search(r"не о моей проблеме", t) for t in ru)  # the old second wording is gone


def _abstained(**fields: object) -> Suggestion:
    return Suggestion(id="s1", source="redmine", ticket_id="7", created_at=0, mode="abstain", language="ru", **fields)


def test_the_engines_reason_reaches_agents_in_their_language() -> None:
    """The engine gives a code and values; the note and the mail forward word them from the catalog."""
    from plugin.service.mail import Why
    from plugin.service.messages import abstain_reason, agent_note
    from rag.models import ABSTAIN_REASONS

    s = _abstained(reason="category 'Принтеры' is switched off: agents answer it", reason_code="category_off",
                   reason_params={"category": "Принтеры"})
    assert abstain_reason(s) == "категория 'Принтеры' отключена: на неё отвечают специалисты поддержки"
    assert abstain_reason(s, "en") == s.reason
    note = agent_note(s, similar=[])
    assert note.paragraphs[0] == abstain_reason(s) and ("почему", abstain_reason(s)) in note.facts
    low = _abstained(reason_code="below_threshold", reason_params={"confidence": "0.41", "threshold": "0.60"})
    forward = Why(i18n.N_("no confident answer ({reason})"),
                  {"reason": Why(ABSTAIN_REASONS[low.reason_code], low.reason_params)})
    assert forward.text(i18n.words("ru")) == "нет уверенного ответа (уверенность 0.41 ниже порога 0.60)"
    assert forward.text() == "no confident answer (confidence 0.41 is below the threshold 0.60)"  # the log's


def test_a_reason_recorded_before_codes_is_shown_as_it_was() -> None:
    from plugin.service.messages import abstain_reason

    old = _abstained(reason="nothing relevant found in the knowledge base")
    assert abstain_reason(old) == old.reason


def test_check_results_render_in_either_language() -> None:
    from connectors.base import CheckResult, Text

    r = CheckResult.of(i18n.N_("intake address"), False, i18n.N_(
        "The mail server does not take mail from {sender} to {intake} ({cause}): check the SMTP settings and the "
        "helpdesk's intake address."), sender="a@x", intake="b@y",
        cause=Text.of(i18n.N_("SMTP refused the login for '{user}': check email.smtp_username and email.smtp_password "
                         "(or HELPDESK_ASSIST_EMAIL__SMTP_PASSWORD)"), user="bot"))
    assert r.detail.startswith("The mail server does not take mail from a@x to b@y (SMTP refused the login for 'bot'")
    name, detail = r.render(i18n.words("ru"))
    assert name == "адрес приёма обращений"
    assert detail.startswith("Почтовый сервер не принимает письма от a@x для b@y (SMTP отклонил вход для 'bot'")
    plain = CheckResult.of(i18n.N_("workflow"), False, Text.plain("{not a placeholder}"))
    assert plain.render(i18n.words("ru")) == ("последовательность статусов", "{not a placeholder}")
