"""Synthetic request streams with outages in them, for the burst detector's test and benchmark.

Background: real user requests (RUTUBE ``cases_dev.xlsx`` questions and the sample knowledge base's
questions) arriving at a steady rate. Bursts: the hand-written outage scenarios of
``tests/fixtures/outages/bursts.yaml``, each line a different user, with greetings, sign-offs and typos
added at random, arriving within a few minutes of each other. Everything is seeded.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from rag.clusters import Assignment, Request

BURSTS_FILE = Path(__file__).parents[1] / "fixtures" / "outages" / "bursts.yaml"
CHANNELS = ("glpi", "redmine", "mail", "chat")
BACKGROUND = "background"
_PREFIXES = ("", "", "", "Здравствуйте! ", "Добрый день. ", "Коллеги, ", "Срочно! ", "Помогите, ")
_SUFFIXES = ("", "", "", " Спасибо.", " Что делать?", " Очень срочно!", " Жду ответа.", " С уважением, Анна.")


def scenarios() -> dict[str, list[str]]:
    data = yaml.safe_load(BURSTS_FILE.read_text(encoding="utf-8"))
    return {name: [str(line) for line in lines] for name, lines in data["scenarios"].items()}


def _typo(text: str, rng: random.Random) -> str:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if len(letters) < 6:
        return text
    i = rng.choice(letters[1:-1])
    kind = rng.randrange(3)
    if kind == 0:  # swap with the next letter
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:  # drop
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]  # double


def perturb(text: str, rng: random.Random) -> str:
    out = text
    if rng.random() < 0.3:
        out = _typo(out, rng)
    if rng.random() < 0.3:
        out = out[0].lower() + out[1:]
    return rng.choice(_PREFIXES) + out + rng.choice(_SUFFIXES)


@dataclass(frozen=True)
class Stream:
    requests: list[Request]
    #: Request id -> scenario name, or BACKGROUND.
    truth: dict[str, str]


def build_stream(
    background: Sequence[str],
    bursts: dict[str, list[str]],
    *,
    background_per_hour: float,
    burst_span_s: float,
    seed: int,
    start: datetime = datetime(2025, 3, 3, 9, 0),
) -> Stream:
    """Background requests at a steady (Poisson) rate, and each burst's lines within ``burst_span_s``."""
    rng = random.Random(seed)
    items: list[tuple[datetime, str, str]] = []
    t = start
    texts = list(background)
    rng.shuffle(texts)
    for text in texts:
        t += timedelta(seconds=rng.expovariate(background_per_hour / 3600))
        items.append((t, text, BACKGROUND))
    day = max((t - start).total_seconds(), burst_span_s * 2)
    # Outages start at distinct times, at least two spans apart, so that they do not overlap.
    slots = sorted(rng.sample(range(int(day // (burst_span_s * 2))), len(bursts)))
    for slot, (name, lines) in zip(slots, bursts.items(), strict=True):
        begin = start + timedelta(seconds=slot * burst_span_s * 2)
        for line in lines:
            at = begin + timedelta(seconds=rng.uniform(0, burst_span_s))
            items.append((at, perturb(line, rng), name))
    items.sort(key=lambda x: x[0])
    requests, truth = [], {}
    for n, (at, text, label) in enumerate(items):
        rid = f"r{n}"
        requests.append(Request(id=rid, time=at, text=text, channel=rng.choice(CHANNELS)))
        truth[rid] = label
    return Stream(requests, truth)


@dataclass(frozen=True)
class Score:
    requests_flagged: int
    request_precision: float | None
    request_recall: float
    incidents: int
    #: Incidents whose members are mostly one outage's requests.
    true_incidents: int
    incident_precision: float | None
    #: Outages with at least one true incident.
    bursts_found: int
    bursts: int

    @property
    def burst_recall(self) -> float:
        return self.bursts_found / self.bursts if self.bursts else 0.0


def score(assignments: Sequence[Assignment], truth: dict[str, str]) -> Score:
    members: dict[str, list[str]] = {}
    for a in assignments:
        if a.incident_id is None:
            continue
        members.setdefault(a.incident_id, [])
        members[a.incident_id].extend([*a.pulled_in, a.request_id])
    flagged = {rid for ids in members.values() for rid in ids}
    burst_requests = {rid for rid, label in truth.items() if label != BACKGROUND}
    found: set[str] = set()
    true_incidents = 0
    for ids in members.values():
        label, count = Counter(truth[r] for r in ids).most_common(1)[0]
        if label != BACKGROUND and count * 2 > len(ids):
            true_incidents += 1
            found.add(label)
    tp = len(flagged & burst_requests)
    bursts = {label for label in truth.values() if label != BACKGROUND}
    return Score(
        requests_flagged=len(flagged),
        request_precision=tp / len(flagged) if flagged else None,
        request_recall=tp / len(burst_requests) if burst_requests else 0.0,
        incidents=len(members),
        true_incidents=true_incidents,
        incident_precision=true_incidents / len(members) if members else None,
        bursts_found=len(found),
        bursts=len(bursts),
    )
