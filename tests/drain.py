"""Run a worker until its inbox is empty: the one helper the pipeline, GLPI and Redmine loop tests share."""

from __future__ import annotations

import time


def drain(worker, timeout: float = 30.0, pause: float = 0.05) -> None:
    """Run the worker until nothing is pending or leased (retries fall due after a few milliseconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.run_once():
            counts = worker.store.inbox.counts()
            if not counts.get("pending") and not counts.get("leased"):
                return
            time.sleep(pause)
    raise AssertionError(f"inbox not drained: {worker.store.inbox.counts()}")
