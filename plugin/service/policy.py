"""The decisions the assistant makes per request, as one object: answer or abstain (thresholds, categories
switched off: :class:`rag.policy.DecisionPolicy`) and whether a helpdesk gets public suggestions at all
(shadow mode). Built from the settings; the admin's run-time overrides, when there are any, are laid
over them (:class:`Policies`). The pipeline, the mail flow and the chat ask :meth:`Policies.current`
for each request, so a change applies to the next request without a restart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from plugin.settings import Settings
from rag.policy import DecisionPolicy

#: The helpdesks that have their own shadow-mode switch (the mailbox and the chat follow the global one).
SHADOW_SOURCES = ("glpi", "redmine")


@dataclass(frozen=True)
class Policy:
    decision: DecisionPolicy
    #: Post only the private agent note everywhere (try the assistant before go-live).
    shadow_mode: bool = False
    #: Per helpdesk: True / False, or None to follow ``shadow_mode``.
    shadow_by_source: Mapping[str, bool | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadow_by_source", MappingProxyType(dict(self.shadow_by_source)))

    def shadow_mode_for(self, source: str) -> bool:
        own = self.shadow_by_source.get(source)
        return self.shadow_mode if own is None else bool(own)


def from_settings(settings: Settings, overrides: Mapping[str, Any] | None = None) -> Policy:
    """The policy of ``settings`` with ``overrides`` laid over it. Override keys: ``threshold``,
    ``category_thresholds`` (merged per category), ``disabled_categories`` (replaces), ``disabled_entries``
    (entry ids), ``shadow_mode``, ``shadow.<source>``."""
    o = dict(overrides or {})
    d = settings.decision
    thresholds = {**d.category_thresholds, **dict(o.get("category_thresholds") or {})}
    decision = DecisionPolicy(
        threshold=_threshold(o.get("threshold", d.threshold)),
        category_thresholds=thresholds,
        disabled_categories=frozenset(o.get("disabled_categories", d.disabled_categories)),
        disabled_entries=frozenset(o.get("disabled_entries") or ()),
    )
    shadow = {name: getattr(settings, name).shadow_mode for name in SHADOW_SOURCES}
    shadow.update({k.removeprefix("shadow."): v for k, v in o.items() if k.startswith("shadow.")})
    return Policy(decision=decision, shadow_mode=bool(o.get("shadow_mode", settings.pipeline.shadow_mode)),
                  shadow_by_source=shadow)


def _threshold(value: Any) -> float | None:
    return None if value is None else float(value)


class Policies:
    """Where the policy in effect comes from: the settings, and ``overrides()`` (the admin's, stored
    in the database) read at each :meth:`current` call."""

    def __init__(self, settings: Settings, overrides: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.settings = settings
        self._overrides = overrides

    def current(self) -> Policy:
        return from_settings(self.settings, self._overrides() if self._overrides is not None else None)
