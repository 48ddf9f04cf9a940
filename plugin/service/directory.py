"""Signing in with the company's directory (OpenLDAP, Active Directory): the directory checks the password.

A sign-in binds to the directory *as the user* (a simple bind, over TLS unless configured otherwise), so
the directory alone decides whether the password is right: no password or hash of a directory user is
stored or compared here. A group then grants the role: ``admin_group`` gives ``"admin"``,
``analyst_group`` gives ``"analyst"`` (a member of both is an admin), anyone else is refused.

Two ways to find the user (the ``admin.ldap`` settings):

- ``bind_template``: bind straight as ``uid={login},ou=people,...`` (the login escaped as one RDN value,
  RFC 4514, so ``a,ou=admins`` stays one value) or as Active Directory's ``{login}@corp.example`` (then
  ``user_filter`` finds the entry, for its groups);
- otherwise a search: the service account (or an anonymous bind) looks the login up with ``user_filter``
  (the login escaped for a filter, RFC 4515, so ``*)(uid=*`` matches nobody), exactly one entry must
  answer, then a bind as that entry.

Refused before anything is sent: an empty password (many servers, Active Directory among them, take a
name with an empty password as an *anonymous* bind and answer "success"), an empty or over-long login,
and control characters. The password is sent as the UTF-8 bytes typed: ldap3 would SASLprep a ``str``
(NFKC: ``²`` becomes ``2``, a no-break space a space), which directories do not do to the password they
store, so such a password would never match.

A refusal carries a stable ``reason`` and words for the log, never the password, the login or the DN. A
directory that cannot answer (down, a timeout, TLS, a wrong service password, a group that does not
exist) raises :class:`DirectoryError` instead, so that the page says "the directory is unavailable"
rather than "wrong password", and the log says why.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import re
import ssl
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPException,
    LDAPInvalidDnError,
    LDAPResponseTimeoutError,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
    LDAPSSLConfigurationError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from pydantic import BaseModel, ConfigDict

from connectors.base import N_, CheckResult, Text
from helpdesk_errors import HelpdeskError
from plugin.settings import LDAPSettings

log = logging.getLogger(__name__)

Role = Literal["admin", "analyst"]
#: Why a sign-in was refused (stable: logs and the audit log keep them).
Refusal = Literal[
    "empty_password",  # never sent: it would be an anonymous bind on many servers
    "bad_login",  # empty, too long, control characters
    "invalid_credentials",  # the directory refused the password (or knows no such name)
    "unknown_user",  # the search found no entry for the login
    "ambiguous_user",  # the search found more than one entry
    "bind_refused",  # the directory refused the bind for another reason (disabled, must change, ...)
    "not_in_group",  # the password is right, but the user is in neither group
]
MAX_LOGIN_CHARS = 256
_NO_ATTRIBUTES = "1.1"  # RFC 4511: return no attributes (we only ask whether an entry matches)


class DirectoryError(HelpdeskError):
    """The directory could not answer (TLS, settings, a group that does not exist): not the user's fault."""


class DirectoryUnavailable(DirectoryError):
    """The directory could not be reached, or did not answer in time."""


class DirectorySignIn(BaseModel):
    """What the directory said about one sign-in. Holds no password."""

    model_config = ConfigDict(frozen=True)

    role: Role | None
    reason: Literal["ok"] | Refusal
    #: Words for the log: what happened, without the password, the login or the DN.
    detail: str
    #: The user's entry (for the audit log), when the directory accepted the password.
    user_dn: str | None = None

    @property
    def ok(self) -> bool:
        return self.role is not None


def login_problem(login: str) -> str | None:
    """Why a (stripped) login is refused before the directory is asked; None when it is acceptable."""
    if not login:
        return "empty login"
    if len(login) > MAX_LOGIN_CHARS:
        return f"login longer than {MAX_LOGIN_CHARS} characters"
    # Cc: NUL and other controls (a NUL can cut a C string short in the server); Cf: invisible
    # format characters (zero-width, bidirectional overrides) that make two logins look alike.
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in login):
        return "control or invisible format characters in the login"
    return None


def is_dn_template(template: str) -> bool:
    """A DN template (``uid={login},ou=...``) rather than a name AD resolves (``{login}@corp.example``)."""
    return "=" in template


def bind_name(template: str, login: str) -> str:
    """The name to bind as: in a DN template the login is escaped as one RDN value (RFC 4514)."""
    return template.replace("{login}", escape_rdn(login) if is_dn_template(template) else login)


def user_filter(template: str, login: str) -> str:
    """The search filter for a login, escaped so that ``*``, ``(``, ``)``, ``\\`` and NUL match themselves."""
    return template.replace("{login}", escape_filter_chars(login))


@dataclass
class _Bind:
    conn: Connection
    ok: bool
    #: The bind's result code name and the server's message, e.g. ``invalidCredentials: ...``.
    why: str


def _result_words(result: dict[str, Any]) -> str:
    message = str(result.get("message") or "").strip()
    return f"{result.get('description')}: {message}" if message else str(result.get("description"))


class Directory:
    """Directory sign-in as configured in ``admin.ldap``. One connection per identity per call: no state
    is shared between sign-ins, so one object serves every thread."""

    def __init__(self, settings: LDAPSettings) -> None:
        self.settings = settings
        parts = urlsplit(settings.url)
        self._ldaps = parts.scheme == "ldaps"
        self._start_tls = settings.start_tls and not self._ldaps
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            sni: str | None = None  # SNI carries host names only
        except ValueError:
            sni = host or None
        self._tls = Tls(
            validate=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE,
            ca_certs_file=settings.ca_file or None,
            sni=sni,
        )

    @property
    def transport(self) -> str:
        if self._ldaps:
            return "LDAPS"
        return "StartTLS" if self._start_tls else "plain LDAP (no TLS)"

    # -- sign-in ---------------------------------------------------------------------------------

    def authenticate(self, login: str, password: str) -> DirectorySignIn:
        """Ask the directory whether ``password`` is ``login``'s, then which role its groups grant.

        Returns a refusal with its reason for anything the user can change; raises
        :class:`DirectoryError` (:class:`DirectoryUnavailable` when unreachable) for the rest.
        """
        if not password:
            return self._refuse(
                "empty_password", "empty password: never sent (many directories take it as an anonymous bind)"
            )
        login = login.strip()
        problem = login_problem(login)
        if problem:
            return self._refuse("bad_login", problem)
        try:
            secret = password.encode("utf-8")
        except UnicodeEncodeError:
            return self._refuse("invalid_credentials", "the password is not valid Unicode text (a lone surrogate)")
        try:
            result = self._authenticate(login, secret)
        except LDAPException as e:
            error = self._error(e)
            event = "directory_unavailable" if isinstance(error, DirectoryUnavailable) else "directory_error"
            log.warning("%s url=%s: %s", event, self.settings.url, error)
            raise error from e
        except DirectoryError as e:
            log.warning("directory_error url=%s: %s", self.settings.url, e)
            raise
        if result.ok:
            log.info("directory_sign_in role=%s", result.role)
        return result

    def _authenticate(self, login: str, secret: bytes) -> DirectorySignIn:
        s = self.settings
        with contextlib.ExitStack() as stack:
            service: _Bind | None = None
            if s.service_dn:
                service_secret = s.service_password.get_secret_value().encode()
                service = stack.enter_context(self._connect(s.service_dn, service_secret))
                if not service.ok:
                    raise DirectoryError(
                        f"the service account cannot bind ({service.why}): check admin.ldap.service_dn and "
                        "admin.ldap.service_password"
                    )
            uids: list[str] = []
            if s.bind_template:
                name = bind_name(s.bind_template, login)
                try:
                    user = stack.enter_context(self._connect(name, secret))
                except LDAPInvalidDnError:
                    return self._refuse("bad_login", "the login does not make a valid DN with admin.ldap.bind_template")
                if not user.ok:
                    return self._refused_bind(user)
                lookup = service or user
                if is_dn_template(s.bind_template):
                    # Read the entry back: its DN as the directory spells it (``ALICE`` signs in as
                    # uid=alice), and its uid for memberUid groups.
                    user_dn, uids = self._read_entry(lookup.conn, name)
                else:
                    found = self._find(lookup.conn, login)
                    if isinstance(found, DirectorySignIn):
                        return found
                    user_dn, uids = found
            else:
                searcher = service or stack.enter_context(self._connect(None, None))
                if not searcher.ok:
                    raise DirectoryError(
                        f"the directory refuses an anonymous search ({searcher.why}): set admin.ldap.service_dn"
                    )
                found = self._find(searcher.conn, login)
                if isinstance(found, DirectorySignIn):
                    return found
                user_dn, uids = found
                user = stack.enter_context(self._connect(user_dn, secret))
                if not user.ok:
                    return self._refused_bind(user)
                lookup = service or user
            role = self._role(lookup.conn, user_dn, uids)
        if role is None:
            return self._refuse(
                "not_in_group", "the password is right, but the user is in neither admin_group nor analyst_group",
                user_dn=user_dn,
            )
        return DirectorySignIn(
            role=role, reason="ok", detail=f"signed in as {role} ({self.transport})", user_dn=user_dn
        )

    # -- the wire --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, user: str | None, password: bytes | None) -> Iterator[_Bind]:
        """A connection bound as ``user`` (None: anonymous), TLS first; closed on leaving."""
        s = self.settings
        server = Server(s.url, use_ssl=self._ldaps, tls=self._tls, connect_timeout=s.timeout_s, get_info=NONE)
        conn = Connection(
            server,
            user=user,
            password=password,
            authentication=SIMPLE if user else ANONYMOUS,
            read_only=True,
            # Whole seconds: ldap3 packs it into SO_RCVTIMEO as an integer on Linux.
            receive_timeout=max(1, math.ceil(s.timeout_s)),
            raise_exceptions=False,
            # AD answers searches at a domain root with referrals to other servers; following them
            # would send the bind there too.
            auto_referrals=False,
        )
        try:
            conn.open()
            if self._start_tls:
                conn.start_tls()  # before the bind: the password never crosses in clear
            ok = bool(conn.bind())
            yield _Bind(conn=conn, ok=ok, why="" if ok else _result_words(conn.result))
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
            # After a timeout ldap3 leaves its socket open; close it (a no-op when unbind did).
            sock = getattr(conn, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _search(self, conn: Connection, base: str, flt: str, scope: str, attributes: list[str], what: str,
                size_limit: int = 0) -> list[dict[str, Any]]:
        """Entries found (search result references, which AD adds, left out); noSuchObject raises with ``what``."""
        conn.search(base, flt, scope, attributes=attributes, size_limit=size_limit)
        description = conn.result.get("description")
        if description == "noSuchObject":
            raise DirectoryError(f"{what} does not exist, or the account that looks it up may not read it")
        if description not in ("success", "sizeLimitExceeded"):
            raise DirectoryError(f"looking up {what} failed: {_result_words(conn.result)}")
        return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]

    def _find(self, conn: Connection, login: str) -> tuple[str, list[str]] | DirectorySignIn:
        s = self.settings
        entries = self._search(
            conn, s.user_search_base, user_filter(s.user_filter, login), SUBTREE, ["uid"],
            f"admin.ldap.user_search_base ({s.user_search_base})", size_limit=2,
        )
        if not entries:
            return self._refuse("unknown_user", "no entry matches admin.ldap.user_filter under user_search_base")
        if len(entries) > 1:
            return self._refuse(
                "ambiguous_user", "more than one entry matches admin.ldap.user_filter: make it stricter"
            )
        return str(entries[0]["dn"]), _values(entries[0], "uid")

    def _read_entry(self, conn: Connection, user_dn: str) -> tuple[str, list[str]]:
        entries = self._search(conn, user_dn, "(objectClass=*)", BASE, ["uid"], "the user's entry")
        if not entries:
            raise DirectoryError(
                "the user's entry cannot be read after the bind: give the account that looks it up read access"
            )
        return str(entries[0]["dn"]), _values(entries[0], "uid")

    def _role(self, conn: Connection, user_dn: str, uids: list[str]) -> Role | None:
        s = self.settings
        if s.admin_group and self._member(conn, s.admin_group, "admin_group", user_dn, uids):
            return "admin"
        if s.analyst_group and self._member(conn, s.analyst_group, "analyst_group", user_dn, uids):
            return "analyst"
        return None

    def _member(self, conn: Connection, group_dn: str, key: str, user_dn: str, uids: list[str]) -> bool:
        """Is the user in the group? The directory compares (DN matching rules), not this code."""
        membership = self.settings.membership
        if membership == "memberOf":
            base, flt, what = user_dn, f"(memberOf={escape_filter_chars(group_dn)})", "the user's entry"
        elif membership == "memberUid":
            if not uids:
                return False
            values = "".join(f"(memberUid={escape_filter_chars(u)})" for u in uids)
            base, flt, what = group_dn, f"(|{values})", f"admin.ldap.{key} ({group_dn})"
        else:
            base, flt = group_dn, f"({membership}={escape_filter_chars(user_dn)})"
            what = f"admin.ldap.{key} ({group_dn})"
        return bool(self._search(conn, base, flt, BASE, [_NO_ATTRIBUTES], what))

    # -- outcomes ----------------------------------------------------------------------------------

    def _refuse(self, reason: Refusal, detail: str, user_dn: str | None = None) -> DirectorySignIn:
        log.info("directory_sign_in_refused reason=%s: %s", reason, detail)
        return DirectorySignIn(role=None, reason=reason, detail=detail, user_dn=user_dn)

    def _refused_bind(self, bind: _Bind) -> DirectorySignIn:
        # AD puts the real cause in the message: "data 52e" wrong password, 533 disabled, 701 expired,
        # 773 must change the password, 775 locked out. Kept for the log; it holds no password.
        if bind.why.startswith("invalidCredentials"):
            return self._refuse("invalid_credentials", f"the directory refused the password ({bind.why})")
        return self._refuse("bind_refused", f"the directory refused the bind ({bind.why})")

    def _error(self, e: LDAPException) -> DirectoryError:
        s = self.settings
        # ldap3 nests the cause in tuple reprs: "(\"('socket ssl wrapping error: [SSL: ...] ... (_ssl.c:1006)',)\",)"
        text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(e))
        text = re.sub(r"^[(\"',\s]+|[)\"',\s]+$", "", text) or type(e).__name__
        if isinstance(e, (LDAPStartTLSError, LDAPCertificateError, LDAPSSLConfigurationError)) or (
            "ssl" in text.lower() or "certificate" in text.lower()
        ):
            hint = ""
            if "certificate" in text.lower() or "CERTIFICATE_VERIFY_FAILED" in text:
                hint = (
                    "; if the directory's certificate is not trusted here, set admin.ldap.ca_file to its CA's PEM file"
                )
            return DirectoryError(f"TLS with the directory at {s.url} failed ({self.transport}): {text}{hint}")
        if isinstance(e, (LDAPSocketReceiveError, LDAPResponseTimeoutError)) and "timed out" in text.lower():
            return DirectoryUnavailable(f"the directory at {s.url} did not answer within {s.timeout_s:g} s")
        if isinstance(e, LDAPSocketOpenError):
            return DirectoryUnavailable(f"cannot reach the directory at {s.url}: {text}")
        return DirectoryUnavailable(f"the directory at {s.url} failed: {text}")

    # -- check -------------------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """Reachability, TLS, the service account and that the groups exist, in plain words."""
        s = self.settings
        results: list[CheckResult] = []
        secret = s.service_password.get_secret_value().encode() if s.service_dn else None
        try:
            with self._connect(s.service_dn or None, secret) as bind:
                results.append(CheckResult.of(
                    N_("ldap"), True, N_("{url} answers ({transport})"), url=s.url, transport=self.transport
                ))
                if s.service_dn:
                    results.append(CheckResult.of(
                        N_("ldap service account"), bind.ok,
                        N_("binds") if bind.ok else N_("cannot bind ({error}): check admin.ldap.service_dn "
                                                       "and service_password"),
                        error=bind.why,
                    ))
                if not (bind.ok and s.service_dn):
                    results.append(CheckResult.of(
                        N_("ldap groups"), True,
                        N_("not checked without a service account: sign in as a member of each group to test it"),
                    ))
                    return results
                for key in ("user_search_base", "admin_group", "analyst_group"):
                    dn = getattr(s, key)
                    if not dn:
                        continue
                    try:
                        found = self._search(
                            bind.conn, dn, "(objectClass=*)", BASE, [_NO_ATTRIBUTES], f"admin.ldap.{key}"
                        )
                        results.append(CheckResult.of(
                            N_("ldap {setting}"), bool(found), N_("{dn} exists"), setting=key, dn=dn
                        ))
                    except DirectoryError as e:
                        results.append(CheckResult.of(
                            N_("ldap {setting}"), False, Text.plain(f"{dn}: {e}"), setting=key
                        ))
        except LDAPException as e:
            results.append(CheckResult.of(N_("ldap"), False, Text.plain(self._error(e))))
        return results


def _values(entry: dict[str, Any], name: str) -> list[str]:
    value = (entry.get("attributes") or {}).get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
