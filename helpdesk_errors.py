"""The root of helpdesk-assist's exception tree.

It lives in a module of its own so that every package (``rag``, ``dataset``, ``connectors``,
``webhooks``, ``plugin``) can derive from it while dependencies still point one way:
``plugin -> (webhooks, connectors, rag, dataset)``.
"""


class HelpdeskError(Exception):
    """Base class of every error helpdesk-assist raises on purpose."""


class ConfigError(HelpdeskError):
    """Invalid configuration: the message names the key and says how to fix it."""
