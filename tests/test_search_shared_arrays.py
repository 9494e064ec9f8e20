"""The whoosh index's per-document arrays live in mapped files that every process shares."""

from __future__ import annotations

import mmap
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from archiver.search.backend import Sort
from archiver.search.indexer import Indexer
from archiver.search.query import parse_query
from archiver.search.viewer import Viewer
from archiver.search.whoosh_arrays import IndexArrays
from archiver.search.whoosh_derived import FOLDER, SortedStrings, mapped
from archiver.search.whoosh_index import FACET_FIELDS, WhooshBackend
from archiver.search.whoosh_matching import SCORED_FIELDS, Matcher
from archiver.search.whoosh_storage import MappedFile
from archiver.service import Core
from tests.test_search import ALICE, CAROL, MESSAGES, message, sample_copies

Opener = Callable[..., WhooshBackend]
QUERIES = [
    "",
    "forecast",
    '"quarterly forecast"',
    "forecast -release",
    "lunch OR zeppelin",
    "from:example.org",
    "list:dev.lists.example.com",
    "has:attachment",
    "after:2026-02-01 before:2026-03-01",
    "larger:1k",
    '"ostrich parade"',
]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: on PostgreSQL the default search backend is PostgreSQL's own, and the
    shared arrays belong to the whoosh index, whatever holds the messages."""
    return sqlite_url


def archive(core: Core, messages: list[bytes]) -> None:
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, sample_copies(messages, now))


def answers(backend: WhooshBackend, viewer: Viewer | None = None) -> list[object]:
    """What every query of QUERIES returns from `backend`, hits, totals and facets."""
    found = []
    for text in QUERIES:
        for sort in Sort:
            result = backend.search(
                parse_query(text), viewer or Viewer.administrator(), sort, 20, 0
            )
            hits = [(hit.message_pk, round(hit.score, 4), hit.date) for hit in result.hits]
            found.append((text, sort, result.total, hits, result.facets))
    return found


def files(backend: WhooshBackend) -> set[str]:
    root = backend.directory / FOLDER
    return {path.name for path in root.iterdir()} if root.exists() else set()


def stamps(backend: WhooshBackend) -> dict[Path, int]:
    """When each derived file was last written."""
    return {path: path.stat().st_mtime_ns for path in (backend.directory / FOLDER).iterdir()}


def mapped_file(array: np.ndarray) -> Path:
    """The file an array maps (it is a view of numpy's memmap of the whole file)."""
    assert mapped(array)
    while not isinstance(array, np.memmap):
        array = array.base
    return Path(array.filename)


@pytest.fixture
def several_segments(core: Core) -> Core:
    """The sample messages indexed in three commits, so the index has several segments."""
    indexer = Indexer(core.sessions, core.search_backend(), core.store)
    for part in (MESSAGES[:2], MESSAGES[2:4], MESSAGES[4:]):
        archive(core, part)
        indexer.run_once()
    indexer.backend.close()
    return core


@pytest.fixture
def opened(several_segments: Core) -> Iterator[Opener]:
    """Opens backends on the index of `several_segments`, as separate processes would;
    all are closed at the end."""
    backends: list[WhooshBackend] = []

    def open_backend(**options: bool) -> WhooshBackend:
        backends.append(WhooshBackend(several_segments.settings.index_dir, **options))
        return backends[-1]

    yield open_backend
    for backend in backends:
        backend.close()


def test_a_second_process_maps_the_arrays_the_first_one_wrote(opened: Opener) -> None:
    first = opened()
    second = opened()
    assert files(first) == set()  # written when first needed, not before
    first.search(None, Viewer.administrator(), Sort.DATE, 10, 0)
    written = files(first)
    assert written
    written_at = stamps(first)
    second.search(None, Viewer.administrator(), Sort.DATE, 10, 0)
    assert files(second) == written
    assert stamps(second) == written_at  # the second one mapped the same files, wrote none
    for segment in second._current_arrays().segments:
        assert mapped_file(segment.pk).name in written
        assert mapped_file(segment.date) == mapped_file(segment.pk)  # one file a segment
        values, codes = segment.facets["list"]
        assert isinstance(values, SortedStrings)
        assert mapped(codes)
        assert mapped(values.data)
        assert all(mapped(array) for array in segment.length_codes.values())


def test_results_are_the_same_with_or_without_the_shared_files(opened: Opener) -> None:
    mapped = opened()
    private = opened(derived_files=False)
    for viewer in (Viewer.administrator(), Viewer.person(CAROL)):
        assert answers(mapped, viewer) == answers(private, viewer)
    assert answers(mapped)[2][2] == 3  # "forecast" finds three messages


def test_the_files_of_a_merged_away_segment_are_removed(
    several_segments: Core, opened: Opener
) -> None:
    backend = opened()
    before = answers(backend)
    old = files(backend)
    assert len(old) >= 2
    Indexer(
        several_segments.sessions, backend, several_segments.store
    ).rebuild()  # one new segment replaces all
    assert files(backend) == set()
    assert answers(backend) == before
    assert len(files(backend)) == 1
    assert not files(backend) & old


def test_a_search_still_answers_when_its_files_vanish_under_it(
    several_segments: Core, opened: Opener
) -> None:
    reader = opened()
    writer = opened()
    before = answers(reader)
    # Files removed while mapped stay readable to the process that mapped them.
    shutil.rmtree(reader.directory / FOLDER)
    assert answers(reader) == before
    # A searcher opened before a merge reaches for the files of segments that the
    # merge took away; it derives them again from the segments it holds open.
    stale = reader._current_searcher()
    Indexer(several_segments.sessions, writer, several_segments.store).rebuild()
    arrays = IndexArrays(stale, tuple(SCORED_FIELDS), FACET_FIELDS, {}, reader.directory)
    matcher = Matcher(arrays, reader._analyze)
    assert matcher.search(None, Viewer.administrator(), Sort.DATE, 20, 0).total == len(MESSAGES)
    # ...and the writer's next commit tidies up what that left behind
    archive(several_segments, [message("late@example.com", "Late", "A late forecast.")])
    Indexer(several_segments.sessions, writer, several_segments.store).run_once()
    current = {s.segment_id() for s in writer._index._segments()}
    assert {name.rsplit(".", 1)[0] for name in files(writer)} <= current
    assert reader.search(parse_query("forecast"), Viewer.administrator(), Sort.DATE, 20, 0)
    assert answers(reader)[2][2] == 4


def test_a_derived_file_cut_short_by_a_crash_is_written_again(opened: Opener) -> None:
    first = opened()
    before = answers(first)
    damaged = next((first.directory / FOLDER).iterdir())
    whole = damaged.stat().st_size
    damaged.write_bytes(damaged.read_bytes()[: whole // 2])
    assert answers(opened()) == before
    assert damaged.stat().st_size == whole


def test_deleted_messages_disappear_without_rewriting_the_shared_files(opened: Opener) -> None:
    backend = opened()
    admin = Viewer.administrator()
    everything = backend.search(None, admin, Sort.DATE, 20, 0)
    written_at = stamps(backend)
    listed = backend.search(parse_query("list:dev.lists.example.com"), admin, Sort.DATE, 20, 0)
    backend.delete([listed.hits[0].message_pk])
    after = backend.search(None, admin, Sort.DATE, 20, 0)
    assert after.total == everything.total - 1
    assert listed.hits[0].message_pk not in {hit.message_pk for hit in after.hits}
    assert after.facets["list"] == {}
    alice = backend.search(parse_query("forecast"), Viewer.person(ALICE), Sort.DATE, 20, 0)
    assert alice.total == 2
    assert stamps(backend) == written_at


def test_the_index_files_are_read_in_place_not_copied_into_each_process(opened: Opener) -> None:
    backend = opened()
    assert answers(backend)[2][2] == 3
    for reader, _offset in backend._current_arrays().leaves:
        postings = reader._terms._postfile
        assert isinstance(postings, MappedFile)
        assert isinstance(postings._buf.obj, mmap.mmap)


def test_facet_values_are_looked_up_in_the_mapped_byte_array() -> None:
    values = SortedStrings.from_list(["a.example", "b.example", "zürich.example"])
    assert [values[i] for i in range(len(values))] == ["a.example", "b.example", "zürich.example"]
    assert values.index("zürich.example") == 2
    assert values.index("c.example") == -1
    assert SortedStrings.from_list([]).index("a") == -1
