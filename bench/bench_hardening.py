"""Webhook acknowledgements while /api/ask is hammered (issue 8 item 9): prints numbers, asserts nothing.

`helpdesk-assist serve` (gunicorn, one process, its default 4 threads) on loopback with GLPI webhooks
enabled and the embedded worker off, so that only intake and /api/ask are measured:

1. idle: one client POSTs signed GLPI 11 deliveries one after another; acknowledgement p50/p99;
2. loaded: the same client while 8 clients send /api/ask with maximal inputs (20,000 characters,
   the largest accepted) back to back; ask outcomes too.
Idle and loaded phases alternate in 5 rounds, so that the machine's other load weighs on both.

Scenarios: the shipped limits (api.max_concurrent_asks 1, api.max_query_chars 2000) with askers that
retry at once (worst case) and with askers that wait the Retry-After of a 503 (well-behaved clients);
and the limits lifted (64 concurrent asks, 20,000 characters read), as on main before issue 8. The
askers are separate processes, as real clients are; the measuring client is this process.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_hardening.py [--scale 1] [--askers 8] [--only N]
Results: bench/results/hardening.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_intake import GLPI_SECRET, _pct, _serve, _stop, glpi_delivery

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-api-key-0123456789abcdef0123"
MAX_TEXT = 20_000
LIFTED = {"HELPDESK_ASSIST_API__MAX_CONCURRENT_ASKS": "64", "HELPDESK_ASSIST_API__MAX_QUERY_CHARS": "20000"}
#: (name, settings, askers wait Retry-After on a 503, deliveries measured per phase)
SCENARIOS: list[tuple[str, dict[str, str], bool, int]] = [
    ("shipped limits, askers retry at once", {}, False, 300),
    ("shipped limits, askers wait Retry-After", {}, True, 300),
    # Each acknowledgement takes seconds here (as on main before issue 8): fewer of them.
    ("limits lifted (64 asks, 20,000 characters read), askers retry at once", LIFTED, False, 40),
]


def _long_text() -> str:
    base = ("Не могу подключиться к VPN из дома, AnyConnect пишет ошибку 809; перезагружал роутер и "
            "компьютер, пароль вводил заново, в офисе всё работает. ")
    return (base * (MAX_TEXT // len(base) + 1))[:MAX_TEXT]


def _acks(base: str, n: int, first_id: int) -> list[float]:
    """One client, n deliveries one after another: acknowledgement times in seconds."""
    s = requests.Session()
    out = []
    ts = int(time.time())
    for i in range(n):
        headers, body = glpi_delivery(first_id + i, ts)
        t0 = time.perf_counter()
        r = s.post(base + "/webhooks/glpi", data=body, headers=headers, timeout=60)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 202, (r.status_code, r.text[:200])
    return out


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(values, 0.5) * 1000, 1), "p99_ms": round(_pct(values, 0.99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1), "n": len(values)}


def _asker(base: str, auth: dict[str, str], polite: bool, go: Any, stop: Any, results: Any) -> None:
    """One hammering client: maximal asks back to back while ``go`` is set (waiting Retry-After on a
    503 when polite), idle while it is not; reports its timings when ``stop`` is set."""
    s = requests.Session()
    text = _long_text()
    took: dict[int, list[float]] = {}
    while not stop.is_set():
        if not go.wait(0.2):
            continue
        t0 = time.perf_counter()
        try:
            r = s.post(base + "/api/ask", json={"text": text}, headers=auth, timeout=120)
            code = r.status_code
        except requests.RequestException:
            code = 0
        took.setdefault(code, []).append(time.perf_counter() - t0)
        if polite and code == 503:
            stop.wait(float(r.headers.get("Retry-After", "1")))
    results.put(took)


def run(limits: dict[str, str], deliveries: int, askers: int, polite: bool = False, rounds: int = 5,
        drain_s: float = 1.5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    proc, base, _ = _serve(
        {
            "HELPDESK_ASSIST_GLPI__ENABLED": "true",
            "HELPDESK_ASSIST_GLPI__URL": "http://127.0.0.1:9/apirest.php",
            "HELPDESK_ASSIST_GLPI__USER_TOKEN": "unused-for-intake",
            "HELPDESK_ASSIST_GLPI__WEBHOOK_SECRET": GLPI_SECRET,
            "HELPDESK_ASSIST_WORKER__EMBEDDED": "false",
            "HELPDESK_ASSIST_API__KEYS": API_KEY,
            **limits,
        },
        tmp, 4,
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    # The askers are processes of their own: as threads of this process they would hold its GIL
    # while the measuring client waits for it, and the client's own wait would be measured.
    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    results: Any = ctx.Queue()
    idle: list[float] = []
    loaded: list[float] = []
    try:
        requests.post(base + "/api/ask", json={"text": "VPN"}, headers=auth, timeout=120)  # warm the engine
        _acks(base, 20, 9_000_000)  # warm intake (imports, SQLite)
        pool = [ctx.Process(target=_asker, args=(base, auth, polite, go, stop, results), daemon=True)
                for _ in range(askers)]
        for proc_ in pool:
            proc_.start()
        time.sleep(5)  # the askers import requests
        # Idle and loaded phases alternate, so that a change in the machine's other load during the
        # run weighs on both alike.
        per_round = max(1, deliveries // rounds)
        t0 = time.perf_counter()
        for r in range(rounds):
            go.clear()
            time.sleep(drain_s)  # asks in flight finish
            idle += _acks(base, per_round, 1 + r * per_round)
            go.set()
            time.sleep(2)  # the askers fill the server
            loaded += _acks(base, per_round, 1_000_000 + r * per_round)
        wall = time.perf_counter() - t0
        go.clear()
        stop.set()
        asks: dict[int, list[float]] = {}
        for _ in pool:
            for code, took in results.get(timeout=180).items():
                asks.setdefault(int(code), []).extend(took)
        for proc_ in pool:
            proc_.join(timeout=30)
    finally:
        _stop(proc)
    idle_s, loaded_s = _summary(idle), _summary(loaded)
    return {
        "ack_idle": idle_s,
        "ack_while_asks_hammer": loaded_s,
        "p50_ratio": round(loaded_s["p50_ms"] / idle_s["p50_ms"], 2),
        "p99_ratio": round(loaded_s["p99_ms"] / idle_s["p99_ms"], 2),
        "asks_during_load": {str(code): {"count": len(v), **({"p50_ms": _summary(v)["p50_ms"]} if v else {})}
                             for code, v in sorted(asks.items())},
        "rounds": rounds,
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the deliveries measured per phase")
    ap.add_argument("--askers", type=int, default=8)
    ap.add_argument("--only", type=int, nargs="+", help="run only these scenarios (0, 1, 2); the results of the "
                    "others stay in the results file")
    args = ap.parse_args()
    results = {}
    for i, (name, limits, polite, deliveries) in enumerate(SCENARIOS):
        if args.only is not None and i not in args.only:
            continue
        print(f"{name} ...", flush=True)
        # With the limits lifted, 64 asks of 20,000 characters are in flight when a round ends.
        drain = 60.0 if limits else 1.5
        results[name] = {"load_avg_before": [round(x, 1) for x in os.getloadavg()],
                         **run(limits, max(10, int(deliveries * args.scale)), args.askers, polite, drain_s=drain)}
        print(json.dumps(results[name], indent=2), flush=True)
    out = ROOT / "bench" / "results" / "hardening.json"
    if args.only is not None and out.exists():
        results = {**json.loads(out.read_text()).get("results", {}), **results}
    out.write_text(json.dumps({"askers": args.askers, "ask_chars": MAX_TEXT, "server_threads": 4,
                               "results": results, "cpu_count": os.cpu_count(),
                               "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2, ensure_ascii=False))
    print(f"written {out}")


if __name__ == "__main__":
    main()
