"""Admin console costs: each page served by the real app (Flask test client, bundled sample knowledge base,
hashing embedder, a state file with N suggestions and audit entries), a steering change, and a
knowledge-base search. Sequential; prints numbers; asserts nothing.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_console.py [--rounds 20] [--suggestions 2000]
Results: bench/results/console.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from plugin.service import console
from plugin.store.suggestions import EntryRef, Suggestion
from plugin.web.app import create_app
from tests.plugin.web_app import boundary_services

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("/admin/", "/admin/queue", "/admin/tickets", "/admin/tickets?q=пароль", "/admin/kb?q=vpn",
         "/admin/kb/learned", "/admin/steering", "/admin/settings", "/admin/audit", "/admin/audit?q=vpn")


def timed(fn, rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"p50_ms": round(statistics.median(times) * 1000, 2), "max_ms": round(max(times) * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--suggestions", type=int, default=2000)
    args = ap.parse_args()
    services = boundary_services(Path(tempfile.mkdtemp()))
    store = services.store
    entries = services.engine.store.entries()
    for i in range(args.suggestions):
        e = entries[i % len(entries)]
        store.suggestions.create(Suggestion(
            id=f"b{i:011d}", source="glpi", ticket_id=str(i), created_at=time.time() - i * 60, mode="public",
            language="ru", ticket_title=e.title, query=e.question, category=" > ".join(e.categories),
            confidence=0.7, entries=[EntryRef(entry_id=e.id, answer_id=e.answer_id, title=e.title)],
        ))
        store.admin.audit(actor="bench", action="override", target="threshold", before=0.5, after=0.6)
    console.create_user(store, "bench", "bench password 123", role="admin")
    client = create_app(services.settings, services=services).test_client()
    t = time.perf_counter()
    html = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post("/admin/login", data={"login": "bench", "password": "bench password 123", "csrf_token": token})
    sign_in_s = time.perf_counter() - t
    assert r.status_code == 302
    results: dict[str, object] = {"sign_in_ms": round(sign_in_s * 1000, 1)}
    for path in PAGES:
        status = client.get(path).status_code
        assert status == 200, (path, status)
        results[path] = timed(lambda p=path: client.get(p), args.rounds)
    steering = client.get("/admin/steering").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', steering).group(1)
    first = client.post("/admin/steering", data={"what": "threshold", "value": "0.5", "csrf_token": token})
    assert first.status_code == 302, first.status_code
    results["POST steering (threshold), audited"] = timed(
        lambda: client.post("/admin/steering", data={"what": "threshold", "value": "0.5", "csrf_token": token}),
        args.rounds)
    results["Policies.current() (per request)"] = timed(services.policies.current, args.rounds * 10)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
           "rounds": args.rounds, "suggestions": args.suggestions, "entries": len(entries), "results": results}
    print(json.dumps(out, ensure_ascii=False, indent=2))
    (ROOT / "bench" / "results" / "console.json").write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()
