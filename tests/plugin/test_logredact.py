"""Secrets in URLs never reach a log line (issue 8 item 5); tests/integration/test_serve.py greps a real serve."""

from __future__ import annotations

import io
import logging

import pytest

from plugin.logredact import REDACTED, RedactingFilter, RedactingGunicornLogger, redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('POST /webhooks/redmine?token=s3cr3t HTTP/1.1', f"POST /webhooks/redmine?token={REDACTED} HTTP/1.1"),
        ("GET /webhooks/glpi?crc_token=abc&x=1", f"GET /webhooks/glpi?crc_token={REDACTED}&x=1"),
        ("/api/ask?api_key=k&password=p&user=u", f"/api/ask?api_key={REDACTED}&password={REDACTED}&user=u"),
        ("?X-API-Key=k;Session-Token=t", f"?X-API-Key={REDACTED};Session-Token={REDACTED}"),
        ("?client_secret=a&app_token=b&signature=c", f"?client_secret={REDACTED}&app_token={REDACTED}"
                                                     f"&signature={REDACTED}"),
        ("GET /r/eyJzIjoxfQ.aGVsbG8-_x HTTP/1.1", f"GET /r/{REDACTED} HTTP/1.1"),
        ('"https://ai.example.test/r/eyJzIjoxfQ.abc?lang=ru"', f'"https://ai.example.test/r/{REDACTED}?lang=ru"'),
        ("webhook_refused: source=redmine reason=SignatureInvalid", None),
        ("GET /healthz HTTP/1.1", None),
        ("?token=", None),
    ],
)
def test_redact(line, expected):
    assert redact(line) == (line if expected is None else expected)


def test_filter_redacts_the_formatted_message_and_the_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.logredact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetch %s failed", "http://h/x?token=abc123")
        try:
            raise ValueError("bad url http://h/r/linktoken999")
        except ValueError:
            logger.exception("oops")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "abc123" not in out and "linktoken999" not in out
    assert f"?token={REDACTED}" in out and f"/r/{REDACTED}" in out and "ValueError" in out


def test_gunicorn_access_atoms_are_redacted():
    from gunicorn.config import Config

    class Req:
        method, path, query, uri, version = "GET", "/r/tok123", "token=abc", "/r/tok123?token=abc", (1, 1)
        headers = (("REFERER", "https://x/r/tok456"),)

    class Resp:
        status, sent, headers = "200 OK", 10, []
        response_length = 10

    cfg = Config()
    log = RedactingGunicornLogger(cfg)
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_REFERER": "https://x/r/tok456", "REQUEST_METHOD": "GET",
               "RAW_URI": "/r/tok123?token=abc", "SERVER_PROTOCOL": "HTTP/1.1"}
    atoms = log.atoms(Resp(), Req(), environ, __import__("datetime").timedelta(seconds=0.01))
    text = " ".join(str(v) for v in atoms.values())
    assert "tok123" not in text and "tok456" not in text and "abc" not in text
