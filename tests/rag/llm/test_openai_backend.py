"""The OpenAI-compatible backend against a scripted HTTP server on loopback."""

from __future__ import annotations

import logging

import pytest

from rag.errors import LLMError, LLMTimeout, ModelLoadError
from rag.llm import load_llm
from rag.llm.openai_backend import OpenAILLM
from tests.rag.llm.conftest import Reply, ScriptedServer, chat_reply, closed_port

MESSAGES = [
    {"role": "system", "content": "Ты помощник службы поддержки."},
    {"role": "user", "content": "Не работает VPN"},
]
KEY = "sk-test-secret-4242"


def _llm(server: ScriptedServer, api_key: str = "") -> OpenAILLM:
    llm = load_llm("openai", model="qwen2.5-7b-instruct", base_url=server.url, api_key=api_key)
    assert isinstance(llm, OpenAILLM)
    return llm


def _generate(llm: OpenAILLM, timeout_s: float = 5.0) -> str:
    return llm.generate(MESSAGES, max_new_tokens=128, temperature=0.2, timeout_s=timeout_s)


def test_sends_the_chat_request_and_returns_the_content(openai_server: ScriptedServer) -> None:
    openai_server.reply(Reply(body=chat_reply("  Перезапустите клиент VPN [1].\n")))
    llm = _llm(openai_server)

    assert _generate(llm) == "Перезапустите клиент VPN [1]."
    (request,) = openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.json == {
        "model": "qwen2.5-7b-instruct",
        "messages": MESSAGES,
        "max_tokens": 128,
        "temperature": 0.2,
        "stream": False,
    }
    assert llm.name == f"openai:qwen2.5-7b-instruct@{openai_server.url}"


def test_bearer_token_only_when_a_key_is_set(openai_server: ScriptedServer) -> None:
    openai_server.reply(Reply(body=chat_reply("ok [1]")))
    _generate(_llm(openai_server, api_key=KEY))

    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_trailing_slash_in_base_url(openai_server: ScriptedServer) -> None:
    openai_server.reply(Reply(body=chat_reply("ok")))
    llm = load_llm("openai", model="m", base_url=openai_server.url + "/")
    assert llm is not None
    llm.generate(MESSAGES, max_new_tokens=8, temperature=0.0, timeout_s=5)

    assert openai_server.requests[0].path == "/v1/chat/completions"


def test_null_content_is_an_empty_answer(openai_server: ScriptedServer) -> None:
    openai_server.reply(Reply(body=chat_reply(None)))

    assert _generate(_llm(openai_server)) == ""


def test_401_names_the_status_and_the_setting_never_the_key(
    openai_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.reply(Reply(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}}))
    llm = _llm(openai_server, api_key=KEY)

    with pytest.raises(LLMError) as info:
        _generate(llm)

    message = str(info.value)
    assert "HTTP 401" in message and "llm.api_key" in message and "Invalid API key" in message
    assert not isinstance(info.value, LLMTimeout)
    assert KEY not in message and KEY not in caplog.text and KEY not in repr(llm)


def test_500_gives_status_and_a_short_excerpt(openai_server: ScriptedServer) -> None:
    openai_server.reply(
        Reply(500, "Internal Server Error: CUDA out of memory " + "x" * 5000, content_type="text/plain")
    )

    with pytest.raises(LLMError) as info:
        _generate(_llm(openai_server))

    message = str(info.value)
    assert "HTTP 500" in message and "CUDA out of memory" in message
    assert len(message) < 400


def test_slow_server_is_a_timeout(openai_server: ScriptedServer) -> None:
    openai_server.reply(Reply(body=chat_reply("too late"), delay_s=10))

    with pytest.raises(LLMTimeout, match=r"0\.3 s"):
        _generate(_llm(openai_server), timeout_s=0.3)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>Bad Gateway</html>", "not JSON"),
        (b'{"choices": [', "not JSON"),
        (b'{"object": "error"}', "no choices"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"message": {"content": 42}}]}', "not text"),
    ],
)
def test_malformed_reply_is_an_llm_error(openai_server: ScriptedServer, body: bytes, expected: str) -> None:
    openai_server.reply(Reply(200, body))

    with pytest.raises(LLMError, match=expected):
        _generate(_llm(openai_server))


def test_unreachable_server_is_an_llm_error() -> None:
    llm = load_llm("openai", model="m", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    assert llm is not None

    with pytest.raises(LLMError, match="cannot reach the server") as info:
        llm.generate(MESSAGES, max_new_tokens=8, temperature=0.0, timeout_s=5)
    assert not isinstance(info.value, LLMTimeout)


@pytest.mark.parametrize("base_url", ["", "127.0.0.1:8001/v1", "ftp://host/v1"])
def test_bad_base_url_is_refused_at_load(base_url: str) -> None:
    with pytest.raises(ModelLoadError, match=r"llm\.base_url"):
        load_llm("openai", model="m", base_url=base_url)
