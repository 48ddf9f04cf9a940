"""build_reply / build_thanks / build_forward: headers, both parts, escaping, the original intact."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import compat32
from email.policy import default as default_policy

import pytest

from connectors.email.compose import build_forward, build_reply, build_thanks
from connectors.email.compose import flatten as compose_flatten
from connectors.email.keywords import classify_reply
from connectors.email.parse import REPLY_MARKER, parse_message
from connectors.email.threads import conversation_from_headers
from plugin.i18n import words

from .conftest import fixture_bytes

REPLY_KW = dict(
    from_addr="helpdesk@example.test",
    from_name="Помощник ИТ-поддержки",
    message_id_domain="example.test",
    conversation_id="3f9a1c",
)


def reply(original, language="ru", **kw):
    args = dict(
        REPLY_KW,
        language=language,
        answer_text="Попробуйте <b>перезагрузить</b> принтер & подождать.",
        entries=[("Замятие <бумаги>", "Откройте крышку.\n\nИзвлеките лист."), ("Драйвер", "Переустановите драйвер.")],
        solved_url="https://ai.example/c/SOLVED?x=1&y=2",
        not_solved_url='https://ai.example/c/NOT"SOLVED',
    )
    args.update(kw)
    args.setdefault("words", words(args["language"]))  # the catalog's wording
    return build_reply(original, **args)


def parts(msg):
    return {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}


def test_build_reply_headers():
    original = parse_message(fixture_bytes("koi8r_plain.eml"))
    msg = reply(original)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Re: Не могу войти в 1С [HA-3f9a1c]"
    assert msg["To"] == "Сергей Кузнецов <sergey@old.example>"
    assert msg["From"] == "Помощник ИТ-поддержки <helpdesk@example.test>"
    assert msg["In-Reply-To"] == "<20261125090500.GA1234@old.example>"
    assert msg["References"] == "<20261125090500.GA1234@old.example>"
    assert re.fullmatch(r"<ha\.3f9a1c\.[0-9a-f]{32}@example\.test>", msg["Message-ID"])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Date"]


def test_build_reply_references_keep_the_thread_and_reply_to_wins():
    original = parse_message(fixture_bytes("outlook_reply_ru.eml"))
    original = original.model_copy(update={"reply_to": ["ivan.home@mail.example"]})
    msg = reply(original)
    assert msg["References"] == (
        "<CAF1x2y3z4@mail.corp.example> <ha.3f9a1c.2b1d0c9e8f7a4b6c@example.test> "
        "<3B2A7C1E0D4F4A2B9C7E@EXCH01.corp.example>"
    )
    assert msg["Subject"] == "Re: Принтер не печатает [HA-3f9a1c]"  # RE: collapsed, tag once
    assert msg["To"] == "ivan.home@mail.example"


def test_build_reply_without_a_real_message_id_has_no_in_reply_to():
    original = parse_message(b"From: a@b.example\r\nSubject: x\r\n\r\nhelp\r\n")
    msg = reply(original)
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_build_reply_text_part_ru():
    text = parts(reply(parse_message(fixture_bytes("koi8r_plain.eml"))))["text/plain"]
    assert text.startswith(REPLY_MARKER["ru"] + "\n")
    assert "Попробуйте <b>перезагрузить</b> принтер & подождать." in text  # plain text: as it is
    assert "1. Замятие <бумаги>\nОткройте крышку." in text
    assert "Да, проблема решена: https://ai.example/c/SOLVED?x=1&y=2" in text
    assert 'Нет, не помогло: https://ai.example/c/NOT"SOLVED' in text


def test_build_reply_html_part_escapes_everything():
    html = parts(reply(parse_message(fixture_bytes("koi8r_plain.eml"))))["text/html"]
    assert "<b>перезагрузить</b>" not in html
    assert "Попробуйте &lt;b&gt;перезагрузить&lt;/b&gt; принтер &amp; подождать." in html
    assert "Замятие &lt;бумаги&gt;" in html
    assert "<p>Откройте крышку.</p><p>Извлеките лист.</p>" in html
    assert 'href="https://ai.example/c/SOLVED?x=1&amp;y=2"' in html
    assert 'href="https://ai.example/c/NOT&quot;SOLVED"' in html
    assert "«Не могу войти в 1С»" in html


def test_build_reply_english_wording():
    msg = reply(
        parse_message(fixture_bytes("html_only.eml")), language="en", answer_text="Check the cable.", entries=[]
    )
    text = parts(msg)["text/plain"]
    assert text.startswith(REPLY_MARKER["en"])
    assert "Yes, it is solved: https://ai.example/c/SOLVED" in text
    assert "This may help" not in text  # no entries, no heading
    assert msg["Content-Language"] == "en"


def test_user_subject_cannot_inject_headers():
    original = parse_message(b"From: a@b.example\r\nSubject: x\r\n\r\nhelp\r\n")
    original = original.model_copy(update={"subject": "x\r\nBcc: victim@example.com"})
    msg = reply(original)
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"]


def test_a_reply_to_our_reply_is_threaded_and_stripped():
    ours = reply(parse_message(fixture_bytes("koi8r_plain.eml")))
    quoted = "\n".join("> " + line for line in parts(ours)["text/plain"].splitlines())
    answer = (
        f"From: sergey@old.example\r\nTo: helpdesk@example.test\r\nSubject: {ours['Subject']}\r\n"
        f"In-Reply-To: {ours['Message-ID']}\r\nReferences: {ours['References']} {ours['Message-ID']}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Нет, не помогло\r\n\r\n{quoted}\r\n"
    ).encode()
    incoming = parse_message(answer)
    assert conversation_from_headers(incoming.in_reply_to, incoming.references, "example.test") == "3f9a1c"
    assert incoming.text == "Нет, не помогло"
    assert classify_reply(incoming.text) == "not_solved"


def test_build_thanks():
    original = parse_message(fixture_bytes("gmail_reply_ru.eml"))
    msg = build_thanks(original, language="ru", words=words("ru"), **REPLY_KW)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == f"<{original.message_id}>"
    assert msg["Subject"] == "Re: Принтер не печатает [HA-3f9a1c]"
    assert "Рады, что проблема решена" in msg.get_content()


# ------------------------------------------------------------------------------------------ forward


def rfc822_body(flat: bytes) -> bytes:
    """The raw bytes of the message/rfc822 part of a flattened multipart message."""
    boundary = re.search(rb'boundary="([^"]+)"', flat).group(1)
    for chunk in flat.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        if b"message/rfc822" in head:
            return body[: -len(b"\r\n")] if body.endswith(b"\r\n") else body
    raise AssertionError("no message/rfc822 part")


def flatten(msg) -> bytes:
    return compose_flatten(msg)


@pytest.mark.parametrize("fixture", ["outlook_reply_ru.eml", "undecodable.eml", "koi8r_plain.eml", "attachment.eml"])
def test_build_forward_keeps_the_original_bytes(fixture):
    raw = fixture_bytes(fixture)
    original = parse_message(raw)
    msg = build_forward(
        raw,
        original,
        to_addr="intake@example.test",
        from_addr="helpdesk@example.test",
        note_text="Пользователь ответил, что не помогло.",
        suggestion_text="1. Замятие бумаги",
        user_reason=original.text,
    )
    flat = flatten(msg)
    assert rfc822_body(flat) == raw
    again = message_from_bytes(flat, policy=compat32)
    assert [p.get_content_type() for p in again.walk()][:3] == ["multipart/mixed", "text/plain", "message/rfc822"]


def test_build_forward_headers_and_note():
    raw = fixture_bytes("outlook_reply_ru.eml")
    original = parse_message(raw)
    msg = build_forward(
        raw,
        original,
        to_addr="intake@example.test",
        from_addr="helpdesk@example.test",
        from_name="Помощник",
        note_text="Пользователь ответил, что не помогло.",
        suggestion_text="1. Замятие бумаги: откройте крышку",
        user_reason="Нет, не помогло.",
        conversation_id="3f9a1c",
        words=words("ru"),
    )
    assert msg["To"] == "intake@example.test"
    assert msg["Reply-To"] == "Петров Иван Сергеевич <ivan.petrov@corp.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "Fwd: RE: Принтер не печатает [HA-3f9a1c]"
    assert msg["Message-ID"].startswith("<ha.3f9a1c.")
    note = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Почему переслано:\nПользователь ответил, что не помогло." in note
    assert "Что предложил помощник:\n1. Замятие бумаги: откройте крышку" in note
    assert "Ответ пользователя:\nНет, не помогло." in note
    assert "От: Петров Иван Сергеевич <ivan.petrov@corp.example>" in note


def test_build_forward_without_auto_submitted_for_redmine_intake():
    raw = fixture_bytes("koi8r_plain.eml")
    msg = build_forward(raw, parse_message(raw), to_addr="i@x", from_addr="h@x", note_text="n", auto_submitted=False)
    assert msg["Auto-Submitted"] is None


def test_build_forward_lists_parse_problems_and_works_without_a_parsed_message():
    raw = fixture_bytes("undecodable.eml")
    msg = build_forward(
        raw, parse_message(raw), to_addr="i@x.example", from_addr="h@x.example", note_text="n", language="en"
    )
    note = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Problems reading the message:\n- " in note
    assert "part 2: unknown charset x-foo" in note
    bare = build_forward(raw, None, to_addr="i@x.example", from_addr="h@x.example", note_text="n", language="en")
    assert bare["Reply-To"] is None
    assert bare["Subject"] == "Fwd: (no subject)"
    assert rfc822_body(flatten(bare)) == raw


def test_build_forward_falls_back_to_a_file_for_nul_bytes_and_huge_lines():
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\n" + b"A" * 2000 + b"\x00\r\n"
    msg = build_forward(raw, parse_message(raw), to_addr="i@x.example", from_addr="h@x.example", note_text="n")
    att = [p for p in msg.walk() if p.get_filename() == "original.eml"]
    assert len(att) == 1 and att[0].get_content_type() == "application/octet-stream"
    assert att[0].get_payload(decode=True) == raw
    reparsed = message_from_bytes(flatten(msg), policy=default_policy)
    assert next(p for p in reparsed.walk() if p.get_filename() == "original.eml").get_content() == raw
