"""A compact word-positions format for whoosh postings.

Whoosh's own `Positions` format stores every posting as a four-byte count followed by a
pickled list of gaps: about twelve bytes for a word that occurs once in a message, which
made positions half of the index. This format stores the gaps between positions as
varints (seven bits a byte, the high bit set on every byte but a number's last), so a word
that occurs once costs a byte or two, and a whole block decodes with a few numpy
operations (`decode_many`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np
from whoosh.formats import Format, Frequency, Positions, tokens
from whoosh.system import pack_uint

from archiver.search.analysis import Words


def encode_positions(positions: list[int]) -> bytes:
    """Varint gaps between ascending positions."""
    if len(positions) == 1:  # most words of a message occur once
        position = positions[0]
        if position < 0x80:
            return _ONE_BYTE[position]
        if position < 0x4000:
            return bytes((0x80 | (position & 0x7F), position >> 7))
    out = bytearray()
    previous = 0
    for position in positions:
        gap = position - previous
        previous = position
        while gap >= 0x80:
            out.append(0x80 | (gap & 0x7F))
            gap >>= 7
        out.append(gap)
    return bytes(out)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def positions_of(words: Words) -> dict[str, list[int]]:
    """Each distinct word of `words` and its positions, in order of first occurrence."""
    positions: dict[str, list[int]] = {}
    for position, word in enumerate(words, words.first):
        found = positions.get(word)
        if found is None:
            positions[word] = [position]
        else:
            found.append(position)
    return positions


def decode_positions(value: bytes) -> list[int]:
    """The ascending positions `encode_positions` stored."""
    data = np.frombuffer(value, dtype=np.uint8)
    return decode_many(data, np.array([len(data)], dtype=np.int64))[1].tolist()


def decode_many(data: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of many postings at once, from their encoded values joined (`data`) and
    the byte length of each: (how many positions each posting has, all positions).

    Every byte below 0x80 ends a number; a number's bytes are weighted by 128 to the
    power of their place, summed per number; positions are running sums of gaps,
    restarted at each posting.
    """
    last = data < 0x80
    ends = np.flatnonzero(last)
    if len(ends) == len(data):  # every gap below 128: one byte each, the usual case
        gaps = data.astype(np.int64)
    else:
        starts = np.concatenate(([0], ends[:-1] + 1))
        place = np.arange(len(data)) - np.repeat(starts, ends - starts + 1)
        weighted = (data & 0x7F).astype(np.int64) << (7 * place)
        gaps = np.add.reduceat(weighted, starts) if len(starts) else weighted[:0]
    # numbers per posting: the number-ending bytes inside each posting's byte range
    boundaries = np.concatenate(([0], np.cumsum(lengths)))
    ended = np.concatenate(([0], np.cumsum(last)))
    counts = ended[boundaries[1:]] - ended[boundaries[:-1]]
    running = np.cumsum(gaps)
    if not len(running):
        return counts, running
    prior = np.cumsum(counts) - counts  # numbers in the postings before each one
    before = np.where(prior > 0, running[np.maximum(prior - 1, 0)], 0)
    return counts, running - np.repeat(before, counts)


# Whoosh pickles this class by module path and name into every index's table of contents
# (it is the format of the subject and body fields) and imports it by that path to open
# the index. It stays importable as `archiver.search.whoosh_format.CompactPositions` for
# good (a re-export here if the code moves), or no deployed index opens again.
# tests/test_whoosh_fixture.py holds this.
class CompactPositions(Positions):
    """`Positions` with `encode_positions` values; frequency and weight as whoosh expects."""

    def word_values(
        self, value: object, analyzer: object, **kwargs: object
    ) -> Iterator[tuple[str, int, float, bytes]]:
        """(word, frequency, weight, encoded positions) for each distinct word of `value`:
        text, or `Words` the indexer analysed already (see `analysis.analyzed`)."""
        if isinstance(value, Words):
            positions = positions_of(value)
        else:
            positions = defaultdict(list)
            kwargs["positions"] = True
            for token in tokens(value, analyzer, kwargs):
                positions[token.text].append(token.pos)
        for word, found in positions.items():
            yield word, len(found), len(found) * self.field_boost, encode_positions(found)

    def encode(self, poslist: list[int]) -> bytes:
        """Whoosh calls this when it combines postings."""
        return encode_positions(poslist)

    def decode_positions(self, valuestring: bytes) -> list[int]:
        """Positions of one posting."""
        return decode_positions(valuestring)

    def decode_frequency(self, valuestring: bytes) -> int:
        """How often the word occurs in the document."""
        return len(decode_positions(valuestring))

    def decode_weight(self, valuestring: bytes) -> float:
        """The frequency scaled by the field's boost."""
        return self.decode_frequency(valuestring) * self.field_boost


def word_postings(words: Words, form: Format) -> Iterator[tuple[bytes, float, bytes]]:
    """(word in UTF-8, weight, value) of each distinct word of `words`: the postings
    whoosh's `add_document` would make of them in a field of format `form`, without its
    generators and token objects per word. Positions for `CompactPositions`; for
    whoosh's `Frequency` (the fields without phrases), the count as it packs it."""
    boost = form.field_boost
    if isinstance(form, CompactPositions):
        for word, found in positions_of(words).items():
            yield word.encode(), len(found) * boost, encode_positions(found)
    elif type(form) is Frequency:
        for word, count in Counter(words).items():
            yield word.encode(), count * boost, pack_uint(count)
    else:
        raise TypeError(f"no postings for analysed words in a {type(form).__name__} field")
