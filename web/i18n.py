"""The web UI in the reader's language: English or Bahasa Indonesia.

The language is, in order: the one the account chose on its page, the best of the
browser's `Accept-Language` that Arsip has, `ARSIP_DEFAULT_LANGUAGE`. Flask-Babel does the
rest: `_()`/`ngettext()` in templates and views, and dates and numbers in the reader's
locale (`format_date`, `format_number`). Strings are marked in English, the source
language; `web/translations/` holds the catalogues (`make translations` extracts,
updates and compiles them).

The core and the list engine hand the web `Text`s (errors, notes, answers, held posts'
reasons), each translated by its own package's catalogue; `say` puts one in the page's
language, so a view passes the template a string and the template needs to know nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import Flask, g, request
from flask_babel import Babel, format_date, format_datetime, format_decimal, format_number, ngettext

from archiver import languages
from archiver.languages import LANGUAGES, Text
from web.auth import current_user
from web.deps import get_core

TRANSLATIONS = Path(__file__).parent / "translations"


def init_app(app: Flask) -> None:
    """Translate the app's pages, and give templates the language and its formats."""
    Babel(
        app,
        locale_selector=page_language,
        default_translation_directories=str(TRANSLATIONS),
    )
    app.jinja_env.globals.update(
        page_language=page_language,
        languages=LANGUAGES,
        format_moment=format_moment,
        format_size=format_size,
        say=say,
    )
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # {% trans %} blocks as one line


def page_language() -> str:
    """The language of this request's page (see the module's docstring); chosen once."""
    if "arsip_language" not in g:
        user = current_user()
        g.arsip_language = language_for(user.language if user is not None else None)
    return g.arsip_language


def language_for(chosen: str | None) -> str:
    """The pages' language for an account that chose `chosen` (None: the browser's) and
    this request's browser: the one rule behind `page_language`, also for the notice
    that confirms a new choice in the language it chose."""
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or get_core().settings.default_language


def say(text: Text | str) -> str:
    """A text of the core or the list engine in this page's language; a plain string (a
    name, a reason a person typed) as it is."""
    return languages.say(text, page_language())


def format_moment(moment: datetime, with_time: bool = True) -> str:
    """A UTC date (and time) as the reader's language writes it: 7 Dec 2026 14:05, or
    7 Des 2026 14:05 in Bahasa Indonesia."""
    if with_time:
        return format_datetime(moment, "d MMM y HH:mm", rebase=False)
    return format_date(moment, "d MMM y", rebase=False)


def format_size(size: int) -> str:
    """A size in bytes as people read it, in decimal units as Jinja's `filesizeformat`
    writes them but with the reader's decimal sign: 1.5 MB, or 1,5 MB in Bahasa Indonesia."""
    if size < 1000:
        return ngettext("%(count)s byte", "%(count)s bytes", size, count=format_number(size))
    units = ["kB", "MB", "GB", "TB"]
    value = size / 1000
    while value >= 1000 and len(units) > 1:
        value /= 1000
        units.pop(0)
    return f"{format_decimal(value, '0.0')} {units[0]}"
