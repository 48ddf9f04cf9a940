"""The support mailbox over IMAP (imapclient): fetch new messages by UID, move handled ones away,
wait for new mail with IDLE (polling where the server has none).

UIDs only, never sequence numbers; the caller persists ``(folder, uidvalidity, last uid)`` and
rescans (by Message-ID) when ``uidvalidity`` changes. Messages are fetched with ``BODY.PEEK[]`` so
that ``\\Seen`` is never touched (people and other tools toggle it). Handled messages are moved to
``processed_folder`` (``UID MOVE``, RFC 6851; else COPY + ``\\Deleted`` + ``UID EXPUNGE``).

Errors: a refused login raises :class:`AuthenticationError`; a lost connection is re-opened once per
call, and a network failure that persists raises :class:`TransientConnectorError`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from connectors.base import (
    N_,
    AuthenticationError,
    CheckResult,
    ConnectorError,
    NotFound,
    Text,
    TransientConnectorError,
)

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]
T = TypeVar("T")

#: RFC 2177: clients should re-issue IDLE at least every 29 minutes.
IDLE_REISSUE_S = 29 * 60
_NETWORK_ERRORS = (OSError, IMAPClientAbortError, socket.timeout, ssl.SSLError, EOFError)


class Mailbox:
    """One IMAP connection to one folder. Not thread-safe: one worker uses one Mailbox."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str,
        password: str,
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        timeout_s: float = 30.0,
        *,
        idle: bool = True,
        poll_interval_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.folder = folder
        self.processed_folder = processed_folder
        self.timeout_s = timeout_s
        self.use_idle = idle
        self.poll_interval_s = poll_interval_s
        self._ssl_context = ssl_context
        self._client: IMAPClient | None = None
        self._caps: frozenset[bytes] = frozenset()
        self._uidvalidity: int | None = None
        self._processed_ok = False

    # ---------------------------------------------------------------------------------- connection

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def connect(self) -> None:
        """Connect, log in, read the capabilities (after login: MOVE is announced only then) and
        select the folder. Does nothing when already connected."""
        if self._client is not None:
            return
        try:
            client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self.security == "ssl",
                ssl_context=self._context() if self.security == "ssl" else None,
                timeout=self.timeout_s,
            )
        except _NETWORK_ERRORS as e:
            raise TransientConnectorError(f"IMAP {self.host}:{self.port} unreachable: {type(e).__name__}") from e
        try:
            if self.security == "starttls":
                client.starttls(self._context())
            client.login(self.username, self._password)
            self._caps = frozenset(c.upper() for c in client.capabilities())
            info = client.select_folder(self.folder)
        except LoginError as e:
            _quiet_logout(client)
            raise AuthenticationError(f"IMAP login refused for {self.username} on {self.host}") from e
        except _NETWORK_ERRORS as e:
            _quiet_logout(client)
            raise TransientConnectorError(f"IMAP {self.host}:{self.port} connection lost: {type(e).__name__}") from e
        except IMAPClientError as e:
            _quiet_logout(client)
            raise NotFound(f"IMAP folder {self.folder!r} cannot be selected: {e}") from e
        self._client = client
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        if self._uidvalidity is not None and uidvalidity != self._uidvalidity:
            log.warning(
                "email.imap.uidvalidity_changed folder=%s old=%s new=%s", self.folder, self._uidvalidity, uidvalidity
            )
        self._uidvalidity = uidvalidity
        log.info(
            "email.imap.connected host=%s folder=%s idle=%s move=%s",
            self.host,
            self.folder,
            self.has_idle,
            self.has_move,
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quiet_logout(client)

    def reconnect(self) -> None:
        self.close()
        self.connect()

    @property
    def capabilities(self) -> frozenset[bytes]:
        return self._caps

    @property
    def has_idle(self) -> bool:
        return b"IDLE" in self._caps

    @property
    def has_move(self) -> bool:
        return b"MOVE" in self._caps

    @property
    def uidvalidity(self) -> int:
        """UIDVALIDITY of the folder, as of the last (re)connection."""
        self.connect()
        assert self._uidvalidity is not None
        return self._uidvalidity

    def _call(self, what: str, fn: Callable[[IMAPClient], T]) -> T:
        """Run ``fn`` on a live connection; on a lost connection reconnect once and run it again."""
        for attempt in (1, 2):
            self.connect()
            assert self._client is not None
            try:
                return fn(self._client)
            except _NETWORK_ERRORS as e:
                log.warning("email.imap.connection_lost op=%s attempt=%s error=%s", what, attempt, type(e).__name__)
                self.close()
                if attempt == 2:
                    raise TransientConnectorError(f"IMAP {what} failed: connection lost ({type(e).__name__})") from e
            except IMAPClientError as e:
                raise ConnectorError(f"IMAP {what} refused by the server: {e}") from e
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------ messages

    def fetch_new(self, after_uid: int = 0, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Messages with a UID above ``after_uid``, oldest first, as ``(uid, raw bytes)``; at most
        ``limit`` of them, including mail delivered after the folder was selected. Does not set
        ``\\Seen``."""

        def run(c: IMAPClient) -> list[tuple[int, bytes]]:
            # A server reports mail that arrived since SELECT only in answer to a command, and a
            # search may run on the folder as it was (Dovecot right after SELECT: measured). NOOP
            # first brings the connection's view of the folder up to date (RFC 3501 6.1.2).
            c.noop()
            # "N:*" also matches the highest UID when N is above it (RFC 3501 6.4.8): filter.
            uids = sorted(u for u in c.search(["UID", f"{after_uid + 1}:*"]) if u > after_uid)
            if limit is not None:
                uids = uids[:limit]
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[]"])
            out = []
            for uid in uids:
                raw = data.get(uid, {}).get(b"BODY[]")
                if isinstance(raw, bytes):
                    out.append((uid, raw))
                else:  # expunged between SEARCH and FETCH
                    log.info("email.imap.fetch_missing uid=%s", uid)
            return out

        return self._call("fetch", run)

    def _ensure_processed_folder(self, c: IMAPClient) -> None:
        if self._processed_ok:
            return
        if not c.folder_exists(self.processed_folder):
            c.create_folder(self.processed_folder)
            try:
                c.subscribe_folder(self.processed_folder)
            except IMAPClientError:
                pass  # subscribing is a courtesy for mail clients
            log.info("email.imap.folder_created folder=%s", self.processed_folder)
        self._processed_ok = True

    def mark_processed(self, uid: int) -> None:
        """Move the message out of the folder into ``processed_folder`` (created when missing).
        Idempotent: a UID no longer in the folder is not an error."""

        def run(c: IMAPClient) -> None:
            self._ensure_processed_folder(c)
            if self.has_move:
                c.move([uid], self.processed_folder)
                return
            c.copy([uid], self.processed_folder)
            c.add_flags([uid], [b"\\Deleted"])
            if b"UIDPLUS" in self._caps:
                c.uid_expunge([uid])
            else:
                log.warning("email.imap.expunge_all reason=no_uidplus folder=%s", self.folder)
                c.expunge()

        self._call("mark_processed", run)

    # ------------------------------------------------------------------------------------- waiting

    def wait(self, timeout_s: float) -> bool:
        """Block until the server announces new mail or ``timeout_s`` passes. True when new mail
        was announced (fetch then), False on timeout (poll anyway: IDLE can miss events across
        reconnects). IDLE when offered (and enabled), re-issued every 29 minutes; otherwise a NOOP
        every ``poll_interval_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self.use_idle:
            self.connect()
            if self.has_idle:
                return self._call("idle", lambda c: self._idle_until(c, deadline))
        return self._poll_until(deadline)

    @staticmethod
    def _idle_until(c: IMAPClient, deadline: float) -> bool:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            c.idle()
            try:
                responses = c.idle_check(timeout=min(remaining, IDLE_REISSUE_S))
            finally:
                c.idle_done()
            if any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                return True

    def _poll_until(self, deadline: float) -> bool:
        while True:
            responses = self._call("noop", lambda c: c.noop()[1])
            if any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, self.poll_interval_s))


    # --------------------------------------------------------------------------------------- check

    def check(self) -> list[CheckResult]:
        """Reach the server (TLS as configured), log in, find ``folder``, find or create
        ``processed_folder``; in plain words, naming the setting to fix. Never shows the password.
        Uses its own connection and reads nothing but the folder list and the folder's size."""
        where = f"{self.host}:{self.port} ({self.security})"
        try:
            client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self.security == "ssl",
                ssl_context=self._context() if self.security == "ssl" else None,
                timeout=self.timeout_s,
            )
        except ssl.SSLError as e:
            return [CheckResult.of(N_("imap"), False, tls_advice("IMAP", where, e, "imap", 993, 143))]
        except _NETWORK_ERRORS as e:
            return [
                CheckResult.of(
                    N_("imap"),
                    False,
                    N_("cannot reach IMAP at {where} ({error}): check email.imap_host, "
                       "email.imap_port and that the mail server accepts connections from this machine"),
                    where=where, error=type(e).__name__,
                )
            ]
        results = [CheckResult.of(N_("imap"), True, N_("IMAP answers at {where}"), where=where)]
        try:
            results.extend(self._check_session(client, where))
        except _NETWORK_ERRORS as e:
            results.append(
                CheckResult.of(N_("imap"), False, N_("the IMAP connection to {where} broke ({error})"), where=where,
                               error=type(e).__name__)
            )
        finally:
            _quiet_logout(client)
        return results

    def _check_session(self, client: IMAPClient, where: str) -> list[CheckResult]:
        results: list[CheckResult] = []
        if self.security == "starttls":
            try:
                client.starttls(self._context())
            except ssl.SSLError as e:
                return [CheckResult.of(N_("imap_tls"), False, tls_advice("IMAP", where, e, "imap", 993, 143))]
            except IMAPClientError:
                return [
                    CheckResult.of(
                        N_("imap_tls"),
                        False,
                        N_("the IMAP server at {where} does not offer STARTTLS: set email.imap_security to "
                           "ssl (usually port 993), or to none on a trusted network"),
                        where=where,
                    )
                ]
            results.append(CheckResult.of(N_("imap_tls"), True, N_("STARTTLS negotiated")))
        try:
            client.login(self.username, self._password)
        except LoginError:
            return [
                *results,
                CheckResult.of(
                    N_("imap_login"),
                    False,
                    N_("IMAP refused the login for '{user}': check email.imap_username and "
                       "email.imap_password (or HELPDESK_ASSIST_EMAIL__IMAP_PASSWORD)"),
                    user=self.username,
                ),
            ]
        except IMAPClientError as e:
            return [*results, CheckResult.of(N_("imap_login"), False, N_("IMAP login failed: {error}"), error=e)]
        results.append(CheckResult.of(N_("imap_login"), True, N_("logged in as {user}"), user=self.username))
        folders = [str(name) for _, _, name in client.list_folders()]
        known = {f.upper() if f.upper() == "INBOX" else f for f in folders}
        wanted = self.folder.upper() if self.folder.upper() == "INBOX" else self.folder
        if wanted not in known:
            shown: str | Text = ", ".join(sorted(folders)[:12]) or Text.of(N_("none"))
            results.append(
                CheckResult.of(
                    N_("folder"),
                    False,
                    N_("folder '{folder}' (email.folder) does not exist for {user}; "
                       "it has: {folders}. Create it or fix email.folder"),
                    folder=self.folder, user=self.username, folders=shown,
                )
            )
        else:
            info = client.select_folder(self.folder, readonly=True)
            count = int(info.get(b"EXISTS", 0))
            results.append(CheckResult.of(
                N_("folder"), True, N_("'{folder}' holds {count} message(s)"), folder=self.folder, count=count
            ))
        if self.processed_folder in folders:
            results.append(
                CheckResult.of(N_("processed_folder"), True, N_("'{folder}' exists"), folder=self.processed_folder)
            )
        else:
            try:
                client.create_folder(self.processed_folder)
            except IMAPClientError as e:
                results.append(
                    CheckResult.of(
                        N_("processed_folder"),
                        False,
                        N_("folder '{folder}' (email.processed_folder) does not exist and "
                           "cannot be created ({error}): create it for {user} or name an existing one"),
                        folder=self.processed_folder, error=e, user=self.username,
                    )
                )
            else:
                log.info("email.imap.folder_created folder=%s", self.processed_folder)
                results.append(
                    CheckResult.of(
                        N_("processed_folder"),
                        True,
                        N_("'{folder}' did not exist and was created (handled mail goes there)"),
                        folder=self.processed_folder,
                    )
                )
        caps = {c.upper() for c in client.capabilities()}
        if self.use_idle:
            idle = b"IDLE" in caps
            results.append(
                CheckResult.of(
                    N_("idle"),
                    True,
                    N_("the server offers IDLE: new mail is seen at once")
                    if idle
                    else N_("the server has no IDLE: the folder is polled every {seconds} s"),
                    seconds=f"{self.poll_interval_s:g}",
                )
            )
        return results


def tls_advice(what: str, where: str, e: ssl.SSLError, key: str, ssl_port: int, plain_port: int) -> Text:
    """What to fix when TLS with the mail server fails, naming ``email.<key>_security`` and ``_port``."""
    reason = getattr(e, "reason", None) or type(e).__name__
    if isinstance(e, ssl.SSLCertVerificationError):
        return Text.of(
            N_("{what} at {where}: the server's certificate is not trusted ({error}): install the CA "
               "certificate on this machine or use the server's real host name"),
            what=what, where=where, error=e.verify_message,
        )
    return Text.of(
        N_("TLS with {what} at {where} failed ({error}): check email.{key}_security (ssl usually on port "
           "{ssl_port}, starttls or none on port {plain_port}) against email.{key}_port"),
        what=what, where=where, error=reason, key=key, ssl_port=ssl_port, plain_port=plain_port,
    )


def _quiet_logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the connection is being dropped anyway
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001, S110 - nothing left to release
            pass
