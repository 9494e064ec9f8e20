"""Answering a parsed query from a whoosh index's arrays: which messages, in what order.

Every node of the query becomes a boolean array over all documents plus a float array of
BM25 scores, so `AND`, `OR` and `NOT` are array operations, the viewer's filter is one
more mask, totals and facets are counts over the final mask, and the page is the top of
one partial sort. Phrases are checked against word positions of just the documents that
contain every word of the phrase.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache

import numpy as np

from archiver.search.analysis import path_words
from archiver.search.backend import Hit, SearchResult, Sort
from archiver.search.query import (
    Address,
    And,
    DateRange,
    HasAttachment,
    HasVirus,
    IsMarked,
    IsSpam,
    Node,
    Not,
    Or,
    Participant,
    Phrase,
    SizeRange,
    Word,
)
from archiver.search.viewer import Viewer
from archiver.search.whoosh_arrays import NO_DATE, IndexArrays, Postings, when

# Fields a bare word searches, and how much a match in each counts towards relevance.
TEXT_FIELDS = {"subject": 2.0, "body": 1.0, "attachments": 1.0, "people": 1.0}
SCORED_FIELDS = {**TEXT_FIELDS, "filename": 1.0, "folder": 1.0}
POSITIONAL_FIELDS = frozenset({"subject", "body"})
ADDRESS_FIELDS = {"from": "from_addr", "to": "to_addr", "cc": "cc_addr"}
BM25_K1 = 1.2
BM25_B = 0.75
EXACT_BONUS = 1.5  # a word as typed outranks its other forms


@dataclass
class Matches:
    """The documents a query node matches, and what each scored."""

    mask: np.ndarray
    scores: np.ndarray


class Matcher:
    """Evaluates query nodes against one `IndexArrays`; `analyze(field, text)` gives the
    index terms of a text (folded, stemmed) as the writer produced them."""

    def __init__(self, arrays: IndexArrays, analyze: Callable[[str, str], list[str]]) -> None:
        self.arrays = arrays
        self.analyze = analyze

    def search(
        self, query: Node | None, viewer: Viewer, sort: Sort, limit: int, offset: int
    ) -> SearchResult:
        """The page, the total and the facets of what `viewer` may see of `query`."""
        arrays = self.arrays
        visible = None if viewer.sees_all else self._visible(viewer)
        found = self._everything() if query is None else self.evaluate(query, visible)
        mask = found.mask if visible is None else found.mask & visible
        docs = np.flatnonzero(mask)
        ranked = self._rank(docs, found.scores, sort, offset + limit)[offset : offset + limit]
        hits = [
            Hit(pk, float(found.scores[doc]), when(seconds))
            for doc, pk, seconds in zip(
                ranked.tolist(),
                arrays.pk.take(ranked).tolist(),
                arrays.date.take(ranked).tolist(),
                strict=True,
            )
        ]
        return SearchResult(total=len(docs), hits=hits, facets=self._facets(docs))

    def matching(self, query: Node | None) -> list[int]:
        """The ids of every live document `query` matches."""
        mask = self.arrays.live if query is None else self.evaluate(query).mask & self.arrays.live
        return self.arrays.pk.take(np.flatnonzero(mask)).tolist()

    def evaluate(self, node: Node, within: np.ndarray | None = None) -> Matches:
        """The matches of one query node, exact for the documents in `within` (all when
        None): phrases, the costly part, are checked only there."""
        match node:
            case Word(text=text, field=None) | Phrase(text=text, field=None):
                phrase = isinstance(node, Phrase)
                return _any([self._text(name, text, phrase, within) for name in TEXT_FIELDS])
            case (
                Word(text=text, field="subject" | "filename" as name)
                | Phrase(text=text, field="subject" | "filename" as name)
            ):
                return self._text(name, text, isinstance(node, Phrase), within)
            case Word(text=text, field="folder") | Phrase(text=text, field="folder"):
                return self._text("folder", path_words(text), isinstance(node, Phrase), within)
            case Word(text=text, field="list") | Phrase(text=text, field="list"):
                return self._term("list", text.lower())
            case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
                return self._term("message_id", text.lower().strip("<>"))
            case Word(text=text) | Phrase(text=text):
                return self._text("body", text, isinstance(node, Phrase), within)
            case Address(field=name, value=value):
                return self._term(ADDRESS_FIELDS[name], value.lower())
            case Participant(address=address):
                return self._unscored(self.arrays.docs_mask("participants", address.lower()))
            case HasAttachment():
                return self._unscored(self.arrays.attachment.full() & self.arrays.live)
            case IsSpam():
                return self._unscored(self.arrays.spam.full() & self.arrays.live)
            case HasVirus():
                return self._unscored(self.arrays.virus.full() & self.arrays.live)
            case IsMarked(mark=mark):
                return self._unscored(self.arrays.docs_mask("marks", mark))
            case DateRange(start=start, end=end):
                dates = self.arrays.date.full()
                mask = self.arrays.live & (dates != NO_DATE)
                if start is not None:
                    mask &= dates >= _midnight(start)
                if end is not None:
                    mask &= dates < _midnight(end)
                return self._unscored(mask)
            case SizeRange(minimum=minimum, maximum=maximum):
                mask = self.arrays.live.copy()
                sizes = self.arrays.size.full()
                if minimum is not None:
                    mask &= sizes >= minimum
                if maximum is not None:
                    mask &= sizes < maximum
                return self._unscored(mask)
            case Not(node=inner):
                return self._unscored(self.arrays.live & ~self.evaluate(inner, within).mask)
            case And(nodes=nodes):
                # Cheap parts first: what they leave is all a phrase needs checking in.
                parts = [self.evaluate(child, within) for child in nodes if not _costly(child)]
                narrowed = within
                if parts:
                    narrowed = _all(parts).mask if within is None else _all(parts).mask & within
                parts += [self.evaluate(child, narrowed) for child in nodes if _costly(child)]
                return _all(parts)
            case Or(nodes=nodes):
                return _any([self.evaluate(child, within) for child in nodes])
        raise TypeError(f"unknown query node {node!r}")

    def _text(self, fieldname: str, text: str, phrase: bool, within: np.ndarray | None) -> Matches:
        """Words in a text field: all of them, next to each other when a phrase."""
        words = self.analyze(fieldname, text)
        if not words:
            return self._everything()
        if phrase and len(words) > 1 and fieldname in POSITIONAL_FIELDS:
            return self._phrase(fieldname, words, within)
        return _all([self._word(fieldname, word) for word in words])

    def _term(self, fieldname: str, term: str) -> Matches:
        """One index term as it is (addresses, list ids, message ids)."""
        return self._scored(fieldname, self.arrays.postings(fieldname, term))

    def _word(self, fieldname: str, word: str) -> Matches:
        """Every form of a word (`running` finds `runs`), the exact form scoring higher."""
        postings, exact = self.arrays.word_postings(fieldname, word)
        return self._scored(fieldname, postings, exact)

    def _scored(
        self, fieldname: str, postings: Postings, exact: np.ndarray | None = None
    ) -> Matches:
        """The documents of `postings`, scored with BM25 in text fields (frequencies of
        several forms of a word add up); documents in `exact` score EXACT_BONUS times more."""
        arrays = self.arrays
        frequencies = np.bincount(postings.docs, postings.weights, minlength=arrays.doc_count)
        mask = (frequencies > 0) & arrays.live
        scores = np.zeros(arrays.doc_count, dtype=np.float32)
        boost = SCORED_FIELDS.get(fieldname, 0.0)
        docs = np.flatnonzero(mask)
        if boost and len(docs):
            idf = math.log(1 + (arrays.live_count - len(docs) + 0.5) / (len(docs) + 0.5))
            relative = arrays.lengths(fieldname, docs) / arrays.mean_length[fieldname]
            tf = frequencies[docs]
            norm = BM25_K1 * (1 - BM25_B + BM25_B * relative)
            scores[docs] = boost * idf * tf * (BM25_K1 + 1) / (tf + norm)
            if exact is not None and len(exact):
                scores[exact] *= EXACT_BONUS
        return Matches(mask, scores)

    def _phrase(self, fieldname: str, words: list[str], within: np.ndarray | None) -> Matches:
        """Documents with `words` (in any of their forms) at consecutive positions, scored
        as their words.

        Each (document, position - offset in the phrase) pair of every word is one
        integer key; a phrase occurs where every word has the same key. The keys of one
        word's postings are ascending, so intersecting them needs no sort.
        """
        found = [self.arrays.word_postings(fieldname, word, with_values=True) for word in words]
        candidates = _all([self._scored(fieldname, *pair) for pair in found])
        if within is not None:
            candidates.mask &= within
        order = sorted(range(len(words)), key=lambda i: len(found[i][0].docs))
        keys: np.ndarray | None = None
        for i in order:
            docs, positions = found[i][0].positions(candidates.mask)
            these = (docs << 32) | (positions - i + len(words))
            if not found[i][0].ordered:
                these.sort()
            keys = these if keys is None else _common(keys, these)
            candidates.mask[:] = False
            candidates.mask[keys >> 32] = True
        candidates.scores *= candidates.mask
        return candidates

    def _visible(self, viewer: Viewer) -> np.ndarray:
        """Messages the viewer sent or received, and archives of lists they may read; for a
        viewer limited to a scope, what the scope's query matches and nothing else."""
        if viewer.scope is not None:
            return self.evaluate(viewer.scope.query).mask & self.arrays.live
        mask = np.zeros(self.arrays.doc_count, dtype=bool)
        for address in viewer.addresses:
            mask |= self.arrays.docs_mask("participants", address)
        for list_id in viewer.readable_lists:
            mask |= self.arrays.docs_mask("list", list_id)
        return mask

    def _rank(self, docs: np.ndarray, scores: np.ndarray, sort: Sort, wanted: int) -> np.ndarray:
        """The first `wanted` of `docs`: best score first (then newest), or newest first."""
        arrays = self.arrays
        dates = arrays.date.take(docs)
        primary = dates if sort is Sort.DATE else scores[docs]
        if len(docs) > wanted > 0:
            threshold = np.partition(primary, len(primary) - wanted)[len(primary) - wanted]
            keep = primary >= threshold
            docs, primary, dates = docs[keep], primary[keep], dates[keep]
        order = np.lexsort((-arrays.pk.take(docs), -dates, -primary))
        return docs[order][:wanted]

    def _facets(self, docs: np.ndarray) -> dict[str, dict[str, int]]:
        """Counts by list, sender domain and year over the whole result set."""
        facets = {name: self.arrays.facet_counts(name, docs) for name in self.arrays.facet_fields}
        counts = np.bincount(self.arrays.year.take(docs))
        facets["year"] = {str(y): int(counts[y]) for y in np.flatnonzero(counts).tolist() if y}
        return facets

    def _everything(self) -> Matches:
        return self._unscored(self.arrays.live.copy())

    def _unscored(self, mask: np.ndarray) -> Matches:
        return Matches(mask, np.zeros(self.arrays.doc_count, dtype=np.float32))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
# Arrays of this size and up (a million messages' mask) go back to the system when freed;
# smaller ones reuse the heap, as mapping and faulting them in anew costs a query ~25%.
LARGE_ALLOCATION = 1024 * 1024
HEAP_KEPT = 32 * 1024 * 1024  # free heap kept for reuse rather than trimmed at once


@cache
def return_large_arrays_to_the_system() -> bool:
    """Make every allocation of LARGE_ALLOCATION bytes or more a mapping of its own, so
    that a query's temporary arrays (a few bytes per message each) go back to the system
    when the query ends; returns whether the C library allowed it (glibc does).

    By default glibc raises that threshold to the size of the largest block freed so far,
    after which blocks of that size come from the heap and stay there: a searching process
    kept its largest query's worth of temporaries, a figure that grows with the archive.
    Fixing the threshold also fixes the trim threshold, which would then give the heap's
    free top back after nearly every query and fault it in again: it is set high, a
    constant amount. Called once per searching process, not in the indexer.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION) and mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT)
    )


def _all(parts: list[Matches]) -> Matches:
    """Documents every part matches, scored by the sum of the parts."""
    mask, scores = parts[0].mask.copy(), parts[0].scores.copy()
    for part in parts[1:]:
        mask &= part.mask
        scores += part.scores
    scores *= mask
    return Matches(mask, scores)


def _any(parts: list[Matches]) -> Matches:
    """Documents any part matches, scored by the sum of the parts."""
    mask, scores = parts[0].mask.copy(), parts[0].scores.copy()
    for part in parts[1:]:
        mask |= part.mask
        scores += part.scores
    return Matches(mask, scores)


def _common(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The values in both of two ascending arrays without repeats."""
    if len(first) > len(second):
        first, second = second, first
    if not len(first):
        return first
    at = np.searchsorted(second, first)
    at[at == len(second)] = 0
    return first[second[at] == first]


def _costly(node: Node) -> bool:
    """Whether a node holds a phrase: word positions are the one expensive check."""
    match node:
        case Phrase():
            return True
        case Not(node=inner):
            return _costly(inner)
        case And(nodes=nodes) | Or(nodes=nodes):
            return any(_costly(child) for child in nodes)
    return False


def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
