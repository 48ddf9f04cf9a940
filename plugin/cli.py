"""``helpdesk-assist``: the command line for people (admins, support engineers) and for CI."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from helpdesk_errors import HelpdeskError
from plugin import logredact
from plugin.service import admin, knowledge
from plugin.service.apikeys import ensure_local_key, local_key_path
from plugin.settings import Settings, load_settings
from plugin.store import Store
from plugin.wiring import Services, build_services, ensure_knowledge_base

log = logging.getLogger("helpdesk_assist")


class _Ctx:
    def __init__(self, config: Path | None, verbose: bool):
        self.config = config
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
            _setup_logging("DEBUG" if self.verbose else self._settings.log_level)
        return self._settings

    def services(self, progress: bool = True) -> Services:
        services = build_services(self.settings)
        ensure_knowledge_base(services, progress=progress)
        return services


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Third-party chatter that says nothing to an admin.
    for noisy in ("chromadb", "httpx", "sentence_transformers", "urllib3", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logredact.install(logging.getLogger())  # no token from a URL in any line (issue 8 item 5)


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str))


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HelpdeskError as e:
            _fail(e)


@click.group(cls=_Group)
@click.option("--config", "-c", type=click.Path(path_type=Path), help="YAML config (or HELPDESK_ASSIST_CONFIG).")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """helpdesk-assist: grounded answers for IT helpdesks, on your own machines."""
    ctx.obj = _Ctx(config, verbose)


# -- ask / status ---------------------------------------------------------------------------------
@main.command()
@click.argument("text")
@click.option("--category", help="Restrict the search to this first-level category.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--no-compose", is_flag=True, help="Retrieve and decide only.")
@click.pass_obj
def ask(obj: _Ctx, text: str, category: str | None, as_json: bool, no_compose: bool) -> None:
    """Answer one request as the service would: category, top answers, decision, composed answer."""
    services = obj.services()
    result = services.engine.ask(text, category=category, compose=not no_compose)
    if as_json:
        _echo_json(result.model_dump())
        return
    cat = result.category
    click.echo(f"Category:  {' / '.join(cat.levels) or '-'}  (confidence {cat.confidence:.2f})")
    click.echo("Answers:")
    for i, hit in enumerate(result.hits, start=1):
        click.echo(f"  [{i}] confidence {hit.confidence:.2f}  score {hit.score:+.2f}  {hit.question[:90]}")
    verdict = "ANSWER" if result.decision == "answer" else f"ABSTAIN ({result.reason})"
    click.echo(f"Decision:  {verdict}  (threshold {result.threshold:.2f})")
    if result.composed is not None:
        c = result.composed
        how = "LLM" if c.mode == "llm" else f"extractive: {c.fallback_reason or 'no LLM'}"
        click.echo(f"Answer ({how}):\n{c.text}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: _Ctx, as_json: bool) -> None:
    """Models in use (and fallbacks), index size: what /healthz reports."""
    health = obj.services(progress=False).health()
    if as_json:
        _echo_json(health)
        return
    emb, llm = health["models"]["embedding"], health["models"]["llm"]
    click.echo(f"status:     {health['status']}")
    fallback = f"\n  FALLBACK IN USE: {emb['fallback_reason']}" if emb["fallback"] else ""
    click.echo(f"embeddings: {emb['in_use']}{fallback}")
    click.echo(f"llm:        {llm['in_use'] or 'none'} ({llm['mode']})"
               + (f"\n  NOT LOADED: {llm['fallback_reason']}" if llm["fallback_reason"] else ""))
    idx = health["index"]
    click.echo(f"index:      {idx['entries']} entries, {idx['distinct_answers']} distinct answers, "
               f"learned {idx['learned']}, calibration: {idx['calibration']}")
    for name, conn in health.get("connections", {}).items():
        if conn["state"] == "ok":
            click.echo(f"{name + ':':12s}reachable")
        else:
            click.echo(f"{name + ':':12s}UNREACHABLE since {conn['since']} ({conn['for_s'] // 60} min, "
                       f"{conn['failures']} failures); last error: {conn['last_error']}")
    queue = health.get("queue") or {}
    if queue:
        click.echo("queue:      " + ", ".join(f"{k} {v}" for k, v in queue.items()))


# -- serve ----------------------------------------------------------------------------------------
@main.command()
@click.option("--host", help="Listen address (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option("--threads", type=int, default=4, show_default=True)
@click.pass_obj
def serve(obj: _Ctx, host: str | None, port: int | None, threads: int) -> None:
    """Run the service (gunicorn, one process with threads). Imports the sample KB on first run."""
    import multiprocessing

    from gunicorn.app.base import BaseApplication

    settings = obj.settings
    # The first-run import runs in a spawned process: Chroma's client and the encoders' thread pools
    # do not survive a fork, so the gunicorn master must never open them. The app itself is built in
    # the worker, after the fork (never run gunicorn with --preload for the same reason).
    prepare = multiprocessing.get_context("spawn").Process(target=_prepare_knowledge_base, args=(settings,))
    prepare.start()
    prepare.join()
    if prepare.exitcode != 0:
        _fail(RuntimeError("preparing the knowledge base failed; see the messages above"))
    bind = f"{host or settings.server.host}:{port or settings.server.port}"

    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", 1)
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", "-")
            # The access log prints request lines and Referers: ?token=, /r/<token> are redacted.
            self.cfg.set("logger_class", "plugin.logredact.RedactingGunicornLogger")

        def load(self) -> Any:
            from plugin.web.app import create_app

            services = build_services(settings)
            ensure_knowledge_base(services)
            app = create_app(settings, services=services)
            if settings.worker.embedded:
                services.worker.start_thread()
                if services.mail is not None and settings.email.idle:
                    import threading

                    services.mail.watch(threading.Event(), services.waker.wake)
            return app

    click.echo(f"helpdesk-assist listening on http://{bind}  (POST /api/ask, GET /healthz, /webhooks/<source>)",
               err=True)
    if not settings.api.keys:
        key_file = local_key_path(settings)
        ensure_local_key(key_file)
        # The path, never the key: terminals and service logs are kept.
        click.echo(f"/api/* needs the key in {key_file}: curl -H \"Authorization: Bearer $(cat {key_file})\" ...",
                   err=True)
    _Server().run()


@main.command()
@click.option("--once", is_flag=True, help="Process what is in the inbox now, then exit.")
@click.pass_obj
def worker(obj: _Ctx, once: bool) -> None:
    """Run a worker: take events from the inbox, run the pipeline, poll the helpdesks."""
    import signal
    import threading

    services = obj.services(progress=False)
    w = services.worker
    if once:
        n = 0
        while w.run_once():
            n += 1
        click.echo(f"processed {n} items; queue: {admin.queue_counts(services.store)}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if services.mail is not None and services.settings.email.idle:
        services.mail.watch(stop, services.waker.wake)
    click.echo(f"worker running; connectors: {', '.join(sorted(services.connectors)) or 'none'}"
               + (", mailbox" if services.mail is not None else ""), err=True)
    w.run(stop)


@main.command()
@click.pass_obj
def check(obj: _Ctx) -> None:
    """Test every enabled connector and the mailbox: reachability, credentials, rights, folders, webhook
    secrets. Exit 1 on a problem."""
    lines = admin.check(obj.settings)
    for line in lines:
        click.echo(f"[{'ok' if line.ok else 'FAIL'}] {line.label}: {line.detail}")
    failed = sum(1 for line in lines if not line.ok)
    click.echo(f"{len(lines) - failed} ok, {failed} to fix")
    if failed:
        sys.exit(1)


@main.group()
def queue() -> None:
    """The inbox: what is waiting, what failed, retry a dead item."""


@queue.command("list")
@click.option("--status", type=click.Choice(["pending", "leased", "done", "dead", "discarded"]))
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_obj
def queue_list(obj: _Ctx, status: str | None, limit: int) -> None:
    """Recent items (newest first) with their attempts and last error."""
    store = _store(obj)
    click.echo(f"counts: {admin.queue_counts(store)}")
    for item in admin.queue_items(store, status=status, limit=limit):
        err = f"  error: {item.last_error}" if item.last_error else ""
        why = f"  discarded: {item.discard_reason}" if item.discard_reason else ""
        click.echo(f"#{item.id} {item.status:7s} {item.source}/{item.kind} attempts={item.attempts}{err}{why}")


@queue.command("retry")
@click.argument("item_id", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead item (of --kind, when given).")
@click.option("--kind", help="With --all-dead: only items of this kind (e.g. ticket_event, mail_in).")
@click.pass_obj
def queue_retry(obj: _Ctx, item_id: int | None, all_dead: bool, kind: str | None) -> None:
    """Put a dead item (or every dead item) back in the queue, after fixing its cause."""
    store = _store(obj)
    if all_dead:
        click.echo(f"{admin.retry_dead(store, kind=kind)} items queued again")
        return
    if item_id is None:
        raise click.UsageError("give an ITEM_ID, or --all-dead")
    if not admin.retry_item(store, item_id):
        _fail(RuntimeError(f"item {item_id} is not dead (or does not exist)"))
    click.echo(f"item {item_id} queued again")


@queue.command("discard")
@click.argument("item_id", type=int)
@click.option("--reason", required=True, help="Why (kept with the item: nothing leaves the queue without a trace).")
@click.pass_obj
def queue_discard(obj: _Ctx, item_id: int, reason: str) -> None:
    """Set a pending or dead item aside for good, keeping it with the reason."""
    if not admin.discard_item(_store(obj), item_id, reason=reason):
        _fail(RuntimeError(f"item {item_id} is not pending or dead (or does not exist)"))
    click.echo(f"item {item_id} discarded")


def _store(obj: _Ctx) -> Store:
    return Store.open(obj.settings.data_dir / "state.sqlite3")


def _prepare_knowledge_base(settings: Settings) -> None:
    _setup_logging(settings.log_level)
    ensure_knowledge_base(build_services(settings), progress=True)


# -- kb -------------------------------------------------------------------------------------------
@main.group()
def kb() -> None:
    """Knowledge base: import, reindex, learn, calibrate, stats."""


def _parse_map(pairs: tuple[str, ...]) -> dict[str, str] | None:
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise click.BadParameter(f"expected FIELD=COLUMN, got {pair!r}", param_hint="--map")
        mapping[field.strip()] = column.strip()
    return mapping or None


@kb.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", help="ticket_export, faq or generic (default: detected from the header row).")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="Column mapping, e.g. --map question=Вопрос --map answer=Ответ (fields: question, answer, "
                   "title, id, category1..category3).")
@click.option("--source", help="Source name kept with each entry (default: the file name).")
@click.option("--prune", is_flag=True, help="Remove entries of this source that the file no longer has.")
@click.pass_obj
def kb_import(obj: _Ctx, file: Path, preset: str | None, maps: tuple[str, ...], source: str | None,
              prune: bool) -> None:
    """Import an .xlsx or .csv file: new rows are added, changed rows updated, bad rows reported."""
    engine = build_services(obj.settings).engine
    summary = knowledge.import_file(engine, file, preset=preset, mapping=_parse_map(maps), source=source,
                                    prune=prune, progress=True)
    result, report = summary.result, summary.report
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in result.rejected:
        click.echo(f"rejected: {problem}", err=True)
    click.echo(
        f"{result.source} ({result.preset}): {result.rows_read} rows read; imported {report.imported}, "
        f"updated {report.updated}, unchanged {report.unchanged}, rejected {len(result.rejected)}"
        + (f", removed {report.removed}" if prune else "")
    )


@kb.command()
@click.pass_obj
def reindex(obj: _Ctx) -> None:
    """Rebuild every index from the stored entries with the configured embedding model."""
    services = build_services(obj.settings)
    n = knowledge.reindex(services.engine, progress=True)
    click.echo(f"reindexed {n} entries with {services.engine.embedder.name}")


@kb.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stats(obj: _Ctx, as_json: bool) -> None:
    """Entries, distinct answers, categories, learned pairs, models."""
    data = knowledge.stats(obj.services(progress=False).engine)
    if as_json:
        _echo_json(data)
        return
    click.echo(f"entries: {data['entries']}  distinct answers: {data['distinct_answers']}")
    click.echo(f"learned: {data['learned']['confirmed']} confirmed, {data['learned']['rejected']} rejected")
    click.echo(f"embedding model: {data['embedding_model']}" + ("  (FALLBACK)" if data["embedding_fallback"] else ""))
    click.echo(f"calibration: {data['calibration']}")
    cm, rr, dt = data.get("category_model"), data.get("reranker"), data.get("default_threshold")
    click.echo("category model: " + (f"{cm['entries']} entries + {cm['confirmed_requests']} confirmed requests, "
                                     f"{cm['categories']} categories, trained {cm['trained_at']}" if cm else "none"))
    click.echo("reranker: " + (f"{rr['confirmed_requests']} confirmed requests ({rr['candidates']} candidates), "
                               f"trained {rr['trained_at']}" if rr else "none yet (fewer than 40 confirmed "
                               "requests): fused order and the calibrator"))
    click.echo("default threshold: " + (f"{dt['threshold']} (precision@1 about {dt['target_precision']} on "
                                        f"{dt['fitted_on']})" if dt else "0.5 (nothing calibrated on this KB yet)"))
    click.echo("sources: " + ", ".join(f"{k} ({v})" for k, v in data["sources"].items()))
    click.echo("categories:")
    for name, n in data["categories_level1"].items():
        click.echo(f"  {n:6d}  {name}")


def _read_cases(path: Path) -> list[Any]:
    from dataset.importers import read_cases

    cases, problems = read_cases(path, progress=False)
    for problem in problems:
        click.echo(f"rejected: {problem}", err=True)
    if not cases:
        raise click.UsageError(f"{path}: no usable cases")
    return cases


@kb.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rejected", is_flag=True, help="The pairs in the file were rejected (negative evidence).")
@click.pass_obj
def learn(obj: _Ctx, file: Path, rejected: bool) -> None:
    """Record request -> answer pairs (a file with request and answer columns) as confirmed or rejected."""
    summary = knowledge.learn_file(obj.services().engine, file, rejected=rejected)
    for problem in summary.rejected:
        click.echo(f"rejected: {problem}", err=True)
    if not (summary.learned or summary.known or summary.unknown_rows):
        raise click.UsageError(f"{file}: no usable cases")
    for row in summary.unknown_rows:
        click.echo(f"skipped row {row}: its answer is not in the knowledge base", err=True)
    kind = "rejected" if rejected else "confirmed"
    click.echo(f"learned {summary.learned} {kind} pairs ({summary.known} already known, "
               f"{len(summary.unknown_rows)} skipped)")


@kb.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def calibrate(obj: _Ctx, file: Path) -> None:
    """Refit the confidence calibration on labelled requests (request and gold-answer columns)."""
    try:
        calibrator, problems = knowledge.calibrate_file(obj.services().engine, file, progress=True)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    for problem in problems:
        click.echo(f"rejected: {problem}", err=True)
    click.echo(f"calibration fitted on {file.name}: {calibrator.to_json()}")


# -- eval -----------------------------------------------------------------------------------------
@main.command("eval")
@click.option("--kb", "kb_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cases", "cases_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--learn-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Confirmed pairs to learn first (category model, reranker, calibration).")
@click.option("--folds", type=click.IntRange(min=2), default=None,
              help="K-fold cross-validation: learn from K-1 folds of the cases, measure the K-th, for each fold.")
@click.option("--threshold", type=float, help="Decision threshold (default: decision.threshold; when that is "
              "unset, the engine's calibrated default, and with --folds the one reaching the first --target on "
              "the other folds).")
@click.option("--target", "targets", type=click.FloatRange(0.0, 1.0), multiple=True,
              help="Target precision@1 for the answered-coverage report (default 0.85 and 0.90).")
@click.option("--embedding-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the vectors of every text embedded in this .npz file and reuse them in later runs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_obj
def eval_cmd(obj: _Ctx, kb_file: Path, cases_file: Path, learn_from: Path | None, folds: int | None,
             threshold: float | None, targets: tuple[float, ...], embedding_cache: Path | None,
             as_json: bool) -> None:
    """Measure retrieval on labelled cases with a temporary index (the configured one is untouched)."""
    from dataset.importers import read_kb
    from plugin.service.quality import run_eval

    if folds is not None and learn_from is not None:
        raise click.UsageError("--folds learns from the cases themselves; leave out --learn-from")
    settings = obj.settings
    if threshold is None:
        # Unset in the settings too: the engine's calibrated default (per fold with --folds).
        threshold = settings.decision.threshold
    kb_result = read_kb(kb_file, progress=True)
    for problem in kb_result.rejected:
        click.echo(f"rejected: {problem}", err=True)
    cases = _read_cases(cases_file)
    learning = None
    if learn_from is not None:
        if learn_from.resolve() == cases_file.resolve():
            click.echo("warning: learning from the cases being evaluated measures memory, not quality; "
                       "use a separate file of confirmed pairs or --folds", err=True)
        learning = _read_cases(learn_from)
    try:
        metrics, embedder_name = run_eval(
            settings, kb_result.entries, cases, learning=learning, learning_name=learn_from.name if learn_from else "",
            folds=folds, threshold=threshold, targets=targets or (0.85, 0.90), embedding_cache=embedding_cache,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if as_json:
        _echo_json(metrics)
        return
    a = metrics["answered"]
    how = f"{folds}-fold cross-validation" if folds else ("learned from " + learn_from.name if learn_from else "as is")
    click.echo(f"cases: {metrics['n']}   embedder: {embedder_name}   ({how})")
    click.echo(f"hit@1 {metrics['hit@1']:.3f}   hit@3 {metrics['hit@3']:.3f}   MRR@10 {metrics['mrr@10']:.3f}   "
               f"category accuracy {metrics['category_accuracy'] if metrics['category_accuracy'] is not None else '-'}")
    t = a["threshold"]
    click.echo(f"at threshold {t if isinstance(t, str) else f'{t:.2f}'}: answers {a['coverage']:.1%} of requests, "
               f"right first {a['precision@1'] or 0:.1%}, in top 3 {a['precision@3'] or 0:.1%}")
    for row in metrics["at_precision"]:
        click.echo(f"at precision@1 >= {row['target']:.2f}: could answer {row['coverage']:.1%} "
                   f"(threshold {row['threshold'] if row['threshold'] is not None else '-'})")
    click.echo("reliability (confidence of the first answer -> how often it was right):")
    for b in metrics["reliability"]["bins"]:
        click.echo(f"  {b['bin']}  n={b['n']:4d}  predicted {b['predicted']:.2f}  observed {b['observed']:.2f}")
    click.echo(f"  expected calibration error {metrics['reliability']['ece']}")


if __name__ == "__main__":  # pragma: no cover
    main()
