"""The scale-out search backend: PostgreSQL full text search in the archive's own database.

One row per message in `search_documents`: a weighted tsvector (subject, people, body,
attachments, and who may read it) with a RUM index where the server has the extension (GIN
otherwise), a subject tsvector, arrays of address tokens (GIN) for `from:`/`to:`/`cc:`, and
an unindexed vector of subject and body words as written, so that exact forms rank first.

The viewer filter is a tsquery over the vector's access lexemes (migration 0027: `'p
<address>'` for each address that grants access, `'l <list id>'` for the list), so the one
index intersects a person's mail with a search's words, skipping through the longer of the
two as Xapian does with boolean filter terms, where two indexes would each read all of theirs.

Text is folded (lower case, accents removed) in Python before PostgreSQL stems it with the
`arsip_english` configuration (`english` without a stop word list, as whoosh keeps every
word), so the `unaccent` extension is not needed and both backends match the same words.
Indonesian roots come from Python too (`indonesian.root_of`, which keeps English words
whole): each word whose root differs from it adds the lexeme `'id <root>'` at its own
positions (`arsip_search_vector`, migration 0018), and a query word matches its English
stem, its root's lexeme or its root's English stem (`analysis.QueryStems`).

The table is partitioned by the month of the message date (migration 0012): retention
deletes and vacuum work on the months concerned, a month's search reads one partition, a
new month's partition is made by the first indexer that needs it, and one that deletions
leave empty is dropped (`delete` says why).

Ranking: with RUM, the index hands rows over in rank order (`<=>`), so a page reads the best
few hundred candidates from the index and re-scores only those with the full formula; with
GIN the score is computed from every matching row. A search matching more than `RANK_WINDOW`
messages is ranked among its newest matches (`_rank_window`), since RUM scores every match it
orders. Counting stops at `EXACT_TOTAL_LIMIT` matches: past it the total and the facets are
PostgreSQL's estimates unless the exact figures are asked for.

Searches may run on a streaming replica (`ARSIP_DATABASE_REPLICA_URL`); writes, and the
retention's `matching`, always go to the primary, and so does a search the replica cancels
while it replays the primary's changes.

The table lives outside the ORM models because it exists only on PostgreSQL; its
migrations (0002, 0003, 0010, 0012, 0025) create it there and nowhere else.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import Enum
from functools import partial
from time import monotonic

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
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
    cast,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY, TSVECTOR, insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from archiver.models import Message
from archiver.search.analysis import analyzed, path_words, query_stems
from archiver.search.backend import EXACT_TOTAL_LIMIT, Hit, SearchResult, Sort
from archiver.search.documents import SearchDocument, address_tokens
from archiver.search.indonesian import changed_roots, root_of
from archiver.search.query import (
    Address,
    And,
    DateRange,
    HasAttachment,
    HasVirus,
    IsMarked,
    IsSpam,
    Node,
    Not,
    Or,
    Participant,
    Phrase,
    SizeRange,
    Word,
    words_to_highlight,
)
from archiver.search.viewer import Viewer

log = logging.getLogger(__name__)

CONFIG = "arsip_english"  # migration 0012: english stems, no stop words
VECTOR = "arsip_search_vector"  # migration 0018: CONFIG's vector plus Indonesian roots
EXACT_CONFIG = "simple"  # words as written, for the exact-form bonus
EXACT_BONUS = 0.5  # weight of an exact-form match next to the stemmed rank
_NON_WORD = re.compile(r"[^\w]+")
RERANK = 200  # candidates taken in RUM rank order beyond the page, then scored in full
RANK_WINDOW = 20_000  # a search matching more is ranked among its newest this many
# The same for a person's search, smaller: measured at a million messages, a window of
# 20,000 made a person's common word 1.5 times as slow (p50 62 -> 96 ms).
VIEWER_RANK_WINDOW = 1_000
# A phrase is checked on word positions in every message holding all its words: at a
# million messages, two common words ("for date") have some 300,000 such candidates, a
# fifth of a second to check. So it is ranked, and its total counted, among its newest
# candidates, this many as the planner estimates them (`_counted` scales the count).
PHRASE_WINDOW = 10_000
PHRASE_SAMPLE = 20  # fewer matches than this in that window: count them all
# Knowing that a search matches more than EXACT_TOTAL_LIMIT messages costs reading that
# many of its rows, scattered over the table: about 100 ms for a person's common word at a
# million messages, several times that when they are not in memory. A search the planner
# puts past SAMPLED_TOTAL is counted among the newest months that hold about COUNT_SAMPLE
# of its matches, its matches per estimated row scaling the estimate (as a phrase's sample
# does); where that comes to less than SAMPLED_TOTAL it is counted in full, so a total
# under the limit stays exact.
SAMPLED_TOTAL = 2 * EXACT_TOTAL_LIMIT
COUNT_SAMPLE = 2_000
# Where the rest of a search leaves at most this many rows, a phrase is checked on them
# (each row's vector read from TOAST, 7 to 30 µs) rather than in the index, where its
# candidates may be a hundred times as many (a sender's mail in every month, against the
# messages with "so" and "of").
ROW_CHECK_LIMIT = 2_000


class PhraseCheck(Enum):
    """How a search checks the phrases (and words) of the message text it asks for."""

    # The index is asked for the phrase's words together as well, and walks them side by
    # side, skipping through a common word's entries by a rare one's, instead of checking
    # the common word's positions in every message that has it (at a million messages,
    # `"on languages"` took 210 ms that way, now 17; for an ordinary user 545 ms, now 31:
    # the mail a person may read narrows the candidates too little to help).
    WITH_WORDS = "with words"
    # The phrase alone: the fields besides the message text (subject, file names,
    # folders), whose few words per message make checking positions cheap.
    IN_INDEX = "in index"
    # The rest of the search leaves at most ROW_CHECK_LIMIT rows: checked on each of them.
    ON_ROWS = "on rows"


FIRST_MONTH = datetime(1990, 1, 1)  # older dates share the partition `search_documents_older`
OLDER = date.min  # the month `_month` gives those dates
REPLICA_RETRY = 30  # seconds searches stay on the primary after the replica failed
# The SQLSTATEs of a query a hot standby cancels as it replays the primary's changes:
# a snapshot or lock conflict, a deadlock with the replay, the database dropped.
RECOVERY_CONFLICTS = frozenset({"40001", "40P01", "57P04"})
_PARTITION_LOCK = 0x61727369  # advisory lock key: one process at a time adds partitions
# A tsvector holds at most 1 MB; text past this adds little to finding a message.
TEXT_LIMIT = 200_000

# Untyped literals: PostgreSQL resolves them to setweight's "char" argument.
_WEIGHT_A, _WEIGHT_B, _WEIGHT_D = (literal_column(f"'{w}'") for w in "ABD")

metadata = MetaData()

search_documents = Table(
    "search_documents",
    metadata,
    # The partition key must be in the primary key; a message's date never changes.
    Column(
        "message_pk",
        BigInteger,
        ForeignKey(Message.__table__.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("document", TSVECTOR, nullable=False),
    Column("subject", TSVECTOR, nullable=False),
    Column("filenames", TSVECTOR, nullable=False),
    # The folders imports found the message in (migration 0025), words as in `filenames`.
    Column("folders", TSVECTOR, nullable=False, server_default=text("''::tsvector")),
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
    Column("date", DateTime, nullable=False, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("has_attachment", Boolean, nullable=False),
    # The content checks' verdict (migration 0010): spamd's, and whether clamd found a virus.
    Column("is_spam", Boolean, nullable=False, server_default=false()),
    Column("has_virus", Boolean, nullable=False, server_default=false()),
    # The flags `is:` finds (migration 0013): `is:duplicate-id`, `is:postmaster`.
    Column("marks", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    postgresql_partition_by="RANGE (date)",
)
T = search_documents.c
for _name in (
    "document",
    "subject",
    "filenames",
    "folders",
    "from_tokens",
    "to_tokens",
    "cc_tokens",
    "participants",
    "marks",
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
    """`SearchBackend` on PostgreSQL full text search.

    `read_engine` (a streaming replica) answers `search`; when it cannot be reached, the
    primary answers and one line says so, and when it cancels a search to replay the
    primary's changes, the primary answers that search.
    """

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self._months: set[date] = set()  # partitions known to exist
        self._rum: dict[Engine, bool] = {}
        self._replica_retry = 0.0  # monotonic time before which the replica is not tried

    def index(self, documents: list[SearchDocument], defer_merges: bool = False) -> None:
        """Upsert the documents in one transaction, adding the months' partitions first
        (PostgreSQL merges nothing: `defer_merges` changes nothing)."""
        if not documents:
            return
        rows = [_row(document) for document in documents]
        dates: list[datetime] = [row["date"] for row in rows]  # type: ignore[misc]
        months = {_month(moment) for moment in dates}
        self._add_partitions(months)
        statement = insert(search_documents).values(
            message_pk=_param("message_pk"),
            document=func.setweight(_vector("subject"), _WEIGHT_A)
            .op("||")(func.setweight(_vector("people"), _WEIGHT_B))
            .op("||")(_vector("body"))
            .op("||")(func.setweight(_vector("attachment"), _WEIGHT_D))
            .op("||")(
                func.arsip_access_vector(
                    bindparam("participants", type_=ARRAY(Text)), bindparam("list_id")
                )
            ),
            subject=_vector("subject"),
            filenames=_vector("filename"),
            folders=_vector("folder"),
            exact=func.strip(
                func.to_tsvector(EXACT_CONFIG, _param("subject_text")).op("||")(
                    func.to_tsvector(EXACT_CONFIG, _param("body_text"))
                )
            ),
            **{name: _param(name) for name in _PLAIN},
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[T.message_pk, T.date],
            set_={name: statement.excluded[name] for name in _UPDATED},
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(upsert, rows)
        except IntegrityError:
            # Another process dropped a month it found empty (see `delete`) after this one
            # had seen it: make it again, once.
            self._months.clear()
            self._add_partitions(months)
            with self.engine.begin() as connection:
                connection.execute(upsert, rows)

    def _add_partitions(self, months: set[date]) -> None:
        """Create the partitions of `months` that do not exist yet, in a short transaction
        of their own: creating one locks the whole table, so no batch of rows waits inside."""
        missing = months - self._months
        if not missing:
            return
        with self.engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(_PARTITION_LOCK)))
            for month in sorted(missing):
                if month == OLDER:
                    name, bounds = "older", f"(MINVALUE) TO ('{FIRST_MONTH:%Y-%m-%d}')"
                else:
                    end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
                    name, bounds = f"{month:y%Ym%m}", f"('{month}') TO ('{end}')"
                connection.exec_driver_sql(
                    f"CREATE TABLE IF NOT EXISTS search_documents_{name} "
                    f"PARTITION OF search_documents FOR VALUES FROM {bounds}"
                )
        self._months |= missing

    def merge(self) -> None:
        """Nothing is put off: tables and indexes take rows as they come."""

    def delete(self, message_pks: list[int]) -> None:
        """Remove these messages, and drop the months' partitions they leave empty.

        Retention empties whole months, and rum 1.3.13 (Debian's, PostgreSQL 15) crashes the
        server process that scans a RUM index whose every entry vacuum has removed: an empty
        month is dropped instead (a later message of that month makes it again). Most rows
        are gone already when this runs (deleting a message cascades), so every partition
        is checked, which costs a millisecond or two.
        """
        with self.engine.begin() as connection:
            if message_pks:
                connection.execute(search_documents.delete().where(T.message_pk.in_(message_pks)))
            _drop_empty_partitions(connection)
        self._months.clear()

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
        """Remove every document (TRUNCATE: each partition's files are replaced at once,
        where a DELETE would leave the whole table to vacuum)."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE search_documents")

    def search(
        self,
        query: Node | None,
        viewer: Viewer,
        sort: Sort,
        limit: int,
        offset: int,
        exact_total: bool = False,
    ) -> SearchResult:
        """One page, the total and the facets, all under the viewer's filter; on the
        replica when there is one. Past `EXACT_TOTAL_LIMIT` matches the total and the facets
        are estimates unless `exact_total`."""
        words = words_to_highlight(query) if sort is Sort.RELEVANCE else []
        args = (query, viewer, words, limit, offset, exact_total)
        with self._reader() as connection:
            try:
                return self._search_on(connection, *args)
            except OperationalError as exc:
                if connection.engine is self.engine or _sqlstate(exc) not in RECOVERY_CONFLICTS:
                    raise
                # The replica gave way to the primary's changes it replays (a new month's
                # partition, an empty one dropped, a vacuum): the primary answers this one.
                log.info("search cancelled on the replica (%s); asked the primary", _reason(exc))
        with self.engine.connect() as connection:
            return self._search_on(connection, *args)

    def _search_on(
        self,
        connection: Connection,
        query: Node | None,
        viewer: Viewer,
        words: list[str],
        limit: int,
        offset: int,
        exact_total: bool,
    ) -> SearchResult:
        """`search` on one connection, to the replica or to the primary.

        A phrase costs a check of word positions in every message holding its words (its
        candidates); `PhraseCheck` says how each search does it. Unless the rest of the
        search leaves only a few rows, the phrase is also ranked and counted among its
        newest candidates (`PHRASE_WINDOW`), of the mail the rest of the search leaves.
        """
        phrase = _phrase_words(query) if query is not None else set()
        how, windowed = PhraseCheck.IN_INDEX, False  # no phrase: nothing to choose
        narrowing = None
        if phrase:
            narrowing = _narrowing(query, viewer)
            if narrowing is not None and (
                _planner_estimate(connection, narrowing).total <= ROW_CHECK_LIMIT
            ):
                how = PhraseCheck.ON_ROWS
            else:
                how, windowed = PhraseCheck.WITH_WORDS, True
        condition = true() if query is None else _condition(query, how)
        if not viewer.sees_all:
            condition = and_(condition, _visibility(viewer))
        estimate = _planner_estimate(connection, condition)
        # Twice what the page needs, as the estimates may be short: deep pages widen it.
        window = RANK_WINDOW if viewer.sees_all else VIEWER_RANK_WINDOW
        months = estimate.months
        if windowed:
            window = min(window, PHRASE_WINDOW)
            months = _candidates(connection, phrase, narrowing)
        wanted = max(window, 2 * (offset + limit + RERANK))
        since = _rank_window(months, wanted) if words else None
        # RUM orders by rank from the index, but only over what the index matches: rows
        # whose phrase is checked on the row are ranked from the row.
        by_index = self._has_rum(connection) and how is not PhraseCheck.ON_ROWS
        if since is None and phrase:
            # Every candidate of the phrase is checked whichever way: one pass that ranks,
            # counts and facets them checks each once, where a page and a count check twice.
            every = _every_match(connection, condition, words, limit, offset)
            if every is not None:
                return every
        page = partial(_page, condition, words, limit, offset, by_index=by_index)
        hits = _hits(connection, page(since))
        if since is not None and len(hits) < limit:
            # The newest months held fewer matches than the page shows: the search is
            # rare among its candidates, and one pass over them all can rank, count and
            # facet every match (where ranking and then counting would make two).
            every = _every_match(connection, condition, words, limit, offset)
            if every is not None:
                return every
            since = None
            hits = _hits(connection, page(None))
        if since is None and offset == 0 and len(hits) < limit:
            # A first page that is not full holds every match: nothing is left to count.
            return _all_of(connection, hits)
        if exact_total:
            total, facets = _facet_counts(connection, select(*_FACETS).where(condition))
            return SearchResult(total=total, hits=hits, facets=facets)
        if windowed:
            sample = _rank_window(months, PHRASE_WINDOW)
            return _counted(connection, condition, hits, Estimate(estimate.total, months), sample)
        if estimate.total < SAMPLED_TOTAL:
            return _counted(connection, condition, hits, estimate)
        sample = _rank_window(estimate.months, COUNT_SAMPLE)
        return _counted(connection, condition, hits, estimate, sample, exact_below=SAMPLED_TOTAL)

    def _reader(self) -> Connection:
        """A connection to the replica, or to the primary when the replica is down."""
        if self.read_engine is not None and monotonic() >= self._replica_retry:
            try:
                return self.read_engine.connect()
            except OperationalError as exc:
                # One line per outage: the replica is tried again after REPLICA_RETRY.
                self._replica_retry = monotonic() + REPLICA_RETRY
                log.warning(
                    "search replica unreachable (%s); searching on the primary for %d s",
                    _reason(exc),
                    REPLICA_RETRY,
                )
        return self.engine.connect()

    def _has_rum(self, connection: Connection) -> bool:
        """Whether the document vectors have a RUM index on this server (asked once)."""
        engine = connection.engine
        if engine not in self._rum:
            method = connection.scalar(
                text(
                    "SELECT am.amname FROM pg_class AS c JOIN pg_am AS am ON am.oid = c.relam "
                    "WHERE c.relname = 'ix_search_documents_document'"
                )
            )
            self._rum[engine] = method == "rum"
            if method != "rum":
                log.info(
                    "full text search ranks without RUM (index method %s): each candidate's "
                    "row is read to rank a page; see the README on the rum extension",
                    method,
                )
        return self._rum[engine]

    def matching(self, query: Node | None) -> list[int]:
        """Every message id `query` matches, straight from the documents table on the
        primary (retention must not act on a replica's older view)."""
        condition = true() if query is None else _condition(query)
        with self.engine.connect() as connection:
            return list(connection.scalars(select(T.message_pk).where(condition)))

    def close(self) -> None:
        """Nothing to release: connections belong to the engines' pools."""


def _page(
    condition: ColumnElement[bool],
    words: list[str],
    limit: int,
    offset: int,
    since: datetime | None,
    *,
    by_index: bool,
) -> Select[tuple[int, float, datetime]]:
    """The query of one page: by date, or by rank (RUM order first when `by_index`),
    among the mail from `since` on when that is given (see `_rank_window`)."""
    by_date = [T.date.desc(), T.message_pk.desc()]
    if not words:
        return (
            select(T.message_pk, literal(0.0).label("score"), T.date)
            .where(condition)
            .order_by(*by_date)
            .limit(limit)
            .offset(offset)
        )
    typed = fold(" ".join(words))
    wanted = _tsquery(" ".join(words), phrase=False)
    if since is not None:
        condition = and_(condition, T.date >= since)
    if by_index:
        candidates = (
            select(T.message_pk, T.date, T.document, T.exact)
            .where(condition)
            .order_by(T.document.op("<=>")(wanted))
            .limit(offset + limit + RERANK)
            .subquery()
        )
        source = candidates.c
    else:
        source = T
    score = func.ts_rank_cd(source.document, wanted) + (
        func.coalesce(func.ts_rank(source.exact, func.plainto_tsquery(EXACT_CONFIG, typed)), 0.0)
        * EXACT_BONUS
    )
    page = select(source.message_pk, score.label("score"), source.date)
    if source is T:
        page = page.where(condition)
    return (
        page.order_by(score.desc(), source.date.desc(), source.message_pk.desc())
        .limit(limit)
        .offset(offset)
    )


def _hits(connection: Connection, page: Select[tuple[int, float, datetime]]) -> list[Hit]:
    """The hits of one page's query (`_page`)."""
    return [_hit(*row) for row in connection.execute(page)]


def _hit(pk: int, score: float | None, moment: datetime) -> Hit:
    return Hit(pk, float(score or 0.0), moment.replace(tzinfo=UTC))


def _every_match(
    connection: Connection,
    condition: ColumnElement[bool],
    words: list[str],
    limit: int,
    offset: int,
) -> SearchResult | None:
    """The page, the exact total and the facets from one pass that ranks every match,
    when there are at most `EXACT_TOTAL_LIMIT` of them (None: more)."""
    ranked = _page(condition, words, EXACT_TOTAL_LIMIT + 1, 0, None, by_index=False)
    rows = connection.execute(ranked.add_columns(*_FACETS)).all()
    if len(rows) > EXACT_TOTAL_LIMIT:
        return None
    facets: dict[str, Counter[str]] = {name: Counter() for name in _FACET_NAMES}
    for row in rows:
        for name, key in zip(_FACET_NAMES, row[3:], strict=True):
            if key:
                facets[name][str(key)] += 1
    hits = [_hit(*row[:3]) for row in rows[offset : offset + limit]]
    return SearchResult(
        total=len(rows), hits=hits, facets={name: dict(counts) for name, counts in facets.items()}
    )


def _phrase_words(node: Node) -> set[str]:
    """The words of `node`'s phrases in the message text (none: it has no such phrase)."""
    match node:
        case Phrase(text=text, field=None):
            words = analyzed(fold(text))
            return set(words) if len(words) > 1 else set()
        case And(nodes=nodes) | Or(nodes=nodes):
            return set().union(*(_phrase_words(child) for child in nodes))
    return set()


def _in_text(node: Node) -> bool:
    return isinstance(node, Word | Phrase) and node.field is None


def _narrowing(query: Node | None, viewer: Viewer) -> ColumnElement[bool] | None:
    """What a search asks for besides words in the message text: its other terms, and
    the viewer's filter (None: nothing)."""
    nodes = query.nodes if isinstance(query, And) else [] if query is None else [query]
    parts = [_condition(node) for node in nodes if not _in_text(node)]
    if not viewer.sees_all:
        parts.append(_visibility(viewer))
    return and_(*parts) if parts else None


def _candidates(
    connection: Connection, words: set[str], narrowing: ColumnElement[bool] | None
) -> dict[date, float]:
    """How many messages of each month hold all of `words` (among those `narrowing`
    leaves), as the planner estimates it: at most as many as hold the rarest of them,
    which is what checking a phrase of those words costs (the planner's estimate for the
    whole phrase takes its words as unrelated, which they are not, and falls short of it
    several times over)."""
    also = [] if narrowing is None else [narrowing]
    each = [
        _planner_estimate(connection, and_(_text(T.document, word, False), *also)).months
        for word in words
    ]
    return {month: min(months.get(month, 0.0) for months in each) for month in set().union(*each)}


def _month(moment: datetime) -> date:
    """The first day of the month of `moment`: which partition holds it (OLDER for mail
    dated before FIRST_MONTH)."""
    return moment.date().replace(day=1) if moment >= FIRST_MONTH else OLDER


def _drop_empty_partitions(connection: Connection) -> None:
    """Drop the partitions without rows. Each is locked first and looked at again, so a
    row another indexer is adding to it right now keeps it."""
    names = list(
        connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c "
                "ON c.oid = i.inhrelid WHERE i.inhparent = 'search_documents'::regclass"
            )
        )
    )
    if not names:
        return
    empty = connection.scalars(
        text(
            " UNION ALL ".join(
                f"SELECT '{name}' WHERE NOT EXISTS (SELECT FROM {name})" for name in names
            )
        )
    ).all()
    if not empty:
        return
    connection.execute(select(func.pg_advisory_xact_lock(_PARTITION_LOCK)))
    for name in empty:
        connection.exec_driver_sql(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
        if not connection.scalar(text(f"SELECT EXISTS (SELECT FROM {name})")):
            connection.exec_driver_sql(f"DROP TABLE {name}")


def _sqlstate(exc: OperationalError) -> str | None:
    """The SQLSTATE PostgreSQL gave for the failure, if it gave one."""
    return getattr(exc.orig, "sqlstate", None)


def _reason(exc: OperationalError) -> str:
    """The first line of the server's or the driver's message: the log has no SQL."""
    return str(exc.orig or exc).strip().splitlines()[0]


def _facet_counts(
    connection: Connection, rows: Select[tuple[str | None, str, int]]
) -> tuple[int, dict[str, dict[str, int]]]:
    """How many `rows` there are and their counts by list, sender domain and year, in one
    pass (GROUPING SETS) without sending the rows themselves over."""
    found = rows.subquery()
    columns = [found.c[column.name] for column in _FACETS]
    statement = select(func.grouping(*columns), *columns, func.count()).group_by(
        func.grouping_sets(*(tuple_(column) for column in columns))
    )
    facets: dict[str, dict[str, int]] = {name: {} for name in _FACET_NAMES}
    total = 0
    for grouping, *keys, count in connection.execute(statement):
        # `grouping` has a bit set for each column left out: 0b011 is the list's set.
        index = [0b011, 0b101, 0b110].index(grouping)
        if index == 2:
            total += count  # every row has a year, so the year set counts them all
        if keys[index]:
            facets[_FACET_NAMES[index]][str(keys[index])] = count
    return total, facets


def _all_of(connection: Connection, hits: list[Hit]) -> SearchResult:
    """The result whose every match is in `hits`: its total, and its facets from those
    rows alone."""
    pks = [hit.message_pk for hit in hits]
    facets: dict[str, dict[str, int]] = {name: {} for name in _FACET_NAMES}
    if pks:
        _total, facets = _facet_counts(connection, select(*_FACETS).where(T.message_pk.in_(pks)))
    return SearchResult(total=len(hits), hits=hits, facets=facets)


def _counted(
    connection: Connection,
    condition: ColumnElement[bool],
    hits: list[Hit],
    estimate: Estimate,
    sample: datetime | None = None,
    exact_below: float = 0.0,
) -> SearchResult:
    """Total and facets from a scan that stops after `EXACT_TOTAL_LIMIT` + 1 matches:
    exact below the limit; past it, PostgreSQL's estimate of the total, the years from the
    planner's estimate for each month's partition, and the list and domain shares of the
    rows read, scaled to the estimate.

    With `sample` (see `PHRASE_WINDOW` and `SAMPLED_TOTAL`) only the mail from that day on
    is read, and `estimate.months` are the rows that may match in each month (for a
    phrase, its candidates: `_candidates`); when the sample holds `PHRASE_SAMPLE` matches or
    more, the total is its matches per such row times every month's rows, as Xapian
    estimates a phrase's matches from the candidates it has checked. A sample too small to
    say much is counted in full, and so is a search whose total by the sample comes to less
    than `exact_below`.
    """
    # A common word matches a third of the rows, and the planner then reads them in order,
    # checking every row's vector (out of line, in TOAST): the index bitmap reads only the
    # three small columns of the rows it names, several times faster.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    scope = condition if sample is None else and_(condition, T.date >= sample)
    capped = select(*_FACETS).where(scope).limit(EXACT_TOTAL_LIMIT + 1)
    read, facets = _facet_counts(connection, capped)
    if sample is None:
        if read <= EXACT_TOTAL_LIMIT:
            return SearchResult(total=read, hits=hits, facets=facets)
        scale = 1.0  # matches per estimated row
        total = max(estimate.total, read)
    else:
        sampled = sum(rows for month, rows in estimate.months.items() if month >= sample.date())
        everywhere = sum(estimate.months.values())
        scale = read / sampled
        if read > EXACT_TOTAL_LIMIT:
            # The sample alone passed the limit (a month can hold more than its share), so
            # its rows are a floor, not a rate: the planner's figure wins where higher.
            scale = max(scale, estimate.total / everywhere)
        elif read < PHRASE_SAMPLE or scale * everywhere < exact_below:
            return _counted(connection, condition, hits, estimate)
        total = max(scale * everywhere, read)
    share = total / read
    facets = {
        name: {key: _rounded(count * share) for key, count in counts.items()}
        for name, counts in facets.items()
    }
    years: Counter[str] = Counter()
    for month, rows in estimate.months.items():
        years[str(month.year)] += rows * scale
    if years:
        facets["year"] = {year: _rounded(rows) for year, rows in years.items() if rows >= 1}
    return SearchResult(total=_rounded(total), hits=hits, facets=facets, total_exact=False)


@dataclass(frozen=True)
class Estimate:
    """The planner's row estimate for a search, in all and for each month's partition."""

    total: int
    months: dict[date, float]


def _planner_estimate(connection: Connection, condition: ColumnElement[bool]) -> Estimate:
    """The planner's estimate for `condition`, from one EXPLAIN: no matching row is read,
    and it costs about as much as planning the search itself."""
    statement = select(T.message_pk).where(condition)
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    months: Counter[date] = Counter()
    pending = [top]
    while pending:
        node = pending.pop()
        found = _PARTITION_NAME.fullmatch(node.get("Relation Name", ""))
        if found:
            months[date(int(found.group(1)), int(found.group(2)), 1)] += node["Plan Rows"]
        else:
            pending.extend(node.get("Plans", []))
    return Estimate(int(top["Plan Rows"]), dict(months))


def _rank_window(months: dict[date, float], wanted: int) -> datetime | None:
    """Where ranking starts when a search matches more than `wanted` messages: the first
    day of the newest months that hold that many matches together (None: rank them all).

    RUM hands rows over best first, but to know the best it scores every match in the
    index: linear in the matches, about a microsecond each. A word in most messages ("the",
    "meeting") would cost a second at a million messages, so such a word is ranked among
    its newest matches, which in a mail archive are the likelier ones to be wanted; the
    total and the facets still count every match. A person's search is filtered to their
    own mail first and each match scored from its row, so its window is smaller.
    """
    seen = 0.0
    for month in sorted(months, reverse=True):
        seen += months[month]
        if seen >= wanted:
            return datetime.combine(month, time())
    return None


def _rounded(count: float) -> int:
    """An estimate to two significant figures: "about 52,000", not "about 52,137"."""
    if count < 100:
        return round(count)
    digits = len(str(int(count))) - 2
    return int(round(count, -digits))


_FACETS = (T.list_id, T.sender_domain, T.year)
_FACET_NAMES = ("list", "sender_domain", "year")
_PARTITION_NAME = re.compile(r"search_documents_y(\d{4})m(\d\d)")


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
    "marks",
)
_UPDATED = ("document", "subject", "filenames", "folders", "exact", *_PLAIN)


def _param(name: str) -> ColumnElement[object]:
    return bindparam(name)


def _vector(part: str) -> ColumnElement[object]:
    """The vector of one part of a document (its `_row` parameters `<part>_text`,
    `<part>_words` and `<part>_roots`): English stems, and Indonesian roots."""
    return func.arsip_search_vector(
        _param(f"{part}_text"),
        bindparam(f"{part}_words", type_=ARRAY(Text)),
        bindparam(f"{part}_roots", type_=ARRAY(Text)),
    )


def root_lexeme(root: str) -> str:
    """The lexeme an Indonesian root is kept as: with a space, which no word of PostgreSQL's
    parser has, so that it never meets an English stem (`uang` the stem of a word written
    `uang` is another lexeme than `id uang`, the root of `keuangan`)."""
    return f"id {root}"


def _text_parts(part: str, text: str) -> dict[str, object]:
    """`_row`'s parameters for one part: its text, and each of its words whose Indonesian
    root differs from it, with the root's lexeme.

    The text PostgreSQL parses is the analyzer's words, as whoosh indexes them: a word
    of one character is left out, and the words around it count as next to each other,
    so a phrase matches the same messages on both backends (`for date` finds "for a
    date" in either).
    """
    words = analyzed(text)
    pairs = changed_roots(sorted(set(words)))
    return {
        f"{part}_text": " ".join(words),
        f"{part}_words": [word for _root, word in pairs],
        f"{part}_roots": [root_lexeme(root) for root, _word in pairs],
    }


def _row(document: SearchDocument) -> dict[str, object]:
    moment = (document.date or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return {
        "message_pk": document.message_pk,
        **_text_parts("subject", fold(document.subject)),
        **_text_parts(
            "people", fold(" ".join([*document.names, *address_tokens(document.addresses)]))
        ),
        **_text_parts("body", fold(document.body)),
        **_text_parts("attachment", fold(document.attachment_text)),
        # Split names at punctuation as whoosh does ("budget-2026.csv" -> budget 2026 csv);
        # PostgreSQL's parser would keep it whole as a file name.
        **_text_parts("filename", _NON_WORD.sub(" ", fold(" ".join(document.filenames)))),
        **_text_parts("folder", path_words(fold(" ".join(document.folders)))),
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
        "marks": document.marks,
    }


def _visibility(viewer: Viewer) -> ColumnElement[bool]:
    """The viewer's filter: their own mail and readable lists (by the vector's access
    lexemes, as `arsip_access_lexemes` of migration 0027 writes them), or exactly their
    scope."""
    if viewer.scope is not None:
        return _condition(viewer.scope.query)
    lexemes = [f"p {address}" for address in sorted(viewer.addresses)]
    lexemes += [f"l {list_id}" for list_id in sorted(viewer.readable_lists)]
    if not lexemes:
        return false()
    readable = " | ".join(_quoted_lexeme(lexeme) for lexeme in lexemes)
    return T.document.bool_op("@@")(cast(literal(readable), TSQUERY))


def _quoted_lexeme(lexeme: str) -> str:
    """`lexeme` as tsquery syntax reads one lexeme, whatever its characters: quoted, with
    a quote inside doubled and a backslash escaped (an address may hold either)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _text(
    column: ColumnElement[object],
    text: str,
    phrase: bool,
    how: PhraseCheck = PhraseCheck.IN_INDEX,
) -> ColumnElement[bool]:
    """`column` matches `text`'s words, next to each other when a phrase, checked `how`."""
    if how is PhraseCheck.ON_ROWS:  # the function, unlike the operator, is no index condition
        return func.ts_match_vq(column, _tsquery(text, phrase))
    matches = column.bool_op("@@")(_tsquery(text, phrase))
    if how is PhraseCheck.IN_INDEX or not phrase or len(analyzed(fold(text))) < 2:
        return matches
    return and_(column.bool_op("@@")(_tsquery(text, False)), matches)


def _tsquery(text: str, phrase: bool) -> ColumnElement[object]:
    """The words of `text`, all of them (next to each other when a phrase), each in every
    form `analysis.QueryStems` matches.

    The text is read a space-separated piece at a time: the analyzer's words of it, parsed
    by PostgreSQL as the documents' were (`budget.csv` stays one word, a word of one
    character is left out as in `_text_parts`); a piece that is one word of letters also
    matches its Indonesian forms.
    """
    builder = func.phraseto_tsquery if phrase else func.plainto_tsquery
    folded = fold(text)
    parts: list[ColumnElement[object]] = []
    for piece in folded.split():
        words = analyzed(piece)
        if not words:
            continue  # no word the documents keep (see `_text_parts`)
        query = builder(CONFIG, " ".join(words))
        if len(words) == 1 and words[0].isalpha():
            stems = query_stems(words[0])
            for root in sorted(stems.roots):
                query = query.op("||")(cast(literal(f"'{root_lexeme(root)}'"), TSQUERY))
            if len(stems.roots) > 1:  # the root's English forms (`lapor` for `laporan`)
                query = query.op("||")(func.plainto_tsquery(CONFIG, root_of(words[0])))
        parts.append(query)
    if not parts:
        return builder(CONFIG, folded)
    joined = parts[0]
    for query in parts[1:]:
        joined = func.tsquery_phrase(joined, query) if phrase else joined.op("&&")(query)
    return joined


def _condition(node: Node, how: PhraseCheck = PhraseCheck.WITH_WORDS) -> ColumnElement[bool]:
    """The rows `node` matches, its words in the message text checked `how`."""
    match node:
        case Word(text=text, field=None) | Phrase(text=text, field=None):
            return _text(T.document, text, isinstance(node, Phrase), how)
        case Word(text=text, field="subject") | Phrase(text=text, field="subject"):
            return _text(T.subject, text, isinstance(node, Phrase))
        case Word(text=text, field="filename") | Phrase(text=text, field="filename"):
            return _text(
                T.filenames,
                _NON_WORD.sub(" ", text),
                isinstance(node, Phrase),
                PhraseCheck.IN_INDEX,
            )
        case Word(text=text, field="folder") | Phrase(text=text, field="folder"):
            return _text(T.folders, path_words(text), isinstance(node, Phrase))
        case Word(text=text, field="list") | Phrase(text=text, field="list"):
            return T.list_id == text.lower()
        case Word(text=text, field="msgid") | Phrase(text=text, field="msgid"):
            return T.message_id == text.lower().strip("<>")
        case Word(text=text) | Phrase(text=text):
            return _text(T.document, text, isinstance(node, Phrase), how)
        case Address(field=name, value=value):
            column = {"from": T.from_tokens, "to": T.to_tokens, "cc": T.cc_tokens}[name]
            return column.contains([value.lower()])
        case Participant(address=address):
            return T.participants.contains([address.lower()])
        case HasAttachment():
            return T.has_attachment.is_(True)
        case IsSpam():
            return T.is_spam  # as the partial index's predicate reads, so it is used
        case HasVirus():
            return T.has_virus
        case IsMarked(mark=mark):
            return T.marks.contains([mark])
        case DateRange(start=start, end=end):
            bounds = [T.date >= _day(start)] if start else []
            bounds += [T.date < _day(end)] if end else []
            return and_(true(), *bounds)
        case SizeRange(minimum=minimum, maximum=maximum):
            bounds = [T.size >= minimum] if minimum is not None else []
            bounds += [T.size < maximum] if maximum is not None else []
            return and_(true(), *bounds)
        case Not(node=inner):
            return not_(_condition(inner, how))
        case And(nodes=nodes):
            return and_(*(_condition(child, how) for child in nodes))
        case Or(nodes=nodes):
            return or_(*(_condition(child, how) for child in nodes))
    raise TypeError(f"unknown query node {node!r}")


def _day(day: date) -> datetime:
    return datetime.combine(day, time())
