"""The wire: Redmine's REST API over ``requests``, with HTTP errors mapped to connector errors.

Every request carries ``X-Redmine-API-Key`` (never logged) and asks for JSON (``.json`` paths).
Our own writes carry ``X-Skip-Webhooks: 1``: the suer/redmine_webhook plugin then fires no hook
for them (no echo of our own notes); Redmine itself ignores the header.

A write that was sent but not answered (read timeout, connection reset) raises
:class:`~connectors.base.WriteOutcomeUnknown`: Redmine may still apply it, so the connector reads
back instead of writing again. A write that never left (connection refused) is a plain transient
error.
"""

from __future__ import annotations

import email.utils
import logging
from datetime import datetime
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

API_KEY_HEADER = "X-Redmine-API-Key"
SWITCH_USER_HEADER = "X-Redmine-Switch-User"
SKIP_WEBHOOKS_HEADER = "X-Skip-Webhooks"


class SwitchUserRefused(RejectedByHelpdesk):
    """HTTP 412: ``X-Redmine-Switch-User`` names no active user (application_controller
    find_current_user: ``render_error :status => 412``)."""


class RedmineClient:
    """Small JSON client. ``get``/``post`` return the decoded body; ``put``/``delete`` return None
    (Redmine answers 204 No Content, with an empty body that is never parsed)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout_s: float = 15.0,
        verify_tls: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self._session = session or requests.Session()
        #: The server's clock (HTTP ``Date``) at the last answer, used as a first polling watermark.
        self.last_server_time: datetime | None = None

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:  # never show the key
        return f"RedmineClient({self.url!r})"

    # -- verbs ---------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None, *, switch_user: str | None = None) -> Any:
        resp = self._request("GET", path, params=params, switch_user=switch_user)
        return self._json(resp, path)

    def post(self, path: str, body: dict[str, Any], *, switch_user: str | None = None) -> Any:
        resp = self._request("POST", path, json=body, switch_user=switch_user)
        return self._json(resp, path) if resp.content else None

    def put(self, path: str, body: dict[str, Any], *, switch_user: str | None = None) -> None:
        self._request("PUT", path, json=body, switch_user=switch_user)

    def delete(self, path: str, *, switch_user: str | None = None) -> None:
        self._request("DELETE", path, switch_user=switch_user)

    # -- internals -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        switch_user: str | None = None,
    ) -> requests.Response:
        headers = {API_KEY_HEADER: self._api_key, "Accept": "application/json"}
        if switch_user:
            headers[SWITCH_USER_HEADER] = switch_user
        if method != "GET":
            headers[SKIP_WEBHOOKS_HEADER] = "1"
        url = self.url + path
        try:
            resp = self._session.request(
                method, url, params=params, json=json, headers=headers, timeout=self.timeout_s, verify=self.verify_tls
            )
        except requests.RequestException as e:
            if method != "GET" and request_was_sent(e):
                log.warning("redmine.write_outcome_unknown method=%s path=%s error=%s", method, path, type(e).__name__)
                raise WriteOutcomeUnknown(
                    f"Redmine did not answer {method} {path} within {self.timeout_s:g} s ({type(e).__name__}); "
                    "it may still apply it"
                ) from e
            if isinstance(e, requests.Timeout):
                log.warning("redmine.http_timeout method=%s path=%s", method, path)
                raise TransientConnectorError(
                    f"Redmine did not answer {method} {path} within {self.timeout_s:g} s"
                ) from e
            log.warning("redmine.http_unreachable method=%s path=%s error=%s", method, path, type(e).__name__)
            raise TransientConnectorError(f"cannot reach Redmine at {self.url}: {type(e).__name__}") from e
        self._note_date(resp)
        if resp.status_code >= 400:
            log.info("redmine.http_error method=%s path=%s status=%s", method, path, resp.status_code)
            raise _error_for(resp, method, path)
        return resp

    def _note_date(self, resp: requests.Response) -> None:
        date = resp.headers.get("Date")
        if date:
            try:
                self.last_server_time = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                pass

    @staticmethod
    def _json(resp: requests.Response, path: str) -> Any:
        try:
            return resp.json()
        except ValueError as e:
            raise ConnectorError(
                f"Redmine answered {path} with something that is not JSON (HTTP {resp.status_code}); "
                "is the URL the base URL of Redmine?"
            ) from e


def _validation_messages(resp: requests.Response) -> list[str]:
    try:
        data = resp.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return []


def _error_for(resp: requests.Response, method: str, path: str) -> ConnectorError:
    status = resp.status_code
    what = f"{method} {path}"
    if status == 401:
        return AuthenticationError(f"Redmine refused the API key (HTTP 401) on {what}")
    if status == 403:
        return PermissionDenied(
            f"Redmine answered 403 on {what}: the plugin's account may not do this, or the REST API is "
            "disabled (Administration > Settings > API > Enable REST web service)"
        )
    if status == 404:
        return NotFound(f"not found or not visible to the plugin's account: {what}")
    if status == 412:
        return SwitchUserRefused(f"Redmine refused the switch-user login on {what} (HTTP 412): no such active user")
    if status == 422:
        messages = _validation_messages(resp)
        return RejectedByHelpdesk(f"Redmine refused {what}: " + ("; ".join(messages) or "validation failed (HTTP 422)"))
    if status == 429 or status >= 500:
        return TransientConnectorError(f"Redmine answered HTTP {status} on {what}")
    return RejectedByHelpdesk(f"Redmine answered HTTP {status} on {what}")
