"""In-process fakes of :class:`rag.llm.LLM` for tests of the logic around a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rag.llm.base import Message

#: A scripted step: a reply, an exception to raise, or a function of the messages.
Step = str | BaseException | Callable[[list[Message]], str]


@dataclass
class ScriptedLLM:
    """Answers with the scripted steps in order (the last one repeats) and records every call."""

    steps: list[Step]
    name: str = "scripted"
    calls: list[list[Message]] = field(default_factory=list)
    kwargs: list[dict[str, float]] = field(default_factory=list)

    def generate(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> str:
        self.calls.append([dict(m) for m in messages])
        self.kwargs.append({"max_new_tokens": max_new_tokens, "temperature": temperature, "timeout_s": timeout_s})
        step = self.steps[min(len(self.calls) - 1, len(self.steps) - 1)]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(messages)
        return step

    @property
    def last_user_message(self) -> str:
        return self.calls[-1][-1]["content"]

    @property
    def last_system_message(self) -> str:
        return self.calls[-1][0]["content"]
