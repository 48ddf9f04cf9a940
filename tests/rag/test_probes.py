"""The quality bar on the sample knowledge base: the team's probe set (dataset/probes_sample_kb.yaml) asked of
the engine with the real USE encoder and the default decision as `make run` serves it (the shipped
calibration, threshold 0.5; no outcomes learned yet).

Not with ``decision.calibrate_at_import: true``: on this knowledge base its held-out questions (an entry asked
with itself left out) never reach precision 0.90 — entries that share an answer are about different things
(the hardware order answer serves a headset, a monitor and a dock) — so it sets the threshold to 0.95 and
answers nothing, and "no off-topic request answered" would hold for nothing.

The bar of issue 11 — every README example right first, no off-topic request answered, hit@1 ≥ 0.90 — is
``test_issue_11_quality_bar`` (strict xfail until it is met: it records the gap, and turns red when it is
closed so that the marker goes). ``test_probe_set_does_not_regress`` holds what is reached now."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataset import SAMPLE_KB
from dataset.importers import read_kb
from rag.embeddings import USEEmbedder
from rag.engine import Engine, EngineConfig

PROBES = Path(SAMPLE_KB).parent / "probes_sample_kb.yaml"


def _probes() -> dict[str, Any]:
    return yaml.safe_load(PROBES.read_text(encoding="utf-8"))


def test_probe_set_is_large_enough_and_names_real_entries() -> None:
    data = _probes()
    probes, off_topic = data["probes"], data["off_topic"]
    assert len(probes) >= 100
    assert len(off_topic) >= 30
    assert len({p["text"] for p in probes}) == len(probes)
    readme = {p["text"] for p in probes if p.get("readme")}
    assert readme == {"Забыл пароль от почты, что делать?", "Не могу подключиться к VPN из дома", "Нужна новая мышка"}


@dataclass
class ProbeRun:
    n: int = 0
    right_first: int = 0
    wrong: list[str] = field(default_factory=list)
    #: Wrong first answers given above the threshold (confident wrong answers).
    answered_wrong: list[str] = field(default_factory=list)
    readme_wrong: list[str] = field(default_factory=list)
    answered_off_topic: list[str] = field(default_factory=list)
    #: Probes answered (above the threshold), right or not.
    answered: int = 0

    @property
    def hit1(self) -> float:
        return self.right_first / self.n


@pytest.fixture(scope="module")
def probe_engine(tmp_path_factory: pytest.TempPathFactory, use_embedder: USEEmbedder) -> Engine:
    """The sample knowledge base as `make run` serves it: the shipped calibration and threshold."""
    engine = Engine(EngineConfig(data_dir=tmp_path_factory.mktemp("probes")), use_embedder)
    engine.import_entries(read_kb(SAMPLE_KB).entries)
    return engine


@pytest.fixture(scope="module")
def probe_run(probe_engine: Engine) -> ProbeRun:
    sample_engine = probe_engine
    data = _probes()
    titles: dict[str, set[str]] = {}
    for e in sample_engine.store.entries():
        titles.setdefault(e.title, set()).add(e.answer_id)
    assert all(len(v) == 1 for v in titles.values()), "two entries with one title and different answers"
    run = ProbeRun(n=len(data["probes"]))
    for probe in data["probes"]:
        gold = next(iter(titles[probe["entry"]]))
        result = sample_engine.ask(probe["text"], compose=False)
        run.answered += result.decision == "answer"
        first = result.hits[0] if result.hits else None
        if first is not None and first.answer_id == gold:
            run.right_first += 1
            continue
        line = f"{probe['text']!r}: first {first.title if first else None!r}, expected {probe['entry']!r}"
        run.wrong.append(line)
        if probe.get("readme"):
            run.readme_wrong.append(line)
        if result.decision == "answer":
            run.answered_wrong.append(line)
    for text in data["off_topic"]:
        result = sample_engine.ask(text, compose=False)
        if result.decision == "answer":
            run.answered_off_topic.append(f"{text!r} -> {result.hits[0].title!r} ({result.hits[0].confidence:.2f})")
    print(f"\nprobe set: hit@1 {run.hit1:.3f} ({run.right_first}/{run.n}); default threshold "
          f"{sample_engine.default_threshold():.3f}; answered {run.answered}; answered wrongly {run.answered_wrong}; off-topic answered "
          f"{run.answered_off_topic}; wrong first {run.wrong}")
    return run


@pytest.mark.slow
def test_probe_set_does_not_regress(probe_run: ProbeRun) -> None:
    # Measured (USE, shipped calibration, threshold 0.5, no outcomes learned): hit@1 0.935 (115/123), 111
    # probes answered, 4 of them wrongly; none of the 32 off-topic requests answered (the highest at 0.48).
    # (Before the entries' own titles went into their vectors and stop words out of the character n-grams:
    # hit@1 0.902, 97 answered, 5 wrongly, 2 off-topic answered.)
    assert probe_run.hit1 >= 0.93, probe_run.wrong
    assert probe_run.answered >= 105
    assert len(probe_run.answered_wrong) <= 4, probe_run.answered_wrong
    assert not probe_run.answered_off_topic, probe_run.answered_off_topic


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 11's bar is not met yet: two README examples are wrong first "
                   "(see README, 'Answer quality')")
def test_issue_11_quality_bar(probe_run: ProbeRun) -> None:
    assert not probe_run.readme_wrong, probe_run.readme_wrong
    assert not probe_run.answered_off_topic, probe_run.answered_off_topic
    assert probe_run.hit1 >= 0.90, probe_run.wrong
