"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, LM Studio...) over HTTP.

``POST {base_url}/chat/completions`` with ``model``, ``messages``, ``max_tokens`` and
``temperature``; ``Authorization: Bearer <key>`` only when a key is set. The whole exchange, reading
the body included, is bounded by ``timeout_s`` and the body by :data:`MAX_RESPONSE_BYTES`.
A timeout raises :class:`LLMTimeout`; an unreachable server, an HTTP error (status and a short excerpt
of the body) or a reply that is not the expected JSON raise :class:`LLMError`. The key is never
logged nor put into an error message.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from urllib3.exceptions import ReadTimeoutError

from rag.errors import LLMError, LLMTimeout, ModelLoadError
from rag.llm.base import Message

logger = logging.getLogger(__name__)

#: Largest reply body read from the server.
MAX_RESPONSE_BYTES = 2_000_000
#: Seconds allowed to open the connection (within ``timeout_s``).
CONNECT_TIMEOUT_S = 5.0
_EXCERPT_CHARS = 200


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:_EXCERPT_CHARS] + ("…" if len(text) > _EXCERPT_CHARS else "")


class OpenAILLM:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, model: str, *, base_url: str, api_key: str = "") -> None:
        base_url = base_url.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ModelLoadError(
                f"llm.base_url {base_url!r} is not an http(s) URL: set it to the server's API root, "
                "e.g. http://127.0.0.1:8001/v1, or llm.backend: none"
            )
        if not model.strip():
            raise ModelLoadError("llm.model is empty: set it to the model name the server serves")
        self.model = model.strip()
        self.base_url = base_url
        self.url = f"{base_url}/chat/completions"
        self.name = f"openai:{self.model}@{base_url}"
        self._api_key = api_key
        self._session = requests.Session()

    @classmethod
    def from_config(
        cls,
        *,
        model: str,
        base_url: str = "",
        api_key: str = "",
        device: str = "cpu",
        timeout_s: float = 30.0,
    ) -> OpenAILLM:
        """The :func:`rag.llm.load_llm` factory (``device`` and ``timeout_s`` are not used)."""
        return cls(model, base_url=base_url, api_key=api_key)

    def __repr__(self) -> str:
        return f"OpenAILLM({self.name!r}, api_key={'set' if self._api_key else 'unset'})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def generate(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> str:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": False,
        }
        started = time.monotonic()
        deadline = started + timeout_s
        try:
            with self._session.post(
                self.url,
                json=payload,
                headers=self._headers(),
                timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
                stream=True,
                allow_redirects=False,
            ) as response:
                body = self._read_body(response, deadline, timeout_s)
                status = response.status_code
        except requests.Timeout as e:
            raise LLMTimeout(f"{self.name}: no answer within {timeout_s:g} s") from e
        except requests.ConnectionError as e:
            # requests reports a read timeout while streaming the body as a ConnectionError.
            if any(isinstance(arg, ReadTimeoutError) for arg in e.args):
                raise LLMTimeout(f"{self.name}: reply not complete within {timeout_s:g} s") from e
            raise LLMError(f"{self.name}: cannot reach the server at {self.base_url} ({type(e).__name__})") from e
        except requests.RequestException as e:
            raise LLMError(f"{self.name}: request failed ({type(e).__name__})") from e
        if status >= 300:
            hint = " (check llm.api_key)" if status in (401, 403) else ""
            raise LLMError(f"{self.name}: HTTP {status}{hint}: {_excerpt(body)}")
        text = self._parse(body)
        logger.debug(
            "llm.generated backend=openai model=%s seconds=%.2f chars=%d",
            self.model,
            time.monotonic() - started,
            len(text),
        )
        return text

    def _read_body(self, response: requests.Response, deadline: float, timeout_s: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=16384):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise LLMError(f"{self.name}: reply larger than {MAX_RESPONSE_BYTES} bytes")
            if time.monotonic() > deadline:
                raise LLMTimeout(f"{self.name}: reply not complete within {timeout_s:g} s")
        return b"".join(chunks)

    def _parse(self, body: bytes) -> str:
        try:
            data: Any = json.loads(body)
        except ValueError as e:
            raise LLMError(f"{self.name}: the reply is not JSON: {_excerpt(body)}") from e
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise LLMError(f"{self.name}: the reply has no choices[0].message.content: {_excerpt(body)}") from e
        if content is None:
            return ""
        if not isinstance(content, str):
            raise LLMError(f"{self.name}: choices[0].message.content is {type(content).__name__}, not text")
        return content.strip()
