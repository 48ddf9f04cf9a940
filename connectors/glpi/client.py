"""The wire: GLPI's legacy REST API (``apirest.php``; GLPI's ``apirest.md`` and ``src/Api/API.php``).

One session per client: ``GET initSession`` with ``Authorization: user_token ...`` and ``App-Token``,
then ``Session-Token`` on every call. A session that GLPI forgot (HTTP 401
``ERROR_SESSION_TOKEN_INVALID``: the PHP session was garbage-collected) is re-initialised once and the
call retried. GLPI's error body ``["ERROR_CODE", "message"]`` becomes a typed error from
:mod:`connectors.base` that keeps the code in ``code``. Tokens are never logged.

A write (POST/PUT/DELETE) that was sent but not answered (read timeout, connection reset) raises
:class:`GLPIWriteOutcomeUnknown`: GLPI may still apply it, so the connector reads back instead of
adding the item again. A write that never left (connection refused) is a plain transient error.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    NotFound,
    PermissionDenied,
    RejectedByHelpdesk,
    TransientConnectorError,
    WriteOutcomeUnknown,
)
from connectors.readback import request_was_sent

log = logging.getLogger(__name__)

Params = Sequence[tuple[str, str | int]] | Mapping[str, str | int] | None

#: Codes that mean "our credentials or API client configuration are wrong", whatever the HTTP status
#: (GLPI answers 400 for most of them: ``API::returnError``).
AUTH_CODES = frozenset({
    "ERROR_APP_TOKEN_PARAMETERS_MISSING",
    "ERROR_WRONG_APP_TOKEN_PARAMETER",
    "ERROR_LOGIN_PARAMETERS_MISSING",
    "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED",
    "ERROR_GLPI_LOGIN",
    "ERROR_GLPI_LOGIN_USER_TOKEN",
    "ERROR_NOT_ALLOWED_IP",
    "ERROR_SESSION_TOKEN_MISSING",
    "ERROR_SESSION_TOKEN_INVALID",
})
SESSION_INVALID = "ERROR_SESSION_TOKEN_INVALID"
_CONTENT_RANGE = re.compile(r"(\d+)-(\d+)/(\d+)")
PAGE = 100


class _GLPIError:
    """Mixin: the GLPI error code (``ERROR_RIGHT_MISSING``...) and HTTP status of a failed call."""

    code: str = ""
    http_status: int = 0


class GLPIAuthenticationError(_GLPIError, AuthenticationError):
    pass


class GLPIPermissionDenied(_GLPIError, PermissionDenied):
    pass


class GLPINotFound(_GLPIError, NotFound):
    pass


class GLPIRejected(_GLPIError, RejectedByHelpdesk):
    pass


class GLPITransientError(_GLPIError, TransientConnectorError):
    pass


class GLPIWriteOutcomeUnknown(_GLPIError, WriteOutcomeUnknown):
    pass


def secret_value(value: Any) -> str:
    """Accept a plain string or a pydantic ``SecretStr``."""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if callable(getter) else (value or ""))


def _make(cls: type[_GLPIError], message: str, code: str, status: int) -> ConnectorError:
    err = cls(message)  # type: ignore[call-arg]
    err.code, err.http_status = code, status
    assert isinstance(err, ConnectorError)
    return err


def parse_error(resp: requests.Response) -> tuple[str, str]:
    """``(code, message)`` from GLPI's ``["ERROR_CODE", "message"]`` body, or a stand-in."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], str):
        message = str(body[1]) if len(body) > 1 else ""
        # Drop GLPI's "; view documentation in your browser at ..." tail.
        return body[0], message.split("; view documentation", 1)[0]
    if isinstance(body, list) and body and isinstance(body[0], dict):  # bulk/207 entries
        return "ERROR_GLPI_PARTIAL", "; ".join(str(e.get("message", "")) for e in body)
    return f"HTTP_{resp.status_code}", ""


def error_for(status: int, code: str, message: str) -> ConnectorError:
    text = f"GLPI answered HTTP {status} {code}" + (f": {message}" if message else "")
    if code in AUTH_CODES or status == 401:
        return _make(GLPIAuthenticationError, text, code, status)
    if status == 403:
        return _make(GLPIPermissionDenied, text, code, status)
    if status == 404:
        return _make(GLPINotFound, text, code, status)
    if status == 429 or status >= 500:
        return _make(GLPITransientError, text, code, status)
    return _make(GLPIRejected, text, code, status)


class GLPIClient:
    """A legacy REST API session. Thread-safe: calls may run in parallel (read-only sessions)."""

    def __init__(self, url: str, user_token: Any, app_token: Any = "", timeout_s: float = 15.0,
                 verify_tls: bool = True, session: requests.Session | None = None) -> None:
        self.base = url.rstrip("/")
        self._user_token = secret_value(user_token)
        self._app_token = secret_value(app_token)
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self._own_http = session is None
        self.http = session or requests.Session()
        self._session_token: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ session
    def _base_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "X-GLPI-Sanitized-Content": "false"}
        if self._app_token:
            headers["App-Token"] = self._app_token
        return headers

    def init_session(self) -> str:
        """Open a session (``GET initSession``) and return its token."""
        headers = self._base_headers()
        headers["Authorization"] = f"user_token {self._user_token}"
        resp = self._send("GET", "initSession", headers=headers)
        if resp.status_code != 200:
            code, message = parse_error(resp)
            log.warning("glpi_init_session_failed status=%s code=%s", resp.status_code, code,
                        extra={"event": "glpi_init_session_failed"})
            raise error_for(resp.status_code, code, message)
        try:
            token = str(resp.json()["session_token"])
        except (ValueError, KeyError, TypeError) as e:
            raise _make(GLPIRejected, "GLPI initSession answered without a session_token", "BAD_RESPONSE",
                        resp.status_code) from e
        self._session_token = token
        log.info("glpi_session_opened base=%s", self.base, extra={"event": "glpi_session_opened"})
        return token

    def _token(self) -> str:
        with self._lock:
            if self._session_token is None:
                self.init_session()
            assert self._session_token is not None
            return self._session_token

    def close(self) -> None:
        """``killSession`` (best effort) and release the HTTP connections we opened."""
        token, self._session_token = self._session_token, None
        if token:
            headers = self._base_headers()
            headers["Session-Token"] = token
            try:
                self._send("GET", "killSession", headers=headers)
            except ConnectorError:
                log.info("glpi_kill_session_failed", extra={"event": "glpi_kill_session_failed"})
        if self._own_http:
            self.http.close()

    # ------------------------------------------------------------------ calls
    def _send(self, method: str, path: str, *, headers: dict[str, str], params: Params = None,
              json: Any = None) -> requests.Response:
        url = f"{self.base}/{path.lstrip('/')}"
        try:
            resp = self.http.request(method, url, headers=headers, params=params, json=json,
                                     timeout=self.timeout_s, verify=self.verify_tls)
        except requests.RequestException as e:
            if method != "GET" and request_was_sent(e):
                log.warning("glpi_write_outcome_unknown method=%s path=%s error=%s", method, path, type(e).__name__,
                            extra={"event": "glpi_write_outcome_unknown"})
                raise _make(GLPIWriteOutcomeUnknown, f"GLPI did not answer {method} {path} within "
                            f"{self.timeout_s:g} s ({type(e).__name__}); it may still apply it", "NO_ANSWER", 0) from e
            if isinstance(e, requests.Timeout):
                raise _make(GLPITransientError, f"GLPI did not answer within {self.timeout_s:g} s ({method} {path})",
                            "TIMEOUT", 0) from e
            raise _make(GLPITransientError, f"GLPI is unreachable ({type(e).__name__}) at {self.base}",
                        "CONNECTION", 0) from e
        log.debug("glpi_request method=%s path=%s status=%s", method, path, resp.status_code,
                  extra={"event": "glpi_request"})
        return resp

    def request(self, method: str, path: str, *, params: Params = None, json: Any = None) -> requests.Response:
        """A call in the session; re-initialises the session once on 401 ERROR_SESSION_TOKEN_INVALID."""
        for attempt in (1, 2):
            token = self._token()
            headers = self._base_headers()
            headers["Session-Token"] = token
            resp = self._send(method, path, headers=headers, params=params, json=json)
            if resp.status_code < 400:
                return resp
            code, message = parse_error(resp)
            if resp.status_code == 401 and code == SESSION_INVALID and attempt == 1:
                log.info("glpi_session_reinit", extra={"event": "glpi_session_reinit"})
                with self._lock:
                    if self._session_token == token:
                        self._session_token = None
                continue
            log.warning("glpi_call_failed method=%s path=%s status=%s code=%s", method, path, resp.status_code, code,
                        extra={"event": "glpi_call_failed"})
            raise error_for(resp.status_code, code, message)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, params: Params = None) -> Any:
        return self.request("GET", path, params=params).json()

    def get_item(self, itemtype: str, item_id: int | str, params: Params = None) -> dict[str, Any]:
        data = self.get(f"{itemtype}/{item_id}", params)
        if not isinstance(data, dict):
            raise _make(GLPIRejected, f"GLPI returned an unexpected {itemtype} shape", "BAD_RESPONSE", 200)
        return data

    def get_subitems(self, itemtype: str, item_id: int | str, sub_itemtype: str) -> list[dict[str, Any]]:
        """Every row of ``GET itemtype/id/sub_itemtype``, paging with ``range`` (GLPI's default is 0-49)."""
        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            resp = self.request("GET", f"{itemtype}/{item_id}/{sub_itemtype}",
                                params={"range": f"{start}-{start + PAGE - 1}", "sort": "id", "order": "ASC"})
            page = resp.json()
            if not isinstance(page, list):
                raise _make(GLPIRejected, f"GLPI returned an unexpected {sub_itemtype} list", "BAD_RESPONSE", 200)
            rows.extend(r for r in page if isinstance(r, dict))
            total = _total(resp, len(rows))
            start += len(page)
            if not page or start >= total:
                return rows

    def add(self, itemtype: str, item: Mapping[str, Any]) -> int:
        """``POST itemtype {"input": {...}}`` -> the new id (201)."""
        resp = self.request("POST", itemtype, json={"input": dict(item)})
        try:
            body = resp.json()
            return int(body["id"] if isinstance(body, dict) else body[0]["id"])
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _make(GLPIRejected, f"GLPI accepted the {itemtype} but returned no id", "BAD_RESPONSE",
                        resp.status_code) from e

    def search(self, itemtype: str, params: Sequence[tuple[str, str | int]]) -> tuple[dict[str, Any], int]:
        """One page of ``search/itemtype``; ``(body, totalcount)``."""
        resp = self.request("GET", f"search/{itemtype}", params=params)
        body = resp.json()
        if not isinstance(body, dict):
            raise _make(GLPIRejected, "GLPI returned an unexpected search response", "BAD_RESPONSE", resp.status_code)
        return body, int(body.get("totalcount") or _total(resp, 0))

    def get_active_profile(self) -> dict[str, Any]:
        data = self.get("getActiveProfile")
        return dict(data.get("active_profile") or {}) if isinstance(data, dict) else {}

    def whoami(self) -> tuple[str, str]:
        """``(user id, login)`` of the session's user (``getFullSession``)."""
        data = self.get("getFullSession")
        session = data.get("session") if isinstance(data, dict) else None
        if not isinstance(session, dict):
            return "", ""
        return str(session.get("glpiID") or ""), str(session.get("glpiname") or "")

    def get_my_profiles(self) -> list[dict[str, Any]]:
        data = self.get("getMyProfiles")
        return list(data.get("myprofiles") or []) if isinstance(data, dict) else []


def _total(resp: requests.Response, default: int) -> int:
    m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
    return int(m.group(3)) if m else default
