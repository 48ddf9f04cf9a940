"""Rendering an OutgoingMessage as a Redmine note: user text cannot inject markup.

What the escapes do inside Redmine was checked against Redmine 5.0.4's own formatters (textile,
common_mark, markdown): see tests/integration/redmine/test_render_live.py.
"""

from __future__ import annotations

import pytest

from connectors.base import Link, OutgoingMessage, SuggestedEntry
from connectors.redmine.connector import escape_text, note_to_text, render_note

MARKER = "ha-0123456789ab"
FORMATS = ["textile", "common_mark", "markdown"]


def _msg(**kw: object) -> OutgoingMessage:
    return OutgoingMessage(marker=MARKER, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_html_is_escaped(fmt: str) -> None:
    out = escape_text("<script>alert(1)</script> & co", fmt)  # type: ignore[arg-type]
    assert "<" not in out and ">" not in out
    assert "&lt;script&gt;" in out and "&amp; co" in out


def test_textile_link_image_and_span_syntax_neutralised() -> None:
    out = escape_text('"click":http://evil.example !http://evil.example/i.png! *bold* {{toc}} [[Wiki]] |a|', "textile")
    for raw in ('"click"', "!http", "*bold*", "{{", "[[", "|a|"):
        assert raw not in out
    assert "&#34;click&#34;" in out


def test_textile_block_signatures_neutralised() -> None:
    out = escape_text("h1. Big\nbq. quote\np(x). para\n* item\n# item", "textile")
    assert out.splitlines() == ["h1&#46; Big", "bq&#46; quote", "p(x)&#46; para", "&#42; item", "&#35; item"]


@pytest.mark.parametrize("fmt", ["common_mark", "markdown"])
def test_markdown_syntax_neutralised(fmt: str) -> None:
    out = escape_text("[x](http://evil.example) ![i](y) *b* `c` x^2\n# head\n- item\n1. one\n    code", fmt)  # type: ignore[arg-type]
    assert out.splitlines() == [
        "\\[x\\](http://evil.example) \\!\\[i\\](y) \\*b\\* \\`c\\` x\\^2",
        "\\# head",
        "\\- item",
        "1\\. one",
        "code",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_intraword_punctuation_is_left_readable(fmt: str) -> None:
    assert escape_text("Wi-Fi on snake_case hosts", fmt) == "Wi-Fi on snake_case hosts"  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bare_urls_in_text_are_kept_and_separated_from_glued_text(fmt: str) -> None:
    out = escape_text("see https://portal.example/reset?a=1&b=2. or http://x/p!next", fmt)  # type: ignore[arg-type]
    assert "https://portal.example/reset?a=1&b=2." in out  # the URL itself is untouched
    assert "http://x/p " in out  # a space keeps the escaped "!" out of the auto-link


@pytest.mark.parametrize("fmt", FORMATS)
def test_layout_and_marker(fmt: str) -> None:
    msg = _msg(
        heading="Suggested answer",
        paragraphs=["First.", "Second."],
        entries=[SuggestedEntry(title="Restart", text="Turn it off and on.")],
        links=[Link(label="This solved my problem", url="https://ha.example/c/abc.DEF-_1")],
        facts=[("Confidence", "0.8")],
        footer="helpdesk-assist",
    )
    out = render_note(msg, fmt)  # type: ignore[arg-type]
    lines = out.splitlines()
    assert lines[-1] == f"ref {MARKER}"
    assert lines[0] == ("h3. " if fmt == "textile" else "### ") + "Suggested answer"
    i = lines.index("This solved my problem:")
    assert lines[i + 1] == "https://ha.example/c/abc.DEF-_1"  # bare URL on its own line
    assert ("*Restart*" if fmt == "textile" else "**Restart**") in lines


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "https://x.example/a b", 'https://x.example/"onclick', "ftp://x"]
)
def test_unsafe_link_urls_are_shown_as_text(url: str) -> None:
    out = render_note(_msg(links=[Link(label="go", url=url)]), "textile")
    assert url not in out
    assert "go:\n(link left out" in out


def test_bad_marker_refused() -> None:
    with pytest.raises(ValueError, match="marker"):
        render_note(OutgoingMessage(marker="ha-xyz"), "textile")


@pytest.mark.parametrize("fmt", FORMATS)
def test_note_to_text_undoes_our_escapes(fmt: str) -> None:
    text = 'Use *Ctrl+Alt+Del* <now> & "then" [x] #1'
    assert note_to_text(escape_text(text, fmt), fmt) == text  # type: ignore[arg-type]
