"""Indexes written by earlier code keep opening and answering.

Arsip reads whoosh 2.7.4's files itself and writes posting blocks and word positions in
formats of its own, and whoosh pickles the module paths of Arsip's codec and position
format into every index's table of contents. A change to any of these could leave every
deployed index unreadable, or readable wrongly, while the tests that build a new index
still pass. `tests/fixtures/whoosh-index/` holds an index built by the code of its day
(`make.py` there says how): these tests open it with today's code.
"""

from __future__ import annotations

import io
import pickle
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from whoosh.filedb.structfile import StructFile

from archiver.search.backend import Sort
from archiver.search.documents import SearchDocument
from archiver.search.query import parse_query
from archiver.search.viewer import Viewer
from archiver.search.whoosh_index import SCHEMA_VERSION, WhooshBackend
from tests.support import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "whoosh-index"
STEFAN = "stefan@datenfreihafen.org"  # sent the notmuch maildir patches, 1 to 6
REMOVED = 17  # removed from the index after it was written, as a retention sweep does

# Classes of Arsip's own that whoosh pickles, by module path and name, into every index's
# table of contents. Indexes name them for as long as they exist, so they stay importable
# under these names for good (a re-export where the code has moved): see the comments at
# `whoosh_codec.PackedCodec` and `whoosh_format.CompactPositions`.
PICKLED = {
    ("archiver.search.whoosh_codec", "PackedCodec"),
    ("archiver.search.whoosh_format", "CompactPositions"),
}


@pytest.fixture
def old_index(tmp_path: Path) -> Iterator[WhooshBackend]:
    """The fixture's index, copied (opening and searching write files beside it)."""
    assert (FIXTURE / f"v{SCHEMA_VERSION}").is_dir(), (
        f"the index schema is now version {SCHEMA_VERSION}: deployed indexes get rebuilt by "
        "`arsip reindex`, so build the fixture again (tests/fixtures/whoosh-index/make.py)"
    )
    shutil.copytree(FIXTURE / f"v{SCHEMA_VERSION}", tmp_path / "index" / f"v{SCHEMA_VERSION}")
    backend = WhooshBackend(tmp_path / "index")
    yield backend
    backend.close()


def _found(backend: WhooshBackend, query: str, viewer: Viewer | None = None) -> set[int]:
    result = backend.search(
        parse_query(query) if query else None,
        viewer or Viewer.administrator(),
        Sort.DATE,
        100,
        0,
    )
    assert result.total == len(result.hits)
    return {hit.message_pk for hit in result.hits}


def test_an_index_written_by_earlier_code_answers_words_phrases_and_senders(
    old_index: WhooshBackend,
) -> None:
    assert _found(old_index, "fscache") == {9, 11, 14, 15, 16, 18, 19, 21, 26}
    assert _found(old_index, '"FS-Cache page management"') == {10, 15, 26}
    assert _found(old_index, f"from:{STEFAN}") == {1, 2, 4, 6}
    assert _found(old_index, "maildir -from:datenfreihafen.org") == {3, 5}


def test_an_index_written_by_earlier_code_keeps_its_removals_and_whom_each_message_concerns(
    old_index: WhooshBackend,
) -> None:
    assert _found(old_index, "") == set(range(1, 41)) - {REMOVED}
    assert _found(old_index, "from:sjayaraman@suse.de").isdisjoint({REMOVED})
    assert _found(old_index, "", Viewer.person(STEFAN)) == {1, 2, 3, 4, 5, 6}
    assert _found(old_index, "fscache", Viewer.person(STEFAN)) == set()


def _stefans(pk: int, subject: str, body: str) -> SearchDocument:
    """A new message from Stefan to the team, to index into an old index."""
    return SearchDocument(
        message_pk=pk,
        message_id=f"{pk}@example.org",
        subject=subject,
        body=body,
        attachment_text="",
        filenames=[],
        from_addresses=[STEFAN],
        to_addresses=["team@example.com"],
        cc_addresses=[],
        names=[],
        participants={STEFAN, "team@example.com"},
        addresses={STEFAN, "team@example.com"},
        date=datetime(2026, 12, 1, tzinfo=UTC),
        size=1000,
    )


def test_an_index_written_by_earlier_code_takes_new_mail_and_removals(
    old_index: WhooshBackend,
) -> None:
    new = _stefans(41, "fscache on cifs, again", "The local caching series needs another look.")
    old_index.index([new])
    old_index.delete([9])
    assert _found(old_index, "fscache") == {11, 14, 15, 16, 18, 19, 21, 26, 41}
    assert _found(old_index, '"local caching"') == {10, 11, 27, 29, 30, 31, 41}
    assert _found(old_index, "", Viewer.person(STEFAN)) == {1, 2, 3, 4, 5, 6, 41}


def test_the_classes_an_index_names_stay_importable_under_those_names(
    old_index: WhooshBackend, tmp_path: Path
) -> None:
    old_index.delete([1])  # today's code writes a table of contents of its own
    written_then = _pickled_names(FIXTURE / f"v{SCHEMA_VERSION}")
    written_now = _pickled_names(old_index.directory)
    assert ("whoosh.fields", "Schema") in written_then  # the schema was read
    assert {name for name in written_then if name[0].startswith("archiver")} <= PICKLED
    assert {name for name in written_now if name[0].startswith("archiver")} == PICKLED


def _pickled_names(directory: Path) -> set[tuple[str, str]]:
    """The (module, name) of every class the newest table of contents in `directory`
    pickles, each imported as whoosh's reader would import it.

    Whoosh 2.7.4 writes the table of contents as: the sizes of int, long and float and a
    byte-order check; its format and whoosh's version; the schema pickled; the index's
    generation and an unused number; the segments pickled.
    """
    found: set[tuple[str, str]] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.add((module, name))
            return super().find_class(module, name)

    toc = max(directory.glob("_MAIN_*.toc"), key=lambda path: int(path.stem.split("_")[-1]))
    with toc.open("rb") as file:
        stream = StructFile(file)
        for _ in range(3):
            stream.read_varint()
        stream.read_int()
        stream.read_int()
        for _ in range(3):
            stream.read_varint()
        Recording(io.BytesIO(stream.read_string())).load()
        stream.read_int()
        stream.read_int()
        Recording(file).load()
    return found


def test_an_index_of_the_version_before_is_brought_up_to_date_in_place(tmp_path: Path) -> None:
    """Version 9 only added the `folder` field: a version 8 index (kept in the fixture
    folder for this test) keeps answering at once, with nothing left to rebuild."""
    shutil.copytree(FIXTURE / "v8", tmp_path / "index" / "v8")
    backend = WhooshBackend(tmp_path / "index")
    try:
        assert not backend.needs_rebuild()
        assert [folder.name for folder in (tmp_path / "index").iterdir()] == [f"v{SCHEMA_VERSION}"]
        assert _found(backend, "fscache") == {9, 11, 14, 15, 16, 18, 19, 21, 26}
        assert _found(backend, "", Viewer.person(STEFAN)) == {1, 2, 3, 4, 5, 6}
        imported = _stefans(41, "fscache from an old mailbox", "Found in a PST.")
        imported.folders = ["Inbox/Projects"]
        backend.index([imported])
        assert _found(backend, "folder:projects") == {41}
        assert _found(backend, "fscache") == {9, 11, 14, 15, 16, 18, 19, 21, 26, 41}
    finally:
        backend.close()
