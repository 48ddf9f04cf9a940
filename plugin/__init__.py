"""helpdesk-assist: the application around the answer engine (see the README's Layout).

Layers, each importing only those below it (``make lint`` checks it with import-linter):
``cli -> web -> wiring -> service -> jobs -> store``, all over ``settings``. The web app for gunicorn:
``gunicorn 'plugin.web.app:create_app()'``.
"""
