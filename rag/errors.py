from helpdesk_errors import HelpdeskError


class RagError(HelpdeskError):
    """Base of the answer engine's errors."""


class ModelLoadError(RagError):
    """A model (embedding or LLM) could not be loaded from the configured id or path."""


class IndexMismatchError(RagError):
    """The index was built with another embedding model than the one now configured."""


class EmptyIndexError(RagError):
    """The knowledge base index has no entries yet."""


class LLMError(RagError):
    """An LLM backend failed (unreachable, bad answer, timeout)."""


class LLMTimeout(LLMError):
    """The LLM did not answer within the configured time."""
