"""How text becomes search terms, shared by both backends and by result snippets.

Words are indexed as written (lower case, without accents); queries match every form
with the same stem. It lives apart from the whoosh backend so that PostgreSQL searches
and snippets use the same rules without loading the whoosh index code or numpy.
"""

from __future__ import annotations

from functools import lru_cache

from whoosh.analysis import CharsetFilter, LowercaseFilter, RegexTokenizer, StopFilter
from whoosh.lang.snowball.english import EnglishStemmer
from whoosh.support.charset import accent_map

# Words as written, lower case without accents; search stems them (see `IndexArrays.forms`).
TEXT_ANALYZER = (
    RegexTokenizer()
    | LowercaseFilter()
    | StopFilter(stoplist=None, minsize=2)
    | CharsetFilter(accent_map)
)

_ENGLISH = EnglishStemmer()
# Stems remembered: enough for the words queries touch, bounded so that a process's
# memory does not grow with the vocabulary of the archive.
STEMS_CACHED = 100_000


@lru_cache(maxsize=STEMS_CACHED)
def stem_of(word: str) -> str:
    """The English (Snowball, as PostgreSQL's `english`) stem of a folded word; cached,
    as a lexicon repeats across segments."""
    return _ENGLISH.stem(word)
