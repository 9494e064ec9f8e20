"""The languages Arsip speaks, how a piece of it finds its catalogue, and sentences that
are said in the reader's language wherever they were written.

Each package with words for people (`archiver` for its errors and notes, `lists` for the
mail lists write and their answers, `web` for pages) keeps a gettext catalogue per
language under its own `translations/` directory, compiled by `make` (`pybabel compile`).
English is the source language: its catalogue is empty and every string falls back to
itself.

The core and the list engine do not know who will read what they say: a refused retention
rule is printed by `arsip retention add` in English and shown on an Indonesian page in
Bahasa Indonesia. So they say it as a `Text`: an English template marked for
`make translations` by its package's `Catalogue` (`CORE.lazy_gettext("...", name=value)`,
named `%(name)s` placeholders), with its values kept apart. Whoever shows it says it in
its reader's language (`text.say("id")`): the web in the page's, list mail in the list's,
the command line in English (`str(text)`). Errors that people read carry one
(`TextError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class Catalogue:
    """One package's catalogue, and the marker of the texts it translates: `make
    translations` extracts `lazy_gettext` and `lazy_ngettext` calls into it."""

    directory: Path

    def lazy_gettext(self, message: str, /, **values: object) -> Text:
        """`message` (English, `%(name)s` placeholders) with `values`, said later."""
        return Text(self, message, values)

    def lazy_ngettext(self, singular: str, plural: str, count: int, /, **values: object) -> Text:
        """The singular or plural form, as `count` asks in the reader's language; `count`
        is also the value `%(count)s`."""
        return Text(self, singular, {"count": count, **values}, plural, count)


@dataclass(frozen=True)
class Text:
    """A sentence for people, kept as its English template and named values until it is
    said. A value that is a `Text` is said in the same language; numbers are written as
    the language writes them (1,234 or 1.234)."""

    catalogue: Catalogue
    message: str
    values: Mapping[str, object] = field(default_factory=dict)
    plural: str | None = None
    count: int | None = None

    def say(self, language: str = "en") -> str:
        """The sentence in `language` (English where the catalogue has no translation)."""
        words = catalogue(self.catalogue.directory, language)
        if self.plural is None:
            template = words.gettext(self.message)
        else:
            template = words.ngettext(self.message, self.plural, self.count or 0)
        if not self.values:
            return template
        return template % {name: _said(value, language) for name, value in self.values.items()}

    def __str__(self) -> str:
        return self.say("en")

    def as_json(self) -> dict[str, Any]:
        """The text as plain data, for a JSON column: values must be strings, numbers or
        texts of the same catalogue."""
        data: dict[str, Any] = {"message": self.message, "values": {}}
        for name, value in self.values.items():
            data["values"][name] = {"text": value.as_json()} if isinstance(value, Text) else value
        if self.plural is not None:
            data.update(plural=self.plural, count=self.count)
        return data

    @classmethod
    def from_json(cls, catalogue: Catalogue, data: Mapping[str, Any]) -> Text:
        """The text `as_json` wrote, translated with `catalogue`."""
        values = {
            name: cls.from_json(catalogue, value["text"]) if isinstance(value, dict) else value
            for name, value in (data.get("values") or {}).items()
        }
        return cls(catalogue, str(data["message"]), values, data.get("plural"), data.get("count"))


def say(text: Text | str, language: str) -> str:
    """`text` in `language`; a plain string (a name, a reason a person typed) as it is.
    List mail says it in the list's language, a page in the page's."""
    return text.say(language) if isinstance(text, Text) else text


def _said(value: object, language: str) -> object:
    """A value as it goes into a sentence in `language`."""
    if isinstance(value, Text):
        return value.say(language)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if language == "en":  # the command line's language needs no locale data
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    from babel.numbers import format_decimal  # only where words are needed

    return format_decimal(value, locale=language)


class TextError(ValueError):
    """An error people read: its `text` is said in the reader's language by a page, and in
    English by `str()` (the command line, logs, the JSON API)."""

    def __init__(self, text: Text, *args: object) -> None:
        super().__init__(text, *args)
        self.text = text

    def __str__(self) -> str:
        return str(self.text)


# The core's own catalogue: the reasons its rules refuse and the notes it adds.
CORE = Catalogue(Path(__file__).parent / "translations")
