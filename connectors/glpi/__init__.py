"""GLPI connector: legacy REST API (GLPI 9.5/10/11) and GLPI 11 native webhooks."""

from connectors.glpi.client import GLPIClient
from connectors.glpi.connector import GLPIConfig, GLPIConnector
from connectors.glpi.webhook import SUPPORTED_EVENTS

__all__ = ["SUPPORTED_EVENTS", "GLPIClient", "GLPIConfig", "GLPIConnector"]
