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
from plugin.i18n import N_, Translate, words
from plugin.service import admin, console, knowledge
from plugin.service.apikeys import ensure_local_key, local_key_path
from plugin.settings import Settings, load_settings
from plugin.store import Store
from plugin.wiring import Services, build_services, ensure_knowledge_base
from rag.eval import FOLD_SEED
from rag.models import reason_words

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

    @property
    def words(self) -> Translate:
        """The admin's words (``admin_language``)."""
        return words(self.settings.admin_language)

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


def _fail(e: Exception, _: Translate | None = None) -> None:
    click.echo((_ or N_)("error: {error}").format(error=e), err=True)
    sys.exit(2)


#: The service's overall state, as /healthz says it.
_HEALTH = {"ok": N_("ok"), "degraded": N_("degraded")}
#: The queue's statuses (the names stay in --status and the JSON).
_QUEUE = {"pending": N_("pending"), "leased": N_("being worked"), "done": N_("done"), "dead": N_("dead"),
          "discarded": N_("discarded")}


def _queue_counts(counts: dict[str, int], _: Translate) -> str:
    return ", ".join(f"{_(_QUEUE[k]) if k in _QUEUE else k} {v}" for k, v in counts.items()) or _("empty")


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
    _ = obj.words
    cat = result.category
    click.echo(_("Category: {category} (confidence {confidence})").format(
        category=" / ".join(cat.levels) or "-", confidence=f"{cat.confidence:.2f}"))
    click.echo(_("Answers:"))
    for i, hit in enumerate(result.hits, start=1):
        click.echo(f"  [{i}] " + _("confidence {confidence}  score {score}").format(
            confidence=f"{hit.confidence:.2f}", score=f"{hit.score:+.2f}") + f"  {hit.question[:90]}")
    verdict = _("ANSWER") if result.decision == "answer" else _("ABSTAIN ({reason})").format(
        reason=reason_words(result.reason_code, result.reason_params, _) or result.reason)
    click.echo(_("Decision: {verdict} (threshold {threshold})").format(
        verdict=verdict, threshold=f"{result.threshold:.2f}"))
    if result.composed is not None:
        c = result.composed
        how = "LLM" if c.mode == "llm" else _("extractive: {why}").format(why=c.fallback_reason or _("no LLM"))
        click.echo(_("Answer ({how}):").format(how=how) + f"\n{c.text}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: _Ctx, as_json: bool) -> None:
    """Models in use (and fallbacks), index size: what /healthz reports."""
    health = obj.services(progress=False).health()
    if as_json:
        _echo_json(health)
        return
    _ = obj.words
    emb, llm = health["models"]["embedding"], health["models"]["llm"]

    def row(label: str, text: str) -> None:
        click.echo(f"{label + ':':12s}{text}")

    row(_("status"), _(_HEALTH[health["status"]]) if health["status"] in _HEALTH else health["status"])
    fallback = ("\n  " + _("FALLBACK IN USE: {why}").format(why=emb["fallback_reason"])) if emb["fallback"] else ""
    row(_("embeddings"), f"{emb['in_use']}{fallback}")
    mode = _("extractive only") if llm["mode"] == "extractive only" else llm["mode"]
    row(_("llm"), f"{llm['in_use'] or _('none')} ({mode})"
        + ("\n  " + _("NOT LOADED: {why}").format(why=llm["fallback_reason"]) if llm["fallback_reason"] else ""))
    idx = health["index"]
    row(_("index"), _("{entries} entries, {answers} distinct answers, learned {learned}, calibration: {calibration}")
        .format(entries=idx["entries"], answers=idx["distinct_answers"], learned=idx["learned"],
                calibration=idx["calibration"]))
    for name, conn in health.get("connections", {}).items():
        if conn["state"] == "ok":
            row(name, _("can be reached"))
        else:
            row(name, _("UNREACHABLE since {since} ({minutes} min, {failures} failures); last error: {error}").format(
                since=conn["since"], minutes=conn["for_s"] // 60, failures=conn["failures"], error=conn["last_error"]))
    queue = health.get("queue") or {}
    if queue:
        row(_("queue"), _queue_counts(queue, _))


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
    _ = obj.words
    if prepare.exitcode != 0:
        _fail(RuntimeError(_("preparing the knowledge base failed; see the messages above")), _)
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

    click.echo(_("helpdesk-assist listening on {url}  (POST /api/ask, GET /healthz, /webhooks/<source>)").format(
        url=f"http://{bind}"), err=True)
    if not settings.api.keys:
        key_file = local_key_path(settings)
        ensure_local_key(key_file)
        # The path, never the key: terminals and service logs are kept.
        click.echo(_("/api/* needs the key in {path}: {example}").format(
            path=key_file, example=f"curl -H \"Authorization: Bearer $(cat {key_file})\" ..."), err=True)
    _Server().run()


@main.command()
@click.option("--once", is_flag=True, help="Process what is in the inbox now, then exit.")
@click.pass_obj
def worker(obj: _Ctx, once: bool) -> None:
    """Run a worker: take events from the inbox, run the pipeline, poll the helpdesks."""
    import signal
    import threading

    _ = obj.words
    services = obj.services(progress=False)
    w = services.worker
    if once:
        n = 0
        while w.run_once():
            n += 1
        click.echo(_("processed {n} items; queue: {queue}").format(
            n=n, queue=_queue_counts(admin.queue_counts(services.store), _)))
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if services.mail is not None and services.settings.email.idle:
        services.mail.watch(stop, services.waker.wake)
    running = [*sorted(services.connectors), *([_("mailbox")] if services.mail is not None else [])]
    click.echo(_("worker running; connectors: {names}").format(names=", ".join(running) or _("none")), err=True)
    w.run(stop)


@main.command()
@click.pass_obj
def check(obj: _Ctx) -> None:
    """Test every enabled connector and the mailbox: reachability, credentials, rights, folders, webhook
    secrets. Exit 1 on a problem."""
    _ = obj.words
    lines = admin.check(obj.settings)
    for line in lines:
        # [ok] / [FAIL] stay as they are in every language: scripts look for them.
        click.echo(f"[{'ok' if line.ok else 'FAIL'}] {line.label}: {line.detail}")
    failed = sum(1 for line in lines if not line.ok)
    click.echo(_("{ok} ok, {failed} to fix").format(ok=len(lines) - failed, failed=failed))
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
    _ = obj.words
    store = _store(obj)
    click.echo(_("counts: {counts}").format(counts=_queue_counts(admin.queue_counts(store), _)))
    for item in admin.queue_items(store, status=status, limit=limit):
        err = "  " + _("error: {error}").format(error=item.last_error) if item.last_error else ""
        why = "  " + _("discarded: {reason}").format(reason=item.discard_reason) if item.discard_reason else ""
        click.echo(f"#{item.id} {item.status:7s} {item.source}/{item.kind} "
                   + _("attempts={n}").format(n=item.attempts) + f"{err}{why}")


@queue.command("retry")
@click.argument("item_id", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead item (of --kind, when given).")
@click.option("--kind", help="With --all-dead: only items of this kind (e.g. ticket_event, mail_in).")
@click.pass_obj
def queue_retry(obj: _Ctx, item_id: int | None, all_dead: bool, kind: str | None) -> None:
    """Put a dead item (or every dead item) back in the queue, after fixing its cause."""
    _ = obj.words
    store = _store(obj)
    if all_dead:
        click.echo(_("{n} items queued again").format(n=admin.retry_dead(store, kind=kind)))
        return
    if item_id is None:
        raise click.UsageError(_("give an ITEM_ID, or --all-dead"))
    if not admin.retry_item(store, item_id):
        _fail(RuntimeError(_("item {id} is not dead (or does not exist)").format(id=item_id)), _)
    click.echo(_("item {id} queued again").format(id=item_id))


@queue.command("discard")
@click.argument("item_id", type=int)
@click.option("--reason", required=True, help="Why (kept with the item: nothing leaves the queue without a trace).")
@click.pass_obj
def queue_discard(obj: _Ctx, item_id: int, reason: str) -> None:
    """Set a pending or dead item aside for good, keeping it with the reason."""
    _ = obj.words
    try:
        discarded = admin.discard_item(_store(obj), item_id, reason=reason)
    except ValueError as e:
        raise click.BadParameter(_("a reason is required to discard an item"), param_hint="--reason") from e
    if not discarded:
        _fail(RuntimeError(_("item {id} is not pending or dead (or does not exist)").format(id=item_id)), _)
    click.echo(_("item {id} discarded").format(id=item_id))


@main.group("admin")
def admin_group() -> None:
    """The admin console's accounts."""


@admin_group.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "analyst"]), default="analyst", show_default=True,
              help="admin: sees and changes; analyst: sees only.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.pass_obj
def admin_create_user(obj: _Ctx, name: str, role: str, password_stdin: bool) -> None:
    """Create a local account for the console (or set a new password and role). The password is asked
    for (twice), or read from standard input with --password-stdin; never an argument."""
    _ = obj.words
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(_("Password"), hide_input=True, confirmation_prompt=_("Repeat the password"))
    try:
        created = console.create_user(_store(obj), name, password, role=role, by="cli")
    except ValueError as e:
        _fail(e, _)
    done = _("created {login} ({role})") if created else _("updated {login} ({role})")
    click.echo(done.format(login=console.normalize_login(name), role=role))


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
    _ = obj.words
    engine = build_services(obj.settings).engine
    summary = knowledge.import_file(engine, file, preset=preset, mapping=_parse_map(maps), source=source,
                                    prune=prune, progress=True)
    result, report = summary.result, summary.report
    for warning in result.warnings:
        click.echo(_("warning: {text}").format(text=warning), err=True)
    for problem in result.rejected:
        click.echo(_("rejected: {text}").format(text=problem), err=True)
    click.echo(
        f"{result.source} ({result.preset}): "
        + _("{rows} rows read; imported {imported}, updated {updated}, unchanged {unchanged}, rejected {rejected}")
        .format(rows=result.rows_read, imported=report.imported, updated=report.updated,
                unchanged=report.unchanged, rejected=len(result.rejected))
        + (", " + _("removed {n}").format(n=report.removed) if prune else "")
    )


@kb.command()
@click.pass_obj
def reindex(obj: _Ctx) -> None:
    """Rebuild every index from the stored entries with the configured embedding model."""
    services = build_services(obj.settings)
    n = knowledge.reindex(services.engine, progress=True)
    click.echo(obj.words("reindexed {n} entries with {model}").format(n=n, model=services.engine.embedder.name))


@kb.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stats(obj: _Ctx, as_json: bool) -> None:
    """Entries, distinct answers, categories, learned pairs, models."""
    data = knowledge.stats(obj.services(progress=False).engine)
    if as_json:
        _echo_json(data)
        return
    _ = obj.words
    click.echo(_("entries: {entries}  distinct answers: {answers}").format(
        entries=data["entries"], answers=data["distinct_answers"]))
    click.echo(_("learned: {confirmed} confirmed, {rejected} rejected").format(**data["learned"]))
    click.echo(_("embedding model: {model}").format(model=data["embedding_model"])
               + ("  " + _("(FALLBACK)") if data["embedding_fallback"] else ""))
    click.echo(_("calibration: {calibration}").format(calibration=data["calibration"]))
    cm, rr, dt = data.get("category_model"), data.get("reranker"), data.get("default_threshold")
    click.echo(_("category model: {text}").format(text=_(
        "{entries} entries + {confirmed} confirmed requests, {categories} categories, trained {at}").format(
        entries=cm["entries"], confirmed=cm["confirmed_requests"], categories=cm["categories"], at=cm["trained_at"])
        if cm else _("none")))
    click.echo(_("reranker: {text}").format(text=_(
        "{confirmed} confirmed requests ({candidates} candidates), trained {at}").format(
        confirmed=rr["confirmed_requests"], candidates=rr["candidates"], at=rr["trained_at"]) if rr else _(
        "none yet (fewer than 40 confirmed requests): fused order and the calibrator")))
    click.echo(_("default threshold: {text}").format(text=_(
        "{threshold} (precision@1 about {target} on {fitted_on})").format(
        threshold=dt["threshold"], target=dt["target_precision"], fitted_on=dt["fitted_on"]) if dt else _(
        "0.5 (nothing calibrated on this KB yet)")))
    click.echo(_("sources: {sources}").format(sources=", ".join(f"{k} ({v})" for k, v in data["sources"].items())))
    click.echo(_("categories:"))
    for name, n in data["categories_level1"].items():
        click.echo(f"  {n:6d}  {name}")


def _read_cases(path: Path, _: Translate) -> list[Any]:
    from dataset.importers import read_cases

    cases, problems = read_cases(path, progress=False)
    for problem in problems:
        click.echo(_("rejected: {text}").format(text=problem), err=True)
    if not cases:
        raise click.UsageError(_("{path}: no usable cases").format(path=path))
    return cases


@kb.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rejected", is_flag=True, help="The pairs in the file were rejected (negative evidence).")
@click.pass_obj
def learn(obj: _Ctx, file: Path, rejected: bool) -> None:
    """Record request -> answer pairs (a file with request and answer columns) as confirmed or rejected."""
    _ = obj.words
    summary = knowledge.learn_file(obj.services().engine, file, rejected=rejected)
    for problem in summary.rejected:
        click.echo(_("rejected: {text}").format(text=problem), err=True)
    if not (summary.learned or summary.known or summary.unknown_rows):
        raise click.UsageError(_("{path}: no usable cases").format(path=file))
    for row in summary.unknown_rows:
        click.echo(_("skipped row {row}: its answer is not in the knowledge base").format(row=row), err=True)
    learned = (_("learned {n} rejected pairs ({known} already known, {skipped} skipped)") if rejected
               else _("learned {n} confirmed pairs ({known} already known, {skipped} skipped)"))
    click.echo(learned.format(n=summary.learned, known=summary.known, skipped=len(summary.unknown_rows)))


@kb.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def calibrate(obj: _Ctx, file: Path) -> None:
    """Refit the confidence calibration on labelled requests (request and gold-answer columns)."""
    _ = obj.words
    try:
        calibrator, problems = knowledge.calibrate_file(obj.services().engine, file, progress=True)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    for problem in problems:
        click.echo(_("rejected: {text}").format(text=problem), err=True)
    click.echo(_("calibration fitted on {file}: {calibration}").format(
        file=file.name, calibration=calibrator.to_json()))


# -- eval -----------------------------------------------------------------------------------------
@main.command("eval")
@click.option("--kb", "kb_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cases", "cases_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--learn-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Confirmed pairs to learn first (category model, reranker, calibration).")
@click.option("--folds", type=click.IntRange(min=2), default=None,
              help="K-fold cross-validation: learn from K-1 folds of the cases, measure the K-th, for each fold.")
@click.option("--fold-seed", type=int, default=FOLD_SEED, show_default=True,
              help="Seed of the shuffle that splits the cases into --folds (another seed, another draw of the folds).")
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
             fold_seed: int, threshold: float | None, targets: tuple[float, ...], embedding_cache: Path | None,
             as_json: bool) -> None:
    """Measure retrieval on labelled cases with a temporary index (the configured one is untouched)."""
    from dataset.importers import read_kb
    from plugin.service.quality import run_eval

    if folds is not None and learn_from is not None:
        raise click.UsageError("--folds learns from the cases themselves; leave out --learn-from")
    settings = obj.settings
    _ = obj.words
    if threshold is None:
        # Unset in the settings too: the engine's calibrated default (per fold with --folds).
        threshold = settings.decision.threshold
    kb_result = read_kb(kb_file, progress=True)
    for problem in kb_result.rejected:
        click.echo(_("rejected: {text}").format(text=problem), err=True)
    cases = _read_cases(cases_file, _)
    learning = None
    if learn_from is not None:
        if learn_from.resolve() == cases_file.resolve():
            click.echo(_("warning: {text}").format(text=_(
                "learning from the cases being evaluated measures memory, not quality; use a separate file "
                "of confirmed pairs or --folds")), err=True)
        learning = _read_cases(learn_from, _)
    try:
        metrics, embedder_name = run_eval(
            settings, kb_result.entries, cases, learning=learning, learning_name=learn_from.name if learn_from else "",
            folds=folds, fold_seed=fold_seed, threshold=threshold, targets=targets or (0.85, 0.90),
            embedding_cache=embedding_cache,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if as_json:
        _echo_json(metrics)
        return
    a = metrics["answered"]
    how = (_("{k}-fold cross-validation, fold seed {seed}").format(k=folds, seed=fold_seed) if folds else
           (_("learned from {file}").format(file=learn_from.name) if learn_from else _("as is")))
    click.echo(_("cases: {n}   embedder: {model}").format(n=metrics["n"], model=embedder_name) + f"   ({how})")
    accuracy = metrics["category_accuracy"]
    click.echo(f"hit@1 {metrics['hit@1']:.3f}   hit@3 {metrics['hit@3']:.3f}   MRR@10 {metrics['mrr@10']:.3f}   "
               + _("category accuracy {accuracy}").format(accuracy=accuracy if accuracy is not None else "-"))
    t = a["threshold"]
    if "per_fold_thresholds" in a:
        t = _("the engine's default, per fold: {values}").format(
            values=", ".join(f"{v:.3f}" for v in a["per_fold_thresholds"]))
    click.echo(_("at threshold {threshold}: answers {coverage} of requests, right first {first}, in top 3 {top3}")
               .format(threshold=t if isinstance(t, str) else f"{t:.2f}", coverage=f"{a['coverage']:.1%}",
                       first=f"{a['precision@1'] or 0:.1%}", top3=f"{a['precision@3'] or 0:.1%}"))
    for row in metrics["at_precision"]:
        click.echo(_("at precision@1 >= {target}: could answer {coverage} (threshold {threshold})").format(
            target=f"{row['target']:.2f}", coverage=f"{row['coverage']:.1%}",
            threshold=row["threshold"] if row["threshold"] is not None else "-"))
    click.echo(_("reliability (confidence of the first answer -> how often it was right):"))
    for b in metrics["reliability"]["bins"]:
        click.echo("  " + _("{bin}  n={n}  predicted {predicted}  observed {observed}").format(
            bin=b["bin"], n=f"{b['n']:4d}", predicted=f"{b['predicted']:.2f}", observed=f"{b['observed']:.2f}"))
    click.echo("  " + _("expected calibration error {ece}").format(ece=metrics["reliability"]["ece"]))
    auc = metrics["reliability"].get("auc")
    click.echo("  " + _("right first answers ranked above wrong ones (AUC) {auc}").format(
        auc=f"{auc:.3f}" if auc is not None else "-"))


# -- report / analyze --------------------------------------------------------------------------------
@main.command()
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First day (default: 30 days before --to).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last day, included (default: today, UTC).")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="html", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.option("--lang", type=click.Choice(["ru", "en"]), help="Language of the HTML report.")
@click.option("--gaps-csv", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the knowledge gaps as a list of entries to write (CSV).")
@click.option("--no-gaps", is_flag=True, help="Skip the knowledge gaps (no embedding model is loaded).")
@click.pass_obj
def report(obj: _Ctx, start: str | None, end: str | None, fmt: str, output: Path | None, lang: str | None,
           gaps_csv: Path | None, no_gaps: bool) -> None:
    """The analytics report from the outcome history: funnel per channel and category, by day and week,
    entries that work or keep being rejected, knowledge gaps, precision per category, the holdout, savings."""
    from plugin.reports.analytics import gaps_csv as render_gaps
    from plugin.reports.analytics import render_document, report_csv, report_json
    from plugin.service.analytics import build_report, period

    settings = obj.settings
    _ = obj.words
    try:
        since, until = period(start, end)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    embed = None
    if not no_gaps:
        from plugin.service.engines import load_configured_embedder

        embed = load_configured_embedder(settings).embedder.embed
    result = build_report(_store(obj).analytics, settings.analytics, since=since, until=until, embed=embed)
    if fmt == "html":
        text = render_document(result, language=lang or settings.default_language)
    elif fmt == "csv":
        text = report_csv(result)
    else:
        text = report_json(result)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        t = result.total
        click.echo(_("{file}: {seen} requests, {answered} answered, {confirmed} confirmed, {deflected} deflected "
                     "({rate})").format(file=output, seen=t.seen, answered=t.answered, confirmed=t.confirmed,
                                        deflected=t.deflected, rate=f"{100 * (t.deflection_rate or 0):.1f}%"),
                   err=True)
    if gaps_csv is not None:
        gaps_csv.parent.mkdir(parents=True, exist_ok=True)
        gaps_csv.write_text(render_gaps(result), encoding="utf-8")
        click.echo(_("{file}: {n} knowledge gaps").format(file=gaps_csv, n=len(result.gaps)), err=True)


@main.command()
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kb", "kb_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay against this knowledge base (default: the export's own tickets before the cut-off).")
@click.option("--as-of", metavar="YYYY-MM-DD", help="Cut-off: replay the tickets registered on or after it.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="Column map for a CSV export, e.g. --map description=Text --map resolution=Answer.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("analysis.html"),
              show_default=True, help="The HTML report.")
@click.option("--tickets-per-month", type=float, help="Projection of the savings at this monthly volume.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def analyze(obj: _Ctx, export: Path, kb_file: Path | None, as_of: str | None, maps: tuple[str, ...], output: Path,
            tickets_per_month: float | None, as_json: bool) -> None:
    """Replay a ticket export before go-live: would the assistant have answered, and matched the agent's
    resolution? Writes an HTML report with charts; rows it cannot read are listed."""
    from plugin.reports.analysis import run_analysis
    from plugin.service.analytics import economic_parameters
    from plugin.service.economics import EconomicParameters

    _ = obj.words
    params: EconomicParameters = economic_parameters(obj.settings.analytics)
    try:
        result = run_analysis(obj.settings, export, kb_file, as_of, output, progress=True,
                              column_map=_parse_map(maps), economics=params,
                              projection_tickets_per_month=tickets_per_month)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    for problem in result.unreadable[:50]:
        click.echo(_("unreadable: {problem}").format(problem=problem), err=True)
    summary = {
        "tickets": result.tickets, "replayed": result.replayed, "answered_share": result.answered_share,
        "match_rate": result.match_rate, "deflection": result.deflection, "unreadable": len(result.unreadable),
        "tickets_per_second": result.tickets_per_second, "report": str(output),
    }
    if as_json:
        _echo_json(summary)
        return
    click.echo(_("{tickets} tickets, {replayed} replayed: answered {answered}, matched {matched}, projected "
                 "deflection {deflection}; {unreadable} unreadable rows; report: {file}").format(
        tickets=result.tickets, replayed=result.replayed, answered=f"{100 * result.answered_share:.1f}%",
        matched="-" if result.match_rate is None else f"{100 * result.match_rate:.1f}%",
        deflection=f"{100 * result.deflection:.1f}%", unreadable=len(result.unreadable), file=output))


# -- incidents ------------------------------------------------------------------------------------
@main.group()
def incident() -> None:
    """Outage incidents: near-identical requests in a burst (outages.enabled)."""


@incident.command("list")
@click.option("--all", "show_all", is_flag=True, help="Closed incidents too.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def incident_list(obj: _Ctx, show_all: bool, as_json: bool) -> None:
    """Open incidents (newest first) with their requests."""
    from datetime import UTC, datetime

    from plugin.service.outages import user_message

    _ = obj.words
    store = _store(obj)
    rows = store.incidents.find(status=None if show_all else "open")
    if as_json:
        _echo_json([{**r.model_dump(), "members": [m.model_dump() for m in store.incidents.members(r.id)]}
                    for r in rows])
        return
    if not rows:
        click.echo(_("no open incident") if not show_all else _("no incident"))
    for r in rows:
        opened = datetime.fromtimestamp(r.opened_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        status = _("open") if r.status == "open" else _("closed")
        click.echo(_("{id}  {status}  opened {opened}  {n} requests").format(id=r.id, status=status, opened=opened,
                                                                          n=r.size))
        click.echo("  " + _("users are told: {message}").format(
            message=user_message(r, obj.settings.default_language)))
        for m in store.incidents.members(r.id):
            click.echo(f"  {m.source} #{m.ticket_id} ({m.channel}): {m.text[:80]}")


@incident.command("close")
@click.argument("incident_id")
@click.option("--by", default="cli", show_default=True, help="Who closes it (kept with the incident).")
@click.pass_obj
def incident_close(obj: _Ctx, incident_id: str, by: str) -> None:
    """Close an incident: its banner goes, later similar requests get ordinary answers again."""
    from plugin.service.outages import close

    _ = obj.words
    if not close(_store(obj), incident_id, by=by):
        _fail(RuntimeError(_("incident {id} is not open (or does not exist)").format(id=incident_id)), _)
    click.echo(_("incident {id} closed").format(id=incident_id))


@incident.command("message")
@click.argument("incident_id")
@click.argument("text")
@click.pass_obj
def incident_message(obj: _Ctx, incident_id: str, text: str) -> None:
    """Set what users are told about an incident (instead of the default wording)."""
    _ = obj.words
    if not text.strip():
        raise click.BadParameter(_("the message must not be empty"), param_hint="TEXT")
    if not _store(obj).incidents.set_message(incident_id, text.strip()):
        _fail(RuntimeError(_("incident {id} does not exist").format(id=incident_id)), _)
    click.echo(_("incident {id}: message set").format(id=incident_id))


if __name__ == "__main__":  # pragma: no cover
    main()
