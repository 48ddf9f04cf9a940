"""Notes rendered by the real Redmine (its default text formatting on 5.0: textile), as the requester
sees them in the browser: hostile text in a suggestion produces no markup and no links except the
bare URLs that were in it; our own link is clickable; the marker is readable."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from connectors.base import Link, OutgoingMessage, SuggestedEntry

from .conftest import RedmineServer

pytestmark = [pytest.mark.integration]

HOSTILE = [
    '*bold* _em_ "click me":http://evil.example/a !http://evil.example/i.png! @code@ {{toc}} [[Wiki]] #1',
    "<script>alert(1)</script> <b>x</b> & &lt; ==<i>raw</i>== %{color:red}red%",
    "h1. Heading\nbq. quote\n* item\n# item\n|a|b|",
    "[x](http://evil.example/b) ![i](http://evil.example/c.png) <http://evil.example/d>",
    "http://evil.example/e)[label](http://evil.example/f)",
    "Wi-Fi snake_case C++ 50% done? see https://portal.example/reset?a=1&b=2.",
]
OUR_LINK = "https://ha.example/c/eyJ0Ijo.Zk-9_aB.c"


def _login(redmine: RedmineServer) -> requests.Session:
    s = requests.Session()
    page = s.get(redmine.url + "/login", timeout=30).text
    token = re.search(r'name="authenticity_token" value="([^"]+)"', page)
    assert token is not None
    r = s.post(
        redmine.url + "/login",
        data={"username": "requester", "password": redmine.requester_password, "authenticity_token": token.group(1)},
        timeout=30,
    )
    assert "/login" not in r.url, "requester login failed"
    return s


def test_hostile_text_renders_inert_in_redmine(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue()
    msg = OutgoingMessage(
        marker="ha-" + uuid.uuid4().hex[:12],
        heading="Suggested *answer*",
        paragraphs=HOSTILE,
        entries=[SuggestedEntry(title="Step _one_", text="Restart it.")],
        links=[Link(label="This solved my problem", url=OUR_LINK)],
        facts=[("Category", "Printers > HP")],
    )
    comment = redmine.connector().post_comment(str(issue_id), msg, private=False)
    page = _login(redmine).get(f"{redmine.url}/issues/{issue_id}", timeout=30).text
    m = re.search(rf'<div id="journal-{comment.id}-notes" class="wiki">(.*?)</div>', page, re.S)
    assert m is not None
    note = m.group(1)

    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", note))
    assert tags <= {"p", "br", "a", "h3", "strong"}, tags
    assert note.count("<strong>") == 2  # only our entry title and fact label
    # Redmine adds a "¶" anchor to the heading; every other href must be a URL from the text.
    hrefs = [h for h in re.findall(r'<a [^>]*href="([^"]+)"', note) if h != "#Suggested-answer"]
    # Only bare URLs typed in the text are auto-linked, each to exactly the URL shown; our link works.
    assert OUR_LINK in hrefs
    assert set(hrefs) <= {
        OUR_LINK,
        "http://evil.example/i.png",
        "http://evil.example/b",
        "http://evil.example/c.png",
        "http://evil.example/d",
        "http://evil.example/e",
        "http://evil.example/f",
        "https://portal.example/reset?a=1&#38;b=2",
    }, hrefs
    assert "http://evil.example/a" not in hrefs  # "click me":url is not a labelled link
    assert f"ref {msg.marker}" in note
    assert "&lt;script&gt;" in note and "*bold*" in note.replace("&#42;", "*")
