"""The registry passes the ticket-creation settings to the connectors and picks what opens tickets."""

from __future__ import annotations

from typing import Any

from connectors.email.intake import IntakeTicketCreator
from connectors.glpi import GLPIConnector
from connectors.redmine import RedmineConnector
from plugin.service.registry import build_connectors, ticket_creator
from plugin.settings import load_settings

GLPI = {"enabled": True, "url": "http://glpi.example/apirest.php", "user_token": "t"}
REDMINE = {"enabled": True, "url": "http://redmine.example", "api_key": "k"}
EMAIL = {"enabled": True, "address": "bot@example.test", "imap_username": "bot", "forward_to": "intake@example.test"}


def _settings(**sections: Any) -> Any:
    return load_settings(env={}, secret_key="s" * 20, **sections)


def test_creation_settings_reach_the_connectors() -> None:
    s = _settings(glpi={**GLPI, "create_tickets": True, "create_entity_id": 3},
                  redmine={**REDMINE, "create_project": "helpdesk", "create_tracker": "Support"})
    connectors = build_connectors(s)
    glpi, redmine = connectors["glpi"], connectors["redmine"]
    assert isinstance(glpi, GLPIConnector) and isinstance(redmine, RedmineConnector)
    assert (glpi.config.create_tickets, glpi.config.create_entity_id) == (True, 3)
    assert (redmine.create_project, redmine.create_tracker) == ("helpdesk", "Support")
    assert ticket_creator(s, connectors) is glpi  # GLPI first when both may create


def test_redmine_creates_when_glpi_does_not() -> None:
    s = _settings(glpi=GLPI, redmine={**REDMINE, "create_project": "helpdesk"})
    connectors = build_connectors(s)
    assert ticket_creator(s, connectors) is connectors["redmine"]


def test_the_intake_mail_when_no_helpdesk_api_creates() -> None:
    s = _settings(redmine=REDMINE, email=EMAIL)
    creator = ticket_creator(s, build_connectors(s))
    assert isinstance(creator, IntakeTicketCreator)
    assert (creator.intake_address, creator.from_addr) == ("intake@example.test", "bot@example.test")
    assert ticket_creator(_settings(redmine=REDMINE), build_connectors(_settings(redmine=REDMINE))) is None
