"""Where a request finds the services: ``app.extensions[EXTENSION]``, typed (no globals, no cycle).

Every blueprint imports this module, never ``plugin.web.app``: the app imports the blueprints.
"""

from __future__ import annotations

from typing import cast

from flask import current_app

from plugin.wiring import Services

EXTENSION = "helpdesk_assist"


def current_services() -> Services:
    return cast(Services, current_app.extensions[EXTENSION])
