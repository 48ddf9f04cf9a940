"""Refresh the message catalogs (``make messages``): extract every key from the code and templates
(babel.cfg), add the new ones to plugin/i18n/locale/{ru,en}/LC_MESSAGES/messages.po with an empty
translation, and drop the keys no longer used. Translations already there are kept.

Usage: python scripts/messages.py [--fill JSON]   (JSON: {"English key": "перевод"} to fill ru with)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "plugin" / "i18n" / "locale"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted() -> list[str]:
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keys: list[str] = []
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        key = message[0] if isinstance(message, tuple) else message
        if key and key not in keys:
            keys.append(key)
    return sorted(keys)


def catalog_path(language: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / "messages.po"


def load(language: str) -> Catalog:
    path = catalog_path(language)
    if path.exists():
        with path.open("rb") as f:
            return read_po(f, locale=language)
    return Catalog(locale=language, project="helpdesk-assist", domain="messages")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=Path, help="JSON of English key -> Russian text, for new keys")
    args = parser.parse_args()
    fill = json.loads(args.fill.read_text(encoding="utf-8")) if args.fill else {}
    keys = extracted()
    for language in ("ru", "en"):
        old = load(language)
        new = Catalog(locale=language, project="helpdesk-assist", domain="messages", fuzzy=False)
        for key in keys:
            known = old.get(key)
            text = known.string if known is not None and known.string else ""
            if not text and language == "ru":
                text = fill.get(key, "")
            new.add(key, text)
        path = catalog_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, new, width=120, sort_output=True, omit_header=False)
        empty = [k for k in keys if language == "ru" and not new.get(k).string]
        print(f"{language}: {len(keys)} keys, {len(empty)} without a translation" if language == "ru"
              else f"{language}: {len(keys)} keys (empty = the key as written)")
        for k in empty:
            print(f"  missing: {k!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
