"""Knowledge-base operations that the CLI and the admin console share: import, reindex, stats, learn,
calibrate, and the first-run import of the configured sources (or the bundled sample)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset import SAMPLE_KB
from dataset.importers import ImportResult, read_cases, read_kb
from plugin.settings import Settings
from rag.calibration import Calibrator
from rag.engine import Engine
from rag.eval import fit_calibration
from rag.kbstore import UpsertReport

log = logging.getLogger(__name__)


def ensure_knowledge_base(engine: Engine, settings: Settings, *, progress: bool = False) -> int:
    """Import the configured sources (or the bundled sample) when the knowledge base is empty; bring
    the derived indexes up to date otherwise. How many entries were imported."""
    if engine.store.count() > 0:
        engine.sync(progress=progress)
        return 0
    imported = 0
    for path in settings.kb.sources or [SAMPLE_KB]:
        result = read_kb(path, progress=progress)
        for problem in result.rejected:
            log.warning("kb_row_rejected: %s", problem)
        report = engine.import_entries(result.entries, progress=progress)
        imported += report.imported
        log.info("kb_imported: %s: %d entries (%d rejected rows)", result.source, report.imported, len(result.rejected))
    return imported


@dataclass(frozen=True)
class ImportSummary:
    result: ImportResult
    report: UpsertReport
    pruned: bool


def import_file(
    engine: Engine,
    file: Path,
    *,
    preset: str | None = None,
    mapping: dict[str, str] | None = None,
    source: str | None = None,
    prune: bool = False,
    progress: bool = False,
) -> ImportSummary:
    """Read ``file`` (bad rows are reported in ``result.rejected``, the rest imported) into the index."""
    result = read_kb(file, preset=preset, mapping=mapping, source=source, progress=progress)
    report = engine.import_entries(result.entries, prune_source=result.source if prune else None, progress=progress)
    return ImportSummary(result=result, report=report, pruned=prune)


def reindex(engine: Engine, *, progress: bool = False) -> int:
    """Rebuild every derived index with the configured embedding model; how many entries."""
    return engine.reindex(progress=progress)


def stats(engine: Engine) -> dict[str, Any]:
    return engine.stats()


@dataclass
class LearnSummary:
    learned: int = 0
    known: int = 0
    #: Rows whose answer is not in the knowledge base, by row number.
    unknown_rows: list[int] = field(default_factory=list)
    #: Rows of the file that could not be read, with the reason.
    rejected: list[str] = field(default_factory=list)
    #: What the category model and the reranker were retrained on (empty when nothing new was learned).
    trained: dict[str, Any] = field(default_factory=dict)


def learn_file(engine: Engine, file: Path, *, rejected: bool = False) -> LearnSummary:
    """Record the file's request -> answer pairs as confirmed (or rejected) outcomes."""
    cases, problems = read_cases(file, progress=False)
    summary = LearnSummary(rejected=[str(p) for p in problems])
    for case in cases:
        entry_id = engine.entry_for_answer(case.gold_answer)
        if entry_id is None:
            summary.unknown_rows.append(case.row)
            continue
        if engine.learn(case.query, entry_id, positive=not rejected, origin=f"{file.name}:{case.row}"):
            summary.learned += 1
        else:
            summary.known += 1
    if summary.learned:
        summary.trained = engine.refit()
    return summary


def calibrate_file(engine: Engine, file: Path, *, progress: bool = False) -> tuple[Calibrator, list[str]]:
    """Refit the confidence calibration on the file's labelled requests; the calibrator and the rows
    that could not be read. Raises ValueError when no row is usable."""
    cases: list[Any] = []
    read, problems = read_cases(file, progress=False)
    cases.extend(read)  # frozen dataclasses: read-only attributes satisfy rag.eval.Case at run time
    if not cases:
        raise ValueError(f"{file}: no usable cases")
    calibrator = fit_calibration(engine, cases, fitted_on=file.name, progress=progress)
    engine.refit()
    return calibrator, [str(p) for p in problems]
