"""parse_message on captured-shape fixtures (one test per fixture) and on broken input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.email.parse import (
    REPLY_MARKER,
    decode_bytes,
    guess_decode,
    html_to_text,
    parse_ids,
    parse_message,
    strip_reply,
    unflow,
)

from .conftest import FIXTURES, fixture_bytes

MSK = timezone(timedelta(hours=3))
TESTED: set[str] = set()


def parse(name: str):
    TESTED.add(name)
    return parse_message(fixture_bytes(name))


def test_outlook_reply_ru_windows1251_quoted_printable():
    m = parse("outlook_reply_ru.eml")
    assert m.message_id == "3B2A7C1E0D4F4A2B9C7E@EXCH01.corp.example"
    assert not m.message_id_generated
    assert m.in_reply_to == "ha.3f9a1c.2b1d0c9e8f7a4b6c@example.test"
    assert m.references == ["CAF1x2y3z4@mail.corp.example", "ha.3f9a1c.2b1d0c9e8f7a4b6c@example.test"]
    assert m.from_addr == "ivan.petrov@corp.example"  # lowercased
    assert m.from_name == "Петров Иван Сергеевич"
    assert m.subject == "RE: Принтер не печатает [HA-3f9a1c]"
    assert m.date == datetime(2026, 11, 24, 10, 14, 55, tzinfo=MSK)
    # the "От: ... Отправлено:" block, our marker and the sign-off are gone
    assert m.text == 'Нет, не помогло. Принтер всё ещё пишет "Замятие бумаги", хотя бумаги внутри нет.'
    assert "Отправлено: 24 ноября 2026" in m.full_text
    assert m.language == "ru"
    assert m.problems == []


def test_outlook_reply_en_original_message_separator():
    m = parse("outlook_reply_en.eml")
    assert m.text == 'Still broken, the VPN client says "authentication failed" again.'
    assert "-----Original Message-----" in m.full_text
    assert m.in_reply_to == "ha.77aa01.9c8b7a6d5e4f@example.test"
    assert m.language == "en"


def test_thunderbird_reply_wrote_quotes_and_signature():
    m = parse("thunderbird_reply_en.eml")
    assert m.text == "Yes, it worked, thank you! The printer is printing again."
    assert m.from_addr == "maria.ivanova@corp.example"
    assert m.from_name == "Maria Ivanova"
    assert m.to == ["helpdesk@example.test"]
    assert "> Hello! This may help:" in m.full_text
    assert "Maria Ivanova\nSales department" in m.full_text


def test_gmail_reply_ru_plain_preferred_attribution_without_verb():
    m = parse("gmail_reply_ru.eml")
    assert m.content_type == "multipart/alternative"
    assert not m.from_html
    assert m.text == "Да, помогло, спасибо!"
    assert m.from_name == "Иван Петров"
    assert m.subject == "Re: Принтер не печатает [HA-3f9a1c]"
    assert m.attachments == []  # the HTML alternative is not an attachment


def test_mailru_reply_ru_napisal_a_and_mobile_signature():
    m = parse("mailru_reply_ru.eml")
    assert m.text == "Не решено. Ошибка 0x80070005 осталась."
    assert m.from_name == "Ольга"
    assert m.in_reply_to == "ha.0c0ffe.55aa66bb77cc@example.test"
    assert m.references == []


def test_marker_only_reply_cut_at_our_marker():
    m = parse("marker_only_reply_en.eml")
    assert m.text == "SOLVED - thanks, the new driver fixed it."
    assert REPLY_MARKER["en"] in m.full_text


def test_koi8r_plain_message():
    m = parse("koi8r_plain.eml")
    assert m.subject == "Не могу войти в 1С"
    assert m.from_name == "Сергей Кузнецов"
    assert m.text.startswith('Здравствуйте!\n\nНе могу войти в 1С: пишет "Неверный пароль"')
    assert m.text.endswith("Сергей")
    assert m.in_reply_to is None
    assert m.problems == []


def test_windows1251_body_and_split_encoded_subject():
    m = parse("cp1251_subject.eml")
    assert m.subject == "Установка программы Adobe Reader"
    assert m.from_name == "Мария Сидорова"
    assert m.cc == ["anna@corp.example", "boss@corp.example"]
    assert "Инвентарный номер ПК: 004512." in m.text
    assert m.problems == []


def test_html_only_converted_to_text():
    m = parse("html_only.eml")
    assert m.from_html
    assert m.from_name == "Peter O'Neil"
    assert "alert" not in m.text and "color: red" not in m.text  # script and style dropped
    assert "my monitor shows «No signal» & blinks.\nI already checked the cable." in m.text
    assert "- Model: Dell P2419H\n- Room 12" in m.text


def test_attachments_listed_with_decoded_filenames():
    m = parse("attachment.eml")
    assert m.subject == "Скриншот ошибки"
    assert m.text == "Скриншот ошибки во вложении."
    names = [(a.filename, a.content_type) for a in m.attachments]
    assert names == [("ошибка.png", "image/png"), ("отчёт.pdf", "application/pdf")]
    assert m.attachments[0].size == 69  # decoded bytes, not base64 text
    assert all(not a.inline for a in m.attachments)


def test_auto_reply_headers_kept():
    m = parse("auto_reply_ooo.eml")
    assert m.headers["auto-submitted"] == "auto-replied"
    assert m.headers["x-auto-response-suppress"] == "All"
    assert m.subject.startswith("Автоматический ответ:")
    assert m.text.startswith("Я в отпуске до 1 декабря.")


def test_mailing_list_headers_kept():
    m = parse("mailing_list.eml")
    assert m.headers["list-id"] == "Vendor security news <it-news.lists.vendor.example>"
    assert m.headers["precedence"] == "list"
    assert "list-unsubscribe" in m.headers


def test_bounce_multipart_report():
    m = parse("bounce.eml")
    assert m.content_type == "multipart/report"
    assert m.from_addr == "mailer-daemon@mail.example.test"
    assert m.headers["return-path"] == "<>"
    assert "could not\nbe delivered" in m.text
    assert [a.content_type for a in m.attachments] == ["message/delivery-status", "text/rfc822-headers"]


def test_undecodable_message_never_raises_and_says_what_went_wrong():
    m = parse("undecodable.eml")
    # no Message-ID: a stable generated one, flagged
    assert m.message_id_generated
    assert m.message_id.startswith("generated.") and m.message_id.endswith("@helpdesk-assist.invalid")
    assert parse_message(fixture_bytes("undecodable.eml")).message_id == m.message_id
    assert m.date is None
    assert m.from_addr == "weird@broken.example"
    assert "\x00" not in m.from_name  # control characters dropped
    assert m.subject.startswith("Привет")
    # part 2: unknown charset guessed as Windows-1251; part 3: "utf-8" that is not
    assert "Компьютер не включается" in m.text
    assert "Срочно, пожалуйста" in m.text
    problems = "\n".join(m.problems)
    assert "part 2: unknown charset x-foo, decoded as windows-1251" in problems
    assert "part 3: not valid utf-8, decoded as windows-1251" in problems
    assert "Date: not a valid date" in problems
    assert "Subject: unknown charset bogus-cs" in problems


def test_every_fixture_has_a_test():
    # runs last in this module (pytest keeps definition order)
    assert {p.name for p in FIXTURES.glob("*.eml")} == TESTED


# ---------------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Subject: x\r\n\r\n",
        b"From: <>\r\nContent-Type: multipart/mixed\r\n\r\nno parts",
        b'Content-Type: text/plain; charset="\r\n\r\n\xd0\xbf',
        b"\r\n\r\n\r\n",
    ],
)
def test_garbage_never_raises(raw):
    m = parse_message(raw)
    assert m.message_id  # always an id to de-duplicate on


def test_raw_8bit_header_decoded_by_guess():
    raw = "Subject: Принтер сломался\r\nFrom: a@b.example\r\n\r\nbody\r\n".encode("cp1251")
    m = parse_message(raw)
    assert m.subject == "Принтер сломался"
    assert any("raw 8-bit header" in p for p in m.problems)


def test_declared_latin1_that_is_windows1251_is_redecoded():
    problems: list[str] = []
    text = decode_bytes("Принтер не печатает".encode("cp1251"), "iso-8859-1", "part 1", problems)
    assert text == "Принтер не печатает"
    assert problems == ["part 1: declared iso-8859-1 but reads as windows-1251, decoded as windows-1251"]


def test_real_latin1_is_left_alone():
    problems: list[str] = []
    assert decode_bytes("Café déjà vu".encode("latin-1"), "iso-8859-1", "part 1", problems) == "Café déjà vu"
    assert problems == []


@pytest.mark.parametrize("charset", ["utf-8", "windows-1251", "koi8-r", "iso-8859-5"])
def test_guess_decode_cyrillic_charsets(charset):
    text = "Добрый день! Не работает принтер в бухгалтерии, ошибка печати."
    assert guess_decode(text.encode(charset))[0] == text


def test_parse_ids_without_brackets_and_duplicates():
    assert parse_ids("<a@b> <c@d>\r\n <a@b>") == ["a@b", "c@d"]
    assert parse_ids("a@b") == ["a@b"]
    assert parse_ids(None) == []


def test_unflow_joins_soft_breaks_keeps_signature_separator():
    assert unflow("one \ntwo\n-- \nsig") == "one two\n-- \nsig"
    assert unflow(" >not a quote") == ">not a quote"


def test_html_to_text_drops_gmail_quote_and_blockquote_only_when_asked():
    html = '<div>New</div><div class="gmail_quote">On x wrote:<blockquote>old</blockquote></div>'
    assert html_to_text(html, drop_quotes=True) == "New"
    assert "old" in html_to_text(html)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi\n\nOn Mon, Nov 24, 2026 at 10:00 AM IT support <\nhelpdesk@example.test> wrote:\n> x", "Hi"),
        ("Ok\n________________________________\nFrom: A\nSent: B\n", "Ok"),
        ("Ok\n\n*From:* A <a@b>\n*Sent:* today\n", "Ok"),
        ("Ответ\n\n-----Исходное сообщение-----\nОт: A", "Ответ"),
        ("a\n> quoted\nb", "a\nb"),  # interleaved: the user's own lines kept
        ("Sent from my iPhone", ""),
        ("Regards,\nJohn", "Regards,\nJohn"),  # a sign-off with nothing before it is kept
        ("From: the printer in room 5\nit prints nothing", "From: the printer in room 5\nit prints nothing"),
    ],
)
def test_strip_reply_cases(text, expected):
    assert strip_reply(text) == expected
