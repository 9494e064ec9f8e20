"""The embedded search backend: a whoosh index under the data directory.

Whoosh allows one writer at a time, so exactly one process (the spool worker child of
`arsip serve`, or `arsip reindex`) writes; any process may search. Words are indexed as
written, folded to lower case without accents, and stemmed when searching; bodies are not
stored in the index (snippets are cut from the archive's own copy). Whoosh writes and
stores the index; queries are answered by `whoosh_matching` from arrays.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from whoosh import fields, index
from whoosh import query as wq
from whoosh.columns import NumericColumn
from whoosh.filedb.filestore import FileStorage
from whoosh.searching import Searcher
from whoosh.writing import CLEAR, IndexWriter, LockError

from archiver.search import whoosh_derived
from archiver.search.allocator import return_large_arrays_to_the_system
from archiver.search.analysis import TEXT_ANALYZER, Words, analyzed, path_words
from archiver.search.backend import IndexBusyError, SearchResult, Sort
from archiver.search.documents import SearchDocument, address_tokens
from archiver.search.query import Node
from archiver.search.viewer import Viewer
from archiver.search.whoosh_arrays import NO_DATE, IndexArrays, SegmentArrays
from archiver.search.whoosh_codec import PackedCodec, TermPool
from archiver.search.whoosh_format import CompactPositions, word_postings
from archiver.search.whoosh_matching import SCORED_FIELDS, Matcher
from archiver.search.whoosh_merge import backlog_merge, chosen_for_merge, tiered_merge
from archiver.search.whoosh_storage import MappedStorage
from archiver.search.whoosh_upgrade import add_missing_fields, link_index, upgradable_index

FACET_FIELDS = ("list", "sender_domain")
SCHEMA_VERSION = 9  # bump with every change to _schema() or to what a field holds
# A whoosh writer buffers this much before it writes a segment: fewer, larger segments
# make indexing several times faster than the default.
WRITER_MEMORY_MB = 64
# A full rebuild analyses documents in one process per core (up to four); each buffers this
# much before writing, so peak memory stays a few hundred MB.
REBUILD_PROCS = max(1, min(4, os.cpu_count() or 1))
REBUILD_MEMORY_MB = 64


def _schema() -> fields.Schema:
    """Terms for what queries look up, columns for what they filter, sort and count by.

    Numbers (dates, sizes) are columns only: range filters compare whole arrays, so the
    index needs none of whoosh's per-number trie terms. Word positions, needed for
    phrases, are kept in the compact format for subjects and bodies only.
    """
    positional = {"analyzer": TEXT_ANALYZER, "phrase": True}
    words = {"analyzer": TEXT_ANALYZER, "phrase": False}
    keyword = {"lowercase": True, "commas": True, "scorable": False}
    schema = fields.Schema(
        pk=fields.ID(unique=True),
        pk_column=fields.COLUMN(NumericColumn("q")),
        message_id=fields.ID,
        subject=fields.TEXT(**positional),
        body=fields.TEXT(**positional),
        attachments=fields.TEXT(**words),
        people=fields.TEXT(**words),
        filename=fields.TEXT(**words),
        folder=fields.TEXT(**words),
        from_addr=fields.KEYWORD(**keyword),
        to_addr=fields.KEYWORD(**keyword),
        cc_addr=fields.KEYWORD(**keyword),
        participants=fields.KEYWORD(**keyword),
        list=fields.ID,
        sender_domain=fields.ID,
        date=fields.COLUMN(NumericColumn("q", NO_DATE)),
        size=fields.COLUMN(NumericColumn("q")),
        has_attachment=fields.COLUMN(NumericColumn("B")),
        is_spam=fields.COLUMN(NumericColumn("B")),
        has_virus=fields.COLUMN(NumericColumn("B")),
        marks=fields.KEYWORD(**keyword),
    )
    for name in ("subject", "body"):
        schema[name].format = CompactPositions()
    return schema


class WhooshBackend:
    """`SearchBackend` on a whoosh index under `directory`.

    Each schema version has its own subfolder: an index written with another schema is
    never opened with this one, and `arsip reindex` fills the new folder; an earlier
    version's index that lacks only fields added since is brought up to date in place
    instead (`whoosh_upgrade`).
    """

    def __init__(self, directory: Path, repair: bool = False, derived_files: bool = True) -> None:
        self.directory = directory / f"v{SCHEMA_VERSION}"
        # Per-segment arrays kept as mapped files shared by every process (see
        # `whoosh_derived`); without them each process derives its own in memory.
        self.derived_files = derived_files
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # whoosh searchers are not safe to share unlocked
        self._searcher: Searcher | None = None
        self._arrays: IndexArrays | None = None
        self._segment_arrays: dict[str, SegmentArrays] = {}
        # The schema as this code defines it (the directory's version guarantees the index
        # was made with it): asking the index would read its table of contents from disk.
        self._schema = _schema()
        # Several processes (the worker, a CLI search) may be first to open a new index;
        # an exclusive lock makes exactly one of them create it.
        with open(directory / ".create.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._index, upgraded = _open(directory, self._schema)
            except Exception:
                # A damaged index (cut-off or overwritten files) cannot be opened at all;
                # `arsip reindex` starts an empty one and fills it from the archive.
                if not repair:
                    raise
                self._index, upgraded = _recreate(directory), False
        if upgraded:
            self._remove_old_versions()  # this version's index is full: nothing to rebuild

    def index(self, documents: list[SearchDocument], defer_merges: bool = False) -> None:
        """Add or replace `documents` in one commit.

        One delete for the whole batch, then plain adds: `update_document` would look each
        id up in every segment, which costs more than the indexing itself. With
        `defer_merges` the commit merges a tier only once it holds `BACKLOG_FACTOR`
        segments, and `merge` does the rest (see `whoosh_merge`).
        """
        if not documents:
            return
        writer = self._writer()
        try:
            writer.delete_by_query(wq.Or([wq.Term("pk", str(d.message_pk)) for d in documents]))
            for document in documents:
                _add_document(writer, _fields(document))
        except BaseException:
            writer.cancel()
            raise
        self._commit(writer, mergetype=backlog_merge if defer_merges else tiered_merge)

    def merge(self) -> None:
        """Merge the tiers deferred commits left full, a tier per commit, smallest first."""
        while chosen_for_merge(self._index._segments()):
            self._commit(self._writer())

    def rebuild(self, batches: Iterable[list[SearchDocument]]) -> int:
        """Replace the whole index with these documents (one new segment per process).

        The old index stays searchable until the final commit swaps it out, and the writer
        lock is held throughout, so the live indexer waits rather than interleaving.
        """
        # The service's worker is a daemon process, which may not start processes of its own.
        procs = 1 if multiprocessing.current_process().daemon else REBUILD_PROCS
        writer = self._writer(limitmb=REBUILD_MEMORY_MB, procs=procs)
        count = 0
        try:
            for batch in batches:
                for document in batch:
                    _add_document(writer, _fields(document))
                count += len(batch)
        except BaseException:
            writer.cancel()
            raise
        self._commit(writer, mergetype=CLEAR)
        self._remove_old_versions()
        return count

    def needs_rebuild(self) -> bool:
        """Whether an index of an earlier schema is still here: after an upgrade, this
        version's index has yet to be filled from the archive (see `rebuild`)."""
        return bool(self._old_versions())

    def _remove_old_versions(self) -> None:
        """Indexes written with an earlier schema are of no use once this one is full."""
        for folder in self._old_versions():
            shutil.rmtree(folder, ignore_errors=True)

    def _old_versions(self) -> list[Path]:
        return [
            folder
            for folder in self.directory.parent.glob("v*")
            if folder != self.directory and folder.is_dir() and folder.name[1:].isdigit()
        ]

    def delete(self, message_pks: list[int]) -> None:
        """Remove these messages, with one query: whoosh opens a new searcher for every
        `delete_by_term`, a fifth of a second each on a large index."""
        if not message_pks:
            return
        writer = self._writer()
        try:
            writer.delete_by_query(wq.Or([wq.Term("pk", str(pk)) for pk in message_pks]))
        except BaseException:
            writer.cancel()
            raise
        self._commit(writer)

    def clear(self) -> None:
        """Empty the index, under the writer lock (another writer waits, then goes on)."""
        self._commit(self._writer(), mergetype=CLEAR)

    def _commit(self, writer: IndexWriter, **options: object) -> None:
        """Commit, then remove the derived arrays of segments the commit merged away.

        The one writer owns this clean-up: it alone knows when a segment is gone. Readers
        still searching the previous generation keep the files they have mapped.
        """
        writer.commit(**{"mergetype": tiered_merge, **options})
        segments = {segment.segment_id() for segment in self._index._segments()}
        whoosh_derived.remove_stale(self.directory, segments)

    def search(
        self,
        query: Node | None,
        viewer: Viewer,
        sort: Sort,
        limit: int,
        offset: int,
        exact_total: bool = False,
    ) -> SearchResult:
        """One page of hits, plus the total and facets of everything the viewer may see:
        estimated past EXACT_TOTAL_LIMIT matches unless `exact_total` (see `Matcher.search`).

        Whoosh only stores the index here; `Matcher` answers the query from the index's
        posting lists and columns read as arrays (see `whoosh_matching`).
        """
        with self._lock:
            return Matcher(self._current_arrays(), self._analyze).search(
                query, viewer, sort, limit, offset, exact_total
            )

    def matching(self, query: Node | None) -> list[int]:
        """Every message id `query` matches, from the same arrays as `search`."""
        with self._lock:
            return Matcher(self._current_arrays(), self._analyze).matching(query)

    def _analyze(self, fieldname: str, text: str) -> list[str]:
        return [token.text for token in self._schema[fieldname].analyzer(text)]

    def _current_arrays(self) -> IndexArrays:
        return_large_arrays_to_the_system()
        searcher = self._current_searcher()
        if self._arrays is None or self._arrays.searcher is not searcher:
            self._arrays = IndexArrays(
                searcher,
                tuple(SCORED_FIELDS),
                FACET_FIELDS,
                self._segment_arrays,
                self.directory if self.derived_files else None,
            )
        return self._arrays

    def close(self) -> None:
        """Release the index files."""
        with self._lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None
        self._index.close()

    def _current_searcher(self) -> Searcher:
        """A searcher kept open between searches, refreshed when the index has changed.

        Opening one reads every segment's term tables (a quarter of a second on a large
        archive); `refresh` only re-reads segments that are new since the last search.
        """
        if self._searcher is None:
            self._searcher = self._index.searcher()
        else:
            self._searcher = self._searcher.refresh()
        return self._searcher

    def _writer(self, limitmb: int = WRITER_MEMORY_MB, procs: int = 1) -> IndexWriter:
        try:
            writer = self._index.writer(
                limitmb=limitmb,
                procs=procs,
                multisegment=procs > 1,
                timeout=10.0,
                codec=PackedCodec(),
            )
        except LockError as exc:
            raise IndexBusyError(
                f"the search index in {self.directory} is being written by another process"
            ) from exc
        if procs == 1:
            # Whoosh 2.7 ignores its `poolclass` option; its workers' pools stay its own.
            writer.pool = TermPool()
        return writer


def _open(directory: Path, schema: fields.Schema) -> tuple[index.Index, bool]:
    """The index in `directory`: opened, made from an earlier version's by adding fields
    (`whoosh_upgrade`), or new and empty; and whether it was made from an earlier one."""
    storage = MappedStorage(str(directory))
    earlier = None
    if not index.exists_in(str(directory)):
        earlier = upgradable_index(directory.parent, SCHEMA_VERSION)
        if earlier is not None:
            link_index(earlier, directory)
    if not index.exists_in(str(directory)):
        return storage.create_index(schema), False
    opened = storage.open_index()
    if add_missing_fields(opened, schema, {"codec": PackedCodec(), "timeout": 10.0}):
        opened = storage.open_index()
    return opened, earlier is not None


def _recreate(directory: Path) -> index.Index:
    """Replace a damaged index in `directory` with an empty one, under the writer lock so
    that no live writer loses files it is writing."""
    lock = FileStorage(str(directory)).lock("MAIN_WRITELOCK")  # whoosh's writer lock
    if not lock.acquire(blocking=False):
        raise IndexBusyError(f"the search index in {directory} is being written by another process")
    try:
        for path in directory.iterdir():
            if path.is_file() and not path.name.endswith("LOCK") and path.name != ".create.lock":
                path.unlink()
        return MappedStorage(str(directory)).create_index(_schema())
    finally:
        lock.release()


def _add_document(writer: IndexWriter, values: dict[str, object]) -> None:
    """`writer.add_document(**values)`, with the analysed text fields' postings handed to
    the pool a field at a time (`word_postings`, `TermPool.add_words`).

    Whoosh 2.7.4's `add_document` passes every word of a message through three nested
    generators and a method call; on real mail that was a third of indexing. This is its
    loop for a schema like `_schema()` (no spelling or vector fields; no boosts given),
    with every other field still indexed by whoosh's own `field.index`. A writer of
    several processes (a rebuild) keeps whoosh's own pool and method.
    """
    pool = writer.pool
    if not isinstance(pool, TermPool):
        writer.add_document(**values)
        return
    writer._check_state()
    schema = writer.schema
    docnum = writer.docnum
    perdoc = writer.perdocwriter
    perdoc.start_doc(docnum)
    for name in sorted(values):
        value = values[name]
        field = schema[name]
        length = 0
        if isinstance(value, Words):
            pool.add_words(name, docnum, word_postings(value, field.format))
            length = len(value)
        elif field.indexed:
            for btext, frequency, weight, encoded in field.index(value):
                if field.scorable:
                    length += frequency
                pool.add((name, btext, docnum, weight, encoded))
        perdoc.add_field(name, field, value if field.stored else None, length)
        if field.column_type is not None:
            perdoc.add_column_value(name, field.column_type, field.to_column_value(value))
    perdoc.finish_doc()
    writer._added = True
    writer.docnum += 1


def _fields(document: SearchDocument) -> dict[str, object]:
    """The whoosh fields of a document; empty ones are left out (a column then holds its
    default: no date, no list). Text is handed over as `Words`, analysed here at once
    rather than word by word through whoosh's analyzer (same words, same positions)."""
    values: dict[str, object] = {
        "pk": str(document.message_pk),
        "pk_column": document.message_pk,
        "message_id": document.message_id,
        "subject": analyzed(document.subject),
        "body": analyzed(document.body),
        "attachments": analyzed(document.attachment_text),
        "people": analyzed(" ".join([*document.names, *address_tokens(document.addresses)])),
        "filename": analyzed(" ".join(document.filenames)),
        "folder": analyzed(path_words(" ".join(document.folders))),
        "from_addr": ",".join(address_tokens(document.from_addresses)),
        "to_addr": ",".join(address_tokens(document.to_addresses)),
        "cc_addr": ",".join(address_tokens(document.cc_addresses)),
        "participants": ",".join(sorted(document.participants)),
        "list": (document.list_id or "").lower(),
        "sender_domain": document.sender_domain,
        "date": int(document.date.timestamp()) if document.date else None,
        "size": document.size,
        "has_attachment": int(document.has_attachment),
        "is_spam": int(document.is_spam),
        "has_virus": int(document.has_virus),
        "marks": ",".join(document.marks),
    }
    return {name: value for name, value in values.items() if value not in ("", (), None)}
