"""The languages Arsip speaks, and how a piece of it finds its catalogue.

Each package with words for people (`web` for pages, `lists` for the mail lists write)
keeps a gettext catalogue per language under its own `translations/` directory, compiled
by `make` (`pybabel compile`). English is the source language: its catalogue is empty and
every string falls back to itself.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.support import NullTranslations

# Code -> the language's own name, as a chooser shows it.
LANGUAGES = {"en": "English", "id": "Bahasa Indonesia"}


def catalogue(directory: Path, language: str) -> NullTranslations:
    """The compiled catalogue of `language` in `directory` (English: none needed), loaded
    once per process."""
    return _load(str(directory), language)


@cache
def _load(directory: str, language: str) -> NullTranslations:
    from babel.support import NullTranslations, Translations  # only where words are needed

    if language == "en":
        return NullTranslations()
    return Translations.load(directory, [language])
