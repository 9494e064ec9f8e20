"""Highlighted snippets, cut from a message's body text (same for every backend).

A text word lights up when it is a form of a query word the way the index matches them
(`analysis.QueryStems`): `forecasting` for the query `forecast`, `keuangan` for `uang`.
Folding every word of a long message in Python was a third of a search page's time, so a
regex (running in C) first picks the words that could be forms, those that start as an
English stem or the query word does, or hold an Indonesian root (ke-uang-an), accents
aside, and only those are folded.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache

from archiver.search.analysis import query_stems, stem_of
from archiver.search.indonesian import root_of

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


def _candidates(
    words: Iterable[str], stems: Iterable[str], roots: Iterable[str]
) -> re.Pattern[str]:
    """A regex for the words that start as one of the stems or query words does, or that
    hold one of the Indonesian roots."""
    starts = frozenset(token[:3] for word in words for token in _WORD.findall(word.lower()))
    return _pattern(starts, frozenset(stems), frozenset(roots))


@lru_cache(maxsize=256)
def _pattern(
    starts: frozenset[str], stems: frozenset[str], roots: frozenset[str]
) -> re.Pattern[str]:
    """The regex of `_candidates`, compiled once per query (a page has twenty snippets).

    A stem less its last letter begins every word that folds to it (Snowball turns a final
    y into i, or cuts -ational to -ate), and the query word's own start covers the few
    irregular stems (dying → die). An Indonesian root's words hold it after a prefix, less
    its first letter where the prefix swallowed that (mem-bayar, men-(t)ulis, peng-(k)irim).
    """
    prefixes = {stem[:-1] or stem for stem in stems} | starts
    inner = {root[1:] if len(root) > 3 else root for root in roots}
    alternatives = []
    if prefixes - {""}:
        alternatives.append(rf"(?:{_alternation(prefixes)})\w*")
    if inner - {""}:
        alternatives.append(rf"\w*?(?:{_alternation(inner)})\w*")
    # An empty alternation would match every word: then match none.
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})", re.I)


def _alternation(parts: set[str]) -> str:
    """The parts as one regex alternation, accents aside, longest first."""
    return "|".join(sorted((_loose(p) for p in parts if p), key=len, reverse=True))


def snippet(text: str, words: list[str], fold: Callable[[str], str]) -> str:
    """HTML: an escaped excerpt of `text` around the first match, matches in <mark>.

    `fold` gives a word as the index holds it (lower case, accents removed; "" for none).
    Without a match (or without words) it is the start of the text. The scan stops at the
    end of the excerpt, so a long message costs no more than a short one.
    """
    wanted = [query_stems(folded) for word in words if word and (folded := fold(word))]
    english = frozenset(stem for stems in wanted for stem in stems.english)
    roots = frozenset(root for stems in wanted for root in stems.roots)

    def matches(found: str) -> bool:
        folded = fold(found)
        return bool(folded) and (stem_of(folded) in english or root_of(folded) in roots)

    head = text[:SCAN_LIMIT]
    scan = _candidates(words, english, roots).finditer(head) if wanted else iter(())
    first = next((m for m in scan if matches(m.group())), None)
    start = 0
    if first is not None and first.start() > WIDTH // 4:
        start = head.rfind(" ", 0, first.start() - WIDTH // 4) + 1
    end = min(len(head), start + WIDTH)
    marked = [] if first is None else [first]
    for match in scan:
        if match.start() >= end:
            break
        if matches(match.group()):
            marked.append(match)
    pieces: list[str] = ["…" if start else ""]
    cursor = start
    for match in marked:
        if match.end() > end:
            break
        pieces.append(html.escape(head[cursor : match.start()]))
        pieces.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    pieces.append(html.escape(head[cursor:end]))
    if end < len(text):
        pieces.append("…")
    return " ".join("".join(pieces).split())
