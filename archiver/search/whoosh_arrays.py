"""A whoosh index read as numpy arrays: posting lists, per-document columns, deletions.

Whoosh's matchers hand out one posting at a time, at a fraction of a microsecond of Python
each, and a common word on a large archive has tens of thousands of postings: counting and
faceting a result set that way took hundreds of milliseconds. Here posting blocks go from
whoosh's files straight into arrays, so boolean logic, scores, facet counts and sorting
are array operations.

Document numbers are global across an index's segments (segment offset + local number),
as in whoosh's own multi-segment reader. Segments never change once written, except for
deletions, so each segment's arrays are derived once, kept in files beside the index and
memory-mapped by every process (`whoosh_derived`); columns are read segment by segment
(`Joined`) rather than joined into one copy, so that a process's own memory stays the
same size however large the archive grows. Only the deletion mask is per process.

This reads whoosh 2.7's W3 codec structures (`W3LeafMatcher` blocks, fixed-size column
files) directly: whoosh is no longer developed, and the version is pinned.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from whoosh.codec.whoosh3 import _lenfield
from whoosh.columns import NumericColumn
from whoosh.filedb.structfile import BufferFile
from whoosh.reading import SegmentReader, TermNotFound
from whoosh.searching import Searcher
from whoosh.util.numeric import byte_to_length

from archiver.search import whoosh_derived
from archiver.search.analysis import query_stems, stem_of
from archiver.search.indonesian import changed_roots
from archiver.search.whoosh_codec import (
    PackedLeafMatcher,
    StoredBlock,
    pack_block,
    stored_column,
)
from archiver.search.whoosh_derived import Derived, SortedStrings
from archiver.search.whoosh_format import decode_many

log = logging.getLogger(__name__)

NO_DATE = np.iinfo(np.int64).min  # the date column's value for a message without one
_LENGTHS = np.array([byte_to_length(b) for b in range(256)], dtype=np.float32)
_EMPTY_DOCS = np.zeros(0, dtype=np.int64)


@dataclass
class Postings:
    """The postings of one term (or of several forms of a word) that were read: document
    numbers (ascending unless not `ordered`) and term frequencies; how many documents hold
    the term in the whole index, deleted ones included (what BM25 weighs a word's rarity
    by, however few of its blocks were read); and the stored block of each run of
    postings, from `starts` on, to read positions from when a phrase asks for them."""

    docs: np.ndarray
    weights: np.ndarray
    frequency: int
    blocks: list[StoredBlock]
    starts: np.ndarray
    ordered: bool = True  # documents ascending (false for several words' postings joined)

    @classmethod
    def empty(cls, frequency: int = 0) -> Postings:
        return cls(_EMPTY_DOCS, np.zeros(0, dtype=np.float32), frequency, [], _EMPTY_DOCS)

    def positions(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document, position) pairs, flattened, for the postings whose documents are
        among `wanted` (ascending). Only the blocks holding them are inflated in full."""
        chosen = among(wanted, self.docs)
        picked = np.flatnonzero(chosen)
        if not len(picked):
            return _EMPTY_DOCS, _EMPTY_DOCS
        block_of = np.searchsorted(self.starts, picked, side="right") - 1
        ends = [*self.starts[1:].tolist(), len(self.docs)]
        lengths: list[np.ndarray] = []
        joined: list[bytes] = []
        picks: list[np.ndarray] = []
        for block in np.flatnonzero(np.bincount(block_of)).tolist():
            these, data = self.blocks[block].values()
            lengths.append(these)
            joined.append(data)
            picks.append(chosen[int(self.starts[block]) : ends[block]])
        every_length, pick = np.concatenate(lengths), np.concatenate(picks)
        data = np.frombuffer(b"".join(joined), dtype=np.uint8)[np.repeat(pick, every_length)]
        counts, positions = decode_many(data, every_length[pick])
        return np.repeat(self.docs[picked], counts), positions


class SegmentArrays:
    """The columns of one segment as arrays, derived once (segments are immutable) and,
    given the index directory, kept on disk and memory-mapped (see `whoosh_derived`)."""

    FORMS_CACHED = 4096  # (field, stem) look-ups remembered per segment
    FACET_VALUES_CACHED = 10_000  # decoded facet values remembered per segment

    def __init__(self, derived: Derived, facet_fields: tuple[str, ...]) -> None:
        self._forms: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self._length_sums: dict[str, float] = {}
        self._facet_values: dict[tuple[str, int], str] = {}
        self.pk = derived["pk"]
        self.doc_count = len(self.pk)
        self.date = derived["date"]
        self.size = derived["size"]
        self.year = derived["year"]
        self.attachment = derived["attachment"]
        self.spam = derived["spam"]
        self.virus = derived["virus"]
        # field -> "root word" for each word whose Indonesian root is not the word itself
        self.roots: dict[str, SortedStrings] = {
            name[len("roots.") :]: strings
            for name, strings in derived.items()
            if name.startswith("roots.") and isinstance(strings, SortedStrings)
        }
        # field -> one byte per document, whoosh's encoded length (`_LENGTHS` decodes it)
        self.length_codes = {
            name[len("length.") :]: array
            for name, array in derived.items()
            if name.startswith("length.")
        }
        self.facets: dict[str, tuple[SortedStrings, np.ndarray]] = {
            name: (derived[f"facet.{name}.values"], derived[f"facet.{name}.codes"])
            for name in facet_fields
        }

    @classmethod
    def open(
        cls,
        reader: SegmentReader,
        text_fields: tuple[str, ...],
        facet_fields: tuple[str, ...],
        index_dir: Path | None = None,
    ) -> SegmentArrays:
        """The arrays of `reader`'s segment: mapped from `index_dir`'s derived files,
        written there first if this is the first process to need them; in memory only
        when `index_dir` is None.

        The file can vanish between listing and opening (the writer removes a merged
        segment's files); this reader still has the segment open, so it derives them again.
        Files that cannot be read (cut short by a crash) are replaced.
        """
        if index_dir is None:
            return cls(_derive(reader, text_fields, facet_fields), facet_fields)
        path = whoosh_derived.file_of(index_dir, reader.segment().segment_id())
        try:
            return cls(whoosh_derived.load(path), facet_fields)
        except FileNotFoundError:
            pass  # not derived yet, or removed after a merge: derived and written below
        except (OSError, ValueError, KeyError) as exc:
            log.warning("rewriting the unreadable search arrays %s: %s", path, exc)
        derived = _derive(reader, text_fields, facet_fields)
        whoosh_derived.store(path, derived)
        try:
            return cls(whoosh_derived.load(path), facet_fields)
        except FileNotFoundError:  # removed as soon as written: the segment is gone
            return cls(derived, facet_fields)

    def facet_value(self, fieldname: str, code: int) -> str:
        """The value a facet code stands for, decoded once (the values that results show
        are few; the field's full list stays on disk)."""
        key = (fieldname, code)
        value = self._facet_values.get(key)
        if value is None:
            if len(self._facet_values) >= self.FACET_VALUES_CACHED:
                self._facet_values.clear()
            value = self._facet_values[key] = self.facets[fieldname][0][code]
        return value

    def length_sum(self, fieldname: str) -> float:
        """The total length of `fieldname` over every document, deleted ones included."""
        if fieldname not in self._length_sums:
            counts = np.bincount(self.length_codes[fieldname], minlength=256)
            self._length_sums[fieldname] = float(counts @ _LENGTHS)
        return self._length_sums[fieldname]

    def forms(self, reader: SegmentReader, fieldname: str, stem: str) -> list[str]:
        """The words of this segment's `fieldname` whose English stem is `stem` (`reader`:
        the searcher's current reader of this segment; whoosh closes old ones on refresh).

        The index holds words as written (folded); stemming happens when searching, so
        that a search finds every form of a word and can still rank its exact form first.
        A word starts with its stem, except that the stemmer turns a final y into i and
        adds an e (`happy` -> happi, `rating` -> rate): for those the last letter is left
        out of the prefix that is scanned. The most recent look-ups are remembered.
        """
        key = (fieldname, stem)
        found = self._forms.get(key)
        if found is not None:
            self._forms.move_to_end(key)
            return found
        prefix = stem[:-1] if stem[-1:] in ("i", "e") and len(stem) > 1 else stem
        found = []
        if fieldname in reader.indexed_field_names():
            for term in reader.expand_prefix(fieldname, prefix):
                word = term.decode("utf-8")
                if stem_of(word) == stem:
                    found.append(word)
        self._remember(key, found)
        return found

    def indonesian_forms(self, fieldname: str, root: str) -> list[str]:
        """The words of this segment's `fieldname` that the Indonesian stemmer cuts to
        `root` (`keuangan` for uang). A root is rarely the start of its words (ke-uang-an),
        so no prefix scan finds them: the segment's "root word" pairs, derived once with
        the other arrays, are searched instead."""
        key = (fieldname, f" {root}")  # no stem starts with a space: apart from `forms`
        found = self._forms.get(key)
        if found is not None:
            self._forms.move_to_end(key)
            return found
        pairs = self.roots.get(fieldname)
        found = (
            [] if pairs is None else [p.split(" ", 1)[1] for p in pairs.starting_with(f"{root} ")]
        )
        self._remember(key, found)
        return found

    def _remember(self, key: tuple[str, str], found: list[str]) -> None:
        self._forms[key] = found
        if len(self._forms) > self.FORMS_CACHED:
            self._forms.popitem(last=False)


def _derive(
    reader: SegmentReader, text_fields: tuple[str, ...], facet_fields: tuple[str, ...]
) -> Derived:
    """Everything `SegmentArrays` holds, read from one segment's files."""
    doc_count = reader.doc_count_all()
    derived: Derived = {
        "pk": _column(reader, "pk_column", "q", 0),
        "date": _column(reader, "date", "q", NO_DATE),
        "size": _column(reader, "size", "q", 0),
        "year": _years(_column(reader, "date", "q", NO_DATE)),
        "attachment": _column(reader, "has_attachment", "B", 0).astype(bool),
        "spam": _column(reader, "is_spam", "B", 0).astype(bool),
        "virus": _column(reader, "has_virus", "B", 0).astype(bool),
    }
    for name in text_fields:
        derived[f"length.{name}"] = _column(reader, _lenfield(name), "B", 0).astype(np.uint8)
        derived[f"roots.{name}"] = _roots(reader, name)
    for name in facet_fields:
        values, codes = _term_codes(reader, name, doc_count)
        derived[f"facet.{name}.values"] = SortedStrings.from_list(values)
        derived[f"facet.{name}.codes"] = codes
    return derived


def _roots(reader: SegmentReader, fieldname: str) -> SortedStrings:
    """ "root word" for each word of the field whose Indonesian root differs from it,
    sorted, so that `SegmentArrays.indonesian_forms` finds a root's words by bisection."""
    words: list[str] = []
    if fieldname in reader.indexed_field_names():
        words = [term.decode("utf-8") for term in reader.lexicon(fieldname)]
    return SortedStrings.from_list(sorted(f"{root} {word}" for root, word in changed_roots(words)))


def _years(dates: np.ndarray) -> np.ndarray:
    """The year of each date (0: no date), for the year facet."""
    years = dates.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    return np.where(dates == NO_DATE, 0, years).astype(np.int16)


def _term_codes(
    reader: SegmentReader, fieldname: str, doc_count: int
) -> tuple[list[str], np.ndarray]:
    """Each document's term in a single-valued field, as an index into the field's sorted
    values (-1: none)."""
    values: list[str] = []
    codes = np.full(doc_count, -1, dtype=np.int32)
    if fieldname in reader.indexed_field_names():
        for term in reader.lexicon(fieldname):
            value = term.decode("utf-8")
            found = _segment_postings(reader, fieldname, value)
            if found is not None:
                codes[found.docs] = len(values)
            values.append(value)
    return values, codes


class Joined:
    """One column over every segment, indexed by global document number, without joining
    the segments' (mapped) arrays into a copy: a lookup reads each segment's part."""

    def __init__(self, parts: list[np.ndarray], starts: np.ndarray, dtype: type) -> None:
        self.parts = parts
        self.starts = starts
        self.dtype = np.dtype(dtype)

    def __getitem__(self, docnum: int) -> Any:
        at = int(np.searchsorted(self.starts, docnum, side="right")) - 1
        return self.parts[at][docnum - int(self.starts[at])]

    def take(self, docs: np.ndarray) -> np.ndarray:
        """The values of these documents (global numbers, any order)."""
        out = np.empty(len(docs), dtype=self.dtype)
        for at, chosen, local in _by_segment(self.starts, docs):
            out[chosen] = self.parts[at][local]
        return out

    def full(self) -> np.ndarray:
        """The whole column, for a comparison over every document (a temporary array, or
        the mapped array itself when there is one segment: never to be written to)."""
        if len(self.parts) == 1:
            return self.parts[0]
        if not self.parts:
            return np.zeros(0, dtype=self.dtype)
        return np.concatenate(self.parts).astype(self.dtype, copy=False)


def _by_segment(
    starts: np.ndarray, docs: np.ndarray
) -> Iterator[tuple[int, np.ndarray | slice, np.ndarray]]:
    """(segment, which of `docs`, their numbers within the segment) for each segment that
    holds some of `docs`."""
    docs = np.asarray(docs, dtype=np.int64)
    if len(starts) == 1:
        yield 0, slice(None), docs
        return
    if len(docs) < 2 or bool(np.all(docs[1:] >= docs[:-1])):  # ascending: cut in slices
        bounds = np.searchsorted(docs, [*starts.tolist(), np.iinfo(np.int64).max]).tolist()
        for at, (low, high) in enumerate(itertools.pairwise(bounds)):
            if high > low:
                yield at, slice(low, high), docs[low:high] - starts[at]
        return
    segment = np.searchsorted(starts, docs, side="right") - 1
    for at in np.flatnonzero(np.bincount(segment, minlength=len(starts))).tolist():
        chosen = segment == at
        yield at, chosen, docs[chosen] - starts[at]


class IndexArrays:
    """Every document of one whoosh searcher, read by global document number.

    Built anew when the searcher is refreshed, from cached `SegmentArrays` for segments it
    has seen before; only the deletion mask is read fresh (one byte a document). Columns
    stay in their segments' mapped files (`Joined`), so nothing here is a per-process copy
    of the index's data.
    """

    def __init__(
        self,
        searcher: Searcher,
        text_fields: tuple[str, ...],
        facet_fields: tuple[str, ...],
        cache: dict[str, SegmentArrays],
        index_dir: Path | None = None,
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
                cache[key] = SegmentArrays.open(reader, text_fields, facet_fields, index_dir)
            segments.append(cache[key])
        self.segments = segments
        for stale in set(cache) - {r.segment().segment_id() for r, _ in self.leaves}:
            del cache[stale]
        self.doc_count = sum(s.doc_count for s in segments)
        self.starts = np.asarray([offset for _, offset in self.leaves], dtype=np.int64)
        self.pk = self._joined([s.pk for s in segments], np.int64)
        self.date = self._joined([s.date for s in segments], np.int64)
        self.size = self._joined([s.size for s in segments], np.int64)
        self.year = self._joined([s.year for s in segments], np.int16)
        self.attachment = self._joined([s.attachment for s in segments], bool)
        self.spam = self._joined([s.spam for s in segments], bool)
        self.virus = self._joined([s.virus for s in segments], bool)
        self.length_codes = {
            name: self._joined([s.length_codes[name] for s in segments], np.uint8)
            for name in text_fields
        }
        self.live = np.ones(self.doc_count, dtype=bool)
        deleted_lengths = dict.fromkeys(text_fields, 0.0)
        for reader, offset in self.leaves:
            deleted = np.asarray(sorted(reader.segment().deleted_docs()), dtype=np.int64)
            if len(deleted):
                self.live[deleted + offset] = False
                for name in text_fields:
                    deleted_lengths[name] += float(self.lengths(name, deleted + offset).sum())
        self.live_count = int(self.live.sum())
        self.mean_length = {
            name: (sum(s.length_sum(name) for s in segments) - deleted_lengths[name])
            / self.live_count
            if self.live_count
            else 1.0
            for name in text_fields
        }
        self.facet_fields = facet_fields

    def _joined(self, parts: list[np.ndarray], dtype: type) -> Joined:
        return Joined(parts, self.starts, dtype)

    def lengths(self, fieldname: str, docs: np.ndarray) -> np.ndarray:
        """The lengths (in words, as whoosh approximates them) of `fieldname` in `docs`."""
        return _LENGTHS[self.length_codes[fieldname].take(docs)]

    def facet_counts(self, fieldname: str, docs: np.ndarray) -> dict[str, int]:
        """How many of `docs` have each value of a single-valued field; only the values
        that occur are decoded."""
        counts: dict[str, int] = {}
        for at, _chosen, local in _by_segment(self.starts, docs):
            segment = self.segments[at]
            found = segment.facets[fieldname][1][local]
            tally = np.bincount(found[found >= 0])
            for code in np.flatnonzero(tally).tolist():
                value = segment.facet_value(fieldname, code)
                counts[value] = counts.get(value, 0) + int(tally[code])
        return counts

    def postings(self, fieldname: str, text: str, wanted: np.ndarray | None = None) -> Postings:
        """The postings of `text` in `fieldname` across segments, deleted documents
        included (callers keep the `live` ones); when `wanted` (ascending) is given, only
        those of the blocks that may hold one of its documents."""
        parts: list[Postings] = []
        passed_over = 0  # documents holding the term in segments without a wanted one
        for (reader, offset), segment in zip(self.leaves, self.segments, strict=True):
            local = None
            if wanted is not None:
                low, high = np.searchsorted(wanted, [offset, offset + segment.doc_count])
                if low == high:
                    passed_over += reader.doc_frequency(fieldname, text)
                    continue
                local = wanted[low:high] - offset
            found = _segment_postings(reader, fieldname, text, local)
            if found is not None:
                found.docs += offset
                parts.append(found)
        if not parts:
            return Postings.empty(passed_over)
        # segments in order of their offsets: still ascending
        joined = parts[0] if len(parts) == 1 else _concatenated(parts, ordered=True)
        joined.frequency += passed_over
        return joined

    def frequency(self, fieldname: str, text: str) -> int:
        """How many documents hold `text` in `fieldname`, deleted ones included: read from
        the term dictionaries alone, no posting block."""
        return sum(reader.doc_frequency(fieldname, text) for reader, _ in self.leaves)

    def forms(self, fieldname: str, word: str) -> list[str]:
        """Every form of `word` in the index (the words `query_stems` says match it), the
        word as written last unless the index holds it."""
        stems = query_stems(word)
        found_forms: set[str] = set()
        for (reader, _), segment in zip(self.leaves, self.segments, strict=True):
            for stem in stems.english:
                found_forms.update(segment.forms(reader, fieldname, stem))
            for root in stems.roots:
                found_forms.update(segment.indonesian_forms(fieldname, root))
        forms = sorted(found_forms)
        if word not in forms:
            forms.append(word)
        return forms

    def word_postings(
        self, fieldname: str, word: str, wanted: np.ndarray | None = None
    ) -> tuple[Postings, np.ndarray]:
        """The postings of every form of `word` together, documents in no particular
        order, and the documents holding `word` as written; only of blocks that may hold
        one of `wanted`, when given."""
        forms = self.forms(fieldname, word)
        found = [self.postings(fieldname, form, wanted) for form in forms]
        exact = found[forms.index(word)].docs
        if len(found) == 1:
            return found[0], exact
        return _concatenated(found, ordered=False), exact


def among(members: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of `values` are among `members` (ascending, each once): one bisection each,
    so a handful of values costs little however many members there are."""
    if not len(members):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(members, values)
    at[at == len(members)] = 0
    return members[at] == values


def _segment_postings(
    reader: SegmentReader, fieldname: str, text: str, wanted: np.ndarray | None = None
) -> Postings | None:
    """One segment's postings of a term, a block at a time; only of the blocks that may
    hold one of `wanted` (this segment's document numbers, ascending), when given."""
    fieldobj = reader.schema[fieldname]
    key = fieldobj.to_bytes(text)
    terms = reader._terms
    try:
        info = terms.term_info(fieldname, key)
    except TermNotFound:
        return None
    matcher = terms._codec.postings_reader(terms._postfile, info, fieldobj.format, term=key)
    blocks: list[tuple[np.ndarray, np.ndarray, StoredBlock]] = []
    if isinstance(matcher, PackedLeafMatcher):
        blocks = list(matcher.located_blocks(wanted))
    else:  # a posting list short enough to live in the term table
        while matcher.is_active():
            ids, weights = [matcher.id()], [matcher.weight()]
            packed = pack_block(ids, weights, [matcher.value() or b""])
            stored = StoredBlock(BufferFile(packed), 0, len(packed), 0, 1)
            blocks.append((np.array(ids, dtype=np.int64), np.array(weights, np.float32), stored))
            matcher.next()
    if not blocks:
        return Postings.empty(info.doc_frequency())
    ids, weights, stored = zip(*blocks, strict=True)
    counts = np.fromiter((len(block) for block in ids), dtype=np.int64, count=len(ids))
    return Postings(
        np.concatenate(ids),
        np.concatenate(weights),
        info.doc_frequency(),
        list(stored),
        np.cumsum(counts) - counts,
    )


def _concatenated(parts: list[Postings], ordered: bool) -> Postings:
    sizes = np.fromiter((len(p.docs) for p in parts), dtype=np.int64, count=len(parts))
    shifts = np.cumsum(sizes) - sizes
    return Postings(
        np.concatenate([p.docs for p in parts]),
        np.concatenate([p.weights for p in parts]),
        sum(p.frequency for p in parts),
        [block for p in parts for block in p.blocks],
        np.concatenate([p.starts + shift for p, shift in zip(parts, shifts.tolist(), strict=True)]),
        ordered,
    )


def _column(reader: SegmentReader, fieldname: str, typecode: str, default: int) -> np.ndarray:
    """A fixed-width numeric column of one segment, straight from its file."""
    out = np.full(reader.doc_count_all(), default, dtype=np.int64)
    raw = stored_column(reader._perdoc, fieldname, NumericColumn(typecode), len(out))
    values = np.frombuffer(raw, dtype=np.dtype(typecode).newbyteorder(">"))
    out[: len(values)] = values
    return out


def when(seconds: int) -> datetime | None:
    """A date column's value as the sent date (None: the message has none)."""
    return None if seconds == NO_DATE else datetime.fromtimestamp(seconds, UTC)
