"""Owners' regular expressions (ban patterns, header rules), run in linear time.

A list owner writes these, and the spool worker that runs them archives everyone's mail:
with Python's backtracking `re`, `^(a+)+$` against forty `a`s and an `@` takes hours and
stalls the whole service. RE2 (google-re2) matches in time linear in the input whatever
the pattern, so no pattern can stall anyone. The price is RE2's syntax: no
back-references and no look-around. Such patterns are refused when they are saved, with
RE2's reason; one stored before this check (or written into the database by hand) matches
nothing and is logged once per process, so a bad row never stops the worker.
"""

from __future__ import annotations

import functools
import logging

import re2

from archiver.languages import TextError
from lists.wording import LISTS

log = logging.getLogger(__name__)

MAX_PATTERN = 512  # characters; the ban table's column is this wide
# RE2 compiles into a bounded automaton: a pattern that needs more memory than this is
# refused rather than allowed to grow the worker (the library's default is 8 MB).
MAX_MEMORY = 1 << 20


class PatternError(TextError):
    """A pattern that cannot be saved, with the reason in one sentence."""


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False  # addresses and header names are matched without case
    options.log_errors = False  # a refused pattern is our message, not a line on stderr
    options.max_mem = MAX_MEMORY
    return options


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re2._Regexp:
    """The compiled pattern (cached: the same few patterns run on every post)."""
    return re2.compile(pattern, _options())


def check_pattern(pattern: str) -> None:
    """Raise `PatternError` with the reason when `pattern` cannot be saved."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(
            LISTS.lazy_gettext(
                "The pattern is longer than %(limit)s characters.", limit=MAX_PATTERN
            )
        )
    try:
        _compiled(pattern)
    except re2.error as error:
        reason = error.args[0] if error.args else str(error)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(
            LISTS.lazy_gettext(
                "Not a pattern this service runs (%(reason)s); back-references and "
                "look-around are not supported.",
                reason=reason,
            )
        ) from None


@functools.lru_cache(maxsize=1024)
def _refused_once(pattern: str) -> None:
    """Log a stored pattern that does not compile, once per process and pattern."""
    log.warning("stored pattern %r is not supported and matches nothing", pattern)


def _usable(pattern: str) -> re2._Regexp | None:
    try:
        return _compiled(pattern)
    except re2.error:
        _refused_once(pattern)
        return None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text` (without case); a stored pattern that
    cannot be compiled matches nothing."""
    compiled = _usable(pattern)
    return compiled is not None and compiled.search(text) is not None


def match(pattern: str, text: str) -> bool:
    """Whether `pattern` matches at the start of `text` (without case), as ban patterns
    always have; a stored pattern that cannot be compiled matches nothing."""
    compiled = _usable(pattern)
    return compiled is not None and compiled.match(text) is not None
