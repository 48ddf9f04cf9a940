"""JSON from outside, with its nesting bounded (issue 8 item 8).

``json.loads`` recurses once per level: a body of 100,000 ``[`` raises ``RecursionError`` (not a
``ValueError``), and a body just under the interpreter's limit parses but makes the next recursive
step (pydantic, ``jsonify``) fail the same way. Every body that comes from outside - webhook
deliveries, ``/api/ask`` - is read here: too deep is a :class:`JSONTooDeep`, a ``ValueError`` like
any other malformed JSON, so the callers' existing "not JSON" handling answers 400.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting accepted. GLPI 11 and Redmine deliveries nest 5-6 levels, /api/ask bodies 1.
MAX_DEPTH = 32


class JSONTooDeep(ValueError):
    """The document nests deeper than allowed (or deeper than the interpreter can parse)."""


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`JSONTooDeep` (a ValueError) beyond ``max_depth`` levels."""
    try:
        value = json.loads(data)
    except RecursionError as e:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from e
    if _depth_exceeds(value, max_depth):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Iterative (an explicit stack), so that measuring a deep document cannot recurse either."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
