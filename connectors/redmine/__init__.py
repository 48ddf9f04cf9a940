"""Redmine connector (REST API, Redmine 7 native webhooks, the redmine_webhook plugin, polling)."""

from .connector import RedmineConnector, render_note

__all__ = ["RedmineConnector", "render_note"]
