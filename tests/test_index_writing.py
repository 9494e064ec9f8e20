"""The whoosh index holds exactly the words, frequencies and positions of what was indexed.

Indexing analyses text in one pass (`analysis.analyzed`) and writes each word's postings
whole (`whoosh_codec.PackedFieldWriter`), not through whoosh's own token and posting
pipeline. These tests hold both to what whoosh's analyzer says the documents contain,
read back through whoosh's own postings reader, across blocks and segment merges.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.search import whoosh_codec
from archiver.search.analysis import TEXT_ANALYZER, analyzed
from archiver.search.backend import Sort
from archiver.search.documents import SearchDocument
from archiver.search.indexer import Indexer
from archiver.search.query import parse_query
from archiver.search.viewer import Viewer
from archiver.search.whoosh_format import decode_positions
from archiver.search.whoosh_index import WhooshBackend
from archiver.search.whoosh_merge import BACKLOG_FACTOR, DELETED_SHARE, MERGE_FACTOR
from archiver.service import Core
from tests.test_search import message, sample_copies

# Letters whose lower case, case folding or accents have caught tokenizers out: Greek
# final sigma, dotted capital I, ligatures, combining marks, digits with dots.
TRICKY = "ΣΟΔΟΣσς İI\u0131i ßẞ ﬁ Ǆǅǆ é é ñ Ω µ 3.14 a.b.c x_y 中文 ١٢٣ \u0307 . - _"
texts = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from([*TRICKY.split(" "), "", " ", ".", "a", "ab"]), max_size=20).map(
        " ".join
    ),
    st.lists(st.sampled_from([*TRICKY, " ", "\n"]), max_size=30).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_one_pass_analysis_gives_the_analyzers_words_and_positions(text: str) -> None:
    words = analyzed(text)
    tokens = [(token.text, token.pos) for token in TEXT_ANALYZER(text, positions=True)]
    assert list(zip(words, range(words.first, words.first + len(words)), strict=True)) == tokens


VOCABULARY = ["forecast", "budget", "ostrich", "parade", "zeppelin", "lunch", "review"]


def _document(pk: int, rng: random.Random) -> SearchDocument:
    # "forecast" is in every message, so its postings fill several blocks of 256
    body = " ".join(["forecast", *rng.choices(VOCABULARY, k=rng.randint(1, 12)), f"w{pk % 7}"])
    return SearchDocument(
        message_pk=pk,
        message_id=f"m{pk}@example.org",
        subject=f"Subject s{pk % 3} parade",
        body=body,
        attachment_text=rng.choice(["", "budget table", "ostrich ostrich"]),
        filenames=[f"sheet{pk % 2}.csv"] if pk % 4 == 0 else [],
        from_addresses=[f"sender{pk % 5}@example.org"],
        to_addresses=["team@example.com"],
        cc_addresses=[],
        names=["Alice Example"],
        participants={f"sender{pk % 5}@example.org", "team@example.com"},
        addresses={f"sender{pk % 5}@example.org", "team@example.com"},
        date=datetime(2026, 1, 1 + pk % 28, tzinfo=UTC),
        size=1000 + pk,
    )


def _expected(documents: list[SearchDocument]) -> dict[tuple[str, str], dict[int, list[int]]]:
    """(field, word) -> {message pk: positions} as whoosh's analyzer reads the documents."""
    expected: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    for document in documents:
        for field, text in (("subject", document.subject), ("body", document.body)):
            for token in TEXT_ANALYZER(text, positions=True):
                expected[field, token.text].setdefault(document.message_pk, []).append(token.pos)
        for token in TEXT_ANALYZER(document.attachment_text):
            expected["attachments", token.text].setdefault(document.message_pk, []).append(0)
    return expected


def _stored(backend: WhooshBackend) -> dict[tuple[str, str], dict[int, list[int]]]:
    """The same, read back through whoosh's own postings reader."""
    stored: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    searcher = backend._index.searcher()
    try:
        reader = searcher.reader()
        column = reader.column_reader("pk_column")
        pks = {docnum: column[docnum] for docnum in reader.all_doc_ids()}  # live ones
        for field in ("subject", "body", "attachments"):
            for word in reader.lexicon(field):
                text = word.decode()
                matcher = reader.postings(field, text)
                while matcher.is_active():
                    pk = pks.get(matcher.id())  # None: deleted, not yet merged away
                    if pk is not None and field == "attachments":
                        stored[field, text][pk] = [0] * int(matcher.weight())
                    elif pk is not None:
                        stored[field, text][pk] = decode_positions(matcher.value())
                    matcher.next()
    finally:
        searcher.close()
    return stored


def test_the_index_holds_every_word_frequency_and_position_across_blocks_and_merges(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    documents = [_document(pk, rng) for pk in range(1, 901)]
    deleted = {5, 6, *range(60, 100)}  # the second segment is mostly deleted
    backend = WhooshBackend(tmp_path / "index")
    try:
        for start in range(0, len(documents), 50):  # a segment each: tiers fill and merge
            backend.index(documents[start : start + 50])
            if start == 100:
                backend.delete(sorted(deleted))
        kept = [d for d in documents if d.message_pk not in deleted]
        assert _stored(backend) == _expected(kept)
        segments = backend._index._segments()
        assert len(segments) < 18 - MERGE_FACTOR + 2  # tiers of ten merged
        assert all(s.deleted_count() <= DELETED_SHARE * s.doc_count_all() for s in segments)

        result = backend.search(parse_query('"forecast"'), Viewer.administrator(), Sort.DATE, 5, 0)
        assert result.total == len(kept)
        phrase = backend.search(
            parse_query('"subject s1 parade"'), Viewer.administrator(), Sort.DATE, 1000, 0
        )
        assert {hit.message_pk for hit in phrase.hits} == {
            d.message_pk for d in kept if d.message_pk % 3 == 1
        }
    finally:
        backend.close()


def test_an_index_whose_small_blocks_are_all_compressed_reads_and_merges_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexes written before small blocks were stored plain compressed every block; they
    stay readable, and merge with segments written now, without a rebuild."""
    rng = random.Random(11)
    documents = [_document(pk, rng) for pk in range(1, 301)]
    backend = WhooshBackend(tmp_path / "index")
    try:
        monkeypatch.setattr(whoosh_codec, "_COMPRESS_FROM", 0)  # as the older writer did
        for start in range(0, 150, 25):
            backend.index(documents[start : start + 25])
        monkeypatch.undo()
        for start in range(150, 300, 25):  # the tenth segment merges old and new ones
            backend.index(documents[start : start + 25])
        backend.delete([7, 160])
        kept = [d for d in documents if d.message_pk not in {7, 160}]
        assert _stored(backend) == _expected(kept)
        assert len(backend._index._segments()) < 12
    finally:
        backend.close()


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite: merging is the whoosh index's, whatever database holds the messages."""
    return sqlite_url


def test_a_backlog_is_searchable_batch_by_batch_and_merged_once_caught_up(core: Core) -> None:
    """The indexer commits a backlog's batches without waiting on merges, so each is
    searchable at once, and merges the segments they left once the queue is worked off."""
    mails = [
        message(f"b{n}@example.com", f"Backlog {n}", f"The parade number {n}.") for n in range(24)
    ]
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, sample_copies(mails, datetime.now(UTC)))
    backend = core.search_backend()
    assert isinstance(backend, WhooshBackend)
    indexer = Indexer(core.sessions, backend, core.store)

    def found() -> int:
        return backend.search(parse_query("parade"), Viewer.administrator(), Sort.DATE, 50, 0).total

    try:
        for batch in range(1, 12):
            assert indexer.run_once(limit=2) == 2
            assert len(backend._index._segments()) == batch  # past MERGE_FACTOR, unmerged
            assert found() == 2 * batch
        assert indexer.run_once(limit=3) == 2  # the last two: the queue is worked off
        assert len(backend._index._segments()) < MERGE_FACTOR
        assert found() == 24
    finally:
        backend.close()


def test_a_tier_left_to_grow_is_merged_once_it_overflows(tmp_path: Path) -> None:
    """Merges put off for a backlog are bounded: a tier holding BACKLOG_FACTOR segments is
    merged by the next commit all the same."""
    rng = random.Random(5)
    documents = [_document(pk, rng) for pk in range(1, BACKLOG_FACTOR + 2)]
    backend = WhooshBackend(tmp_path / "index")
    try:
        for document in documents[:-1]:
            backend.index([document], defer_merges=True)
        assert len(backend._index._segments()) == BACKLOG_FACTOR
        backend.index(documents[-1:], defer_merges=True)  # the tier merges with it
        assert len(backend._index._segments()) == 1
        assert _stored(backend) == _expected(documents)
    finally:
        backend.close()
