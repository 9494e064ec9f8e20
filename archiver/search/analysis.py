"""How text becomes search terms, shared by both backends and by result snippets.

Words are indexed as written (lower case, without accents); queries match every form
with the same stem, in English or in Indonesian (`QueryStems` has the rule). It lives
apart from the whoosh backend so that PostgreSQL searches and snippets use the same rules
without loading the whoosh index code or numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from whoosh.analysis import CharsetFilter, LowercaseFilter, RegexTokenizer, StopFilter
from whoosh.analysis.tokenizers import default_pattern
from whoosh.lang.snowball.english import EnglishStemmer
from whoosh.support.charset import accent_map

from archiver.search.indonesian import root_of

# Words as written, lower case without accents; search stems them (see `IndexArrays.forms`).
TEXT_ANALYZER = (
    RegexTokenizer()
    | LowercaseFilter()
    | StopFilter(stoplist=None, minsize=2)
    | CharsetFilter(accent_map)
)

# The tokenizer's own pattern, without the capturing group, so that `findall` gives words.
_WORD = re.compile(default_pattern.pattern.replace("(\\.", "(?:\\."))
# Joins words so that a whole text is lower-cased and folded in one call each: no word
# contains it, `accent_map` leaves it alone, and it ends a word for `lower()`'s final sigma.
_SEPARATOR = "\n"
_NOT_WORD = re.compile(r"[^\w]+")  # what separates the words of a path


class Words(tuple[str, ...]):
    """A text's words as `TEXT_ANALYZER` gives them, and the position of the first."""

    first: int

    def __new__(cls, words: list[str], first: int = 0) -> Words:
        self = super().__new__(cls, words)
        self.first = first
        return self


def analyzed(text: str) -> Words:
    """`TEXT_ANALYZER`'s words and positions for `text`, several times faster.

    The analyzer passes every word through a chain of generators as a token object;
    indexing spent more time there than anywhere else. This does the same steps on the
    whole text at once: the tokenizer's matches, lower case, words shorter than two
    characters dropped (the positions of the rest counted on from the first kept word, as
    `StopFilter` renumbers them), accents folded. A property test holds it to the analyzer.
    """
    lowered = _SEPARATOR.join(_WORD.findall(text)).lower().split(_SEPARATOR)
    kept = [word for word in lowered if len(word) >= 2]
    if not kept:
        return Words([])
    first = next(at for at, word in enumerate(lowered) if len(word) >= 2)
    return Words(_SEPARATOR.join(kept).translate(accent_map).split(_SEPARATOR), first)


def path_words(text: str) -> str:
    """A folder path's words, split at every mark between them (`Clients.Acme/Q1-2026` ->
    `Clients Acme Q1 2026`): both backends index and query `folder:` through this, so
    `folder:acme` finds it in either, where the tokenizer alone keeps `clients.acme` whole."""
    return _NOT_WORD.sub(" ", text)


_ENGLISH = EnglishStemmer()
# Stems remembered: enough for the words queries touch, bounded so that a process's
# memory does not grow with the vocabulary of the archive.
STEMS_CACHED = 100_000


@lru_cache(maxsize=STEMS_CACHED)
def stem_of(word: str) -> str:
    """The English (Snowball, as PostgreSQL's `english`) stem of a folded word; cached,
    as a lexicon repeats across segments."""
    return _ENGLISH.stem(word)


@dataclass(frozen=True)
class QueryStems:
    """What a query word matches: a word matches it when the word's English stem is one
    of `english`, or its Indonesian root (`root_of`) is one of `roots`.

    `roots` holds the query word's root and the word itself, as people type roots whose
    root Snowball would cut further (`periksa` -> iksa, while `pemeriksaan` -> periksa).
    `english` holds the query word's English stem and, when the word has an Indonesian
    root other than itself, that root's English stem: `melaporkan` (root lapor) matches
    `laporan` by root and `lapor` itself; `keuangan` (root uang) matches `uang`. So
    `uang` finds `keuangan` (same root), `report` still finds `reports` (same English
    stem), and an English word the Indonesian stemmer would cut keeps its form
    (`indonesian.ENGLISH_WORDS`): `race` does not find `terrace`.
    """

    english: frozenset[str]
    roots: frozenset[str]

    def match(self, word: str) -> bool:
        """Whether a folded text word is a form of the query word."""
        return stem_of(word) in self.english or root_of(word) in self.roots


@lru_cache(maxsize=STEMS_CACHED)
def query_stems(word: str) -> QueryStems:
    """The stems a folded query word matches (see `QueryStems`)."""
    root = root_of(word)
    english = {stem_of(word)}
    if root != word:
        english.add(stem_of(root))
    return QueryStems(frozenset(english), frozenset({word, root}))
