"""A whoosh codec whose posting blocks are packed arrays rather than pickled tuples.

Whoosh 2.7's W3 codec pickles each block of postings (protocol 2) as a tuple of Python
ints, floats and byte strings, then compresses it. Protocol 2 has no bytes opcode, so every
word-positions value becomes a call to `_codecs.encode`; with per-item opcodes on top, the
postings were most of an index larger than the mail it covered. This codec keeps W3's
files, term table and block headers and changes only the block payload:

    header   3 bytes: id width, weight kind, value-length width (0: no values)
    ids      gaps between document numbers, each `id width` bytes (1, 2 or 4)
    weights  none (all 1.0), one byte each (small whole numbers) or float32
    values   lengths (`value-length width` bytes each), then the values joined

all little-endian, and zlib-compressed from 64 bytes up (the block header says whether).
Reading a block is a handful of `frombuffer` calls,
which is also what lets `whoosh_arrays` read a posting list without a loop per posting.
"""

from __future__ import annotations

import heapq
import io
import pickle
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, pairwise, repeat
from operator import itemgetter
from pickle import dumps
from typing import Any

import numpy as np
from whoosh.codec.whoosh3 import (
    LENGTHS_COLUMN,
    WHOOSH3_HEADER_MAGIC,
    W3Codec,
    W3FieldWriter,
    W3LeafMatcher,
    W3TermInfo,
    _lenfield,
)
from whoosh.system import emptybytes, pack_ushort
from whoosh.util.numeric import byte_to_length, length_to_byte

_HEADER = struct.Struct("<BBB")
_INT = struct.Struct("!i")  # a block's signed length, as whoosh's StructFile writes it
_HEAD_BYTES = 256  # a block's length and pickled header fit in this
_WEIGHTS_ONE, _WEIGHTS_BYTES, _WEIGHTS_FLOAT = 0, 1, 2
_COMPRESSION = 3
_BLOCK_LIMIT = 256  # postings a block holds
# Smaller payloads are stored as they are: zlib would make them larger, and starting a
# compressor for each of a segment's many rare words was a good part of writing it.
_COMPRESS_FROM = 64


def _width(largest: int) -> int:
    return 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 4


_UNSIGNED = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


_PACKED_WIDTH = {1: "B", 2: "H", 4: "I"}


def pack_block(ids: list[int], weights: list[float], values: list[bytes]) -> bytes:
    """One block's postings in the layout above (uncompressed).

    Plain `struct` rather than numpy: most blocks hold one or two postings (most words
    of a batch occur in one message), where numpy's per-call cost was most of the work.
    """
    count = len(ids)
    gaps = [ids[0], *(b - a for a, b in pairwise(ids))]
    id_width = _width(max(gaps))
    if all(w == 1.0 for w in weights):
        weight_kind, weight_bytes = _WEIGHTS_ONE, b""
    elif all(w < 256 and float(w).is_integer() for w in weights):
        weight_kind, weight_bytes = _WEIGHTS_BYTES, bytes(int(w) for w in weights)
    else:
        weight_kind, weight_bytes = _WEIGHTS_FLOAT, struct.pack(f"<{count}f", *weights)
    lengths = [len(value) for value in values]
    value_width = _width(max(lengths)) if any(lengths) else 0
    parts = [
        _HEADER.pack(id_width, weight_kind, value_width),
        struct.pack(f"<{count}{_PACKED_WIDTH[id_width]}", *gaps),
        weight_bytes,
    ]
    if value_width:
        parts += [struct.pack(f"<{count}{_PACKED_WIDTH[value_width]}", *lengths), *values]
    return b"".join(parts)


def unpack_block(
    data: bytes, count: int, values: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """(document numbers, weights, value lengths, joined values) of a packed block; without
    `values`, no lengths and no values (`data` may then end after the weights)."""
    id_width, weight_kind, value_width = _HEADER.unpack_from(data)
    at = _HEADER.size
    ids = np.cumsum(np.frombuffer(data, _UNSIGNED[id_width], count, at), dtype=np.int64)
    at += id_width * count
    if weight_kind == _WEIGHTS_ONE:
        weights = np.ones(count, dtype=np.float32)
    elif weight_kind == _WEIGHTS_BYTES:
        weights = np.frombuffer(data, "<u1", count, at).astype(np.float32)
        at += count
    else:
        weights = np.frombuffer(data, "<f4", count, at).astype(np.float32)
        at += 4 * count
    if not (value_width and values):
        return ids, weights, np.zeros(count, dtype=np.int64), b""
    lengths = np.frombuffer(data, _UNSIGNED[value_width], count, at).astype(np.int64)
    return ids, weights, lengths, data[at + value_width * count :]


def stored_block(ids: list[int], weights: list[float], values: list[bytes]) -> tuple[int, bytes]:
    """A block as the writer stores it: (the zlib level its header records, 0 for a block
    stored plain; its bytes)."""
    payload = pack_block(ids, weights, values)
    if len(payload) < _COMPRESS_FROM:
        return 0, payload
    return _COMPRESSION, zlib.compress(payload, _COMPRESSION)


def read_block(
    stored: bytes, compression: int, count: int, values: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """A stored block's arrays, as `unpack_block` gives them; `compression` is what the
    block's header records (blocks of any size were compressed before small ones were
    stored plain, and both stay readable).

    Without `values` a compressed block is inflated only as far as its ids and weights can
    reach: a common word's positions are most of its block, and a search for the word
    alone never reads them.
    """
    if not compression:
        return unpack_block(stored, count, values)
    if values:
        return unpack_block(zlib.decompress(stored), count)
    head = _HEADER.size + 8 * count  # ids and weights at their widest: 4 bytes each
    return unpack_block(zlib.decompressobj().decompress(stored, head), count, values=False)


class _Block:
    """The statistics of one block, as `W3TermInfo.add_block` reads them from W3's
    postings writer."""

    __slots__ = ("_ids", "_maxlength", "_maxweight", "_minlength", "_weights")

    def __init__(self, ids: list[int], weights: list[float], lengths: list[int]) -> None:
        self._ids = ids
        self._weights = weights
        present = [length for length in lengths if length]
        self._minlength = min(present) if present else None
        self._maxlength = max(present, default=0)
        self._maxweight = max(weights)

    def __len__(self) -> int:
        return len(self._ids)

    def min_id(self) -> int:
        return self._ids[0]

    def max_id(self) -> int:
        return self._ids[-1]

    def min_length(self) -> int | None:
        return self._minlength

    def max_length(self) -> int:
        return self._maxlength

    def max_weight(self) -> float:
        return self._maxweight


# A word's postings on their way to the writer: field, word, the source's place among the
# sources (new documents first, then merged segments in document order), and the
# postings' document numbers, weights and values.
Term = tuple[str, bytes, int, list[int], list[float], list[bytes]]


@dataclass
class PooledTerms:
    """What `TermPool` hands the field writer: postings grouped by word already."""

    terms: Iterator[Term]


class TermPool:
    """Where a writer gathers its new documents' postings: in flat arrays, in memory.

    Whoosh's own pool keeps every posting as a tuple, sorts them all at the commit, and
    past its memory limit pickles sorted runs to temporary files and reads them back; a
    batch of real list mail spent a fifth of its indexing time there. Here each posting is
    four numbers and its value's bytes appended to arrays, not three objects in lists:
    millions of small objects a batch left the indexer's heap fragmented, and after the
    53,127 messages of linux-arch it kept 207 MB of its own memory (USS), 135 MB now.
    Documents arrive in document order, so one stable sort of the postings by word, at
    the commit, gives each word its postings in order. The indexer bounds a batch by its
    mail's size (`indexer.BATCH_BYTES`), which bounds this.
    """

    def __init__(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Let the postings go (nothing is on disk)."""
        self._numbers: dict[tuple[str, bytes], int] = {}  # (field, word) -> its number
        self._word = array("i")  # per posting: the word's number,
        self._doc = array("i")  # its document,
        self._weight = array("d")  # weight,
        self._length = array("I")  # and the length of its value in `_values`
        self._values = bytearray()

    def add(self, item: tuple[str, bytes, int, float, bytes | None]) -> None:
        """One posting, as whoosh's `add_document` hands it over."""
        fieldname, btext, docnum, weight, value = item
        self._add(fieldname, docnum, [btext], [weight], [value or emptybytes])

    def add_words(
        self, fieldname: str, docnum: int, postings: Iterable[tuple[bytes, float, bytes]]
    ) -> None:
        """One document's postings of one field, (word, weight, value) each."""
        words, weights, values = [], [], []
        for btext, weight, value in postings:
            words.append(btext)
            weights.append(weight)
            values.append(value)
        self._add(fieldname, docnum, words, weights, values)

    def _add(
        self,
        fieldname: str,
        docnum: int,
        words: list[bytes],
        weights: list[float],
        values: list[bytes],
    ) -> None:
        numbers = self._numbers
        self._word.extend([numbers.setdefault((fieldname, btext), len(numbers)) for btext in words])
        self._doc.extend(repeat(docnum, len(words)))
        self._weight.extend(weights)
        self._length.extend(map(len, values))
        self._values += b"".join(values)

    def iter_postings(self) -> PooledTerms:
        """Every word with its postings, in field and word order."""
        return PooledTerms(self._sorted())

    def _sorted(self) -> Iterator[Term]:
        if not self._numbers:
            return
        keys = sorted(self._numbers)
        rank = np.empty(len(keys), dtype=np.int64)
        rank[[self._numbers[key] for key in keys]] = np.arange(len(keys))
        ranks = rank[np.frombuffer(self._word, dtype=np.int32)]
        order = np.argsort(ranks, kind="stable")  # by word, in document order within one
        ends = np.cumsum(np.bincount(ranks, minlength=len(keys))).tolist()
        docs = np.frombuffer(self._doc, dtype=np.int32)[order]
        weights = np.frombuffer(self._weight, dtype=np.float64)[order]
        lengths = np.frombuffer(self._length, dtype=np.uint32).astype(np.int64)
        starts = (np.cumsum(lengths) - lengths)[order]
        lengths = lengths[order]
        values = bytes(self._values)
        self.cleanup()
        begin = 0
        for key, end in zip(keys, ends, strict=True):
            yield (
                key[0],
                key[1],
                0,
                docs[begin:end].tolist(),
                weights[begin:end].tolist(),
                [
                    values[at : at + length]
                    for at, length in zip(
                        starts[begin:end].tolist(), lengths[begin:end].tolist(), strict=True
                    )
                ],
            )
            begin = end


class PackedFieldWriter(W3FieldWriter):
    """W3's field writer, writing each word's postings in one go.

    Whoosh hands the new documents' postings, sorted by field and word, to `add_postings`.
    W3 passes every posting through several method calls and looks its field length up
    in the length column one document at a time; here a word's postings are taken as a
    group, the lengths of a field are read once, and each block is packed and written
    whole. The files are W3's, with `pack_block` payloads, block for block what W3's
    writer would write.

    Segments being merged into this one (`merged`, see `whoosh_merge`) arrive as streams
    of whole words, already in the same order, and are merged word by word with the new
    documents' postings, instead of going through whoosh's sorting pool a posting at a time.
    """

    def __init__(self, codec: Any, storage: Any, segment: Any) -> None:
        super().__init__(codec, storage, segment)
        self.merged: list[Iterator[Term]] = []

    def add_postings(self, schema: Any, lengths: Any, items: Any) -> None:
        fieldname = None
        field_lengths: list[int] = []
        own = items.terms if isinstance(items, PooledTerms) else _grouped(items)
        terms = heapq.merge(own, *self.merged)
        for (name, btext), group in groupby(terms, key=itemgetter(0, 1)):
            if name != fieldname:
                if fieldname is not None:
                    self.finish_field()
                fieldname = name
                self.start_field(name, schema[name])
                field_lengths = _field_lengths(lengths, name)
            parts = list(group)
            if len(parts) == 1:
                ids, weights, values = parts[0][3:]
            else:
                ids = [docnum for part in parts for docnum in part[3]]
                weights = [weight for part in parts for weight in part[4]]
                values = [value for part in parts for value in part[5]]
            if ids:
                self._write_term(btext, ids, weights, values, field_lengths)
        if fieldname is not None:
            self.finish_field()
        self.merged = []

    def _write_term(
        self,
        btext: bytes,
        all_ids: list[int],
        all_weights: list[float],
        all_values: list[bytes],
        field_lengths: list[int],
    ) -> None:
        terminfo = W3TermInfo()
        postfile = self._postfile
        start = postfile.tell()
        postfile.write(WHOOSH3_HEADER_MAGIC)
        count = len(all_ids)
        for at in range(0, count, _BLOCK_LIMIT):
            ids = all_ids[at : at + _BLOCK_LIMIT]
            weights = all_weights[at : at + _BLOCK_LIMIT]
            stats = _Block(ids, weights, [field_lengths[docnum] for docnum in ids])
            terminfo.add_block(stats)
            compression, payload = stored_block(ids, weights, all_values[at : at + _BLOCK_LIMIT])
            info = dumps(
                (
                    len(ids),
                    ids[-1],
                    stats.max_weight(),
                    compression,
                    length_to_byte(stats.min_length()),
                    length_to_byte(stats.max_length()),
                ),
                2,  # the protocol W3's reader expects
            )
            size = len(info) + len(payload)
            postfile.write_int(-size if at + _BLOCK_LIMIT >= count else size)
            postfile.write(info)
            postfile.write(payload)
        terminfo.set_extent(start, postfile.tell() - start)
        self._tindex.add(pack_ushort(self._fieldid) + btext, terminfo.to_bytes())


def _grouped(items: Iterable[tuple[str, bytes, int, float, bytes | None]]) -> Iterator[Term]:
    """Whoosh's pool postings (field, word, document, weight, value), a word at a time."""
    for (name, btext), group in groupby(items, key=itemgetter(0, 1)):
        postings = [posting for posting in group if posting[2] >= 0]  # -1: spelling
        yield (
            name,
            btext,
            0,
            [posting[2] for posting in postings],
            [posting[3] for posting in postings],
            [posting[4] or emptybytes for posting in postings],
        )


def _field_lengths(lengths: Any, fieldname: str) -> list[int]:
    """Each document's length in `fieldname` (0: none recorded), read from the segment's
    length column in one piece."""
    count = lengths.doc_count_all() if lengths else 0
    codes = bytearray(count)
    if lengths:
        raw = stored_column(lengths, _lenfield(fieldname), LENGTHS_COLUMN, count)
        codes[: len(raw)] = raw
    return [byte_to_length(code) for code in codes]


def stored_column(perdoc: Any, fieldname: str, column: Any, count: int) -> bytes:
    """The bytes of a fixed-width column's first `count` values, straight from its file.
    Whoosh leaves trailing default values unwritten, so there may be fewer; none at all
    when the segment has no such column."""
    if not perdoc.has_column(fieldname):
        return b""
    reader = perdoc.column_reader(fieldname, column)
    stored = min(reader._count, count)
    return reader._dbfile.get(reader._basepos, stored * reader._fixedlen)


@dataclass(slots=True)
class StoredBlock:
    """Where a posting block is stored (`length` bytes at `offset` of a whoosh file), read
    again in full only when the positions of its postings are wanted. One is made for
    every block a search reads, so it is kept to plain slots."""

    file: Any
    offset: int
    length: int
    compression: int
    count: int

    def values(self) -> tuple[np.ndarray, bytes]:
        """The byte length of each posting's encoded positions, and all of them joined."""
        stored = self.file.get(self.offset, self.length)
        _ids, _weights, lengths, joined = read_block(stored, self.compression, self.count)
        return lengths, joined


def _holds_any(wanted: np.ndarray, after: int, last: int) -> bool:
    """Whether ascending `wanted` has a number in (after, last]."""
    return int(np.searchsorted(wanted, last, side="right")) > int(
        np.searchsorted(wanted, after, side="right")
    )


class PackedLeafMatcher(W3LeafMatcher):
    """W3's block matcher reading packed payloads; `_data` holds the block's arrays."""

    def _goto(self, position: int) -> None:
        """W3's `_goto` (the block's length, then its pickled header), reading both from
        one slice of the file's buffer instead of several calls on the file."""
        buffer = getattr(self._postfile, "_buf", None)
        head = b"" if buffer is None else buffer[position : position + _HEAD_BYTES].tobytes()
        chunk = io.BytesIO(head[_INT.size :])
        try:
            info = pickle.load(chunk)
        except (EOFError, pickle.UnpicklingError):  # no buffer, or a header past the slice
            super()._goto(position)
            return
        self._data = self._ids = self._weights = self._values = None
        self._i = 0
        (length,) = _INT.unpack_from(head)
        self._lastblock = length < 0
        self._nextoffset = position + _INT.size + abs(length)
        self._dataoffset = position + _INT.size + chunk.tell()
        (self._blocklength, self._maxid, self._maxweight, self._compression, low, high) = info
        self._minlength = byte_to_length(low)
        self._maxlength = byte_to_length(high)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bytes]]:
        """Every block of the posting list from here on, as `unpack_block` gives it: for
        code that takes whole blocks (merges), not a posting at a time."""
        while True:
            if self._data is None:
                self._read_data()
            yield self._data
            if self._lastblock:
                return
            self._goto(self._nextoffset)

    def located_blocks(
        self, wanted: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, StoredBlock]]:
        """The ids and weights of each block from here on that may hold one of `wanted`
        (ascending document numbers of this segment; every block when None), and where the
        block is stored, so that its positions are read only if a phrase asks for them.

        A block's header says its last document, so a block before or between wanted
        documents is passed over without being inflated, and reading ends after the last
        wanted document: a search narrowed to a few hundred messages reads a few hundred
        blocks of a word in every message, not all of them.
        """
        previous = -1  # the last document of the block before
        while True:
            if wanted is None or _holds_any(wanted, previous, self._maxid):
                stored = self._raw()
                ids, weights, _, _ = read_block(
                    stored, self._compression, self._blocklength, values=False
                )
                yield (
                    ids,
                    weights,
                    StoredBlock(
                        self._postfile,
                        self._dataoffset,
                        len(stored),
                        self._compression,
                        self._blocklength,
                    ),
                )
            previous = self._maxid
            if self._lastblock or (wanted is not None and previous >= wanted[-1]):
                return
            self._goto(self._nextoffset)

    def _read_data(self) -> None:
        self._data = read_block(self._raw(), self._compression, self._blocklength)

    def _raw(self) -> bytes:
        """The current block's payload as stored."""
        return self._postfile.get(self._dataoffset, self._nextoffset - self._dataoffset)

    def _read_ids(self) -> None:
        if self._data is None:
            self._read_data()
        self._ids = self._data[0].tolist()

    def _read_weights(self) -> None:
        if self._data is None:
            self._read_data()
        self._weights = self._data[1].tolist()

    def _read_values(self) -> None:
        if self._data is None:
            self._read_data()
        _, _, lengths, joined = self._data
        ends = np.cumsum(lengths).tolist()
        self._values = tuple(
            joined[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)
        )


# Whoosh pickles this class by module path and name into the table of contents of every
# index written with it, and imports it by that path to open the index again. It stays
# importable as `archiver.search.whoosh_codec.PackedCodec` for good (a re-export here if
# the code moves): otherwise no deployed index opens, and the indexer logs an error every
# few seconds until someone runs `arsip reindex`. tests/test_whoosh_fixture.py holds this.
class PackedCodec(W3Codec):
    """W3 with packed posting blocks (term vectors, unused here, stay as W3 writes them)."""

    def __init__(self) -> None:
        super().__init__(blocklimit=_BLOCK_LIMIT, compression=_COMPRESSION, inlinelimit=1)

    def field_writer(self, storage: Any, segment: Any) -> W3FieldWriter:
        return PackedFieldWriter(self, storage, segment)

    def postings_reader(
        self, dbfile: Any, terminfo: Any, format_: Any, term: Any = None, scorer: Any = None
    ) -> Any:
        if terminfo.is_inlined():
            return super().postings_reader(dbfile, terminfo, format_, term, scorer)
        offset, length = terminfo.extent()
        return PackedLeafMatcher(dbfile, offset, length, format_, term=term, scorer=scorer)
