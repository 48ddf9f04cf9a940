"""Writes whose outcome is unknown: telling them from writes never sent, and reading back until known.

A helpdesk that answers a write late (Redmine behind a slow proxy, GLPI under load) leaves the
client with a timeout while the request is still on its way or being processed. Writing again at
once posts the note twice once the first request lands. Only the client knows whether the request
left (:func:`request_was_sent`); only the connector knows what its write looks like once applied
(a journal with our marker, a follow-up, a status), so each connector resolves its own writes with
:func:`await_write`, inside its own read-back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from connectors.base import TransientConnectorError, WriteOutcomeUnknown

log = logging.getLogger(__name__)

T = TypeVar("T")

#: First read-back this long after the error, then twice as long each time, up to the wait.
FIRST_CHECK_S = 0.5


def request_was_sent(exc: requests.RequestException) -> bool:
    """False only when the request certainly never reached the server: the connection was refused
    or never established (DNS failure, connect timeout, TLS handshake). A read timeout or a
    connection reset after connecting may have delivered it: True."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.InvalidURL)):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        # NewConnectionError (refused, DNS) is a ConnectTimeoutError in urllib3 2; both are "not sent".
        return not isinstance(inner, (NewConnectionError, ConnectTimeoutError))
    return True


def await_write(
    probe: Callable[[], T | None],
    error: WriteOutcomeUnknown,
    *,
    wait_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Read back a write whose outcome is unknown until it shows.

    ``probe()`` returns what the write produced (a journal, a follow-up id, ``True``) or None while
    it is not visible. It is called after 0.5 s, then 1, 2, 4 ... s apart, the last time once
    ``wait_s`` seconds of waiting have passed (the probes' own time comes on top). A probe that
    fails transiently (the helpdesk is still slow) counts as "not seen yet". When the write never
    shows, ``error`` is raised: transient, so the worker retries later, and the retry's own
    read-back decides whether to write again (a write landing later than ``wait_s`` can then be
    doubled: set ``unknown_write_wait_s`` above the helpdesk's slowest write).
    """
    wait_s = max(0.0, wait_s)
    delay = min(FIRST_CHECK_S, wait_s)
    waited = 0.0
    checks = 0
    while True:
        if delay > 0:
            sleep(delay)
            waited += delay
        checks += 1
        try:
            found = probe()
        except TransientConnectorError as e:
            log.info("write_readback_failed what=%s: %s", what, e, extra={"event": "write_readback_failed"})
            found = None
        if found is not None:
            log.info("write_outcome_known what=%s applied=true checks=%s", what, checks,
                     extra={"event": "write_outcome_known"})
            return found
        remaining = wait_s - waited
        if remaining <= 1e-9:
            log.warning("write_outcome_known what=%s applied=false checks=%s: not visible %.0f s after the "
                        "timeout; it will be tried again", what, checks, wait_s,
                        extra={"event": "write_outcome_known"})
            raise error
        delay = min(delay * 2 if delay > 0 else FIRST_CHECK_S, remaining)
