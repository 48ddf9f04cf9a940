from __future__ import annotations

import re

import pytest

from connectors.email.threads import (
    add_subject_tag,
    conversation_from_headers,
    conversation_of,
    find_subject_tag,
    new_message_id,
    reply_subject,
)


def test_new_message_id_shape_and_uniqueness():
    a = new_message_id("support.example.com", "3f9a1c")
    b = new_message_id("support.example.com", "3f9a1c")
    assert re.fullmatch(r"<ha\.3f9a1c\.[0-9a-f]{32}@support\.example\.com>", a)
    assert a != b
    assert conversation_of(a) == "3f9a1c"


@pytest.mark.parametrize("bad", ["", "a@b", "a>b", "two words"])
def test_new_message_id_rejects_bad_domain(bad):
    with pytest.raises(ValueError):
        new_message_id(bad, "abc")


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "x" * 65])
def test_new_message_id_rejects_bad_conversation(bad):
    with pytest.raises(ValueError):
        new_message_id("example.test", bad)


def test_conversation_from_headers_in_reply_to_first_then_newest_reference():
    ours = new_message_id("example.test", "c0ffee")[1:-1]
    older = new_message_id("example.test", "aaaaaa")[1:-1]
    assert conversation_from_headers(f"<{ours}>", []) == "c0ffee"
    assert conversation_from_headers("<someone@else>", [older, "x@y", ours]) == "c0ffee"
    assert conversation_from_headers(None, f"<{older}> <x@y>") == "aaaaaa"
    assert conversation_from_headers("<someone@else>", ["x@y"]) is None
    assert conversation_from_headers(None, None) is None


def test_conversation_from_headers_domain_filter():
    ours = new_message_id("example.test", "c0ffee")
    assert conversation_from_headers(ours, [], domain="example.test") == "c0ffee"
    assert conversation_from_headers(ours, [], domain="other.example") is None


def test_foreign_ids_that_look_similar_are_not_ours():
    assert conversation_of("<GLPI_abc-Ticket-12/new@glpi.example>") is None
    assert conversation_of("<redmine.issue-5.20261124100000@redmine.example>") is None
    assert conversation_of("<ha.x.nothex@example.test>") is None


def test_subject_tag_added_once_and_found():
    s = add_subject_tag("Re: Принтер не печатает", "3f9a1c")
    assert s == "Re: Принтер не печатает [HA-3f9a1c]"
    assert add_subject_tag(s, "3f9a1c") == s
    assert find_subject_tag("RE: RE: Принтер [ha-3F9A1C]") == "3f9a1c"
    assert find_subject_tag("[GLPI #0000123] x") is None


def test_reply_subject_collapses_prefixes():
    assert reply_subject("RE: Fwd: AW: Отв: Принтер") == "Re: Принтер"
    assert reply_subject("Принтер") == "Re: Принтер"
    assert reply_subject("") == "Re:"
