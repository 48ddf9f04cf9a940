"""Helpdesk connectors (GLPI, Redmine, e-mail) behind small capability interfaces.

The connectors themselves arrive with issues 3 and 4; never imports Flask or ``plugin``.
"""
