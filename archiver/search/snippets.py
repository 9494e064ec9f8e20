"""Highlighted snippets, cut from a message's body text (same for every backend).

A query word matches a text word when both fold to the same stem, the way the index
matches them, so `forecasting` in the text lights up for the query `forecast`. Folding
every word of a long message in Python was a third of a search page's time, so a regex
(running in C) first picks the words that could fold to a wanted stem, those that start
as the stem or the query word does, accents aside, and only those are folded.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache

_WORD = re.compile(r"\w+")
SCAN_LIMIT = 20_000  # characters of the text examined for a match
WIDTH = 200  # characters in a snippet


def _accented_forms() -> dict[str, str]:
    """For each ASCII letter, itself and the Latin letters that fold to it (é, è, … for e)."""
    forms: dict[str, list[str]] = defaultdict(list)
    for code in range(0xC0, 0x250):
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[:1].lower()
        if base.isascii() and base.isalpha() and char.isalpha():
            forms[base].append(char)
    return {base: base + "".join(chars) for base, chars in forms.items()}


_FORMS = _accented_forms()


def _loose(prefix: str) -> str:
    """A regex for `prefix` that also matches it written with accents."""
    return "".join(f"[{_FORMS[c]}]" if c in _FORMS else re.escape(c) for c in prefix)


def _candidates(words: Iterable[str], stems: Iterable[str]) -> re.Pattern[str]:
    """A regex for the words that start as one of the stems or query words does."""
    starts = frozenset(token[:3] for word in words for token in _WORD.findall(word.lower()))
    return _pattern(starts, frozenset(stems))


@lru_cache(maxsize=256)
def _pattern(starts: frozenset[str], stems: frozenset[str]) -> re.Pattern[str]:
    """The regex of `_candidates`, compiled once per query (a page has twenty snippets).

    A stem less its last letter begins every word that folds to it (Snowball turns a final
    y into i, or cuts -ational to -ate), and the query word's own start covers the few
    irregular stems (dying → die).
    """
    prefixes = {stem[:-1] or stem for stem in stems} | starts
    alternatives = "|".join(sorted((_loose(p) for p in prefixes if p), key=len, reverse=True))
    # An empty alternation would match every word: then match none.
    return re.compile(rf"(?<!\w)(?:{alternatives})\w*" if alternatives else r"(?!)", re.I)


def snippet(text: str, words: list[str], fold: Callable[[str], str]) -> str:
    """HTML: an escaped excerpt of `text` around the first match, matches in <mark>.

    Without a match (or without words) it is the start of the text. The scan stops at the
    end of the excerpt, so a long message costs no more than a short one.
    """
    wanted = {fold(word) for word in words if word}
    wanted.discard("")
    head = text[:SCAN_LIMIT]
    scan = _candidates(words, wanted).finditer(head) if wanted else iter(())
    first = next((m for m in scan if fold(m.group()) in wanted), None)
    start = 0
    if first is not None and first.start() > WIDTH // 4:
        start = head.rfind(" ", 0, first.start() - WIDTH // 4) + 1
    end = min(len(head), start + WIDTH)
    matches = [] if first is None else [first]
    for match in scan:
        if match.start() >= end:
            break
        if fold(match.group()) in wanted:
            matches.append(match)
    pieces: list[str] = ["…" if start else ""]
    cursor = start
    for match in matches:
        if match.end() > end:
            break
        pieces.append(html.escape(head[cursor : match.start()]))
        pieces.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    pieces.append(html.escape(head[cursor:end]))
    if end < len(text):
        pieces.append("…")
    return " ".join("".join(pieces).split())
