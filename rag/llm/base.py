"""The LLM interface, and the one place that turns ``llm.backend`` into a backend.

A backend is anything with a ``name`` and a ``generate`` method (:class:`LLM`): the built-in
``transformers`` and ``openai`` backends, or an in-process fake in tests. Backends are registered in
:data:`BACKENDS` by name and imported only when asked for, so the ``openai`` path never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: One chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``.
Message = dict[str, str]


@runtime_checkable
class LLM(Protocol):
    """A chat model that turns messages into one reply.

    ``generate`` returns the reply text (possibly empty) or raises :class:`rag.errors.LLMTimeout`
    when it ran out of ``timeout_s``, :class:`rag.errors.LLMError` when the backend failed, and
    :class:`rag.errors.ModelLoadError` when a lazily loaded model could not be loaded.
    """

    #: Where the answers come from, for logs and the admin page, e.g. ``"transformers:/models/qwen"``.
    name: str

    def generate(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> str: ...


#: A factory builds a backend from the ``llm`` settings (already unpacked into keywords).
BackendFactory = Callable[..., LLM]

#: Backend name -> ``"module:callable"``; imported lazily by :func:`load_llm`.
BACKENDS: dict[str, str] = {
    "transformers": "rag.llm.transformers_backend:TransformersLLM.from_config",
    "openai": "rag.llm.openai_backend:OpenAILLM.from_config",
}


def _resolve(target: str) -> BackendFactory:
    module_name, _, attr_path = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    if not callable(obj):
        raise TypeError(f"LLM backend factory {target} is not callable")
    return obj


def load_llm(
    backend: str,
    *,
    model: str,
    base_url: str = "",
    api_key: str = "",
    device: str = "cpu",
    timeout_s: float = 30.0,
) -> LLM | None:
    """Build the configured LLM backend, or ``None`` for ``backend="none"`` (extractive answers only).

    Raises ``ValueError`` for an unknown backend name and :class:`rag.errors.ModelLoadError`, with what
    was tried and how to fix it, when the model cannot be found or reached. The ``transformers``
    backend checks where the model is at once but loads the weights on first use (or on ``load()``).
    """
    if backend == "none":
        return None
    target = BACKENDS.get(backend)
    if target is None:
        known = ", ".join(["none", *sorted(BACKENDS)])
        raise ValueError(f"unknown LLM backend {backend!r}: choose one of {known} (llm.backend)")
    factory = _resolve(target)
    return factory(model=model, base_url=base_url, api_key=api_key, device=device, timeout_s=timeout_s)
