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

all little-endian and zlib-compressed. Reading a block is a handful of `frombuffer` calls,
which is also what lets `whoosh_arrays` read a posting list without a loop per posting.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pickle import dumps
from typing import Any

import numpy as np
from whoosh.codec.whoosh3 import (
    WHOOSH3_HEADER_MAGIC,
    W3Codec,
    W3LeafMatcher,
    W3PostingsWriter,
)
from whoosh.system import emptybytes
from whoosh.util.numeric import byte_to_length, length_to_byte

_HEADER = struct.Struct("<BBB")
_INT = struct.Struct("!i")  # a block's signed length, as whoosh's StructFile writes it
_HEAD_BYTES = 256  # a block's length and pickled header fit in this
_WEIGHTS_ONE, _WEIGHTS_BYTES, _WEIGHTS_FLOAT = 0, 1, 2
_COMPRESSION = 3


def _width(largest: int) -> int:
    return 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 4


_UNSIGNED = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def pack_block(ids: list[int], weights: list[float], values: list[bytes]) -> bytes:
    """One block's postings in the layout above (uncompressed)."""
    gaps = np.diff(np.asarray(ids, dtype=np.int64), prepend=0)
    id_width = _width(int(gaps.max()))
    weight_array = np.asarray(weights, dtype=np.float32)
    if np.all(weight_array == 1.0):
        weight_kind, weight_bytes = _WEIGHTS_ONE, b""
    elif np.all((weight_array == np.round(weight_array)) & (weight_array < 256)):
        weight_kind, weight_bytes = _WEIGHTS_BYTES, weight_array.astype("<u1").tobytes()
    else:
        weight_kind, weight_bytes = _WEIGHTS_FLOAT, weight_array.astype("<f4").tobytes()
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    value_width = _width(int(lengths.max())) if len(lengths) and lengths.any() else 0
    parts = [
        _HEADER.pack(id_width, weight_kind, value_width),
        gaps.astype(_UNSIGNED[id_width]).tobytes(),
        weight_bytes,
    ]
    if value_width:
        parts += [lengths.astype(_UNSIGNED[value_width]).tobytes(), emptybytes.join(values)]
    return b"".join(parts)


def unpack_block(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """(document numbers, weights, value lengths, joined values) of a packed block."""
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
    if not value_width:
        return ids, weights, np.zeros(count, dtype=np.int64), b""
    lengths = np.frombuffer(data, _UNSIGNED[value_width], count, at).astype(np.int64)
    return ids, weights, lengths, data[at + value_width * count :]


class PackedPostingsWriter(W3PostingsWriter):
    """W3's postings writer with packed block payloads."""

    def _write_block(self, last: bool = False) -> None:
        if not self._blockcount:
            self._postfile.write(WHOOSH3_HEADER_MAGIC)
        self._terminfo.add_block(self)
        payload = zlib.compress(
            pack_block(list(self._ids), list(self._weights), self._values), _COMPRESSION
        )
        info = dumps(
            (
                len(self._ids),
                self._ids[-1],
                self._maxweight,
                _COMPRESSION,
                length_to_byte(self._minlength),
                length_to_byte(self._maxlength),
            ),
            2,  # the protocol W3's reader expects
        )
        size = len(info) + len(payload)
        self._postfile.write_int(-size if last else size)
        self._postfile.write(info)
        self._postfile.write(payload)
        self._blockcount += 1
        self._new_block()


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

    def _read_data(self) -> None:
        raw = self._postfile.get(self._dataoffset, self._nextoffset - self._dataoffset)
        self._data = unpack_block(zlib.decompress(raw), self._blocklength)

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


class PackedCodec(W3Codec):
    """W3 with packed posting blocks (term vectors, unused here, stay as W3 writes them)."""

    def __init__(self) -> None:
        super().__init__(blocklimit=256, compression=_COMPRESSION, inlinelimit=1)

    def postings_writer(self, dbfile: Any, byteids: bool = False) -> W3PostingsWriter:
        if byteids:
            return super().postings_writer(dbfile, byteids)
        return PackedPostingsWriter(
            dbfile,
            blocklimit=self._blocklimit,
            byteids=False,
            compression=self._compression,
            inlinelimit=self._inlinelimit,
        )

    def postings_reader(
        self, dbfile: Any, terminfo: Any, format_: Any, term: Any = None, scorer: Any = None
    ) -> Any:
        if terminfo.is_inlined():
            return super().postings_reader(dbfile, terminfo, format_, term, scorer)
        offset, length = terminfo.extent()
        return PackedLeafMatcher(dbfile, offset, length, format_, term=term, scorer=scorer)
