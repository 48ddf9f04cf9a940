"""Calibrates when a replayed suggestion "matched" the agent's resolution (plugin.service.replay).

A measurement, not a test: it prints and records numbers and asserts nothing.

Pairs (all from the sample knowledge base, ``dataset/sample_kb.xlsx``):

* positives: the 40 agent-style resolutions of ``tests/fixtures/replay/agent_resolutions.yaml`` (the
  same fix as a ticket's knowledge-base answer, written as an agent writes it: short, own words)
  against that ticket's answer;
* negatives: the same resolutions against every other distinct answer of the ticket's first-level
  category (the hard case: same topic, another fix);
* for reference, synthetic rewordings (sentences reordered, a greeting and closing line, numbers masked,
  a ticket number: bench/bench_engine.py's templated and one-off answers) of every answer against it,
  and against the other answers of its category.

Each pair is scored with ``AnswerMatcher`` (the bundled USE encoder, as the replay uses it): the highest of
exact equality, embedding cosine and character 3–5-gram cosine, in simulated hit lists of five answers of
the category (A: the right answer suggested; B: a wrong one suggested, the right one further down; C: a
wrong one suggested, the right one absent — a knowledge gap), under the replay's rule (exact, or closest
of the hits and at least the threshold). The threshold maximizes share matched in A minus the worse of
B and C; the short one on the hand-written resolutions, the long one on the synthetic rewordings, each by
2-fold cross-validation (a threshold picked on one half is scored on the other).

    PYTHONPATH=. .venv/bin/python bench/calibrate_match.py --out bench/results/match.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_engine import Base, templated_answer, unique_answer  # noqa: E402

from dataset import SAMPLE_KB  # noqa: E402
from dataset.importers import read_tickets  # noqa: E402
from plugin.service.replay import AnswerMatcher, Similarity, _closest_first, matches  # noqa: E402
from rag.embeddings import USEEmbedder  # noqa: E402
from rag.text import normalize_for_match  # noqa: E402

RESOLUTIONS = ROOT / "tests" / "fixtures" / "replay" / "agent_resolutions.yaml"
THRESHOLDS = [round(0.30 + 0.025 * k, 3) for k in range(25)]  # 0.300 .. 0.900


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "match.json")
    args = ap.parse_args()
    tickets = read_tickets(SAMPLE_KB).tickets
    by_code = {t.code: t for t in tickets}
    answers_of: dict[str, dict[str, str]] = {}
    for t in tickets:
        cat = t.categories[0] if t.categories else ""
        answers_of.setdefault(cat, {}).setdefault(normalize_for_match(t.resolution), t.resolution)
    written = yaml.safe_load(RESOLUTIONS.read_text(encoding="utf-8"))["resolutions"]
    matcher = AnswerMatcher(USEEmbedder().embed)

    # Simulated hit lists (five distinct answers of the ticket's category, as the engine returns them):
    #   A: the right answer is suggested (first), four others follow       -> should match
    #   B: a wrong answer is suggested, the right one is among the others  -> should not
    #   C: a wrong answer is suggested, the right one is not in the list   -> should not (a knowledge gap)
    def cases(resolution: str, right: str, cat: str, rng: random.Random) -> dict[str, list[str]]:
        others = [a for key, a in answers_of[cat].items() if key != normalize_for_match(right)]
        rng.shuffle(others)
        wrong = others[:5]
        return {"A": [right, *wrong[:4]], "B": [wrong[0], right, *wrong[1:4]], "C": wrong}

    def decide(lists: list[tuple[str, list[str], str]]) -> list[tuple[str, Similarity, bool]]:
        flat = [(k, a, r) for k, (_, answers, r) in enumerate(lists) for a in answers]
        sims = matcher.score([a for _, a, _ in flat], [r for _, _, r in flat])
        grouped: dict[int, list[Similarity]] = {}
        for (k, _, _), sim in zip(flat, sims, strict=True):
            grouped.setdefault(k, []).append(sim)
        return [(lists[k][0], hs[0], _closest_first(hs)) for k, hs in sorted(grouped.items())]

    sets: dict[str, list[tuple[str, list[str], str]]] = {"hand": [], "synthetic": []}
    fold: list[int] = []
    for k, (code, resolution) in enumerate(sorted(written.items())):
        t = by_code[code]
        for case, answers in cases(resolution, t.resolution, t.categories[0], random.Random(f"hand:{code}")).items():
            if len(answers) > 1:
                sets["hand"].append((case, answers, resolution))
                fold.append(k % 2)
    for i, t in enumerate(tickets):
        base = Base(t.code, t.description, t.resolution, t.title, t.categories, "sample")
        rng = random.Random(f"match:{i}")
        reworded = templated_answer(base, 0, 1) if i % 2 else unique_answer(base, rng)
        for case, answers in cases(reworded, t.resolution, t.categories[0], rng).items():
            if len(answers) > 1:
                sets["synthetic"].append((case, answers, reworded))
    decided = {name: decide(lists) for name, lists in sets.items()}

    def rates_at(rows: list[tuple[str, Similarity, bool]], t: float) -> dict[str, float]:
        out = {}
        for case in "ABC":
            picked = [matches(sim, closest, t) for c, sim, closest in rows if c == case]
            out[case] = round(sum(picked) / len(picked), 3) if picked else 0.0
        return out

    def j(rows: list[tuple[str, Similarity, bool]], t: float) -> float:
        r = rates_at(rows, t)
        return r["A"] - max(r["B"], r["C"])

    results: dict[str, Any] = {
        "lists": {name: Counter(c for c, _, _ in rows) for name, rows in decided.items()},
        "rule": "matched = exact, or (the suggestion is the hit closest to the resolution and its similarity >= t)",
        "folds": [],
    }
    hand, synth = decided["hand"], decided["synthetic"]
    synth_fold = [k // 3 % 2 for k in range(len(synth))]  # three lists per ticket, tickets alternate
    for name, rows, folds in (("short (hand-written)", hand, fold), ("long (synthetic)", synth, synth_fold)):
        for tune in (0, 1):
            rows_t = [r for r, f in zip(rows, folds, strict=True) if f == tune]
            rows_h = [r for r, f in zip(rows, folds, strict=True) if f != tune]
            t = max(THRESHOLDS, key=lambda x: (j(rows_t, x), -x))
            results["folds"].append({"set": name, "threshold": t, "held_out": rates_at(rows_h, t)})
    short_t = max(THRESHOLDS, key=lambda x: (j(hand, x), -x))
    long_t = max(THRESHOLDS, key=lambda x: (j(synth, x), -x))
    results["chosen_on_all"] = {"short": {"threshold": short_t, "rates": rates_at(hand, short_t)},
                                "long": {"threshold": long_t, "rates": rates_at(synth, long_t)},
                                "short_threshold_on_long": rates_at(synth, short_t)}
    results["lengths"] = {
        "hand_resolutions_max_chars": max(len(r) for _, _, r in sets["hand"]),
        "synthetic_resolutions_min_chars": min(len(r) for _, _, r in sets["synthetic"]),
    }
    results["curve"] = [
        {"threshold": t, "hand": rates_at(hand, t), "synthetic": rates_at(decided["synthetic"], t)} for t in THRESHOLDS
    ]
    print(json.dumps({k: v for k, v in results.items() if k != "curve"}, ensure_ascii=False, indent=1))
    for row in results["curve"]:
        h, s = row["hand"], row["synthetic"]
        print(f"  t {row['threshold']:.3f}: hand A {h['A']:.3f} B {h['B']:.3f} C {h['C']:.3f}"
              f"   synthetic A {s['A']:.3f} B {s['B']:.3f} C {s['C']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
