"""The language a list writes its mail in, and its words in that language.

A list's own `language` setting, else the service's `ARSIP_DEFAULT_LANGUAGE` (which the
core's sessions carry in their `info`), else English. The catalogue is
`lists/translations/` (see `make translations`); strings are marked in English with
`_()` and named placeholders, so a translation may reorder them.

What the list engine answers people (a confirmation's outcome, a moderator's decision, a
refused setting, why a post is held) is a `Text` of `LISTS`, said where it is shown: in
mail in the list's language (`said`), on a page in the page's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import object_session

from archiver.languages import LANGUAGES, Catalogue, Text, catalogue, say

if TYPE_CHECKING:
    from babel.support import NullTranslations
    from sqlalchemy.orm import Session

    from lists.models import MailingList

TRANSLATIONS = Path(__file__).parent / "translations"
LISTS = Catalogue(TRANSLATIONS)


def language_of(mlist: MailingList) -> str:
    """The language of `mlist`'s mail (see the module's docstring)."""
    if mlist.language in LANGUAGES:
        return mlist.language
    return default_language(object_session(mlist))


def default_language(session: Session | None) -> str:
    """The service's language (`ARSIP_DEFAULT_LANGUAGE`), as `session` carries it."""
    default = session.info.get("default_language") if session is not None else None
    return default if default in LANGUAGES else "en"


def words(mlist: MailingList) -> NullTranslations:
    """The catalogue `mlist` writes with: `words(mlist).gettext("...")`."""
    return catalogue(TRANSLATIONS, language_of(mlist))


def said(mlist: MailingList, text: Text | str) -> str:
    """`text` in the language of `mlist`'s mail (a plain string, typed by a person, as it is)."""
    return say(text, language_of(mlist))
