"""One settings object: a YAML file plus environment overrides.

Precedence (highest first): explicit arguments, environment variables (``HELPDESK_ASSIST_`` prefix,
nesting with ``__``, e.g. ``HELPDESK_ASSIST_LLM__BACKEND=openai``), the YAML file (``--config`` or
``HELPDESK_ASSIST_CONFIG``), defaults. Unknown keys are rejected with the key named. Nothing outside
this module reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from helpdesk_errors import ConfigError

ENV_PREFIX = "HELPDESK_ASSIST_"
CONFIG_ENV = "HELPDESK_ASSIST_CONFIG"
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
DEFAULT_LLM_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _lists_from_strings(cls, data: Any) -> Any:
        """A list setting given as one string (every environment variable is one): ``"a, b"`` or a JSON
        list ``'["a", "b"]'``."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, info in cls.model_fields.items():
            value = out.get(name)
            if not isinstance(value, str) or typing.get_origin(info.annotation) is not list:
                continue
            text = value.strip()
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                if isinstance(parsed, list):
                    out[name] = parsed
                    continue
            out[name] = [part.strip() for part in text.split(",") if part.strip()]
        return out


class KBSettings(_Section):
    #: Files imported by ``serve``/``ask`` when the index is empty. Empty: the bundled sample KB.
    sources: list[Path] = Field(default_factory=list)


class EmbeddingSettings(_Section):
    #: A sentence-transformers model: hub id (needs a hub or a local mirror) or a local path.
    model: str = DEFAULT_EMBEDDING_MODEL
    #: Used when ``model`` cannot be loaded: the bundled multilingual USE v3 encoder, or none (fail).
    fallback: Literal["use-multilingual", "none"] = "use-multilingual"
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1, le=4096)
    #: Text put before every request (and entry question) / every passage (question + answer) for models
    #: trained with prefixes; unset: the model's known ones (rag.embeddings.KNOWN_PREFIXES: e5 "query: " /
    #: "passage: ", FRIDA "search_query: " / "search_document: ", bge-m3 none), "" for none.
    query_prefix: str | None = Field(default=None, max_length=500)
    passage_prefix: str | None = Field(default=None, max_length=500)


class VectorStoreSettings(_Section):
    #: ``embedded``: chromadb.PersistentClient under data_dir; ``http``: a Chroma server.
    mode: Literal["embedded", "http"] = "embedded"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False
    collection: str = Field(default="helpdesk_kb", min_length=3, max_length=63)


class RetrievalSettings(_Section):
    top_k: int = Field(default=5, ge=1, le=50)
    #: How many candidates each signal contributes before fusion.
    candidates: int = Field(default=50, ge=5, le=1000)
    #: Replace helpdesk jargon in requests before retrieval ("комп" → компьютер, "вайфай" → Wi-Fi; the table
    #: is rag/jargon.py). ``jargon`` adds words or overrides them (``{"шара": "общая папка"}``); an empty
    #: term switches a built-in word off.
    expand_jargon: bool = True
    jargon: dict[str, str] = Field(default_factory=dict)

    @field_validator("jargon")
    @classmethod
    def _jargon_words(cls, v: dict[str, str]) -> dict[str, str]:
        for word, term in v.items():
            if not word.strip() or len(word.split()) != 1:
                raise ValueError(f"jargon: {word!r} must be one word (the term may be several)")
            if len(term) > 200:
                raise ValueError(f"jargon: the term of {word!r} is longer than 200 characters")
        return v


class DecisionSettings(_Section):
    #: Minimum calibrated confidence of the best answer to answer rather than abstain. Unset: the
    #: engine's calibrated default, the threshold that gave precision@1 about 0.90 on this knowledge base
    #: (from `kb calibrate` or the reranker's confirmed requests; 0.5 until then).
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Per first-level category overrides, e.g. ``{"Безопасность": 0.8}``.
    category_thresholds: dict[str, float] = Field(default_factory=dict)
    #: Categories for which the engine always abstains (agents only).
    disabled_categories: list[str] = Field(default_factory=list)
    #: Fit the confidence and the default threshold on the knowledge base itself at import (held-out
    #: questions), until `kb calibrate` or confirmed outcomes replace them. Conservative: abstains more
    #: (README, "Answer quality": on the sample KB no off-topic request answered with it, 4 of 32 without).
    calibrate_at_import: bool = False

    @field_validator("category_thresholds")
    @classmethod
    def _in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold for category {name!r} must be between 0 and 1, got {value}")
        return v


class LLMSettings(_Section):
    #: ``none``: extractive answers only; ``transformers``: a local Qwen chat model in-process;
    #: ``openai``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp server).
    backend: Literal["none", "transformers", "openai"] = "none"
    model: str = DEFAULT_LLM_MODEL
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_new_tokens: int = Field(default=256, ge=16, le=4096)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    device: str = "cpu"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    #: Largest webhook delivery accepted, in bytes (GLPI and Redmine send a few kB).
    max_webhook_bytes: int = Field(default=256_000, ge=1024)


class APISettings(_Section):
    """``/api/*`` (issue 8 item 9): who may ask, and how much engine work one request may cause."""

    #: Keys accepted on /api/* as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Several, so a
    #: key can be replaced without downtime; comma-separated in HELPDESK_ASSIST_API__KEYS. Empty: a
    #: key is generated on first start in ``<data_dir>/api_key`` (file mode 0600) and is the only one.
    keys: list[SecretStr] = Field(default_factory=list)
    #: /api/ask requests that may run the engine at the same time; one more is answered 503 with
    #: Retry-After at once, so that webhook intake in the same process stays fast.
    max_concurrent_asks: int = Field(default=1, ge=1, le=64)
    #: Retrieval reads at most this many characters of an /api/ask text (a longer text is cut, not refused).
    max_query_chars: int = Field(default=2000, ge=100, le=20_000)

    @field_validator("keys")
    @classmethod
    def _long_enough(cls, v: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(v):
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"API key number {i + 1} is shorter than 16 characters: generate one with "
                                 "python3 -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        return v


class _ConnectorSettings(_Section):
    enabled: bool = False
    #: Post only the private agent note (draft, category, entries), never the public suggestion.
    #: None: the global ``pipeline.shadow_mode``.
    shadow_mode: bool | None = None
    #: Learn of new and changed tickets by polling (for helpdesks without webhooks).
    poll: bool = False
    poll_interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)
    timeout_s: float = Field(default=15.0, gt=0, le=300)
    verify_tls: bool = True
    #: A write the helpdesk received but did not answer within timeout_s (read timeout, connection
    #: reset) may still be applied: the ticket is read back, a few times over this many seconds,
    #: before the write counts as lost and is tried again. Longer than the helpdesk's slowest write.
    unknown_write_wait_s: float = Field(default=60.0, ge=0, le=3600)


class GLPISettings(_ConnectorSettings):
    #: Base URL of the legacy REST API, e.g. ``https://glpi.example/apirest.php``.
    url: str = ""
    #: The plugin user's API token (Preferences > Remote access keys).
    user_token: SecretStr = SecretStr("")
    #: The API client's App-Token (Setup > General > API), when the client has one.
    app_token: SecretStr = SecretStr("")
    #: Secret of the GLPI 11 webhook (Setup > Webhooks); empty: webhooks refused.
    webhook_secret: SecretStr = SecretStr("")
    #: Oldest accepted ``X-GLPI-timestamp``: GLPI signs at enqueue time and reuses it on retries.
    webhook_max_age_s: int = Field(default=6 * 3600, ge=60)
    #: Base URL of the GLPI web UI for links in notes (default: derived from ``url``).
    web_url: str = ""
    #: Answer only tickets of these entity ids (exactly these: list a sub-entity to include it), on
    #: every path (webhooks and polling, judged on the re-fetched ticket). Empty: every entity the
    #: plugin's profile sees.
    entities: list[int] = Field(default_factory=list)
    #: Open tickets on people's behalf (the self-service chat's "open a ticket"): needs the
    #: profile's Create right for Tickets and Read for Users (``check`` tests them).
    create_tickets: bool = False
    #: Entity of the tickets opened that way; empty: the plugin account's active entity.
    create_entity_id: int | None = Field(default=None, ge=0)


class RedmineSettings(_ConnectorSettings):
    url: str = ""
    #: The plugin user's API key (My account > API access key).
    api_key: SecretStr = SecretStr("")
    #: Answer only issues of these projects (identifiers or ids; exactly these, not their subprojects),
    #: on every path: webhooks, polling and check, judged on the re-fetched issue. Empty: every
    #: project the plugin user sees.
    projects: list[str] = Field(default_factory=list)
    #: Secret of Redmine 7's native webhook (``X-Redmine-Signature-256``).
    webhook_secret: SecretStr = SecretStr("")
    #: Shared secret for the unsigned ``redmine_webhook`` plugin: in the URL (``?token=``) or the
    #: ``X-Helpdesk-Assist-Token`` header.
    plugin_token: SecretStr = SecretStr("")
    #: Status set when the requester confirms; empty: the first status with ``is_closed``.
    closed_status: str = ""
    #: Status set when the requester says "not solved" on a resolved issue; empty: leave it.
    reopen_status: str = ""
    #: How notes are written: Redmine's text formatting setting (not readable over REST).
    text_formatting: Literal["textile", "common_mark", "markdown"] = "textile"
    #: Project (identifier) where issues are opened on people's behalf, as them
    #: (``X-Redmine-Switch-User``: ``api_key`` must be an administrator's); empty: none are opened.
    create_project: str = ""
    #: Tracker (name) of those issues; empty: the project's default tracker.
    create_tracker: str = ""


class EmailSettings(_Section):
    """The support mailbox: answer first, forward to the helpdesk what still needs a person."""

    enabled: bool = False
    #: Our address: the From of our replies (and never answered itself).
    address: str = ""
    display_name: str = "IT support assistant"
    #: Domain of our Message-IDs (default: the domain of ``address``).
    message_id_domain: str = ""
    imap_host: str = "127.0.0.1"
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["ssl", "starttls", "none"] = "ssl"
    imap_username: str = ""
    imap_password: SecretStr = SecretStr("")
    #: Folder we read; never one a helpdesk collector reads too (see README).
    folder: str = "INBOX"
    #: Where handled messages are moved (created when missing).
    processed_folder: str = "Processed"
    #: IMAP IDLE when the server offers it; polling every ``poll_interval_s`` in any case.
    idle: bool = True
    poll_interval_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["ssl", "starttls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    #: Where unresolved conversations go: the helpdesk's intake address (GLPI's mail collector,
    #: Redmine's receive_imap mailbox), with the original message attached.
    forward_to: str = ""
    #: How a conversation reaches the helpdesk: "smtp" mails it to ``forward_to`` (the collector files it
    #: under our account); "glpi" / "redmine" open the ticket through that helpdesk's API **as the mail's
    #: sender** (found by e-mail address; ``glpi.create_tickets`` / ``redmine.create_project`` needed), and
    #: mail to ``forward_to`` only when the sender has no account there.
    forward_via: Literal["smtp", "glpi", "redmine"] = "smtp"
    #: No answer from the user within this time: forward to the helpdesk.
    reply_timeout_h: float = Field(default=48.0, gt=0)
    #: At most this many automatic answers per day to one address: the one we write to (the
    #: Reply-To, else the From), so that forged senders cannot multiply the mail someone gets.
    max_replies_per_sender_per_day: int = Field(default=5, ge=1)
    #: When set, answer only mail whose From and Reply-To are in these domains (or their subdomains);
    #: anything else is forwarded to the helpdesk instead. Empty: answer any sender.
    allowed_domains: list[str] = Field(default_factory=list)
    #: Senders (regular expressions, case-insensitive) never answered, e.g. other systems.
    ignore_senders: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0, le=300)


    @field_validator("allowed_domains", mode="before")
    @classmethod
    def _domains_from_text(cls, v: Any) -> Any:
        # HELPDESK_ASSIST_EMAIL__ALLOWED_DOMAINS="example.ru, example.com": a list from one variable.
        return [d for d in re.split(r"[,\s]+", v) if d] if isinstance(v, str) else v

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = []
        for raw in v:
            domain = raw.strip().lstrip("@").rstrip(".").lower()
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"{raw!r} is not a domain name: write it as example.com (no @, no scheme, no path)")
            out.append(domain)
        return out


_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_][\w-]{0,61}", re.UNICODE)


class PipelineSettings(_Section):
    #: Post only private agent notes everywhere (try the assistant before go-live).
    shadow_mode: bool = False
    #: Up to this many knowledge-base entries in a public suggestion.
    max_entries: int = Field(default=3, ge=1, le=5)
    #: Logins/ids of agents and of the plugin's own account: their tickets get no suggestion.
    agent_ids: list[str] = Field(default_factory=list)
    #: Tickets older than this get no suggestion (the first poll after install sees old tickets).
    max_ticket_age_h: float = Field(default=72.0, gt=0)


class LinkSettings(_Section):
    #: Public base URL of this service, used in the confirmation links we post.
    public_url: str = "http://127.0.0.1:8080"
    #: How long a "solved / not solved" link stays valid.
    lifetime_days: float = Field(default=14.0, gt=0, le=365)


class WorkerSettings(_Section):
    #: Run the worker inside ``serve`` (one process). Set false and run ``helpdesk-assist worker``.
    embedded: bool = True
    #: How long a taken item is reserved before another worker may take it again (the worker
    #: extends it every third of this while it works on the item; a crashed worker's runs out).
    lease_s: float = Field(default=120.0, ge=5.0)
    #: An item whose worker died (its lease ran out) this many times is parked as dead: it keeps
    #: killing workers. Transient failures are not counted here: see retry_for_h.
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_s: float = Field(default=2.0, gt=0)
    #: The backoff between retries of a failing item grows up to this.
    backoff_max_s: float = Field(default=900.0, gt=0)
    #: Transient failures (helpdesk unreachable, HTTP 5xx, timeouts) are retried this long after an
    #: item's first failure, then the item is parked as dead (a later poll that sees the ticket
    #: again revives it). A day rides out any ordinary outage.
    retry_for_h: float = Field(default=24.0, gt=0, le=24 * 30)
    #: Done items are deleted from the inbox this long after they were done (by the worker, hourly).
    purge_done_after_days: float = Field(default=7.0, gt=0)
    #: Delivery keys of purged items are kept this long (from reception), so that a helpdesk
    #: replaying an old delivery is still recognised; at least purge_done_after_days.
    keep_delivery_keys_days: float = Field(default=90.0, gt=0)
    #: How often an idle worker looks at the inbox.
    idle_poll_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _keys_outlive_items(self) -> WorkerSettings:
        if self.keep_delivery_keys_days < self.purge_done_after_days:
            raise ValueError(
                f"worker.keep_delivery_keys_days ({self.keep_delivery_keys_days:g}) must be at least "
                f"worker.purge_done_after_days ({self.purge_done_after_days:g}): a replay of a purged item "
                "would be answered again"
            )
        return self


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class LDAPSettings(_Section):
    """Signing in to the admin console with the company's directory (OpenLDAP, Active Directory).

    The directory checks the password (a bind as the user); a group grants the role. See README,
    "Signing in with a directory".
    """

    enabled: bool = False
    #: ``ldaps://dc1.corp.example`` (TLS from the first byte, port 636) or ``ldap://dc1.corp.example``
    #: (port 389, upgraded with StartTLS unless ``start_tls`` is false). A port may follow the host.
    url: str = ""
    #: Upgrade an ``ldap://`` connection with StartTLS before the password is sent (ignored for ldaps://).
    start_tls: bool = True
    #: PEM file of the CA that signed the directory's certificate; empty: the system's CAs.
    ca_file: str = ""
    #: Check the directory's certificate and host name. Turn off only for a throw-away test directory.
    verify_tls: bool = True
    #: Allow ``ldap://`` without StartTLS to a host other than loopback: passwords cross the network in clear.
    allow_plaintext: bool = False
    #: Seconds to connect, and to wait for each answer.
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Bind straight as the user: a DN template ``uid={login},ou=people,dc=example,dc=com``, or Active
    #: Directory's ``{login}@corp.example`` (then ``user_search_base`` finds the user's entry after the bind).
    #: Empty: find the user with ``user_filter`` under ``user_search_base``, then bind as the entry found.
    bind_template: str = ""
    #: The account that searches for users and reads groups; empty: the user's own bind does (or an
    #: anonymous search, when there is no ``bind_template``).
    service_dn: str = ""
    service_password: SecretStr = SecretStr("")
    #: Where users are searched (subtree), e.g. ``ou=people,dc=example,dc=com``.
    user_search_base: str = ""
    #: ``{login}`` is replaced by the escaped login. AD: ``(&(objectClass=user)(sAMAccountName={login}))``.
    user_filter: str = "(uid={login})"
    #: DN of the group whose members sign in as admins (see and change).
    admin_group: str = ""
    #: DN of the group whose members sign in as analysts (see only). A member of both is an admin.
    analyst_group: str = ""
    #: How the directory stores membership: ``member`` (groupOfNames; AD groups), ``uniqueMember``
    #: (groupOfUniqueNames), ``memberUid`` (posixGroup, holding the user's ``uid``), ``memberOf`` (on
    #: the user: Active Directory, OpenLDAP's memberof overlay).
    membership: Literal["member", "uniqueMember", "memberUid", "memberOf"] = "member"

    def problems(self) -> list[str]:
        """What makes an enabled directory sign-in unusable, each naming its key (empty: fine)."""
        if not self.enabled:
            return []
        # Imported here: ldap3 loads only when a directory is configured.
        from ldap3.core.exceptions import LDAPInvalidDnError
        from ldap3.utils.dn import parse_dn

        k = "admin.ldap."
        out: list[str] = []
        parts = urlsplit(self.url)
        try:
            host = parts.hostname
            _ = parts.port  # a port that is not a number from 0 to 65535 raises ValueError
        except ValueError:
            host = None
        if parts.scheme not in ("ldap", "ldaps") or not host or parts.path not in ("", "/"):
            out.append(f"{k}url must look like ldaps://host[:port] or ldap://host[:port], got {self.url!r}")
        elif (
            parts.scheme == "ldap" and not self.start_tls and not self.allow_plaintext
            and host not in _LOOPBACK_HOSTS and not host.startswith("127.")
        ):
            out.append(
                f"{k}url is ldap:// without StartTLS to {host}: passwords would cross the network in clear; "
                f"use ldaps://, set {k}start_tls: true, or (knowingly) {k}allow_plaintext: true"
            )
        if self.ca_file and not Path(self.ca_file).is_file():
            out.append(f"{k}ca_file {self.ca_file!r} is not a readable file")

        def bad_dn(key: str, value: str) -> None:
            try:
                parse_dn(value)
            except LDAPInvalidDnError:
                out.append(f"{k}{key} is not a valid DN: {value!r}")

        upn = False
        if self.bind_template:
            if "{login}" not in self.bind_template:
                out.append(f"{k}bind_template must contain {{login}}, got {self.bind_template!r}")
            elif "=" in self.bind_template:
                bad_dn("bind_template", self.bind_template.replace("{login}", "x"))
            else:
                upn = True
        if not self.bind_template or upn:
            why = "(there is no bind_template)" if not self.bind_template else "(to find a {login}@domain user's entry)"
            if not self.user_search_base:
                out.append(f"{k}user_search_base is required {why}")
            if "{login}" not in self.user_filter or not self.user_filter.startswith("("):
                out.append(f"{k}user_filter must be an LDAP filter in parentheses containing {{login}}")
        for key in ("user_search_base", "service_dn", "admin_group", "analyst_group"):
            if getattr(self, key):
                bad_dn(key, getattr(self, key))
        if self.service_dn and not self.service_password.get_secret_value():
            out.append(
                f"{k}service_password is required with {k}service_dn (HELPDESK_ASSIST_ADMIN__LDAP__SERVICE_PASSWORD)"
            )
        if not (self.admin_group or self.analyst_group):
            out.append(f"{k}admin_group or {k}analyst_group is required: a group grants the role")
        return out


class SignInThrottleSettings(_Section):
    """Failed sign-ins lock an account, and an address, for a while (password guessing)."""

    #: Failed sign-ins to one account within ``window_s`` that lock it for ``lock_s``.
    account_max_failures: int = Field(default=5, ge=1, le=1000)
    #: Failed sign-ins from one address (IPv6: its /64) within ``window_s`` that lock it for ``lock_s``.
    ip_max_failures: int = Field(default=20, ge=1, le=100_000)
    window_s: float = Field(default=900.0, ge=1.0, le=86_400.0)
    lock_s: float = Field(default=900.0, ge=1.0, le=86_400.0)


class ChatSettings(_Section):
    """The self-service chat (``/``, ``/chat``, ``/api/chat/*``, the widget)."""

    enabled: bool = True
    #: A header set by the company's SSO reverse proxy naming the signed-in person (``X-Remote-User``).
    #: Empty: not trusted (the default: anyone could send it); each browser then gets an anonymous,
    #: signed cookie. Only enable it when the service is reachable through that proxy alone.
    identity_header: str = Field(default="", max_length=100)
    #: Origins that may embed the chat (the widget's iframe on the helpdesk's pages), e.g.
    #: ``https://glpi.example.com``. Empty: the chat cannot be framed.
    frame_ancestors: list[str] = Field(default_factory=list)
    #: Longest message accepted (characters).
    max_message_chars: int = Field(default=1000, ge=50, le=10_000)
    #: Messages in one conversation; then the person is asked to start a new one or open a ticket.
    max_turns: int = Field(default=30, ge=2, le=500)
    #: Clarifying questions asked in one conversation at most.
    max_clarify_rounds: int = Field(default=2, ge=0, le=2)
    #: Messages one person may send per minute (then a 429 with a clear message).
    messages_per_minute: int = Field(default=12, ge=1, le=10_000)
    #: Messages one client address (IPv6: its /64) may send per minute, all its people together.
    ip_messages_per_minute: int = Field(default=60, ge=1, le=100_000)
    #: How long the anonymous cookie keeps a person's conversations (days).
    cookie_days: float = Field(default=365.0, gt=0, le=3650)
    #: How long a "send me a link" link restores conversations (hours).
    restore_link_hours: float = Field(default=24.0, gt=0, le=24 * 30)

    @field_validator("frame_ancestors")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                    or any(c in origin for c in " ;,'\""):
                raise ValueError(f"frame_ancestors: {origin!r} is not an origin like https://glpi.example.com")
        return [o.rstrip("/") for o in v]


class AdminSettings(_Section):
    """The admin console."""

    ldap: LDAPSettings = Field(default_factory=LDAPSettings)
    throttle: SignInThrottleSettings = Field(default_factory=SignInThrottleSettings)
    #: A console session ends after this long without a request (minutes).
    idle_timeout_min: float = Field(default=30.0, ge=1.0, le=24 * 60)
    #: ... and at the latest this long after signing in (hours).
    session_max_h: float = Field(default=12.0, ge=0.1, le=24 * 30)
    #: The largest knowledge-base file the console accepts for import (megabytes).
    max_upload_mb: float = Field(default=50.0, gt=0, le=1000)


class OutageSettings(_Section):
    """Outage detection (issue 13): near-identical requests in a burst, across channels, open an incident."""

    enabled: bool = False
    #: Near-identical requests it takes to open an incident ...
    min_requests: int = Field(default=5, ge=2, le=1000)
    #: ... within this many seconds of each other.
    window_s: float = Field(default=600.0, gt=0, le=86_400)
    #: Average similarity within the group that opens one, and to an open incident to join it (tuned for
    #: the bundled USE encoder with character n-grams: bench/bench_outages.py).
    similarity: float = Field(default=0.3, gt=0.0, le=1.0)
    join_similarity: float = Field(default=0.6, gt=0.0, le=1.0)


#: The parameters of the economic model (``analytics.economics``).
ECONOMIC_PARAMETERS = (
    "support_staff", "users", "staff_cost_per_month", "training_cost_per_year", "downtime_hours_per_user_month",
    "downtime_cost_per_hour", "agent_minutes_per_ticket", "working_hours_per_month", "currency",
)


class AnalyticsSettings(_Section):
    """The analytics page, ``report``, the holdout and the economic report (issue 13)."""

    #: A confirmed suggestion counts as deflected once this many days passed without a reopen.
    deflection_days: int = Field(default=7, ge=1, le=365)
    #: Share of eligible tickets (those the assistant would answer publicly) that get only the private
    #: note, chosen at random: the holdout the report compares with (0: no holdout).
    holdout_share: float = Field(default=0.0, ge=0.0, le=0.5)
    #: The precision the admin wants; the report names the threshold that would have kept it.
    target_precision: float = Field(default=0.9, gt=0.0, le=1.0)
    #: Knowledge gaps: how close (cosine) unanswered or rejected requests must be to form one, the
    #: smallest gap shown, and how many of the latest such requests are clustered at most.
    gap_similarity: float = Field(default=0.6, gt=0.0, le=1.0)
    gap_min_size: int = Field(default=3, ge=2, le=1000)
    gap_max_requests: int = Field(default=2000, ge=10, le=50_000)
    #: The economic model's parameters (plugin.service.economics.EconomicParameters; unset: the seed's).
    economics: dict[str, float | str] = Field(default_factory=dict)
    #: Serve /admin/analytics without the console sign-in or an API key (only on a trusted network).
    open_without_key: bool = False

    @field_validator("economics")
    @classmethod
    def _known_parameters(cls, v: dict[str, float | str]) -> dict[str, float | str]:
        # The names of plugin.service.economics.EconomicParameters (checked against it by a test), so that
        # a misspelt parameter stops the start, not the first report.
        for key, value in v.items():
            if key not in ECONOMIC_PARAMETERS:
                raise ValueError(f"unknown parameter {key!r}; expected one of {', '.join(ECONOMIC_PARAMETERS)}")
            if key == "currency":
                if not isinstance(value, str) or not 1 <= len(value) <= 8:
                    raise ValueError("currency: 1 to 8 characters, e.g. RUB")
                continue
            try:
                number = float(value)  # from the environment, numbers come as text
            except ValueError:
                number = -1.0
            if not number >= 0 or (key == "working_hours_per_month" and number == 0):
                raise ValueError(f"{key}: expected a number of 0 or more, got {value!r}")
            v[key] = number
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: Where state and indexes live (SQLite, Chroma, the lexical index).
    data_dir: Path = Path("var")
    #: Language used when a text has no letters to tell.
    default_language: Literal["ru", "en"] = "ru"
    #: The language of the command line's words for admins (``helpdesk-assist check``, ``status``...).
    admin_language: Literal["ru", "en"] = "ru"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Models load from local paths or the local model cache only. Set false to let
    #: sentence-transformers/transformers download hub ids (from a hub or a mirror: HF_ENDPOINT).
    offline: bool = True
    kb: KBSettings = Field(default_factory=KBSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    vector_store: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    api: APISettings = Field(default_factory=APISettings)
    #: Signs the confirmation links. Required once a connector is enabled; keep it stable (a new
    #: key invalidates the links already sent). Generate one:
    #: ``python -c "import secrets; print(secrets.token_hex(32))"``.
    secret_key: SecretStr = SecretStr("")
    links: LinkSettings = Field(default_factory=LinkSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    glpi: GLPISettings = Field(default_factory=GLPISettings)
    redmine: RedmineSettings = Field(default_factory=RedmineSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    outages: OutageSettings = Field(default_factory=OutageSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file and the environment are merged by load_settings() (env above YAML, unknown
        # variables named like unknown keys) and passed as init data. pydantic-settings' own env
        # source would read os.environ a second time and JSON-decode list values, so that
        # HELPDESK_ASSIST_API__KEYS=key1,key2 failed before our validators saw it.
        return (init_settings,)

    @model_validator(mode="after")
    def _enabled_connectors_are_complete(self) -> Settings:
        problems = []
        for name, section, needed in (
            ("glpi", self.glpi, ("url", "user_token")),
            ("redmine", self.redmine, ("url", "api_key")),
        ):
            if not section.enabled:
                continue
            for key in needed:
                value = getattr(section, key)
                if not (value.get_secret_value() if isinstance(value, SecretStr) else value):
                    problems.append(f"{name}.{key} is required when {name}.enabled is true")
        if self.email.enabled:
            for key in ("address", "imap_username"):
                if not getattr(self.email, key):
                    problems.append(f"email.{key} is required when email.enabled is true")
            if self.email.forward_via == "smtp" and not self.email.forward_to:
                problems.append("email.forward_to (the helpdesk's intake address) is required with forward_via: smtp")
            if self.email.forward_via == "glpi" and not (self.glpi.enabled and self.glpi.create_tickets):
                problems.append("email.forward_via: glpi needs glpi.enabled and glpi.create_tickets")
            if self.email.forward_via == "redmine" and not (self.redmine.enabled and self.redmine.create_project):
                problems.append("email.forward_via: redmine needs redmine.enabled and redmine.create_project")
        any_connector = self.glpi.enabled or self.redmine.enabled or self.email.enabled
        if any_connector and len(self.secret_key.get_secret_value()) < 16:
            problems.append(
                "secret_key (at least 16 characters) is required once a connector is enabled: it signs the links"
            )
        # Checked here, not in the section: an error there would print the section, password included.
        problems.extend(self.admin.ldap.problems())
        if self.worker.lease_s < self.llm.timeout_s + 30:
            problems.append(
                f"worker.lease_s ({self.worker.lease_s:g}) must exceed llm.timeout_s ({self.llm.timeout_s:g}) by 30 s "
                "or more: a ticket still being answered would be taken by a second worker"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    """Nested dict from ``HELPDESK_ASSIST_A__B=v`` variables (the config path itself excluded)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {key} conflicts with another variable")
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_SECRET_KEY_RE = re.compile(r"(secret|token|api_key|password|\bkeys\b)", re.IGNORECASE)


def _explain(e: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        # A list item's index is not part of a variable's name: HELPDESK_ASSIST_GLPI__ENTITIES holds them all.
        path = [p for p in err["loc"] if not isinstance(p, int)]
        items = [p + 1 for p in err["loc"] if isinstance(p, int)]
        env = ENV_PREFIX + "__".join(str(p).upper() for p in path) + (f", item {items[0]}" if items else "")
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling (see config.example.yaml)")
        elif not err["loc"]:
            # A rule across keys: the input is the whole configuration, secrets included.
            lines.append(f"  - {str(err['msg']).removeprefix('Value error, ')}")
        elif _SECRET_KEY_RE.search(key):
            lines.append(f"  - '{key}' (or {env}): {err['msg']}")
        else:
            lines.append(f"  - '{key}' (or {env}): {err['msg']}; got {err.get('input')!r}")
    return "\n".join(lines)


def load_settings(
    config: Path | str | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from a YAML file, the environment and explicit overrides.

    Raises :class:`ConfigError` naming every bad key.
    """
    env = dict(os.environ if env is None else env)
    path = Path(config) if config else (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    data: dict[str, Any] = _read_yaml(path) if path else {}
    data = _deep_merge(data, _env_overrides(env))
    data = _deep_merge(data, overrides)
    origin = f"{path} + environment" if path else "environment"
    try:
        # Environment already merged above: bypass pydantic-settings' own env reading so that
        # an unknown HELPDESK_ASSIST_* variable is reported like an unknown YAML key.
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, origin)) from e
