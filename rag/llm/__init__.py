"""LLM backends behind one small interface: :class:`LLM`, built by :func:`load_llm`.

``transformers`` (a local chat model in-process) and ``openai`` (an OpenAI-compatible server) are
imported only when chosen; ``none`` means extractive answers only.
"""

from rag.llm.base import BACKENDS, LLM, Message, load_llm

__all__ = ["BACKENDS", "LLM", "Message", "load_llm"]
