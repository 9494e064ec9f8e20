"""A whoosh index read as numpy arrays: posting lists, per-document columns, deletions.

Whoosh's matchers hand out one posting at a time, at a fraction of a microsecond of Python
each, and a common word on a large archive has tens of thousands of postings: counting and
faceting a result set that way took hundreds of milliseconds. Here posting blocks go from
whoosh's files straight into arrays, so boolean logic, scores, facet counts and sorting
are array operations.

Document numbers are global across an index's segments (segment offset + local number),
as in whoosh's own multi-segment reader. Segments never change once written, except for
deletions, so the per-segment arrays are cached by segment and reused after a refresh.

This reads whoosh 2.7's W3 codec structures (`W3LeafMatcher` blocks, fixed-size column
files) directly: whoosh is no longer developed, and the version is pinned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from whoosh.codec.whoosh3 import _lenfield
from whoosh.columns import NumericColumn
from whoosh.reading import SegmentReader, TermNotFound
from whoosh.searching import Searcher
from whoosh.util.numeric import byte_to_length

from archiver.search.analysis import stem_of
from archiver.search.whoosh_codec import PackedLeafMatcher
from archiver.search.whoosh_format import decode_many

NO_DATE = np.iinfo(np.int64).min  # the date column's value for a message without one
_LENGTHS = np.array([byte_to_length(b) for b in range(256)], dtype=np.float32)
_EMPTY_DOCS = np.zeros(0, dtype=np.int64)
_NO_BYTES = np.zeros(0, dtype=np.uint8)


@dataclass
class Postings:
    """Every posting of one term: ascending global document numbers, term frequencies and,
    when asked for, the encoded word positions of each (byte lengths, and all joined)."""

    docs: np.ndarray
    weights: np.ndarray
    value_lengths: np.ndarray
    values: np.ndarray
    ordered: bool = True  # documents ascending (false for several words' postings joined)

    @classmethod
    def empty(cls) -> Postings:
        return cls(_EMPTY_DOCS, np.zeros(0, dtype=np.float32), _EMPTY_DOCS, _NO_BYTES)

    def positions(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document, position) pairs, flattened, for the postings whose documents are
        `wanted` (a boolean array over all documents)."""
        chosen = wanted[self.docs]
        data = self.values[np.repeat(chosen, self.value_lengths)]
        counts, positions = decode_many(data, self.value_lengths[chosen])
        return np.repeat(self.docs[chosen], counts), positions


class SegmentArrays:
    """The columns of one segment as arrays, read once: segments are immutable."""

    def __init__(
        self, reader: SegmentReader, text_fields: tuple[str, ...], facet_fields: tuple[str, ...]
    ) -> None:
        self._forms: dict[tuple[str, str], list[str]] = {}
        self.doc_count = reader.doc_count_all()
        self.facets = {name: _term_codes(reader, name, self.doc_count) for name in facet_fields}
        self.pk = _column(reader, "pk_column", "q", 0)
        self.date = _column(reader, "date", "q", NO_DATE)
        self.size = _column(reader, "size", "q", 0)
        self.attachment = _column(reader, "has_attachment", "B", 0).astype(bool)
        self.spam = _column(reader, "is_spam", "B", 0).astype(bool)
        self.virus = _column(reader, "has_virus", "B", 0).astype(bool)
        self.lengths = {
            name: _LENGTHS[_column(reader, _lenfield(name), "B", 0)] for name in text_fields
        }

    def forms(self, reader: SegmentReader, fieldname: str, stem: str) -> list[str]:
        """The words of this segment's `fieldname` whose stem is `stem` (`reader`: the
        searcher's current reader of this segment; whoosh closes old ones on refresh).

        The index holds words as written (folded); stemming happens when searching, so
        that a search finds every form of a word and can still rank its exact form first.
        A word starts with its stem, except that the stemmer turns a final y into i and
        adds an e (`happy` -> happi, `rating` -> rate): for those the last letter is left
        out of the prefix that is scanned.
        """
        key = (fieldname, stem)
        found = self._forms.get(key)
        if found is None:
            prefix = stem[:-1] if stem[-1:] in ("i", "e") and len(stem) > 1 else stem
            found = []
            if fieldname in reader.indexed_field_names():
                for term in reader.expand_prefix(fieldname, prefix):
                    word = term.decode("utf-8")
                    if stem_of(word) == stem:
                        found.append(word)
            self._forms[key] = found
        return found


def _term_codes(
    reader: SegmentReader, fieldname: str, doc_count: int
) -> tuple[list[str], np.ndarray]:
    """Each document's term in a single-valued field, as an index into a value list
    (-1: none)."""
    values: list[str] = []
    codes = np.full(doc_count, -1, dtype=np.int64)
    if fieldname in reader.indexed_field_names():
        for term in reader.lexicon(fieldname):
            value = term.decode("utf-8")
            found = _segment_postings(reader, fieldname, value, with_values=False)
            if found is not None:
                codes[found.docs] = len(values)
            values.append(value)
    return values, codes


class IndexArrays:
    """Every document of one whoosh searcher, as arrays indexed by global document number.

    Built anew when the searcher is refreshed, from cached `SegmentArrays` for segments it
    has seen before; only the deletion mask is always read fresh.
    """

    def __init__(
        self,
        searcher: Searcher,
        text_fields: tuple[str, ...],
        facet_fields: tuple[str, ...],
        cache: dict[str, SegmentArrays],
    ) -> None:
        self.searcher = searcher
        self.leaves: list[tuple[SegmentReader, int]] = [
            (reader, offset)
            for reader, offset in searcher.reader().leaf_readers()
            if reader.segment() is not None  # an empty index has a reader without one
        ]
        segments: list[SegmentArrays] = []
        for reader, _offset in self.leaves:
            key = reader.segment().segment_id()
            if key not in cache:
                cache[key] = SegmentArrays(reader, text_fields, facet_fields)
            segments.append(cache[key])
        self.segments = segments
        for stale in set(cache) - {r.segment().segment_id() for r, _ in self.leaves}:
            del cache[stale]
        self.doc_count = sum(s.doc_count for s in segments)
        self.pk = _joined([s.pk for s in segments], np.int64)
        self.date = _joined([s.date for s in segments], np.int64)
        self.size = _joined([s.size for s in segments], np.int64)
        self.attachment = _joined([s.attachment for s in segments], bool)
        self.spam = _joined([s.spam for s in segments], bool)
        self.virus = _joined([s.virus for s in segments], bool)
        self.lengths = {
            name: _joined([s.lengths[name] for s in segments], np.float32) for name in text_fields
        }
        self.live = np.ones(self.doc_count, dtype=bool)
        for reader, offset in self.leaves:
            deleted = list(reader.segment().deleted_docs())
            if deleted:
                self.live[np.asarray(deleted, dtype=np.int64) + offset] = False
        self.live_count = int(self.live.sum())
        self.mean_length = {
            name: float(lengths[self.live].mean()) if self.live_count else 1.0
            for name, lengths in self.lengths.items()
        }
        years = self.date.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
        self.year = np.where(self.date == NO_DATE, 0, years)
        self.facets = {
            name: _merged_codes([s.facets[name] for s in segments]) for name in facet_fields
        }

    def postings(self, fieldname: str, text: str, with_values: bool = False) -> Postings:
        """All postings of `text` in `fieldname` across segments, deleted documents
        included (callers mask with `live`)."""
        parts: list[Postings] = []
        for reader, offset in self.leaves:
            found = _segment_postings(reader, fieldname, text, with_values)
            if found is not None:
                found.docs += offset
                parts.append(found)
        if not parts:
            return Postings.empty()
        # segments in order of their offsets: still ascending
        return parts[0] if len(parts) == 1 else _concatenated(parts, ordered=True)

    def word_postings(
        self, fieldname: str, word: str, with_values: bool = False
    ) -> tuple[Postings, np.ndarray]:
        """The postings of every form of `word` (all words with its stem) together,
        documents in no particular order, and the documents holding `word` as written."""
        stem = stem_of(word)
        forms = sorted(
            {
                form
                for (reader, _), segment in zip(self.leaves, self.segments, strict=True)
                for form in segment.forms(reader, fieldname, stem)
            }
        )
        if word not in forms:
            forms.append(word)
        found = [self.postings(fieldname, form, with_values) for form in forms]
        exact = found[forms.index(word)].docs
        if len(found) == 1:
            return found[0], exact
        return _concatenated(found, ordered=False), exact

    def docs_mask(self, fieldname: str, text: str) -> np.ndarray:
        """A boolean array: the live documents that contain this term."""
        mask = np.zeros(self.doc_count, dtype=bool)
        mask[self.postings(fieldname, text).docs] = True
        return mask & self.live

    def when(self, docnum: int) -> datetime | None:
        """The sent date of a document."""
        seconds = int(self.date[docnum])
        return None if seconds == NO_DATE else datetime.fromtimestamp(seconds, UTC)


def _segment_postings(
    reader: SegmentReader, fieldname: str, text: str, with_values: bool
) -> Postings | None:
    """One segment's postings of a term, a block at a time."""
    fieldobj = reader.schema[fieldname]
    try:
        matcher = reader._terms.matcher(fieldname, fieldobj.to_bytes(text), fieldobj.format)
    except TermNotFound:
        return None
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, bytes]] = []
    if isinstance(matcher, PackedLeafMatcher):
        while True:
            if matcher._data is None:
                matcher._read_data()
            blocks.append(matcher._data)
            if matcher._lastblock:
                break
            matcher._goto(matcher._nextoffset)
    else:  # a posting list short enough to live in the term table
        while matcher.is_active():
            value = matcher.value() or b""
            blocks.append(
                (
                    np.array([matcher.id()], dtype=np.int64),
                    np.array([matcher.weight()], dtype=np.float32),
                    np.array([len(value)], dtype=np.int64),
                    value,
                )
            )
            matcher.next()
    if not blocks:
        return Postings.empty()
    ids, weights, lengths, values = zip(*blocks, strict=True)
    return Postings(
        np.concatenate(ids),
        np.concatenate(weights),
        np.concatenate(lengths) if with_values else _EMPTY_DOCS,
        np.frombuffer(b"".join(values), dtype=np.uint8) if with_values else _NO_BYTES,
    )


def _merged_codes(parts: list[tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """Segments' term codes renumbered into one value list. Facets count these with one
    `bincount`."""
    numbers: dict[str, int] = {}
    codes = []
    for values, local in parts:
        # the appended -1 maps "no term" (-1) to itself
        renumber = [numbers.setdefault(value, len(numbers)) for value in values] + [-1]
        codes.append(np.asarray(renumber, dtype=np.int64)[local])
    return list(numbers), _joined(codes, np.int64)


def _concatenated(parts: list[Postings], ordered: bool) -> Postings:
    return Postings(
        np.concatenate([p.docs for p in parts]),
        np.concatenate([p.weights for p in parts]),
        np.concatenate([p.value_lengths for p in parts]),
        np.concatenate([p.values for p in parts]),
        ordered,
    )


def _column(reader: SegmentReader, fieldname: str, typecode: str, default: int) -> np.ndarray:
    """A fixed-width numeric column of one segment, straight from its file."""
    perdoc = reader._perdoc
    out = np.full(reader.doc_count_all(), default, dtype=np.int64)
    if not perdoc.has_column(fieldname):
        return out
    column = perdoc.column_reader(fieldname, NumericColumn(typecode))
    stored = min(column._count, len(out))
    raw = column._dbfile.get(column._basepos, stored * column._fixedlen)
    out[:stored] = np.frombuffer(raw, dtype=np.dtype(typecode).newbyteorder(">"))
    return out


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)
