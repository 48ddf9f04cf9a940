"""Pages in the reader's language: Jinja's i18n extension over the catalogs of :mod:`plugin.i18n`.

A view chooses the page's language with :func:`use_language` (the suggestion's language on the
confirmation pages; the browser's or the reader's choice elsewhere); ``{{ _("...") }}`` in a template
then translates into it. Blueprints install this on the app they are registered on, so a page works
in any app that registers its blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response, g
from flask.sansio.app import App

from plugin import i18n

#: The cookie that keeps a reader's choice of language (set by ``?lang=``).
LANG_COOKIE = "hda_lang"


def negotiate_language(request: Request, default: str = "ru") -> i18n.Language:
    """The reader's language: ``?lang=`` (a choice on the page), else the ``hda_lang`` cookie (an earlier
    choice), else the browser's Accept-Language, else ``default``."""
    for candidate in (request.args.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate in i18n.LANGUAGES:
            return candidate
    best = request.accept_languages.best_match(i18n.LANGUAGES)
    return i18n.normalize(best or default)


def remember_language(response: Response, request: Request, language: str) -> Response:
    """Keep a choice made with ``?lang=`` for the next pages (a year; not a secret, not HttpOnly-critical)."""
    if request.args.get("lang") in i18n.LANGUAGES:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86_400, samesite="Lax", httponly=True,
                            secure=request.is_secure)
    return response


def use_language(language: str | None) -> i18n.Language:
    lang = i18n.normalize(language)
    g.helpdesk_lang = lang
    return lang


def current_language() -> i18n.Language:
    return g.get("helpdesk_lang", "ru")


def _gettext(key: str, **_variables: Any) -> str:
    return i18n.words(current_language())(key)


def _ngettext(singular: str, plural: str, n: int, **_variables: Any) -> str:
    return i18n.plural(current_language())(singular, plural, n)


def install(app: App) -> None:
    """Enable ``{{ _("...") }}`` in the app's templates (once per app)."""
    if "jinja2.ext.InternationalizationExtension" in app.jinja_env.extensions:
        return
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )
