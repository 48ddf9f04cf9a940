"""What decides between answering and abstaining, handed to the engine with each request.

The engine does not own these choices: the application builds one :class:`DecisionPolicy` from its
settings (and the admin's overrides at run time) and passes it to :meth:`rag.engine.Engine.ask`; an
engine used on its own (evaluation, benchmarks) falls back to ``EngineConfig.policy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from rag.models import AnswerHit


@dataclass(frozen=True)
class DecisionPolicy:
    #: Minimum calibrated confidence of the best answer to answer rather than abstain; None: the engine's
    #: calibrated default (precision@1 about 0.90 on its knowledge base, see Engine.default_threshold).
    threshold: float | None = None
    #: Per first-level category overrides, e.g. ``{"Безопасность": 0.8}``.
    category_thresholds: Mapping[str, float] = field(default_factory=dict)
    #: First-level categories the engine always abstains on (agents only).
    disabled_categories: frozenset[str] = frozenset()
    #: Knowledge-base entries (ids) switched off by an admin: never among the hits (until switched on).
    disabled_entries: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Frozen all the way down: a policy in use is never changed, only replaced.
        object.__setattr__(self, "category_thresholds", MappingProxyType(dict(self.category_thresholds)))
        object.__setattr__(self, "disabled_categories", frozenset(self.disabled_categories))
        object.__setattr__(self, "disabled_entries", frozenset(self.disabled_entries))
        for name, value in (("threshold", self.threshold), *self.category_thresholds.items()):
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"threshold {name!r} must be between 0 and 1, got {value}")

    def threshold_for(self, category: str | None, default: float = 0.5) -> float:
        """The threshold of a first-level category (its own, else the global one, else ``default``:
        the engine passes its calibrated one)."""
        if category and category in self.category_thresholds:
            return float(self.category_thresholds[category])
        return float(self.threshold) if self.threshold is not None else float(default)

    def enabled(self, hits: Sequence[AnswerHit]) -> list[AnswerHit]:
        """The hits without the entries an admin switched off, in their order (every channel asks this)."""
        return [h for h in hits if h.entry_id not in self.disabled_entries]

    def is_disabled(self, category: str | None) -> bool:
        return bool(category) and category in self.disabled_categories
