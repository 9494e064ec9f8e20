"""Indonesian roots of words, for search: Snowball's Indonesian stemmer, kept off English.

Indonesian builds words by affixes around a root (`uang` -> `keuangan`, `lapor` ->
`melaporkan`, `laporan`), so a search for one form should find the others, as English
stemming makes `report` find `reports`. The stemmer (PyStemmer, Snowball's C code) strips
particles, possessives, the prefixes di-, ke-, me-, pe-, ter-, ber-, per- and the suffixes
-i, -an, -kan, and so cuts many English words too: `distance` -> stance, `terrace` ->
race, `performance` -> formance. Those words (`english_words.txt`, some 2,500 of them)
keep their form: their root is the word itself, so they match only their English forms.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib.resources import files

import Stemmer

# Roots remembered: enough for the words queries and snippets touch, bounded.
ROOTS_CACHED = 100_000


def _english_words() -> frozenset[str]:
    text = files(__package__).joinpath("english_words.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


ENGLISH_WORDS = _english_words()
_local = threading.local()  # a PyStemmer object is not to be shared between threads


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("indonesian", 0)  # 0: its cache is off
    return stemmer


@lru_cache(maxsize=ROOTS_CACHED)
def root_of(word: str) -> str:
    """The Indonesian root of a folded word (`keuangan` -> uang); the word itself when
    the stemmer leaves it whole or it is an English word it would cut."""
    return word if word in ENGLISH_WORDS else _stemmer().stemWord(word)


def changed_roots(words: list[str]) -> list[tuple[str, str]]:
    """(root, word) for each of `words` whose root is not the word itself, in one call to
    the stemmer: a segment's whole vocabulary takes a fraction of a second."""
    return [
        (root, word)
        for word, root in zip(words, _stemmer().stemWords(words), strict=True)
        if root != word and word not in ENGLISH_WORDS
    ]
