"""The message catalogs: every text a person reads has its Russian wording, no catalog entry is stale,
and a translation keeps the key's placeholders (a lost ``{ref}`` would raise at run time)."""

from __future__ import annotations

import re
import string

import pytest
from babel.messages.pofile import read_po

from plugin import i18n
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
