"""The scale-out search backend: PostgreSQL full text search in the archive's own database.

One row per message in `search_documents`: a weighted tsvector (subject, people, body,
attachments) and a subject tsvector, both with GIN indexes, plus arrays of address tokens
(GIN too) for `from:`/`to:`/`cc:` and the viewer filter, and an unindexed vector of
subject and body words as written, so that exact forms rank first. Text is folded (lower case,
accents removed) in Python before PostgreSQL stems it with the `english` configuration, so
the `unaccent` extension is not needed and whoosh and PostgreSQL fold words alike.

The table lives outside the ORM models because it exists only on PostgreSQL; its
migrations (0002, 0003, 0010) create it there and nowhere else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime, time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR, insert
from sqlalchemy.sql.elements import ColumnElement

from archiver.models import Message
from archiver.search.backend import Hit, SearchResult, Sort
from archiver.search.documents import SearchDocument, address_tokens
from archiver.search.query import (
    Address,
    And,
    DateRange,
    HasAttachment,
    HasVirus,
    IsSpam,
    Node,
    Not,
    Or,
    Phrase,
    SizeRange,
    Word,
    words_to_highlight,
)
from archiver.search.viewer import Viewer

CONFIG = "english"
EXACT_CONFIG = "simple"  # words as written, for the exact-form bonus
EXACT_BONUS = 0.5  # weight of an exact-form match next to the stemmed rank
_NON_WORD = re.compile(r"[^\w]+")
# A tsvector holds at most 1 MB; text past this adds little to finding a message.
TEXT_LIMIT = 200_000

# Untyped literals: PostgreSQL resolves them to setweight's "char" argument.
_WEIGHT_A, _WEIGHT_B, _WEIGHT_D = (literal_column(f"'{w}'") for w in "ABD")

metadata = MetaData()

search_documents = Table(
    "search_documents",
    metadata,
    Column(
        "message_pk",
        BigInteger,
        ForeignKey(Message.__table__.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("document", TSVECTOR, nullable=False),
    Column("subject", TSVECTOR, nullable=False),
    Column("filenames", TSVECTOR, nullable=False),
    # Subject and body words as written (no stemming, no positions): ranking only.
    Column("exact", TSVECTOR),
    Column("from_tokens", ARRAY(Text), nullable=False),
    Column("to_tokens", ARRAY(Text), nullable=False),
    Column("cc_tokens", ARRAY(Text), nullable=False),
    Column("participants", ARRAY(Text), nullable=False),
    Column("message_id", Text, nullable=False),
    Column("list_id", Text),
    Column("sender_domain", String(255), nullable=False),
    Column("year", Integer, nullable=False),
    Column("date", DateTime, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("has_attachment", Boolean, nullable=False),
    # The content checks' verdict (migration 0010): spamd's, and whether clamd found a virus.
    Column("is_spam", Boolean, nullable=False, server_default=false()),
    Column("has_virus", Boolean, nullable=False, server_default=false()),
)
T = search_documents.c
for _name in (
    "document",
    "subject",
    "filenames",
    "from_tokens",
    "to_tokens",
    "cc_tokens",
    "participants",
):
    Index(f"ix_search_documents_{_name}", T[_name], postgresql_using="gin")
for _name in ("message_id", "list_id", "date"):
    Index(f"ix_search_documents_{_name}", T[_name])
# Flagged mail is a small part of an archive: partial indexes find it without a scan.
for _name in ("is_spam", "has_virus"):
    Index(f"ix_search_documents_{_name}", T.date, postgresql_where=T[_name])


def fold(text: str) -> str:
    """Lower case without accents, as the whoosh analyzer folds: Grüße -> grusse."""
    decomposed = unicodedata.normalize("NFKD", text[:TEXT_LIMIT].lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("\x00", "")


class PostgresBackend:
    """`SearchBackend` on PostgreSQL full text search."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def index(self, documents: list[SearchDocument]) -> None:
        """Upsert the documents in one transaction."""
        if not documents:
            return
        rows = [_row(document) for document in documents]
        statement = insert(search_documents).values(
            message_pk=_param("message_pk"),
            document=func.setweight(func.to_tsvector(CONFIG, _param("subject_text")), _WEIGHT_A)
            .op("||")(func.setweight(func.to_tsvector(CONFIG, _param("people_text")), _WEIGHT_B))
            .op("||")(func.to_tsvector(CONFIG, _param("body_text")))
            .op("||")(
                func.setweight(func.to_tsvector(CONFIG, _param("attachment_text")), _WEIGHT_D)
            ),
            subject=func.to_tsvector(CONFIG, _param("subject_text")),
            filenames=func.to_tsvector(CONFIG, _param("filename_text")),
            exact=func.strip(
                func.to_tsvector(EXACT_CONFIG, _param("subject_text")).op("||")(
                    func.to_tsvector(EXACT_CONFIG, _param("body_text"))
                )
            ),
            **{name: _param(name) for name in _PLAIN},
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[T.message_pk],
            set_={name: statement.excluded[name] for name in _UPDATED},
        )
        with self.engine.begin() as connection:
            connection.execute(upsert, rows)

    def delete(self, message_pks: list[int]) -> None:
        """Remove these messages."""
        if message_pks:
            with self.engine.begin() as connection:
                connection.execute(search_documents.delete().where(T.message_pk.in_(message_pks)))

    def rebuild(self, batches: Iterable[list[SearchDocument]]) -> int:
        """Replace every document: clear, then index batch by batch."""
        self.clear()
        count = 0
        for batch in batches:
            self.index(batch)
            count += len(batch)
        return count

    def needs_rebuild(self) -> bool:
        """Never: migrations carry the table forward."""
        return False

    def clear(self) -> None:
        """Remove every document."""
        with self.engine.begin() as connection:
            connection.execute(search_documents.delete())

    def search(
        self, query: Node | None, viewer: Viewer, sort: Sort, limit: int, offset: int
    ) -> SearchResult:
        """One page, the total and the facets, all under the viewer's filter."""
        condition = true() if query is None else _condition(query)
        if not viewer.sees_all:
            condition = and_(condition, _visibility(viewer))
        words = words_to_highlight(query)
        order = [T.date.desc(), T.message_pk.desc()]
        score = literal(0.0)
        if words and sort is Sort.RELEVANCE:
            typed = fold(" ".join(words))
            score = func.ts_rank_cd(T.document, func.plainto_tsquery(CONFIG, typed)) + (
                func.coalesce(func.ts_rank(T.exact, func.plainto_tsquery(EXACT_CONFIG, typed)), 0.0)
                * EXACT_BONUS
            )
            order = [score.desc(), *order]
        page = (
            select(T.message_pk, score.label("score"), T.date)
            .where(condition)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as connection:
            hits = [
                Hit(pk, float(value or 0.0), moment.replace(tzinfo=UTC))
                for pk, value, moment in connection.execute(page)
            ]
            total = connection.scalar(select(func.count()).where(condition)) or 0
            facets = {
                name: {
                    str(key): count
                    for key, count in connection.execute(
                        select(column, func.count()).where(condition).group_by(column)
                    )
                    if key
                }
                for name, column in (
                    ("list", T.list_id),
                    ("sender_domain", T.sender_domain),
                    ("year", T.year),
                )
            }
        return SearchResult(total=total, hits=hits, facets=facets)

    def matching(self, query: Node | None) -> list[int]:
        """Every message id `query` matches, straight from the documents table."""
        condition = true() if query is None else _condition(query)
        with self.engine.connect() as connection:
            return list(connection.scalars(select(T.message_pk).where(condition)))

    def close(self) -> None:
        """Nothing to release: connections belong to the engine's pool."""


_PLAIN = (
    "from_tokens",
    "to_tokens",
    "cc_tokens",
    "participants",
    "message_id",
    "list_id",
    "sender_domain",
    "year",
    "date",
    "size",
    "has_attachment",
    "is_spam",
    "has_virus",
)
_UPDATED = ("document", "subject", "filenames", "exact", *_PLAIN)


def _param(name: str) -> ColumnElement[object]:
    return bindparam(name)


def _row(document: SearchDocument) -> dict[str, object]:
    moment = (document.date or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return {
        "message_pk": document.message_pk,
        "subject_text": fold(document.subject),
        "people_text": fold(" ".join([*document.names, *address_tokens(document.participants)])),
        "body_text": fold(document.body),
        "attachment_text": fold(document.attachment_text),
        # Split names at punctuation as whoosh does ("budget-2026.csv" -> budget 2026 csv);
        # PostgreSQL's parser would keep it whole as a file name.
        "filename_text": _NON_WORD.sub(" ", fold(" ".join(document.filenames))),
        "from_tokens": address_tokens(document.from_addresses),
        "to_tokens": address_tokens(document.to_addresses),
        "cc_tokens": address_tokens(document.cc_addresses),
        "participants": sorted(document.participants),
        "message_id": document.message_id,
        "list_id": (document.list_id or "").lower() or None,
        "sender_domain": document.sender_domain,
        "year": moment.year,
        "date": moment,
        "size": document.size,
        "has_attachment": document.has_attachment,
        "is_spam": document.is_spam,
        "has_virus": document.has_virus,
    }


def _visibility(viewer: Viewer) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if viewer.addresses:
        clauses.append(T.participants.overlap(sorted(viewer.addresses)))
    if viewer.readable_lists:
        clauses.append(T.list_id.in_(sorted(viewer.readable_lists)))
    return or_(*clauses) if clauses else false()


def _text(column: ColumnElement[object], text: str, phrase: bool) -> ColumnElement[bool]:
    builder = func.phraseto_tsquery if phrase else func.plainto_tsquery
    return column.bool_op("@@")(builder(CONFIG, fold(text)))


def _condition(node: Node) -> ColumnElement[bool]:
    match node:
        case Word(text=text, field=None) | Phrase(text=text, field=None):
            return _text(T.document, text, isinstance(node, Phrase))
        case Word(text=text, field="subject") | Phrase(text=text, field="subject"):
            return _text(T.subject, text, isinstance(node, Phrase))
        case Word(text=text, field="filename") | Phrase(text=text, field="filename"):
            return _text(T.filenames, _NON_WORD.sub(" ", text), isinstance(node, Phrase))
        case Word(text=text, field="list") | Phrase(text=text, field="list"):
            return T.list_id == text.lower()
        case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
            return T.message_id == text.lower().strip("<>")
        case Word(text=text) | Phrase(text=text):
            return _text(T.document, text, isinstance(node, Phrase))
        case Address(field=name, value=value):
            column = {"from": T.from_tokens, "to": T.to_tokens, "cc": T.cc_tokens}[name]
            return column.contains([value.lower()])
        case HasAttachment():
            return T.has_attachment.is_(True)
        case IsSpam():
            return T.is_spam  # as the partial index's predicate reads, so it is used
        case HasVirus():
            return T.has_virus
        case DateRange(start=start, end=end):
            bounds = [T.date >= _day(start)] if start else []
            bounds += [T.date < _day(end)] if end else []
            return and_(true(), *bounds)
        case SizeRange(minimum=minimum, maximum=maximum):
            bounds = [T.size >= minimum] if minimum is not None else []
            bounds += [T.size < maximum] if maximum is not None else []
            return and_(true(), *bounds)
        case Not(node=inner):
            return not_(_condition(inner))
        case And(nodes=nodes):
            return and_(*(_condition(child) for child in nodes))
        case Or(nodes=nodes):
            return or_(*(_condition(child) for child in nodes))
    raise TypeError(f"unknown query node {node!r}")


def _day(day: date) -> datetime:
    return datetime.combine(day, time())
