"""Pydantic models of what Redmine sends: REST answers and webhook bodies (``extra="ignore"``).

Shapes checked against a live Redmine 5.0.4 (REST) and, for webhooks, against the sources named in
Redmine 7.0's native webhooks (``app/models/webhook_payload.rb``) and the suer/redmine_webhook plugin
(``lib/redmine_webhook/webhook_listener.rb``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Vendor(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Ref(_Vendor):
    """``{"id": 5, "name": "Rita Requester"}``: a user, project, tracker, priority or category."""

    id: int
    name: str = ""


class StatusRef(Ref):
    #: Present in issue JSON on Redmine 5.0+; absent in the suer plugin's payload.
    is_closed: bool | None = None


class JournalDetail(_Vendor):
    """A change in a journal. REST: ``name``/``new_value``; webhooks: ``prop_key``/``value``."""

    kind: str = Field(default="", alias="property")
    name: str | None = None
    prop_key: str | None = None
    old_value: str | None = None
    new_value: str | None = None
    value: str | None = None

    @property
    def key(self) -> str:
        return self.name or self.prop_key or ""

    @property
    def new(self) -> str | None:
        return self.new_value if self.new_value is not None else self.value


class Journal(_Vendor):
    id: int
    user: Ref | None = None
    notes: str | None = ""
    created_on: datetime | None = None
    #: REST only; Redmine 7's webhook journal has no such flag.
    private_notes: bool = False
    details: list[JournalDetail] = Field(default_factory=list)

    def status_change(self) -> tuple[int, int] | None:
        """(old, new) status ids when this journal changed the status."""
        for d in self.details:
            if d.kind == "attr" and d.key == "status_id" and d.old_value and d.new:
                try:
                    return int(d.old_value), int(d.new)
                except ValueError:
                    return None
        return None


class Issue(_Vendor):
    id: int
    project: Ref | None = None
    tracker: Ref | None = None
    status: StatusRef | None = None
    priority: Ref | None = None
    author: Ref | None = None
    assigned_to: Ref | None = None
    category: Ref | None = None
    subject: str = ""
    description: str | None = ""
    is_private: bool = False
    created_on: datetime | None = None
    updated_on: datetime | None = None
    closed_on: datetime | None = None
    journals: list[Journal] = Field(default_factory=list)
    #: With ``include=allowed_statuses`` (5.0+): the statuses the API user may set. On 5.0.4 this
    #: lists workflow targets even when the user cannot edit the status at all (see connector.check).
    allowed_statuses: list[StatusRef] = Field(default_factory=list)


class IssueEnvelope(_Vendor):
    issue: Issue


class IssueList(_Vendor):
    issues: list[dict[str, object]] = Field(default_factory=list)
    total_count: int = 0
    offset: int = 0
    limit: int = 25


class IssueStatus(_Vendor):
    id: int
    name: str
    is_closed: bool = False


class IssueStatusList(_Vendor):
    issue_statuses: list[IssueStatus] = Field(default_factory=list)


class Membership(_Vendor):
    id: int
    project: Ref | None = None
    roles: list[Ref] = Field(default_factory=list)


class User(_Vendor):
    id: int
    login: str | None = None
    firstname: str = ""
    lastname: str = ""
    #: Only for admins or when the user does not hide it.
    mail: str | None = None
    admin: bool = False
    memberships: list[Membership] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.firstname} {self.lastname}".strip() or (self.login or "")


class UserEnvelope(_Vendor):
    user: User


class UserList(_Vendor):
    """``GET /users.json`` (administrators only)."""

    users: list[User] = Field(default_factory=list)
    total_count: int = 0


class Role(_Vendor):
    id: int
    name: str = ""
    permissions: list[str] = Field(default_factory=list)


class RoleEnvelope(_Vendor):
    role: Role


class Project(_Vendor):
    id: int
    name: str = ""
    identifier: str = ""
    #: With ``include=trackers`` / ``include=enabled_modules``.
    trackers: list[Ref] = Field(default_factory=list)
    enabled_modules: list[Ref] = Field(default_factory=list)


class ProjectMembership(_Vendor):
    """A row of ``GET /projects/:id/memberships.json``: a user or a group with its roles."""

    id: int
    user: Ref | None = None
    group: Ref | None = None
    roles: list[Ref] = Field(default_factory=list)


class MembershipList(_Vendor):
    memberships: list[ProjectMembership] = Field(default_factory=list)
    total_count: int = 0


class ProjectEnvelope(_Vendor):
    project: Project


# --------------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------------


class NativeData(_Vendor):
    issue: Issue | None = None
    journal: Journal | None = None


class NativeEnvelope(_Vendor):
    """Redmine 7.0: ``{"type": "issue.updated", "timestamp": ..., "data": {"issue", "journal"}}``."""

    type: str
    timestamp: datetime | None = None
    data: NativeData = Field(default_factory=NativeData)


class PluginUser(_Vendor):
    id: int
    login: str | None = None
    mail: str | None = None
    firstname: str = ""
    lastname: str = ""


class PluginIssue(_Vendor):
    id: int
    subject: str = ""
    created_on: datetime | None = None
    updated_on: datetime | None = None
    author: PluginUser | None = None


class PluginJournal(_Vendor):
    id: int
    notes: str | None = ""
    created_on: datetime | None = None
    private_notes: bool = False
    author: PluginUser | None = None


class PluginPayload(_Vendor):
    action: str
    url: str = ""
    issue: PluginIssue
    journal: PluginJournal | None = None


class PluginEnvelope(_Vendor):
    """suer/redmine_webhook: ``{"payload": {"action": "opened"|"updated", "issue", "journal"}}``."""

    payload: PluginPayload
