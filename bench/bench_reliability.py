"""Reliability against the real Redmine: duplicate notes under crashes and slow writes (prints
numbers; asserts nothing: the test suite covers correctness).

1. crash run: `helpdesk-assist worker` processes are killed with SIGKILL while they work on an item
   (N times), then a last worker finishes the queue. Each kill lands at a random moment within an
   item (0 to 1.5 s after the worker took one: reading the issue, answering, posting, reading back).
2. slow-write run: the slow proxy of tests/fakes/slow_proxy.py in front of Redmine holds every PUT
   `--delay` seconds (4 s; the client's timeout is `--timeout`, 1 s) before Redmine gets it, so the
   client gives up, and its retry (backoff 0.5 s) re-reads the issue, before the write lands; one
   worker handles the issues. Mode `reset` instead forwards the PUT at once and
   resets the connection (applied, answer lost). A control run with `unknown_write_wait_s: 0` (no
   read-back wait, what the code did before issue 8) shows what the run detects.

Counted afterwards from Redmine itself (admin API key): notes per marker (`ref ha-...`) per issue;
duplicates = notes beyond the first per marker; missing = issues without their agent note.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_reliability.py [--kills 12] [--crash-issues 40]
       [--slow-issues 10] [--reset-issues 10] [--delay 4] [--timeout 1] [--no-control]
Results: bench/results/reliability.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.base import TicketEvent  # noqa: E402 - after the path setup
from plugin.store import Store  # noqa: E402
from tests.fakes.slow_proxy import SlowProxy  # noqa: E402

REDMINE = os.environ.get("REDMINE_URL", "http://127.0.0.1:3000")
ADMIN_KEY = os.environ.get("REDMINE_ADMIN_KEY", "a" * 40)
REQUESTER_KEY = os.environ.get("REDMINE_REQUESTER_KEY", "b" * 40)
MARKER_RE = re.compile(r"\bha-[0-9a-f]{12}\b")
SUBJECTS = [
    ("Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows."),
    ("Outlook не отправляет письма", "Письма висят в исходящих, что делать?"),
    ("Не работает VPN", "Не могу подключиться к VPN из дома, пишет ошибку 809."),
    ("Принтер не печатает", "Принтер на 3 этаже не печатает, задания висят в очереди."),
    ("Не могу войти в почту", "Забыл пароль от почты, как восстановить доступ?"),
    ("Заблокировали учетную запись", "Учетная запись заблокирована после ввода неверного пароля."),
]


def _env(data_dir: Path, redmine_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HELPDESK_ASSIST_DATA_DIR": str(data_dir),
        "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual",
        "HELPDESK_ASSIST_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "HELPDESK_ASSIST_LOG_LEVEL": "WARNING",
        "HELPDESK_ASSIST_DECISION__THRESHOLD": "0.3",
        "HELPDESK_ASSIST_LLM__TIMEOUT_S": "1",
        "HELPDESK_ASSIST_WORKER__LEASE_S": "31",
        "HELPDESK_ASSIST_WORKER__BACKOFF_BASE_S": "0.5",
        "HELPDESK_ASSIST_WORKER__BACKOFF_MAX_S": "2",
        "HELPDESK_ASSIST_REDMINE__ENABLED": "true",
        "HELPDESK_ASSIST_REDMINE__URL": redmine_url,
        "HELPDESK_ASSIST_REDMINE__API_KEY": ADMIN_KEY,
        **extra,
    }


def _cli(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plugin.cli", *args], env=env, cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _prepare(data_dir: Path, env: dict[str, str]) -> float:
    """Import the sample knowledge base once (``status`` builds the services), so that each worker start
    only loads it. Returns the seconds it took."""
    t0 = time.perf_counter()
    proc = _cli(env, "status", log=data_dir / "prepare.log")
    if proc.wait(600) != 0:
        raise SystemExit(f"status failed: {(data_dir / 'prepare.log').read_text(errors='replace')[-2000:]}")
    return time.perf_counter() - t0


def _create_issues(n: int, tag: str) -> list[int]:
    ids = []
    for i in range(n):
        subject, body = SUBJECTS[i % len(SUBJECTS)]
        r = requests.post(f"{REDMINE}/issues.json", headers={"X-Redmine-API-Key": REQUESTER_KEY}, timeout=30,
                          json={"issue": {"project_id": "helpdesk", "subject": f"{subject} ({tag} {i + 1})",
                                          "description": body}})
        r.raise_for_status()
        ids.append(int(r.json()["issue"]["id"]))
    return ids


def _enqueue(store: Store, ids: list[int], tag: str) -> None:
    """What /webhooks/redmine does with a delivery: persist the event (the worker re-reads the issue)."""
    for issue_id in ids:
        event = TicketEvent(source="redmine", ticket_id=str(issue_id), kind="created",
                            delivery_key=f"redmine:bench:{tag}:{issue_id}", vendor_event="opened")
        store.inbox.enqueue("redmine", "ticket_event", event.delivery_key, event.model_dump(mode="json"))


def _count_notes(ids: list[int]) -> dict[str, Any]:
    duplicates = 0
    missing_agent_note = 0
    per_issue: dict[int, dict[str, int]] = {}
    for issue_id in ids:
        r = requests.get(f"{REDMINE}/issues/{issue_id}.json?include=journals",
                         headers={"X-Redmine-API-Key": ADMIN_KEY}, timeout=30)
        r.raise_for_status()
        counts: dict[str, int] = {}
        private = False
        for j in r.json()["issue"]["journals"]:
            m = MARKER_RE.search(j.get("notes") or "")
            if m:
                counts[m.group(0)] = counts.get(m.group(0), 0) + 1
                private = private or bool(j.get("private_notes"))
        per_issue[issue_id] = counts
        duplicates += sum(n - 1 for n in counts.values())
        missing_agent_note += not private
    return {"issues": len(ids), "notes": sum(sum(c.values()) for c in per_issue.values()),
            "duplicate_notes": duplicates,
            "issues_with_a_duplicate": sum(1 for c in per_issue.values() if any(n > 1 for n in c.values())),
            "issues_without_agent_note": missing_agent_note}


def _wait_empty(store: Store, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = store.inbox.counts()
        if not c["pending"] and not c["leased"]:
            return True
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def crash_run(issues: int, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    data = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    env = _env(data, REDMINE)
    prepare_s = _prepare(data, env)
    store = Store.open(data / "state.sqlite3")
    ids = _create_issues(issues, "crash")
    _enqueue(store, ids, "crash")
    log = data / "worker.log"
    t0 = time.perf_counter()
    done_kills = 0
    mid_item = 0
    starts: list[float] = []
    while done_kills < kills:
        c = store.inbox.counts()
        if not c["pending"] and not c["leased"]:
            break
        before = {i.id for i in store.inbox.items("leased", limit=1000)}
        t_start = time.perf_counter()
        proc = _cli(env, "worker", log=log)
        # Wait until this worker has taken an item of its own, then kill it somewhere inside that item.
        deadline = time.monotonic() + 180
        taken = False
        while time.monotonic() < deadline and proc.poll() is None:
            if {i.id for i in store.inbox.items("leased", limit=1000)} - before:
                taken = True
                break
            if not store.inbox.counts()["pending"]:
                break
            time.sleep(0.02)
        if not taken:
            _stop(proc)
            continue
        starts.append(time.perf_counter() - t_start)
        time.sleep(rng.uniform(0.0, 1.5))
        mid_item += bool(store.inbox.counts()["leased"])
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        done_kills += 1
    final = _cli(env, "worker", log=log)
    drained = _wait_empty(store, 600)
    wall = time.perf_counter() - t0
    _stop(final)
    counts = store.inbox.counts()
    store.close()
    return {"issues": issues, "kills": done_kills, "kills_while_an_item_was_leased": mid_item,
            "worker_start_to_first_item_s_p50": round(sorted(starts)[len(starts) // 2], 2) if starts else None,
            "kb_prepare_s": round(prepare_s, 1), "drained": drained, "wall_s": round(wall, 1),
            "queue": counts, **_count_notes(ids)}


def slow_run(issues: int, delay_s: float, timeout_s: float, mode: str, wait_s: float) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"bench-slow-{mode}-"))
    with SlowProxy(REDMINE, slow_methods={"PUT"}, delay_s=delay_s, mode=mode) as proxy:  # type: ignore[arg-type]
        env = _env(data, proxy.url, HELPDESK_ASSIST_REDMINE__TIMEOUT_S=str(timeout_s),
                   HELPDESK_ASSIST_REDMINE__UNKNOWN_WRITE_WAIT_S=str(wait_s))
        _prepare(data, env)
        store = Store.open(data / "state.sqlite3")
        ids = _create_issues(issues, f"slow-{mode}")
        worker = _cli(env, "worker", log=data / "worker.log")
        time.sleep(0.5)
        t0 = time.perf_counter()
        _enqueue(store, ids, f"slow-{mode}")
        drained = _wait_empty(store, 900)
        wall = time.perf_counter() - t0
        _stop(worker)
        proxy.wait_idle(delay_s + 30)
        counts = store.inbox.counts()
        store.close()
        held = proxy.held
        puts = sum(1 for m, _, _ in proxy.forwarded if m == "PUT")
    return {"issues": issues, "mode": mode, "put_delay_s": delay_s if mode == "delay" else 0.0,
            "client_timeout_s": timeout_s, "unknown_write_wait_s": wait_s, "writes_held_or_reset": held,
            "puts_reaching_redmine": puts, "drained": drained, "wall_s": round(wall, 1),
            "s_per_issue": round(wall / issues, 2), "queue": counts, **_count_notes(ids)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--crash-issues", type=int, default=40)
    ap.add_argument("--slow-issues", type=int, default=10)
    ap.add_argument("--reset-issues", type=int, default=10)
    ap.add_argument("--delay", type=float, default=4.0, help="seconds the proxy holds a PUT")
    ap.add_argument("--timeout", type=float, default=1.0, help="the client's timeout (redmine.timeout_s)")
    ap.add_argument("--no-control", action="store_true", help="skip the control run without read-back wait")
    ap.add_argument("--seed", type=int, default=20250131)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reliability.json")
    args = ap.parse_args()
    try:
        requests.get(REDMINE, timeout=3)
    except requests.ConnectionError:
        raise SystemExit(f"no Redmine at {REDMINE}: sudo scripts/test_servers.sh up") from None

    results: dict[str, Any] = {
        "benchmark": "reliability",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_start": os.getloadavg(),
    }
    timeout = args.timeout
    if args.kills:
        results["crash"] = crash_run(args.crash_issues, args.kills, args.seed)
        print("crash run:", json.dumps(results["crash"], ensure_ascii=False))
    if args.slow_issues:
        results["slow_writes"] = slow_run(args.slow_issues, args.delay, timeout, "delay", 60.0)
        print("slow-write run:", json.dumps(results["slow_writes"], ensure_ascii=False))
        if not args.no_control:
            results["slow_writes_control_no_wait"] = slow_run(args.slow_issues, args.delay, timeout, "delay", 0.0)
            print("control (unknown_write_wait_s 0):", json.dumps(results["slow_writes_control_no_wait"],
                                                                   ensure_ascii=False))
    if args.reset_issues:
        results["reset_after_write"] = slow_run(args.reset_issues, args.delay, timeout, "reset", 60.0)
        print("reset-after-write run:", json.dumps(results["reset_after_write"], ensure_ascii=False))
    results["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    total = sum(r.get("duplicate_notes", 0) for k, r in results.items()
                if isinstance(r, dict) and k not in ("machine", "slow_writes_control_no_wait"))
    print(f"duplicate notes (crash + slow + reset runs): {total}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
