"""Helpdesk jargon: the words employees type for what a knowledge base names properly.

"комп не включается", "не ловит вайфай", "слетела винда", "не приходит пуш от мультифактора": the
sentence encoder and the stemmed BM25 both miss that "комп" is "компьютер" and "вайфай" is "Wi-Fi". Before
retrieval each word of the request whose Snowball stem is a known jargon word (so every inflection:
"компа", "компу", "вайфаю") is replaced by the knowledge base's term; the stored request and what the
employee reads stay as written.

The built-in table is general IT-helpdesk jargon (Russian slang, transliterations and abbreviations of
common products), not one knowledge base's vocabulary; ``retrieval.jargon`` in the settings adds to it
or overrides it (``{"шара": "общая папка"}``; an empty value switches a built-in word off).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from rag.lexical import stem

#: Jargon word (any form: it is matched by stem) → the term knowledge bases use.
BUILT_IN: dict[str, str] = {
    # hardware
    "комп": "компьютер", "компик": "компьютер", "пк": "компьютер", "системник": "системный блок",
    "ноут": "ноутбук", "бук": "ноутбук", "клава": "клавиатура", "клавка": "клавиатура", "мышка": "мышь",
    "моник": "монитор", "монік": "монитор", "принтак": "принтер", "мфушка": "МФУ",
    "флешка": "флешка USB", "флеха": "флешка USB", "флэшка": "флешка USB", "юсб": "USB", "usb": "USB",
    "симка": "SIM-карта", "гарнитурка": "гарнитура", "ушки": "гарнитура",
    "вебка": "веб-камера", "вебкамера": "веб-камера", "батарейка": "аккумулятор", "зарядка": "зарядное устройство",
    # network and access
    "вайфай": "Wi-Fi", "вай-фай": "Wi-Fi", "вайфайка": "Wi-Fi", "вифи": "Wi-Fi", "wifi": "Wi-Fi", "вайфая": "Wi-Fi",
    "инет": "интернет", "интернетик": "интернет", "впн": "VPN", "впнка": "VPN", "рдп": "удаленный рабочий стол",
    "rdp": "удаленный рабочий стол", "удаленка": "удаленная работа", "шара": "общая папка",
    "сетевуха": "сетевая карта",
    # accounts and security
    "учетка": "учетная запись аккаунт", "учётка": "учетная запись аккаунт", "акк": "аккаунт учетная запись",
    "пасс": "пароль",
    "пассворд": "пароль", "двухфакторка": "двухфакторная аутентификация",
    "двухфакторный": "двухфакторная аутентификация", "2fa": "двухфакторная аутентификация",
    "мфа": "двухфакторная аутентификация", "mfa": "двухфакторная аутентификация", "мультифактор": "Multifactor",
    "пуш": "push", "пуша": "push", "эцп": "электронная подпись ЭЦП", "кэп": "электронная подпись",
    "антивир": "антивирус", "вирь": "вирус",
    # software
    "винда": "Windows", "виндовс": "Windows", "виндоус": "Windows", "винды": "Windows", "линукс": "Linux",
    "убунту": "Ubuntu Linux", "убунта": "Ubuntu Linux", "мак": "macOS", "макбук": "MacBook macOS",
    "аутлук": "Outlook", "оутлук": "Outlook", "эксель": "Excel", "ексель": "Excel", "ворд": "Word",
    "тимс": "Teams", "зум": "Zoom", "скайп": "Skype", "телега": "Telegram", "тг": "Telegram",
    "хром": "Chrome браузер", "прога": "программа", "программка": "программа",
    "софт": "программа", "софтина": "программа", "дрова": "драйвер", "обнова": "обновление",
    "апдейт": "обновление", "одинэс": "1С", "1c": "1С", "битрикс": "Битрикс24", "сбис": "СБИС",
    # mail
    "мыло": "почта", "емейл": "почта", "имейл": "почта", "емеил": "почта", "email": "почта", "e-mail": "почта",
    "мейл": "почта", "почтовик": "почтовый клиент",
    # people and symptoms
    "айтишник": "ИТ специалист", "сисадмин": "системный администратор", "админ": "администратор",
    "глючит": "не работает ошибка", "глюк": "ошибка", "лагает": "тормозит", "виснет": "зависает",
    "слетела": "сбой", "слетел": "сбой",
}

_TOKEN = re.compile(r"[\w-]+", re.UNICODE)


@lru_cache(maxsize=8)
def _table(extra: tuple[tuple[str, str], ...]) -> dict[str, str]:
    merged = {**BUILT_IN, **dict(extra)}
    table: dict[str, str] = {}
    for word, term in merged.items():
        key = stem(_fold(word))
        if not key:
            continue
        # An empty term switches the word off; a term that is the word itself changes nothing.
        if term.strip() and stem(_fold(term.strip())) != key:
            table[key] = term.strip()
        else:
            table.pop(key, None)
    return table


def _fold(word: str) -> str:
    return word.casefold().replace("ё", "е")


def expand(text: str, extra: Mapping[str, str] | None = None) -> str:
    """``text`` with each jargon word replaced by the knowledge base's term; words already proper
    (whose term is themselves) and unknown words stay as they are."""
    table = _table(tuple(sorted((extra or {}).items())))
    return _TOKEN.sub(lambda m: table.get(stem(_fold(m.group(0))), m.group(0)), text)
