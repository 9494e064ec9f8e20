"""What the whoosh fork writes into a posting block comes back unchanged.

`whoosh_codec` packs each block of postings (document numbers, weights, values) in its own
layout, stored plain when small and zlib-compressed otherwise; `whoosh_format` stores a
posting's word positions as varint gaps, read many postings at a time. Every search reads
through these, so a slip in either would return wrong messages without an error. These
properties hold them to their inputs over the ranges an index meets: one posting or a
full block, document gaps of one to four bytes, each kind of weight, values from none to
long, positions of one to several varint bytes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from archiver.search.analysis import analyzed
from archiver.search.whoosh_codec import (
    _BLOCK_LIMIT,
    _COMPRESS_FROM,
    pack_block,
    read_block,
    stored_block,
    unpack_block,
)
from archiver.search.whoosh_format import (
    CompactPositions,
    decode_many,
    decode_positions,
    encode_positions,
)

# Gaps between document numbers of every width the layout has (1, 2 and 4 bytes).
gaps = st.one_of(st.integers(1, 255), st.integers(256, 65_535), st.integers(65_536, 2**32 - 1))
whole_weights = st.integers(0, 255).map(float)  # a word's frequency: one byte each
float_weights = st.floats(0.0, 1e6, width=32, allow_subnormal=False)  # boosted: float32


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[int], list[float], list[bytes]]:
    """The postings of one block, as the field writer hands them to `pack_block`."""
    count = draw(st.integers(1, _BLOCK_LIMIT) | st.integers(1, 3))  # most blocks are tiny
    first = draw(st.integers(0, 2**32 - 1))
    ids = [first]
    for gap in draw(st.lists(gaps, min_size=count - 1, max_size=count - 1)):
        ids.append(ids[-1] + gap)
    weights = draw(
        st.just([1.0] * count)
        | st.lists(whole_weights, min_size=count, max_size=count)
        | st.lists(float_weights, min_size=count, max_size=count)
    )
    values = draw(
        st.just([b""] * count)
        | st.lists(st.binary(max_size=8), min_size=count, max_size=count)
        | st.lists(st.binary(max_size=300), min_size=count, max_size=count)
    )
    return ids, weights, values


def _postings(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, bytes],
) -> tuple[list[int], list[float], list[bytes]]:
    """The postings a block's arrays hold, as lists again."""
    ids, weights, lengths, joined = arrays
    ends = np.cumsum(lengths).tolist()
    values = [joined[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    return ids.tolist(), weights.tolist(), values


def _as_float32(weights: list[float]) -> list[float]:
    return np.array(weights, dtype=np.float32).tolist()


@settings(max_examples=300, deadline=None)
@given(blocks())
@example(([0], [1.0], [b""]))  # the smallest block: one posting, no value
@example(([7, 8], [2.0, 3.0], [b"x" * 70_000, b"y"]))  # a value past 64 KB: 4-byte lengths
def test_a_packed_block_gives_back_its_postings(
    block: tuple[list[int], list[float], list[bytes]],
) -> None:
    ids, weights, values = block
    assert _postings(unpack_block(pack_block(ids, weights, values), len(ids))) == (
        ids,
        _as_float32(weights),
        values,
    )


@settings(max_examples=300, deadline=None)
@given(blocks())
@example(([3], [1.0], [b"\x01"]))  # a few bytes: stored plain
def test_a_stored_block_is_plain_when_small_compressed_when_not_and_reads_back(
    block: tuple[list[int], list[float], list[bytes]],
) -> None:
    ids, weights, values = block
    compression, stored = stored_block(ids, weights, values)
    packed = pack_block(ids, weights, values)
    if len(packed) < _COMPRESS_FROM:
        assert (compression, stored) == (0, packed)
    else:
        assert compression > 0
    assert _postings(read_block(stored, compression, len(ids))) == (
        ids,
        _as_float32(weights),
        values,
    )
    # A search for words alone reads the ids and weights only, inflating no further.
    found, frequencies, lengths, joined = read_block(stored, compression, len(ids), values=False)
    assert (found.tolist(), frequencies.tolist()) == (ids, _as_float32(weights))
    assert not lengths.any() and joined == b""


# Positions of one word in one message: ascending, with gaps from one varint byte to five.
positions = st.lists(
    st.integers(0, 127) | st.integers(128, 2**21) | st.integers(2**21, 2**35),
    max_size=40,
    unique=True,
).map(sorted)


@settings(max_examples=500, deadline=None)
@given(positions)
@example([0])
@example([127, 128, 16_383, 16_384])  # the edges of one and two varint bytes
def test_encoded_positions_decode_to_themselves(found: list[int]) -> None:
    assert decode_positions(encode_positions(found)) == found


@settings(max_examples=300, deadline=None)
@given(st.lists(positions, min_size=1, max_size=30))
def test_a_block_of_positions_decodes_at_once_as_each_posting_alone(
    postings: list[list[int]],
) -> None:
    encoded = [encode_positions(found) for found in postings]
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    lengths = np.array([len(value) for value in encoded], dtype=np.int64)
    counts, joined = decode_many(data, lengths)
    assert counts.tolist() == [len(found) for found in postings]
    assert joined.tolist() == [position for found in postings for position in found]


words = st.lists(st.sampled_from(["budget", "forecast", "zeppelin", "ab", "x", "é"]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(words)
def test_the_position_format_records_where_each_word_of_a_text_stands(text: list[str]) -> None:
    analysed = analyzed(" ".join(text))
    expected: dict[str, list[int]] = {}
    for position, word in enumerate(analysed, analysed.first):
        expected.setdefault(word, []).append(position)
    form = CompactPositions()
    stored = {
        word: (freq, weight, value)
        for word, freq, weight, value in form.word_values(analysed, None)
    }
    assert {word: decode_positions(value) for word, (_, _, value) in stored.items()} == expected
    for word, (freq, weight, value) in stored.items():
        assert freq == form.decode_frequency(value) == len(expected[word])
        assert weight == form.decode_weight(value)
