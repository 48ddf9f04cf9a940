"""Refit the shipped confidence calibrator (``rag.calibration.DEFAULT``) and print its coefficients.

Positives and negatives: the RUTUBE dev cases asked of the RUTUBE knowledge base (the first five results of
each, right or not), plus requests from another domain asked of it — the sample IT knowledge base's
questions, which a video platform's FAQ cannot answer (their first result, always wrong). Without those the
fit never sees a request from outside the knowledge base, and the dense similarity, the one absolute signal,
gets no weight: an off-topic request whose nearest entry stands out from the rest only by a little was given
0.87. Also checks the fit on halves: fitted on one half of the cases and of the foreign requests, measured on
the other.

    python scripts/fit_default_calibration.py [--foreign N] [--cache /tmp/emb.npz]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset import SAMPLE_KB
from dataset.importers import read_cases, read_kb
from rag.calibration import Calibrator
from rag.embeddings import CachedEmbedder, USEEmbedder
from rag.engine import Engine, EngineConfig
from rag.eval import calibration_rows
from rag.text import normalize_for_match

RUTUBE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rutube"

Row = tuple[tuple[float, float, float], int, bool]


def rows_of(engine: Engine, query: str, gold: str | None, depth: int) -> list[Row]:
    """(features, right, first) of the first ``depth`` results of ``query``; ``gold`` None: none is right."""
    hits, _ = engine.search(query, top_k=5)
    return [(f, y, i == 0) for i, (f, y) in enumerate(calibration_rows(hits, gold)[:depth])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--foreign", type=int, default=1000, help="at most this many foreign requests (default: all)")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (.npz)")
    args = ap.parse_args()
    embedder = CachedEmbedder(USEEmbedder(), args.cache)
    engine = Engine(EngineConfig(data_dir=Path(tempfile.mkdtemp(prefix="calib-"))), embedder)
    engine.import_entries(read_kb(RUTUBE / "knowledge_base.xlsx").entries)
    cases, _ = read_cases(RUTUBE / "cases_dev.xlsx")
    own = [rows_of(engine, c.query, normalize_for_match(c.gold_answer), 5) for c in cases]
    questions = sorted({e.question for e in read_kb(SAMPLE_KB).entries})
    foreign_q = random.Random(7).sample(questions, min(args.foreign, len(questions)))
    foreign = [rows_of(engine, q, None, 1) for q in foreign_q]
    embedder.save()

    def fit(groups: list[list[Row]], label: str) -> Calibrator:
        rows = [r for g in groups for r in g]
        return Calibrator.fit([f for f, _, _ in rows], [y for _, y, _ in rows], fitted_on=label)

    # Halves: fit on one, measure on the other (first results only, as the decision uses them).
    for half in (0, 1):
        train = [g for i, g in enumerate(own) if i % 2 == half] + [g for i, g in enumerate(foreign) if i % 2 == half]
        cal = fit(train, "half")
        test_own = [g[0] for i, g in enumerate(own) if i % 2 != half and g]
        test_foreign = [g[0] for i, g in enumerate(foreign) if i % 2 != half and g]
        answered = [y for f, y, _ in test_own if cal.confidence(*f) >= 0.5]
        print(f"half {half}: at 0.5 answered {len(answered)}/{len(test_own)} cases, right first "
              f"{sum(answered) / max(len(answered), 1):.3f}; foreign answered "
              f"{sum(cal.confidence(*f) >= 0.5 for f, _, _ in test_foreign)}/{len(test_foreign)}")
        bins: dict[int, list[tuple[float, int]]] = {}
        for f, y, _ in test_own:
            c = cal.confidence(*f)
            bins.setdefault(min(int(c * 5), 4), []).append((c, y))
        print("  " + "  ".join(f"{k / 5:.1f}-{(k + 1) / 5:.1f}: n={len(v)} pred {sum(c for c, _ in v) / len(v):.2f} "
                               f"obs {sum(y for _, y in v) / len(v):.2f}" for k, v in sorted(bins.items())))
    cal = fit(own + foreign, f"default (RUTUBE dev cases + {len(foreign)} foreign requests)")
    print(f"DEFAULT = Calibrator({tuple(round(c, 4) for c in cal.coef)}, {cal.intercept:.4f}, "
          f"fitted_on={cal.fitted_on!r})")


if __name__ == "__main__":
    main()
