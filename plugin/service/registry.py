"""The connector registry: settings -> connector objects, imported lazily (only what is enabled).

Built-in connectors are registered exactly like a third-party one would be: a name and a factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.base import Connector, TicketCreator, TicketPoller, WebhookSource
from plugin.i18n import words
from plugin.settings import Settings


def _glpi(settings: Settings) -> Connector:
    from connectors.glpi.connector import GLPIConnector

    g = settings.glpi
    return GLPIConnector(
        url=g.url,
        user_token=g.user_token.get_secret_value(),
        app_token=g.app_token.get_secret_value(),
        webhook_secret=g.webhook_secret.get_secret_value(),
        webhook_max_age_s=g.webhook_max_age_s,
        timeout_s=g.timeout_s,
        verify_tls=g.verify_tls,
        web_url=g.web_url,
        poll=g.poll,
        entities=tuple(g.entities),
        unknown_write_wait_s=g.unknown_write_wait_s,
        create_tickets=g.create_tickets,
        create_entity_id=g.create_entity_id,
    )


def _redmine(settings: Settings) -> Connector:
    from connectors.redmine.connector import RedmineConnector

    r = settings.redmine
    return RedmineConnector(
        url=r.url,
        api_key=r.api_key.get_secret_value(),
        projects=tuple(r.projects),
        webhook_secret=r.webhook_secret.get_secret_value(),
        plugin_token=r.plugin_token.get_secret_value(),
        closed_status=r.closed_status,
        reopen_status=r.reopen_status,
        text_formatting=r.text_formatting,
        timeout_s=r.timeout_s,
        verify_tls=r.verify_tls,
        polling=r.poll,
        unknown_write_wait_s=r.unknown_write_wait_s,
        create_project=r.create_project,
        create_tracker=r.create_tracker,
    )


FACTORIES: dict[str, Callable[[Settings], Connector]] = {"glpi": _glpi, "redmine": _redmine}


def enabled_names(settings: Settings) -> list[str]:
    return [name for name in FACTORIES if getattr(settings, name).enabled]


def build_connectors(settings: Settings) -> dict[str, Connector]:
    return {name: FACTORIES[name](settings) for name in enabled_names(settings)}


def webhook_sources(connectors: dict[str, Connector]) -> dict[str, WebhookSource]:
    return {name: c for name, c in connectors.items() if isinstance(c, WebhookSource)}


def pollers(settings: Settings, connectors: dict[str, Connector]) -> list[tuple[str, TicketPoller, float]]:
    out: list[tuple[str, TicketPoller, float]] = []
    for name, c in connectors.items():
        section: Any = getattr(settings, name, None)
        if section is not None and section.poll and isinstance(c, TicketPoller):
            out.append((name, c, section.poll_interval_s))
    return out


def ticket_creator(settings: Settings, connectors: dict[str, Connector]) -> TicketCreator | None:
    """What opens tickets on people's behalf (the chat's hand-off): GLPI when ``glpi.create_tickets``,
    else Redmine when ``redmine.create_project``, else a mail to ``email.forward_to`` when the mailbox
    is configured; None when nothing is."""
    glpi = connectors.get("glpi")
    if settings.glpi.enabled and settings.glpi.create_tickets and isinstance(glpi, TicketCreator):
        return glpi
    redmine = connectors.get("redmine")
    if settings.redmine.enabled and settings.redmine.create_project and isinstance(redmine, TicketCreator):
        return redmine
    e = settings.email
    if e.enabled and e.forward_to:
        from connectors.email.intake import IntakeTicketCreator
        from connectors.email.smtp import SmtpSender

        sender = SmtpSender(e.smtp_host, e.smtp_port, e.smtp_security, e.smtp_username,
                            e.smtp_password.get_secret_value(), e.timeout_s)
        return IntakeTicketCreator(sender, intake_address=e.forward_to, from_addr=e.address,
                                   from_name=e.display_name, message_id_domain=e.message_id_domain,
                                   language=settings.default_language, words=words(settings.default_language))
    return None
