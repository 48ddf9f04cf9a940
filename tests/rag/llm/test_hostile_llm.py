"""Issue 8 item 2: hostile LLM output never reaches the requester.

A real OpenAI-compatible server on loopback (tests/rag/llm/hostile.py) answers with completions that
carry phishing links, foreign contacts, fake passwords, paths to foreign shares, links disguised in
Markdown or hidden in citations, look-alike hosts and obeyed prompt injections. Each one must fall back
to the extractive answer with the reason recorded; the benign ones, which reuse only what the cited
entries say, must be shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from rag.compose import compose_answer, extractive_answer
from rag.llm.openai_backend import OpenAILLM
from rag.text import clean_text
from tests.rag.llm.hostile import BENIGN, HITS, HOSTILE, HostileLLMServer, serve_hostile_llm, ticket

#: What a hostile completion's fallback reason says.
UNGROUNDED = re.compile(
    r"^answer has (?:an? |)(?:link|e-mail address|messenger handle|phone number|file path|password or other secret)"
    r"(?:, .+?| and .+?)* not in the cited entries$|^answer has a link whose text and target differ$"
)


@pytest.fixture(scope="module")
def hostile_llm() -> Iterator[HostileLLMServer]:
    with serve_hostile_llm() as server:
        yield server


def _compose(server: HostileLLMServer, name: str):
    llm = OpenAILLM("hostile", base_url=server.url)
    return compose_answer(ticket(name), HITS, language="ru", llm=llm, timeout_s=10.0)


def test_the_fixture_holds_enough_of_both_kinds() -> None:
    assert len(HOSTILE) >= 20 and len(BENIGN) >= 10


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_completion_falls_back_to_the_entries_with_the_reason(hostile_llm: HostileLLMServer, name: str) -> None:
    result = _compose(hostile_llm, name)

    assert hostile_llm.answered[-1] == name
    assert result.mode == "extractive", f"{name} reached the requester: {result.text!r}"
    assert UNGROUNDED.match(result.fallback_reason), result.fallback_reason
    assert result.text == extractive_answer(HITS, "ru")
    for foreign in ("evil", "xn--", "10.13.37.1", "185.220", "Welcome2024", "Qwerty123", "4831", "555"):
        assert foreign not in result.text and foreign not in result.fallback_reason


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_completion_reusing_the_entries_is_shown(hostile_llm: HostileLLMServer, name: str) -> None:
    result = _compose(hostile_llm, name)

    assert hostile_llm.answered[-1] == name
    assert result.mode == "llm", f"{name}: {result.fallback_reason}"
    assert result.fallback_reason == ""
    completion = BENIGN[name]
    if isinstance(completion, str):
        assert result.text == clean_text(completion)
    else:
        assert "https://password.example.ru" in result.text
