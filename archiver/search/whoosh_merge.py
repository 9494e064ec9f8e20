"""Which whoosh segments to merge, and merging them a word at a time.

Every indexer commit writes a new segment; searches cost more with every segment, so
segments must be merged, and merging rewrites postings, so it must not be done too often.
Whoosh's own policy merges by a Fibonacci rule that, with batches of hundreds of
messages, waits for seventeen segments and then rewrites them all, again and again; and
whoosh merges by reading every posting through its matchers into its sorting pool
(pickled to temporary files) to write it once more. At 20,000 messages that was two
thirds of the indexing time.

`tiered_merge` is the policy of Lucene and Xapian: segments are grouped in tiers by
their size in powers of ten, and a tier is merged once it holds `MERGE_FACTOR` segments,
so a message is rewritten once per tier (about five times on its way into a
million-message segment) and an index holds at most `MERGE_FACTOR - 1` segments per tier
once the indexer has caught up (below).
Segments mostly deleted (retention) are merged at once, which drops their dead postings.
The merged segments' words are read in order, a block at a time, and handed to the
codec's field writer (`PackedFieldWriter.merged`), which merges them with the new
documents' words.

A merge holds up the commit it runs in, and with it the batch that commit makes
searchable: on 53,000 real list messages merging was about a quarter of the indexer's
time, while the messages queued behind it waited. So the indexer commits with
`backlog_merge`, which lets a tier grow to `BACKLOG_FACTOR` segments, and merges to
`MERGE_FACTOR` once it has caught up with the queue (`WhooshBackend.merge`), as Lucene's
merges run beside its indexing rather than in its way. Searches meanwhile read more
segments, at most `BACKLOG_FACTOR` a tier.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
from whoosh.codec.base import Segment
from whoosh.reading import SegmentReader
from whoosh.writing import SegmentWriter

from archiver.search.whoosh_codec import PackedFieldWriter, PackedLeafMatcher, Term

MERGE_FACTOR = 10
BACKLOG_FACTOR = 3 * MERGE_FACTOR  # segments a tier may hold until the indexer catches up
DELETED_SHARE = 0.5  # a segment with more of its documents deleted is merged at once


def tier(segment: Segment) -> int:
    """A segment's tier: the power of ten of its live documents."""
    return int(math.log10(max(1, segment.doc_count())))


def chosen_for_merge(segments: list[Segment], factor: int = MERGE_FACTOR) -> list[Segment]:
    """The segments one commit merges: the smallest tier holding `factor` segments, and
    any mostly-deleted segment."""
    tiers: defaultdict[int, list[Segment]] = defaultdict(list)
    for segment in segments:
        tiers[tier(segment)].append(segment)
    chosen = next((tiers[level] for level in sorted(tiers) if len(tiers[level]) >= factor), [])
    wasted = [
        segment
        for segment in segments
        if segment not in chosen
        and segment.deleted_count() > DELETED_SHARE * segment.doc_count_all()
    ]
    return [*chosen, *wasted]


def tiered_merge(
    writer: SegmentWriter, segments: list[Segment], factor: int = MERGE_FACTOR
) -> list[Segment]:
    """A whoosh merge policy: merge what `chosen_for_merge` picks into the segment being
    written; returns the segments that stay as they are."""
    chosen = chosen_for_merge(segments, factor)
    fieldwriter: PackedFieldWriter = writer.fieldwriter
    if not chosen:
        return segments
    for segment in chosen:
        reader = SegmentReader(writer.storage, writer.schema, segment)
        base = writer.docnum
        fieldnames = set(writer.schema.names()) | set(reader.indexed_field_names())
        docmap = writer.write_per_doc(fieldnames, reader)
        fieldwriter.merged.append(segment_terms(reader, base, docmap, len(fieldwriter.merged) + 1))
    writer._added = True
    return [segment for segment in segments if segment not in chosen]


def backlog_merge(writer: SegmentWriter, segments: list[Segment]) -> list[Segment]:
    """`tiered_merge` for a commit whose merges can wait (see the module's docstring)."""
    return tiered_merge(writer, segments, BACKLOG_FACTOR)


def segment_terms(
    reader: SegmentReader, base: int, docmap: dict[int, int] | None, order: int
) -> Iterator[Term]:
    """Every word of a segment, field by field in name order, with its postings renumbered
    for the segment being written (`base` onwards, or by `docmap` when some of the
    segment's documents are deleted, which drops theirs); `order` places the segment among
    the writer's sources. Closes `reader` when done."""
    try:
        renumbered = _renumbering(reader.doc_count_all(), base, docmap)
        terms = reader._terms
        for fieldname in sorted(reader.indexed_field_names()):
            for (name, btext), terminfo in terms.items_from(fieldname, b""):
                if name != fieldname:
                    break
                ids, weights, values = _postings(reader, fieldname, terminfo, renumbered)
                if ids:
                    yield (fieldname, btext, order, ids, weights, values)
    finally:
        reader.close()


def _renumbering(count: int, base: int, docmap: dict[int, int] | None) -> np.ndarray:
    """Old document number -> new one, -1 for a deleted document."""
    if docmap is None:
        return np.arange(base, base + count, dtype=np.int64)
    renumbered = np.full(count, -1, dtype=np.int64)
    if docmap:
        renumbered[np.fromiter(docmap.keys(), np.int64)] = np.fromiter(docmap.values(), np.int64)
    return renumbered


def _postings(
    reader: SegmentReader, fieldname: str, terminfo: Any, renumbered: np.ndarray
) -> tuple[list[int], list[float], list[bytes]]:
    """A word's live postings in one segment, renumbered (the codec never inlines
    postings in the term table, so every word has blocks)."""
    offset, length = terminfo.extent()
    matcher = PackedLeafMatcher(
        reader._terms._postfile, offset, length, reader.schema[fieldname].format
    )
    ids_out: list[int] = []
    weights_out: list[float] = []
    values_out: list[bytes] = []
    for old_ids, weights, lengths, joined in matcher.blocks():
        ids = renumbered[old_ids]
        keep = ids >= 0  # deleted documents drop out
        ends = np.cumsum(lengths)
        ids_out += ids[keep].tolist()
        weights_out += weights[keep].tolist()
        values_out += [
            joined[a:b]
            for a, b in zip((ends - lengths)[keep].tolist(), ends[keep].tolist(), strict=True)
        ]
    return ids_out, weights_out, values_out
