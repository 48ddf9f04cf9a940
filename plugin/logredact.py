"""Secrets out of every log line (issue 8 item 5).

Some secrets travel in URLs and cannot move elsewhere: the ``redmine_webhook`` plugin sends only a
Content-Type header (its ``webhook_listener.rb``), so its shared token is a ``?token=`` argument; the
confirmation links are ``/r/<signed token>``; a caller may put a key in a query by mistake. gunicorn's
access log prints the request line and the Referer of every request, so without this module those
secrets end up in log files and log collectors.

- :func:`redact` replaces the value of every query argument whose name looks secret and the token of
  ``/r/<token>`` paths with ``[redacted]``;
- :class:`RedactingFilter` applies it to a record's final message (and traceback) on a handler, so
  every line a handler writes is clean, whichever logger produced it;
- :class:`RedactingGunicornLogger` (``serve`` uses it; for a gunicorn of your own:
  ``--logger-class plugin.logredact.RedactingGunicornLogger``) redacts the access-log atoms
  themselves and filters gunicorn's handlers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as _GunicornLogger

REDACTED = "[redacted]"

#: A query argument (or ``name=value`` in text) whose name contains one of these words: tokens, keys,
#: secrets, passwords, signatures, sessions, credentials (``token``, ``crc_token``, ``api_key``,
#: ``X-API-Key``, ``password``, ``Session-Token``, ``client_secret``...). Over-redacting a harmless
#: argument costs nothing; under-redacting costs a secret.
_SECRET_WORD_RE = re.compile(r"token|key|secret|passw|pwd|signature|sig|session|credential|auth", re.IGNORECASE)
#: ``name=value``: one greedy run of name characters (no nested quantifier, so an attacker's long
#: request line costs linear time), starting where a name starts.
_NAME_VALUE_RE = re.compile(r"(?<![\w.\-\[\]])([\w.\-\[\]]+)=([^&\s\"'#;,]*)")
#: The signed token of a confirmation link, in a path or a full URL.
_LINK_TOKEN_RE = re.compile(r"(/r/)[^\s?#\"'/&]+")


def _value(m: re.Match[str]) -> str:
    name, value = m.group(1), m.group(2)
    return f"{name}={REDACTED}" if value and _SECRET_WORD_RE.search(name) else m.group(0)


def redact(text: str) -> str:
    """``text`` with secret query values and confirmation-link tokens replaced by ``[redacted]``."""
    if "=" in text:
        text = _NAME_VALUE_RE.sub(_value, text)
    if "/r/" in text:
        text = _LINK_TOKEN_RE.sub(rf"\g<1>{REDACTED}", text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter: the record's formatted message and traceback text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


FILTER = RedactingFilter()


def install(*loggers: logging.Logger) -> None:
    """Add the filter to every handler of ``loggers`` (default: the root logger and gunicorn's)."""
    targets = loggers or (logging.getLogger(), logging.getLogger("gunicorn.error"),
                          logging.getLogger("gunicorn.access"))
    for logger in targets:
        for handler in logger.handlers:
            if FILTER not in handler.filters:
                handler.addFilter(FILTER)


class RedactingGunicornLogger(_GunicornLogger):
    """gunicorn's logger with secrets redacted from the access log's atoms and from every handler."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        install(self.error_log, self.access_log)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        # Redacted at the source too, so that a custom access_log_format or a logconfig that
        # replaces the handlers (and their filters) still prints no secret.
        return {k: redact(v) if isinstance(v, str) else v
                for k, v in super().atoms(resp, req, environ, request_time).items()}
