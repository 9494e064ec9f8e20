"""Answering a parsed query from a whoosh index's arrays: which messages, in what order.

Every node of the query becomes the ascending numbers of the documents it matches plus
their BM25 scores, so `AND` is an intersection of sorted arrays, `OR` a merge, the
viewer's filter one more intersection, totals and facets are counts over the final
documents, and the page is the top of one partial sort. A query's arrays are as long as
its matches, not as the archive: a rare word costs as little at ten million messages as
at ten thousand, and a process answering several searches at once holds only their
matches. Parts of an `AND` that test a document rather than find documents (a date or
size range, `has:attachment`, a negated part) and phrases are checked only on the
documents the other parts left; phrases against word positions of just those documents.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from archiver.search.analysis import path_words
from archiver.search.backend import EXACT_TOTAL_LIMIT, Hit, SearchResult, Sort
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
from archiver.search.whoosh_arrays import NO_DATE, IndexArrays, Joined, Postings, among, when

# Fields a bare word searches, and how much a match in each counts towards relevance.
TEXT_FIELDS = {"subject": 2.0, "body": 1.0, "attachments": 1.0, "people": 1.0}
SCORED_FIELDS = {**TEXT_FIELDS, "filename": 1.0, "folder": 1.0}
POSITIONAL_FIELDS = frozenset({"subject", "body"})
ADDRESS_FIELDS = {"from": "from_addr", "to": "to_addr", "cc": "cc_addr"}
BM25_K1 = 1.2
BM25_B = 0.75
EXACT_BONUS = 1.5  # a word as typed outranks its other forms
# An `OR` whose parts hold more than this share of the archive's documents is merged in
# one array over all documents (5 bytes each) rather than by sorting its parts together
# (up to 28 bytes a match): whichever is smaller.
DENSE_MERGE = 1 / 8
# Looking many documents up among many others (both past this share of the archive) goes
# through a mask over all documents: a gather, fifteen times faster than bisecting.
DENSE_LOOKUP = 1 / 64
# A part of a query evaluated for fewer documents than this share of the archive reads
# only the posting blocks that may hold them (a block covers a few hundred documents).
NARROW_SHARE = 1 / 256
# The newest documents that a search matching more than EXACT_TOTAL_LIMIT is ranked in.
WINDOW = 100_000
_NO_DOCS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Matches:
    """The documents a query node matches (ascending, each once) and what each scored.
    Never changed in place: a part of a query may be shared by several results."""

    docs: np.ndarray
    scores: np.ndarray

    @classmethod
    def unscored(cls, docs: np.ndarray) -> Matches:
        return cls(docs, np.zeros(len(docs), dtype=np.float32))

    def only(self, keep: np.ndarray) -> Matches:
        """The matches where `keep` (one boolean per document here) is true."""
        return self if bool(keep.all()) else Matches(self.docs[keep], self.scores[keep])


class Matcher:
    """Evaluates query nodes against one `IndexArrays`; `analyze(field, text)` gives the
    index terms of a text (folded, stemmed) as the writer produced them."""

    def __init__(self, arrays: IndexArrays, analyze: Callable[[str, str], list[str]]) -> None:
        self.arrays = arrays
        self.analyze = analyze
        self._masks: list[tuple[np.ndarray, np.ndarray]] = []  # (documents, their mask)

    def search(
        self,
        query: Node | None,
        viewer: Viewer,
        sort: Sort,
        limit: int,
        offset: int,
        exact_total: bool = False,
    ) -> SearchResult:
        """The page, the total and the facets of what `viewer` may see of `query`.

        A search by relevance that matches more than EXACT_TOTAL_LIMIT messages is ranked
        among the newest WINDOW documents and its total and facets estimated from them,
        as the PostgreSQL backend ranks among its newest months: a word in most messages
        then costs the same at ten million messages as at a few hundred thousand. The
        newest are the last indexed, so a search by date reads everything, as does one
        asking for `exact_total`.
        """
        visible = None if viewer.sees_all else self._visible(viewer)
        wanted = offset + limit
        if query is not None and sort is Sort.RELEVANCE and not exact_total:
            most = self.arrays.doc_count if visible is None else len(visible)
            if most > EXACT_TOTAL_LIMIT:  # the term dictionaries only when they can tell
                most = min(most, self._most(query))
            sampled = self._newest(query, visible, wanted) if most > EXACT_TOTAL_LIMIT else None
            if sampled is not None:
                found, scale = sampled
                return self._result(found, sort, limit, offset, scale)
        found = self._everything(visible) if query is None else self.evaluate(query, visible)
        return self._result(self._within(found, visible), sort, limit, offset)

    def _newest(
        self, query: Node, visible: np.ndarray | None, wanted: int
    ) -> tuple[Matches, float] | None:
        """The matches among the newest WINDOW documents, and how many documents of the
        whole archive each of those stands for; None when the archive is not much larger
        than the window or the matches there do not stand for more than EXACT_TOTAL_LIMIT
        (then every match is counted)."""
        arrays = self.arrays
        start = arrays.doc_count - WINDOW
        if start < WINDOW:
            return None
        if visible is None:
            window = np.arange(start, arrays.doc_count, dtype=np.int64)
        else:
            window = visible[np.searchsorted(visible, start) :]
        found = self._within(self.evaluate(query, window), window)
        scale = arrays.live_count / max(int(np.count_nonzero(arrays.live[start:])), 1)
        if len(found.docs) < wanted or len(found.docs) * scale <= EXACT_TOTAL_LIMIT:
            return None
        return found, scale

    def _most(self, node: Node) -> int:
        """At most how many documents `node` matches, from the term dictionaries alone:
        spares a search that cannot pass EXACT_TOTAL_LIMIT a pass over the newest
        documents before it counts every match. The archive's size where no bound is cheap."""
        arrays = self.arrays
        match node:
            case Word(text=text, field=None) | Phrase(text=text, field=None):
                return sum(self._most_in(name, text) for name in TEXT_FIELDS)
            case (
                Word(text=text, field="subject" | "filename" | "body" as name)
                | Phrase(text=text, field="subject" | "filename" | "body" as name)
            ):
                return self._most_in(name, text)
            case Address(field=name, value=value):
                return arrays.frequency(ADDRESS_FIELDS[name], value.lower())
            case Participant(address=address):
                return arrays.frequency("participants", address.lower())
            case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
                return arrays.frequency("message_id", text.lower().strip("<>"))
            case And(nodes=nodes):
                return min(self._most(child) for child in nodes)
            case Or(nodes=nodes):
                return sum(self._most(child) for child in nodes)
        return arrays.doc_count

    def _most_in(self, fieldname: str, text: str) -> int:
        """At most how many documents hold every word of `text` in a text field."""
        counts = [self._frequency(fieldname, word) for word in self.analyze(fieldname, text)]
        return min(counts, default=self.arrays.doc_count)

    def _result(
        self, found: Matches, sort: Sort, limit: int, offset: int, scale: float = 1.0
    ) -> SearchResult:
        """The page of `found`, its total and facets, each match standing for `scale`."""
        arrays = self.arrays
        docs, scores = self._rank(found, sort, offset + limit)
        docs, scores = docs[offset : offset + limit], scores[offset : offset + limit]
        hits = [
            Hit(pk, score, when(seconds))
            for pk, score, seconds in zip(
                arrays.pk.take(docs).tolist(),
                scores.tolist(),
                arrays.date.take(docs).tolist(),
                strict=True,
            )
        ]
        facets = self._facets(found.docs)
        if scale == 1.0:
            return SearchResult(total=len(found.docs), hits=hits, facets=facets)
        return SearchResult(
            total=round(len(found.docs) * scale),
            hits=hits,
            facets={
                name: {value: round(count * scale) for value, count in counts.items()}
                for name, counts in facets.items()
            },
            total_exact=False,
        )

    def matching(self, query: Node | None) -> list[int]:
        """The ids of every live document `query` matches."""
        found = self._everything(None) if query is None else self.evaluate(query)
        return self.arrays.pk.take(found.docs).tolist()

    def evaluate(self, node: Node, within: np.ndarray | None = None) -> Matches:
        """The matches of one query node, exact for the documents in `within` (ascending;
        all when None). Documents outside `within` may be left out or kept unchecked: the
        caller keeps only those inside, so a node can skip work it would throw away."""
        match node:
            case Word(text=text, field=None) | Phrase(text=text, field=None):
                phrase = isinstance(node, Phrase)
                return self._any([self._text(name, text, phrase, within) for name in TEXT_FIELDS])
            case (
                Word(text=text, field="subject" | "filename" as name)
                | Phrase(text=text, field="subject" | "filename" as name)
            ):
                return self._text(name, text, isinstance(node, Phrase), within)
            case Word(text=text, field="folder") | Phrase(text=text, field="folder"):
                return self._text("folder", path_words(text), isinstance(node, Phrase), within)
            case Word(text=text, field="list") | Phrase(text=text, field="list"):
                return self._term("list", text.lower(), within)
            case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
                return self._term("message_id", text.lower().strip("<>"), within)
            case Word(text=text) | Phrase(text=text):
                return self._text("body", text, isinstance(node, Phrase), within)
            case Address(field=name, value=value):
                return self._term(ADDRESS_FIELDS[name], value.lower(), within)
            case Participant(address=address):
                return Matches.unscored(self._live_docs("participants", address.lower()))
            case IsMarked(mark=mark):
                return Matches.unscored(self._live_docs("marks", mark))
            case HasAttachment() | IsSpam() | HasVirus() | DateRange() | SizeRange():
                if within is None:  # one pass over the whole columns
                    return Matches.unscored(np.flatnonzero(self._passes(node) & self.arrays.live))
                return Matches.unscored(within[self._passes(node, within)])
            case Not(node=inner):
                docs = self._everything(within).docs
                return Matches.unscored(docs[~self._among(self.evaluate(inner, docs).docs, docs)])
            case And(nodes=nodes):
                return self._all_of(nodes, within)
            case Or(nodes=nodes):
                return self._any([self.evaluate(child, within) for child in nodes])
        raise TypeError(f"unknown query node {node!r}")

    def _all_of(self, nodes: tuple[Node, ...], within: np.ndarray | None) -> Matches:
        """Documents every node matches. Nodes that find documents through their postings
        go first, terms that name one thing (an address, a list) before words; tests of
        single documents (dates, flags, negations) and then phrases, the one costly check,
        come last. Each node is evaluated only for the documents the ones before it left,
        so a word after `from:` reads just the blocks near that sender's messages."""
        finders: list[Node] = []
        checks: list[Node] = []
        for node in nodes:
            (checks if _checks(node) or _costly(node) else finders).append(node)
        finders.sort(key=lambda node: not _names_one_thing(node))
        checks.sort(key=_costly)
        if not finders:
            finders = [checks.pop(0)]
        found = self.evaluate(finders[0], within)
        for node in [*finders[1:], *checks]:
            found = self._all([found, self.evaluate(node, found.docs)])
        return found

    def _passes(self, node: Node, docs: np.ndarray | None = None) -> np.ndarray:
        """Which of `docs` (all documents when None) a test of the document's own
        columns accepts."""
        arrays = self.arrays

        def column(joined: Joined) -> np.ndarray:
            return joined.full() if docs is None else joined.take(docs)

        match node:
            case HasAttachment():
                return column(arrays.attachment)
            case IsSpam():
                return column(arrays.spam)
            case HasVirus():
                return column(arrays.virus)
            case DateRange(start=start, end=end):
                dates = column(arrays.date)
                keep = dates != NO_DATE
                if start is not None:
                    keep &= dates >= _midnight(start)
                if end is not None:
                    keep &= dates < _midnight(end)
                return keep
            case SizeRange(minimum=minimum, maximum=maximum):
                sizes = column(arrays.size)
                keep = np.ones(len(sizes), dtype=bool)
                if minimum is not None:
                    keep &= sizes >= minimum
                if maximum is not None:
                    keep &= sizes < maximum
                return keep
        raise TypeError(f"not a test of a document's columns: {node!r}")

    def _text(self, fieldname: str, text: str, phrase: bool, within: np.ndarray | None) -> Matches:
        """Words in a text field: all of them, next to each other when a phrase."""
        words = self.analyze(fieldname, text)
        if not words:
            return self._everything(within)
        if phrase and len(words) > 1 and fieldname in POSITIONAL_FIELDS:
            return self._phrase(fieldname, words, within)
        return self._words(fieldname, words, within)[0]

    def _term(self, fieldname: str, term: str, within: np.ndarray | None) -> Matches:
        """One index term as it is (addresses, list ids, message ids)."""
        postings = self.arrays.postings(fieldname, term, self._narrow(within))
        return self._scored(fieldname, postings, within)

    def _words(
        self, fieldname: str, words: list[str], within: np.ndarray | None
    ) -> tuple[Matches, dict[int, Postings]]:
        """Documents with every word, in any of its forms (`running` finds `runs`; the
        exact form scores higher), and the postings read of each word, by its place in
        `words`. The rarest word is read first and each other only for the documents the
        rarer ones left: near them only, when they are few."""
        order = list(range(len(words)))
        if len(words) > 1:
            order.sort(key=lambda i: self._frequency(fieldname, words[i]))
        found: Matches | None = None
        read: dict[int, Postings] = {}
        for i in order:
            narrowed = within if found is None else found.docs
            postings, exact = self.arrays.word_postings(fieldname, words[i], self._narrow(narrowed))
            scored = self._scored(fieldname, postings, narrowed, exact)
            found = scored if found is None else self._all([found, scored])
            read[i] = postings
        return (self._everything(within) if found is None else found), read

    def _frequency(self, fieldname: str, word: str) -> int:
        """How many documents hold a form of `word`, from the term dictionaries alone (a
        document with two forms counts twice)."""
        arrays = self.arrays
        return sum(arrays.frequency(fieldname, form) for form in arrays.forms(fieldname, word))

    def _narrow(self, within: np.ndarray | None) -> np.ndarray | None:
        """`within`, when skipping the posting blocks without any of its documents pays
        for looking each block's range up: it holds few documents, or documents close
        together (the newest); None (read every block) otherwise."""
        if within is None or not len(within):
            return within
        doc_count = self.arrays.doc_count
        if len(within) <= NARROW_SHARE * doc_count or within[-1] - within[0] < doc_count / 4:
            return within
        return None

    def _scored(
        self,
        fieldname: str,
        postings: Postings,
        within: np.ndarray | None,
        exact: np.ndarray | None = None,
    ) -> Matches:
        """The live documents of `postings` among `within`, scored with BM25 in text
        fields (frequencies of several forms of a word add up); documents in `exact` score
        EXACT_BONUS times more. The word's rarity is counted over the whole archive."""
        arrays = self.arrays
        docs, frequencies = _summed(postings)
        if arrays.live_count < arrays.doc_count:
            live = arrays.live[docs]
            docs, frequencies = docs[live], frequencies[live]
        matched = min(postings.frequency, arrays.live_count)
        if within is not None:
            keep = self._among(within, docs)
            docs, frequencies = docs[keep], frequencies[keep]
        boost = SCORED_FIELDS.get(fieldname, 0.0)
        if not boost or not len(docs):
            return Matches.unscored(docs)
        idf = math.log(1 + (arrays.live_count - matched + 0.5) / (matched + 0.5))
        relative = arrays.lengths(fieldname, docs) / arrays.mean_length[fieldname]
        norm = BM25_K1 * (1 - BM25_B + BM25_B * relative)
        scores = (boost * idf * (BM25_K1 + 1)) * frequencies / (frequencies + norm)
        if exact is not None and len(exact):
            scores[self._among(exact, docs)] *= EXACT_BONUS
        return Matches(docs, scores.astype(np.float32, copy=False))

    def _phrase(self, fieldname: str, words: list[str], within: np.ndarray | None) -> Matches:
        """Documents with `words` (in any of their forms) at consecutive positions, scored
        as their words.

        Each (document, position - offset in the phrase) pair of every word is one
        integer key; a phrase occurs where every word has the same key. The keys of one
        word's postings are ascending, so intersecting them needs no sort.
        """
        candidates, found = self._words(fieldname, words, within)
        keys: np.ndarray | None = None
        for i in found:  # the rarest word first: the fewest keys to intersect
            docs, positions = found[i].positions(candidates.docs)
            these = (docs << 32) | (positions - i + len(words))
            if not found[i].ordered:
                these.sort()
            keys = these if keys is None else _common(keys, these)
            candidates = self._within(candidates, _distinct(keys >> 32))
        return candidates

    def _visible(self, viewer: Viewer) -> np.ndarray:
        """Messages the viewer sent or received, and archives of lists they may read; for a
        viewer limited to a scope, what the scope's query matches and nothing else."""
        if viewer.scope is not None:
            return self.evaluate(viewer.scope.query).docs
        parts = [self._live_docs("participants", address) for address in viewer.addresses]
        parts += [self._live_docs("list", list_id) for list_id in viewer.readable_lists]
        return self._any([Matches.unscored(docs) for docs in parts]).docs if parts else _NO_DOCS

    def _live_docs(self, fieldname: str, term: str) -> np.ndarray:
        """The live documents holding one term, ascending."""
        docs = self.arrays.postings(fieldname, term).docs
        if self.arrays.live_count < self.arrays.doc_count:
            docs = docs[self.arrays.live[docs]]
        return docs

    def _rank(self, found: Matches, sort: Sort, wanted: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `wanted` of the matches and their scores: best score first (then
        newest), or newest first."""
        docs, scores = found.docs, found.scores
        if len(docs) > wanted > 0:
            primary = self.arrays.date.take(docs) if sort is Sort.DATE else scores
            threshold = np.partition(primary, len(primary) - wanted)[len(primary) - wanted]
            keep = primary >= threshold  # ties at the threshold all stay
            docs, scores = docs[keep], scores[keep]
        dates = self.arrays.date.take(docs)
        primary = dates if sort is Sort.DATE else scores
        order = np.lexsort((-self.arrays.pk.take(docs), -dates, -primary))[:wanted]
        return docs[order], scores[order]

    def _facets(self, docs: np.ndarray) -> dict[str, dict[str, int]]:
        """Counts by list, sender domain and year over the whole result set."""
        facets = {name: self.arrays.facet_counts(name, docs) for name in self.arrays.facet_fields}
        counts = np.bincount(self.arrays.year.take(docs))
        facets["year"] = {str(y): int(counts[y]) for y in np.flatnonzero(counts).tolist() if y}
        return facets

    def _everything(self, within: np.ndarray | None) -> Matches:
        """Every live document (of `within`, when given)."""
        if within is not None:
            return Matches.unscored(within)
        return Matches.unscored(np.flatnonzero(self.arrays.live))

    def _all(self, parts: list[Matches]) -> Matches:
        """Documents every part matches, scored by the sum of the parts: the smallest
        part's documents looked up in each of the others."""
        parts = sorted(parts, key=lambda part: len(part.docs))
        docs, scores = parts[0].docs, parts[0].scores
        for part in parts[1:]:
            hit = self._among(part.docs, docs)
            docs, scores = docs[hit], scores[hit]
            scores = scores + part.scores[np.searchsorted(part.docs, docs)]
        return Matches(docs, scores)

    def _within(self, found: Matches, docs: np.ndarray | None) -> Matches:
        """The matches among `docs` (ascending; all when None)."""
        return found if docs is None else found.only(self._among(docs, found.docs))

    def _among(self, members: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Which of `values` are among `members` (both ascending, each once)."""
        enough = DENSE_LOOKUP * self.arrays.doc_count
        if len(members) < enough or len(values) < enough:
            return among(members, values)
        for known, mask in self._masks:
            if known is members:
                return mask[values]
        mask = np.zeros(self.arrays.doc_count, dtype=bool)
        mask[members] = True
        self._masks.append((members, mask))  # a query asks about one set several times
        return mask[values]

    def _any(self, parts: list[Matches]) -> Matches:
        """Documents any part matches, scored by the sum of the parts."""
        parts = [part for part in parts if len(part.docs)] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        doc_count = self.arrays.doc_count
        if sum(len(part.docs) for part in parts) > DENSE_MERGE * doc_count:
            present = np.zeros(doc_count, dtype=bool)
            summed = np.zeros(doc_count, dtype=np.float32)
            for part in parts:
                present[part.docs] = True
                summed[part.docs] += part.scores
            docs = np.flatnonzero(present)
            return Matches(docs, summed[docs])
        docs = np.concatenate([part.docs for part in parts])
        order = np.argsort(docs, kind="stable")  # a merge of sorted runs
        docs, scores = docs[order], np.concatenate([part.scores for part in parts])[order]
        first = _firsts(docs)
        return Matches(docs[first], np.add.reduceat(scores, first))


def _firsts(docs: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in an ascending array."""
    starts = np.ones(len(docs), dtype=bool)
    np.not_equal(docs[1:], docs[:-1], out=starts[1:])
    return np.flatnonzero(starts)


def _distinct(docs: np.ndarray) -> np.ndarray:
    """An ascending array with its repeats left out."""
    return docs[_firsts(docs)] if len(docs) else docs


def _summed(postings: Postings) -> tuple[np.ndarray, np.ndarray]:
    """Each document of `postings` once, ascending, with its frequencies added up (a
    document holds several forms of a word)."""
    if postings.ordered:
        return postings.docs, postings.weights
    if not len(postings.docs):
        return postings.docs, postings.weights
    order = np.argsort(postings.docs, kind="stable")  # a merge of each form's sorted run
    docs = postings.docs[order]
    first = _firsts(docs)
    return docs[first], np.add.reduceat(postings.weights[order], first)


def _common(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The values in both of two ascending arrays without repeats."""
    if len(first) > len(second):
        first, second = second, first
    if not len(first):
        return first
    return first[among(second, first)]


def _names_one_thing(node: Node) -> bool:
    """Whether a node is one term naming a thing (an address, a list, a message id, a
    mark): such a term usually matches far fewer messages than a word does."""
    match node:
        case Address() | Participant() | IsMarked():
            return True
        case Word(field="list" | "msgid") | Phrase(field="list" | "msgid"):
            return True
    return False


def _checks(node: Node) -> bool:
    """Whether a node tests single documents rather than finding them through postings:
    cheap on a few documents, a pass over the whole archive on its own."""
    return isinstance(node, HasAttachment | IsSpam | HasVirus | DateRange | SizeRange | Not)


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
