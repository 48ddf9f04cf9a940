"""Sign-in costs: one Argon2id hash and one check with the default parameters, and one directory sign-in
against the local OpenLDAP of scripts/ldap_up.sh (StartTLS + DN template, LDAPS + service-account
search), sequential. Prints numbers; asserts nothing.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_sign_in.py [--rounds 20]   Results: bench/results/sign_in.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from plugin.service.directory import Directory
from plugin.service.passwords import DEFAULT_HASHER, hash_password, verify_password
from plugin.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
CA = "/var/lib/helpdesk-ldap-test/tls/ca.crt"
B = "dc=example,dc=test"
GROUPS = {"admin_group": f"cn=helpdesk-admins,ou=groups,{B}", "analyst_group": f"cn=helpdesk-analysts,ou=groups,{B}"}
DIRECTORIES = {
    "ldap-starttls-dn-template-member": {"url": "ldap://127.0.0.1", "bind_template": f"uid={{login}},ou=people,{B}"},
    "ldaps-service-search-memberof": {
        "url": "ldaps://localhost", "service_dn": f"cn=helpdesk-svc,ou=services,{B}", "service_password": "svc-pass",
        "user_search_base": f"ou=people,{B}", "membership": "memberOf",
    },
}


def timed(fn, rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_ms": round(statistics.median(times) * 1000, 2), "max_ms": round(max(times) * 1000, 2),
            "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench/results/sign_in.json"))
    args = ap.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "argon2_parameters": {"time_cost": DEFAULT_HASHER.time_cost, "memory_cost_kib": DEFAULT_HASHER.memory_cost,
                              "parallelism": DEFAULT_HASHER.parallelism},
    }
    stored = hash_password("correct horse battery staple")
    results["argon2id_hash"] = timed(lambda: hash_password("correct horse battery staple"), args.rounds)
    results["argon2id_verify"] = timed(lambda: verify_password(stored, "correct horse battery staple"), args.rounds)
    for name, fields in DIRECTORIES.items():
        s = load_settings(env={}, admin={"ldap": {"enabled": True, "ca_file": CA, **GROUPS, **fields}}).admin.ldap
        d = Directory(s)
        assert d.authenticate("alice", "alice-pass").role == "admin"  # a working setup, or the numbers mean nothing
        results[f"directory_{name}"] = timed(lambda d=d: d.authenticate("alice", "alice-pass"), args.rounds)
    for key, value in results.items():
        print(f"{key}: {value}")
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
