"""The words people read, in Russian and English: one gettext catalog per language.

``locale/<lang>/LC_MESSAGES/messages.po`` holds every text a person reads — the confirmation pages,
the public and private notes, the mail replies and forwards, the extractive answer's frame, the
admin's CLI messages — keyed by its English wording (the ``en`` catalog may reword; empty means the
key as written). One wording for one thing: a text used in two places is one entry.

The catalogs are compiled in memory on first use (Babel), so the repository holds only the ``.po``
sources. ``make messages`` extracts the keys from the code and templates (``babel.cfg``) and updates
both catalogs; ``tests/plugin/test_i18n.py`` fails when a key has no Russian translation or a
translation has lost its key.

Lower packages (``rag``, ``connectors``) never import this: they take a translator callable
(``Translate``), which the wiring fills from here, or they mark English keys with an identity ``N_`` of
their own (``connectors.base``, ``rag.models``) and hand back a key with its values (a check finding as
``connectors.base.Text``, the engine's abstention reason as a code), which the application words here.
The command line speaks the ``admin_language`` setting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Literal

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

Language = Literal["ru", "en"]
LANGUAGES: tuple[Language, ...] = ("ru", "en")
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"

#: A function from an English key to the text in one language.
Translate = Callable[[str], str]

_lock = threading.Lock()


def N_(key: str) -> str:
    """Marks a key for extraction where it is defined, not translated there (module-level tables)."""
    return key


def normalize(language: str | None) -> Language:
    """``ru`` for Russian, ``en`` for anything else (the catalogs there are)."""
    return "ru" if (language or "").lower().startswith("ru") else "en"


@cache
def translations(language: Language) -> Translations:
    """The compiled catalog of ``language`` (read from its ``.po`` once per process)."""
    with _lock:
        path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as f:
            catalog = read_po(f, locale=language, domain=DOMAIN)
        buf = BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        return Translations(buf, domain=DOMAIN)


def words(language: str | None) -> Translate:
    """The translator for ``language`` (normalized: anything not Russian is English)."""
    return translations(normalize(language)).gettext


def plural(language: str | None) -> Callable[[str, str, int], str]:
    return translations(normalize(language)).ngettext
