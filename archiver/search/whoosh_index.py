"""The embedded search backend: a whoosh index under the data directory.

Whoosh allows one writer at a time, so exactly one process (the spool worker child of
`arsip serve`, or `arsip reindex`) writes; any process may search. Text is folded to
lower case without accents and stemmed; bodies are not stored in the index (snippets are
cut from the archive's own copy), which keeps the index smaller than the mail it covers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from whoosh import fields, index, sorting
from whoosh import query as wq
from whoosh.analysis import CharsetFilter, StemmingAnalyzer
from whoosh.searching import Searcher
from whoosh.support.charset import accent_map
from whoosh.writing import CLEAR, IndexWriter, LockError

from archiver.search.backend import FACETS, Hit, SearchResult, Sort
from archiver.search.documents import SearchDocument, address_tokens
from archiver.search.query import (
    Address,
    And,
    DateRange,
    HasAttachment,
    Node,
    Not,
    Or,
    Phrase,
    SizeRange,
    Word,
)
from archiver.search.viewer import Viewer

TEXT_ANALYZER = StemmingAnalyzer(stoplist=None) | CharsetFilter(accent_map)
TEXT_FIELDS = ("subject", "body", "attachments", "people")
ADDRESS_FIELDS = {"from": "from_addr", "to": "to_addr", "cc": "cc_addr"}
# A whoosh writer buffers this much before it writes a segment: fewer, larger segments
# make indexing several times faster than the default.
SCHEMA_VERSION = 2  # bump with every change to _schema()
WRITER_MEMORY_MB = 64
# A full rebuild analyses documents in one process per core (up to four); each buffers this
# much before writing, so peak memory stays a few hundred MB.
REBUILD_PROCS = max(1, min(4, os.cpu_count() or 1))
REBUILD_MEMORY_MB = 64


class IndexBusyError(RuntimeError):
    """Another process is writing the whoosh index (only one writer may)."""


def _schema() -> fields.Schema:
    text = {"analyzer": TEXT_ANALYZER, "phrase": True}
    keyword = {"lowercase": True, "commas": True, "scorable": False}
    return fields.Schema(
        pk=fields.NUMERIC(int, bits=64, stored=True, unique=True),
        message_id=fields.ID,
        subject=fields.TEXT(field_boost=2.0, **text),
        body=fields.TEXT(**text),
        # No word positions where phrases matter little: they are most of an index's size.
        attachments=fields.TEXT(analyzer=TEXT_ANALYZER, phrase=False),
        people=fields.TEXT(analyzer=TEXT_ANALYZER, phrase=False),
        filename=fields.TEXT(analyzer=TEXT_ANALYZER, phrase=False),
        from_addr=fields.KEYWORD(**keyword),
        to_addr=fields.KEYWORD(**keyword),
        cc_addr=fields.KEYWORD(**keyword),
        participants=fields.KEYWORD(**keyword),
        list=fields.ID(sortable=True),
        sender_domain=fields.ID(sortable=True),
        year=fields.NUMERIC(int, sortable=True),
        date=fields.DATETIME(stored=True, sortable=True),
        # Day numbers for date filters: a range over seconds would union a term per
        # distinct timestamp, a range over days a few dozen.
        day=fields.NUMERIC(int, bits=32),  # signed: whoosh's unsigned ranges are wrong
        size=fields.NUMERIC(int, bits=64, sortable=True),
        has_attachment=fields.BOOLEAN,
    )


class WhooshBackend:
    """`SearchBackend` on a whoosh index under `directory`.

    Each schema version has its own subfolder: an index written with another schema is
    never opened with this one, and `arsip reindex` fills the new folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory / f"v{SCHEMA_VERSION}"
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # whoosh searchers are not safe to share unlocked
        self._searcher: Searcher | None = None
        self._facet_cache: _FacetColumns | None = None
        # Several processes (the worker, a CLI search) may be first to open a new index;
        # an exclusive lock makes exactly one of them create it.
        with open(directory / ".create.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if index.exists_in(str(directory)):
                self._index = index.open_dir(str(directory))
            else:
                self._index = index.create_in(str(directory), _schema())

    def index(self, documents: list[SearchDocument]) -> None:
        """Add or replace `documents` in one commit.

        One delete for the whole batch, then plain adds: `update_document` would look each
        id up in every segment, which costs more than the indexing itself.
        """
        if not documents:
            return
        writer = self._writer()
        try:
            writer.delete_by_query(wq.Or([wq.Term("pk", d.message_pk) for d in documents]))
            for document in documents:
                writer.add_document(**_fields(document))
        except BaseException:
            writer.cancel()
            raise
        writer.commit()

    def rebuild(self, batches: Iterable[list[SearchDocument]]) -> int:
        """Replace the whole index with these documents (one new segment per process).

        The old index stays searchable until the final commit swaps it out, and the writer
        lock is held throughout, so the live indexer waits rather than interleaving.
        """
        writer = self._writer(limitmb=REBUILD_MEMORY_MB, procs=REBUILD_PROCS)
        count = 0
        try:
            for batch in batches:
                for document in batch:
                    writer.add_document(**_fields(document))
                count += len(batch)
        except BaseException:
            writer.cancel()
            raise
        writer.commit(mergetype=CLEAR)
        self._remove_old_versions()
        return count

    def _remove_old_versions(self) -> None:
        """Indexes written with an earlier schema are of no use once this one is full."""
        for folder in self.directory.parent.glob("v*"):
            if folder != self.directory and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)

    def delete(self, message_pks: list[int]) -> None:
        """Remove these messages."""
        if not message_pks:
            return
        writer = self._writer()
        for pk in message_pks:
            writer.delete_by_term("pk", pk)
        writer.commit()

    def clear(self) -> None:
        """Empty the index, under the writer lock (another writer waits, then goes on)."""
        self._writer().commit(mergetype=CLEAR)

    def search(
        self, query: Node | None, viewer: Viewer, sort: Sort, limit: int, offset: int
    ) -> SearchResult:
        """One page of hits, plus the total and facets of everything the viewer may see.

        The page comes from whoosh's top-N search, which skips blocks of postings that
        cannot reach the page; the total and the facets come from one unscored pass over
        the matching document numbers, counted against facet columns cached per searcher.
        Asking whoosh to facet while it scores would score every match in Python.
        """
        whoosh_query = self._translate(query)
        visible = None if viewer.sees_all else _visibility(viewer)
        sortedby = sorting.FieldFacet("date", reverse=True) if sort is Sort.DATE else None
        with self._lock:
            searcher = self._current_searcher()
            results = searcher.search(
                whoosh_query, filter=visible, limit=offset + limit, sortedby=sortedby
            )
            hits = [
                Hit(int(hit["pk"]), float(hit.score or 0.0), _aware(hit.get("date")))
                for hit in results[offset : offset + limit]
            ]
            counted = whoosh_query if visible is None else wq.And([whoosh_query, visible])
            total, facets = self._facets(searcher).count(searcher.docs_for_query(counted))
            return SearchResult(total=total, hits=hits, facets=facets)

    def _facets(self, searcher: Searcher) -> _FacetColumns:
        if self._facet_cache is None or self._facet_cache.searcher is not searcher:
            self._facet_cache = _FacetColumns(searcher)
        return self._facet_cache

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
            return self._index.writer(
                limitmb=limitmb, procs=procs, multisegment=procs > 1, timeout=10.0
            )
        except LockError as exc:
            raise IndexBusyError(
                f"the search index in {self.directory} is being written by another process"
            ) from exc

    def _translate(self, node: Node | None) -> wq.Query:
        if node is None:
            return wq.Every()
        return _translate(node, self._index.schema)


class _FacetColumns:
    """The facet fields of every document, read once per searcher into plain lists."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        reader = searcher.reader()
        self.columns = {
            name: list(reader.column_reader(name)) if reader.has_column(name) else []
            for name in FACETS
        }

    def count(self, docnums: Iterable[int]) -> tuple[int, dict[str, dict[str, int]]]:
        """How many documents, and how many per value of each facet."""
        counters: dict[str, Counter[object]] = {name: Counter() for name in FACETS}
        columns = [(counters[name], self.columns[name]) for name in FACETS]
        total = 0
        for docnum in docnums:
            total += 1
            for counter, column in columns:
                counter[column[docnum]] += 1
        return total, {
            name: {_facet_key(key): n for key, n in counter.items() if key}
            for name, counter in counters.items()
        }


def _facet_key(key: object) -> str:
    return key.decode("utf-8") if isinstance(key, bytes) else str(key)


def _fields(document: SearchDocument) -> dict[str, object]:
    return {
        "pk": document.message_pk,
        "message_id": document.message_id,
        "subject": document.subject,
        "body": document.body,
        "attachments": document.attachment_text,
        "people": " ".join([*document.names, *address_tokens(document.participants)]),
        "filename": " ".join(document.filenames),
        "from_addr": ",".join(address_tokens(document.from_addresses)),
        "to_addr": ",".join(address_tokens(document.to_addresses)),
        "cc_addr": ",".join(address_tokens(document.cc_addresses)),
        "participants": ",".join(sorted(document.participants)),
        "list": (document.list_id or "").lower(),
        "sender_domain": document.sender_domain,
        "year": document.date.year if document.date else 0,
        "date": _naive(document.date),
        "day": document.date.toordinal() if document.date else 0,
        "size": document.size,
        "has_attachment": document.has_attachment,
    }


def _visibility(viewer: Viewer) -> wq.Query:
    terms: list[wq.Query] = [wq.Term("participants", a) for a in sorted(viewer.addresses)]
    terms += [wq.Term("list", list_id) for list_id in sorted(viewer.readable_lists)]
    return wq.Or(terms) if terms else wq.NullQuery


def _words(schema: fields.Schema, fieldname: str, text: str) -> list[str]:
    return [token.text for token in schema[fieldname].analyzer(text)]


def _text_query(schema: fields.Schema, fieldname: str, text: str, phrase: bool) -> wq.Query:
    words = _words(schema, fieldname, text)
    if not words:
        return wq.Every()
    if len(words) == 1:
        return wq.Term(fieldname, words[0])
    if phrase and schema[fieldname].format.supports("positions"):
        return wq.Phrase(fieldname, words)
    return wq.And([wq.Term(fieldname, word) for word in words])


def _translate(node: Node, schema: fields.Schema) -> wq.Query:
    match node:
        case Word(text=text, field=None) | Phrase(text=text, field=None):
            phrase = isinstance(node, Phrase)
            return wq.Or([_text_query(schema, name, text, phrase) for name in TEXT_FIELDS])
        case (
            Word(text=text, field="subject" | "filename" as name)
            | Phrase(text=text, field="subject" | "filename" as name)
        ):
            return _text_query(schema, name, text, isinstance(node, Phrase))
        case Word(text=text, field="list") | Phrase(text=text, field="list"):
            return wq.Term("list", text.lower())
        case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
            return wq.Term("message_id", text.lower().strip("<>"))
        case Word(text=text) | Phrase(text=text):
            return _text_query(schema, "body", text, isinstance(node, Phrase))
        case Address(field=name, value=value):
            return wq.Term(ADDRESS_FIELDS[name], value.lower())
        case HasAttachment():
            return wq.Term("has_attachment", True)
        case DateRange(start=start, end=end):
            first = start.toordinal() if start else None
            last = end.toordinal() if end else None
            return wq.NumericRange("day", first, last, startexcl=False, endexcl=True)
        case SizeRange(minimum=minimum, maximum=maximum):
            return wq.NumericRange("size", minimum, maximum, startexcl=False, endexcl=True)
        case Not(node=inner):
            return wq.And([wq.Every(), wq.Not(_translate(inner, schema))])
        case And(nodes=nodes):
            return wq.And([_translate(child, schema) for child in nodes])
        case Or(nodes=nodes):
            return wq.Or([_translate(child, schema) for child in nodes])
    raise TypeError(f"unknown query node {node!r}")


def _naive(moment: datetime | None) -> datetime | None:
    """Whoosh compares naive datetimes; the archive's are aware UTC."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)
