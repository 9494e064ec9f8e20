"""A whoosh search narrowed to a few messages reads only the posting blocks near them.

A word in every message has a posting block for every few hundred of them. When the
other parts of a query (`from:`, a date, the viewer) leave a few documents, the word's
blocks without any of them are passed over, and a phrase inflates the positions of just
the blocks it checks. Whether a search reads every block or only the near ones must never
change what it finds, how it ranks it or how many it counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from archiver.search import whoosh_matching
from archiver.search.backend import Sort
from archiver.search.documents import SearchDocument
from archiver.search.query import parse_query
from archiver.search.viewer import Viewer
from archiver.search.whoosh_index import WhooshBackend

MESSAGES = 1_500  # a word in every message spans several blocks of 256 postings
SEGMENT = 650  # the messages of the first segment
RARE = "rare@example.com"  # the sender of every 250th message
QUERIES = [
    "alpha",
    '"alpha beta"',
    f"from:{RARE} alpha",
    f'from:{RARE} "alpha beta"',
    f'alpha from:{RARE} "beta alpha"',
    f"from:{RARE} after:2026-01-20 gamma",
    f'from:{RARE} -"alpha beta"',
]


def document(number: int) -> SearchDocument:
    """Message `number`: "alpha" everywhere, at a varying position; "beta" right after it
    in every third, before it in every fifth; "gamma" in every seventh."""
    words = ["filler"] * (number % 4) + ["alpha"]
    if number % 3 == 0:
        words.append("beta")
    if number % 5 == 0:
        words.insert(0, "beta")
    if number % 7 == 0:
        words.append("gamma")
    sender = RARE if number % 250 == 9 else f"sender{number % 11}@example.org"
    return SearchDocument(
        message_pk=number + 1,
        message_id=f"m{number}@example.org",
        subject=f"Note {number}",
        body=" ".join(words),
        attachment_text="",
        filenames=[],
        from_addresses=[sender],
        to_addresses=["team@example.org"],
        cc_addresses=[],
        names=[],
        participants={sender, "team@example.org"},
        date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=number),
    )


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhooshBackend]:
    opened = WhooshBackend(Path(tmp_path_factory.mktemp("narrowing")))
    # Two commits, two segments: a narrowed read passes over a whole segment too.
    opened.index([document(number) for number in range(SEGMENT)])
    opened.index([document(number) for number in range(SEGMENT, MESSAGES)])
    yield opened
    opened.close()


def answers(backend: WhooshBackend, viewer: Viewer) -> list[tuple[int, list[tuple[int, float]]]]:
    found = []
    for text in QUERIES:
        result = backend.search(parse_query(text), viewer, Sort.RELEVANCE, 50, 0)
        found.append((result.total, [(hit.message_pk, round(hit.score, 4)) for hit in result.hits]))
    return found


@pytest.mark.parametrize(
    "viewer", [Viewer.administrator(), Viewer.person(RARE)], ids=["administrator", "sender"]
)
def test_reading_only_the_near_blocks_finds_what_reading_all_finds(
    backend: WhooshBackend, monkeypatch: pytest.MonkeyPatch, viewer: Viewer
) -> None:
    monkeypatch.setattr(whoosh_matching, "NARROW_SHARE", 0.0)  # every block, always
    everything = answers(backend, viewer)
    monkeypatch.setattr(whoosh_matching, "NARROW_SHARE", 2.0)  # the near blocks, always
    assert answers(backend, viewer) == everything
    assert everything[2][0] == MESSAGES // 250  # every message of the rare sender has alpha
    assert 0 < everything[3][0] < everything[2][0]


def test_a_narrowed_read_passes_over_the_blocks_without_the_wanted_documents(
    backend: WhooshBackend,
) -> None:
    arrays = backend._current_arrays()
    assert len(arrays.segments) == 2
    every = arrays.postings("body", "alpha")
    assert len(every.docs) == MESSAGES and len(every.blocks) > 4
    wanted = np.array([700, 701, 1_200], dtype=np.int64)
    near = arrays.postings("body", "alpha", wanted)
    assert set(wanted.tolist()) <= set(near.docs.tolist())
    assert len(near.blocks) == 2 and len(near.docs) < MESSAGES // 2
    assert near.frequency == every.frequency == MESSAGES  # rarity counts the whole index
    docs, positions = near.positions(wanted)
    assert list(zip(docs.tolist(), positions.tolist(), strict=True)) == [
        (number, number % 4 + (number % 5 == 0)) for number in wanted.tolist()
    ]
    assert [array.tolist() for array in every.positions(wanted)] == [
        docs.tolist(),
        positions.tolist(),
    ]


def test_a_search_past_the_limit_is_ranked_and_counted_among_the_newest(
    backend: WhooshBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a window of the newest 300 of 1,500 messages standing for a million among
    ten million, and a limit of 50 standing for 10,000."""
    monkeypatch.setattr(whoosh_matching, "WINDOW", 300)
    monkeypatch.setattr(whoosh_matching, "EXACT_TOTAL_LIMIT", 50)
    admin = Viewer.administrator()

    def found(text: str, sort: Sort = Sort.RELEVANCE, exact: bool = False):
        return backend.search(parse_query(text), admin, sort, 20, 0, exact_total=exact)

    word = found("alpha")
    assert (word.total, word.total_exact) == (MESSAGES, False)
    assert all(hit.message_pk > MESSAGES - 300 for hit in word.hits)
    assert sum(word.facets["year"].values()) == MESSAGES
    every = found("alpha", exact=True)
    assert (every.total, every.total_exact) == (MESSAGES, True)
    rarer = found("gamma")  # in every seventh message
    assert not rarer.total_exact and abs(rarer.total - MESSAGES / 7) < 10
    # Few matches, or newest first: every match is read and counted.
    assert found(f"from:{RARE}").total_exact
    newest = found("alpha", Sort.DATE)
    assert (newest.total, newest.total_exact) == (MESSAGES, True)
    assert [hit.message_pk for hit in newest.hits] == list(range(MESSAGES, MESSAGES - 20, -1))
