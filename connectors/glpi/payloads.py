"""Pydantic models of what GLPI sends us (the legacy API's items, GLPI 11's HL schemas).
Vendor payloads: ``extra="ignore"``.

Legacy API (``apirest.php``) items carry numeric ids and ``Y-m-d H:i:s`` server-local dates; GLPI 11
webhooks carry high-level (HL) API representations with nested ``{id, name}`` objects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Vendor(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _int_or_zero(v: Any) -> Any:
    return 0 if v in (None, "") else v


# ------------------------------------------------------------------------------------- legacy API (1.2-1.10)
class LegacyTicket(_Vendor):
    id: int
    name: str = ""
    content: str = ""
    status: int
    date: str | None = None
    date_mod: str | None = None
    date_creation: str | None = None
    closedate: str | None = None
    solvedate: str | None = None
    users_id_recipient: int = 0
    itilcategories_id: int = 0
    entities_id: int = 0
    is_deleted: int = 0
    #: Friendly names asked with ``add_keys_names[]`` (category completename, writer's name).
    keys_names: dict[str, Any] = Field(default_factory=dict, alias="_keys_names")

    _zero = field_validator("users_id_recipient", "itilcategories_id", "entities_id", "is_deleted",
                            mode="before")(_int_or_zero)


class LegacyTicketUser(_Vendor):
    id: int = 0
    tickets_id: int = 0
    users_id: int = 0
    #: 1 requester, 2 assigned, 3 observer (CommonITILActor).
    type: int
    alternative_email: str | None = ""

    _zero = field_validator("users_id", mode="before")(_int_or_zero)


class LegacyUser(_Vendor):
    id: int
    name: str = ""
    realname: str | None = ""
    firstname: str | None = ""

    @property
    def display(self) -> str:
        full = f"{self.realname or ''} {self.firstname or ''}".strip()
        return full or self.name


class LegacyUserEmail(_Vendor):
    email: str = ""
    is_default: int = 0


class LegacyFollowup(_Vendor):
    id: int
    itemtype: str = "Ticket"
    items_id: int = 0
    users_id: int = 0
    content: str | None = ""
    is_private: bool = False
    date: str | None = None
    date_creation: str | None = None
    date_mod: str | None = None

    _zero = field_validator("users_id", mode="before")(_int_or_zero)


class LegacySolution(_Vendor):
    id: int
    itemtype: str = "Ticket"
    items_id: int = 0
    content: str | None = ""
    #: CommonITILValidation: 1 none, 2 waiting, 3 accepted, 4 refused.
    status: int = 1
    users_id: int = 0
    users_id_approval: int = 0
    date_approval: str | None = None
    date_creation: str | None = None
    date_mod: str | None = None

    _zero = field_validator("users_id", "users_id_approval", mode="before")(_int_or_zero)


class CreatedItem(_Vendor):
    id: int
    message: str = ""


class SearchResponse(_Vendor):
    totalcount: int = 0
    count: int = 0
    data: list[dict[str, Any]] = Field(default_factory=list)


class SearchTicketRow(_Vendor):
    """A ``search/Ticket`` row keyed by search option: 2 id, 1 title, 12 status, 15 opened, 19 changed."""

    id: int = Field(alias="2")
    name: str = Field(default="", alias="1")
    status: int | None = Field(default=None, alias="12")
    date: str | None = Field(default=None, alias="15")
    date_mod: str = Field(alias="19")


class SearchUserRow(_Vendor):
    """A ``search/User`` row: 2 id, 1 login, 5 e-mail(s) (a list when the user has several), 9 first
    name, 34 last name."""

    id: int = Field(alias="2")
    login: str = Field(default="", alias="1")
    emails: list[str] = Field(default_factory=list, alias="5")
    firstname: str | None = Field(default="", alias="9")
    realname: str | None = Field(default="", alias="34")

    @field_validator("emails", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        if v in (None, ""):
            return []
        return [str(e) for e in v if e] if isinstance(v, list) else [str(v)]

    @field_validator("login", mode="before")
    @classmethod
    def _str(cls, v: Any) -> Any:
        return "" if v is None else str(v)


class ActiveProfile(_Vendor):
    """``getActiveProfile``'s ``active_profile``: the session profile with its right bit fields."""

    id: int = 0
    name: str = ""
    interface: str = ""
    ticket: int = 0
    followup: int = 0
    user: int = 0

    _zero = field_validator("ticket", "followup", "user", mode="before")(_int_or_zero)


# ------------------------------------------------------------------------------------- HL API shapes (2, 3.1)
class HLRef(_Vendor):
    """A dropdown/user reference in the HL API: ``{"id": 7, "name": "jdoe", ...}``."""

    id: int | None = None
    name: str | None = ""


class HLTicket(_Vendor):
    id: int
    name: str = ""
    content: str | None = ""
    is_deleted: bool = False
    status: HLRef | None = None
    category: HLRef | None = None
    date: str | None = None
    date_creation: str | None = None
    date_mod: str | None = None
    external_id: str | None = None


class HLFollowup(_Vendor):
    id: int
    itemtype: str = "Ticket"
    items_id: int
    content: str | None = ""
    is_private: bool = False
    user: HLRef | None = None
    date_creation: str | None = None
    date_mod: str | None = None


class HLSolution(_Vendor):
    id: int
    itemtype: str = "Ticket"
    items_id: int
    content: str | None = ""
    user: HLRef | None = None
    date_creation: str | None = None
    date_mod: str | None = None


class WebhookEnvelope(_Vendor):
    """GLPI 11's default payload ``{"item": ..., "event": ..., "parent_item": ...}`` (3.1); ``itemtype``
    only in a custom (Twig) payload that adds it."""

    event: str
    item: dict[str, Any]
    parent_item: dict[str, Any] | None = None
    itemtype: str | None = None
