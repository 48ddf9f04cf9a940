"""The composition root: settings, engine wiring, the Flask app, the worker and the CLI.

gunicorn: ``gunicorn 'plugin:create_app()'``.
"""

from plugin.app import create_app

__all__ = ["create_app"]
