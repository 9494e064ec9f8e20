"""Search benchmark: how fast Arsip indexes an archive and how quickly it answers queries.

A seeded generator writes an mbox of realistic mail: threads with `Re:` subjects and
In-Reply-To/References, about 200 senders over 10 domains, mailing-list traffic with
List-Id headers, CSV and PDF attachments, three years of dates, and bodies drawn from the
word frequencies of the real mail under tests/fixtures/corpus. Those frequencies matter:
real text is Zipf-like (a few words are everywhere, most are rare), and posting-list
lengths follow from that, so uniform random words would make every query look alike.

The mbox goes through `import_paths` into a fresh data directory, then only
`Indexer.rebuild()` is timed, since that is what `arsip reindex` and a new installation
pay. Latency is measured around the whole `search(...)` call the web UI and API make
(parse, backend query with viewer filter and facets, message rows, snippets), for an
administrator and for an ordinary user, with a different query drawn for every run so
that no cache turns the measurement into a lookup.

    .venv/bin/python tests/bench/search.py [--messages N] [--rungs A,B,...] [--runs R]
                                           [--database-url URL] [--[no-]service]
                                           [--keep DIR] [--no-reindex]

Past 100,000 messages it climbs a ladder: the archive grows through the rungs 100,000,
250,000, 500,000 and 1,000,000 (up to `--messages`; `--rungs` chooses others), each rung's
new messages generated and imported after the earlier ones (the same mail as generated in
one go), the first rung's index rebuilt and each later one's appended by the indexer, as a
running service would. At every rung it measures the same figures again and, with
`--service` (the default for a ladder), starts `arsip serve` on the archive for web.py's
memory and eight-client scenarios and cli.py's command timings; at the end it prints one
table, a column per backend and rung, and what the per-message sizes project for 10 and
100 million messages. Whoosh keeps its archive in SQLite; with `--database-url` the
PostgreSQL backend runs on that database too, in the same run. With `--keep DIR` the mbox
and archive stay in DIR, and a later single-rung run with the same message count reuses
them and only indexes and queries again.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import email
import json
import logging
import math
import os
import platform
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.message import Message as EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import cli as cli_bench  # noqa: E402  (tests/bench/cli.py)
from ingest import (  # noqa: E402
    FIRST_NAMES,
    LAST_NAMES,
    Person,
    _ascii_local,
    thread_headers,
    tiny_pdf,
)
from sqlalchemy import func, select, text  # noqa: E402

from archiver import migrate  # noqa: E402
from archiver.config import Settings, load_settings  # noqa: E402
from archiver.core import Core, build_core  # noqa: E402
from archiver.importer import import_paths  # noqa: E402
from archiver.mailfiles import mbox_entry  # noqa: E402
from archiver.models import Message  # noqa: E402
from archiver.search.analysis import stem_of  # noqa: E402
from archiver.search.indexer import Indexer  # noqa: E402
from archiver.search.service import folded, search  # noqa: E402
from archiver.search.viewer import Viewer  # noqa: E402

web = cli_bench.web_bench()

SEED = 20_240_917
CORPUS_DIR = ROOT / "tests" / "fixtures" / "corpus"
MAX_MESSAGES = 1_000_000
LADDER = (100_000, 250_000, 500_000, 1_000_000)  # the rungs a run up to --messages measures
CLIENTS = 8  # concurrent web clients when the service is measured
SENDERS = 200
DOMAINS = (
    "example.com",
    "corp.example.com",
    "sales.example.com",
    "example.org",
    "example.net",
    "partner.example.net",
    "supplier.test",
    "mail.test",
    "consulting.example",
    "university.example.edu",
)
LISTS = (
    ("Engineering", "engineering.lists.example.com"),
    ("Announcements", "announce.lists.example.com"),
    ("Sales team", "sales.lists.example.com"),
    ("Users of the archive", "users.lists.example.org"),
)
_LIST_ID_HEADER = re.compile(rb"^List-Id: [^<\r\n]*<([^>]+)>", re.MULTILINE)
TIMEZONES = tuple(timezone(timedelta(hours=hours)) for hours in (0, 1, 2, -5, -8, 5.5, 9))
START_DATE = datetime(2021, 7, 1, 7, 0, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
REPLY_SHARE = 0.45
LIST_SHARE = 0.2
ATTACHMENT_SHARE = 0.2
BODY_BYTES = (500, 4000)
LINE_WIDTH = 72
RARE_WORDS = 500  # "rare" words are this many with the fewest messages (after stemming)
COMMON_RANKS = 50  # "common" words are drawn from this many most frequent ones
SEARCH_LIMIT = 20
MIB = 1024 * 1024
WORD = re.compile(r"[a-z]+")
SKIPPED_SUFFIXES = {".json", ".tsv", ".md", ".html", ".htm"}
SKIPPED_FOLDERS = {"bounces", "sisimai-bounces", "html-xss"}
NOT_PROSE = (">", "+", "-", "@@", "diff ", "index ", "Signed-off-by:")
NOISE_MARKS = ("@", "/", "\\", "=", "_", "<", ">")  # addresses, URLs, paths, encodings
TAIL_WORDS = 40_000

# Used only when the real-mail corpus is absent: a short frequency list of ordinary mail
# English, most frequent first, so the generator still produces Zipf-shaped text.
_FALLBACK_TEXT = """
the to and of a in for is that you it on be with this have are we at not as will
from if your or can by all but an so do me please thanks my our was there would any
they about more know what has one up out need just which like some get also time new
when should could been these us see other its let only now then here work week meeting
today tomorrow team project report update review draft budget customer contract order
invoice delivery schedule release server database backup issue problem question answer
change request support account office travel expense approval deadline attached file
version feature test build deploy production incident ticket plan forecast quarter
revenue margin pricing discount quote vendor supplier shipment warehouse audit policy
retention archive mailbox migration network firewall certificate password storage
capacity upgrade patch outage latency cluster roadmap milestone sprint regression
onboarding training payroll benefits holiday interview candidate hiring headcount
laptop monitor printer badge parking building agreement signature renewal estimate
proposal compliance escalation postmortem rollback staging snapshot restore throughput
"""
FALLBACK_VOCABULARY = tuple(_FALLBACK_TEXT.split())


class BenchError(RuntimeError):
    """A precondition the benchmark cannot work around (for example a non-empty database)."""


@dataclass(frozen=True)
class Vocabulary:
    """Words with cumulative weights for `random.choices`, most frequent first."""

    words: tuple[str, ...]
    cumulative: tuple[float, ...]
    source: str

    def sample(self, rng: random.Random, count: int) -> list[str]:
        """`count` words drawn by frequency, the way real text uses them."""
        return rng.choices(self.words, cum_weights=self.cumulative, k=count)


@dataclass(frozen=True)
class Generated:
    """What the query generator needs to know about one written message."""

    message_id: str
    author: str
    when: datetime
    has_attachment: bool
    phrase: tuple[str, str]


@dataclass
class _Parent:
    message_id: str
    subject: str
    references: list[str]
    author: Person
    when: datetime
    list_index: int | None
    quote: list[str]


@dataclass
class Corpus:
    """The generated mail as far as queries are concerned, plus its word statistics."""

    messages: list[Generated] = field(default_factory=list)
    document_frequency: Counter[str] = field(default_factory=Counter)
    last_seen: dict[str, int] = field(default_factory=dict)  # word -> a message that has it
    senders: list[str] = field(default_factory=list)
    replies: int = 0
    list_posts: int = 0
    attachments: int = 0
    body_bytes: int = 0


def _corpus_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and path.suffix.lower() not in SKIPPED_SUFFIXES
            and not SKIPPED_FOLDERS & set(path.relative_to(root).parts)
        ):
            yield path


def _messages_in(data: bytes) -> Iterator[EmailMessage]:
    """The messages in one corpus file: mbox, MMDF or a single message."""
    if data.startswith(b"From "):
        for chunk in re.split(rb"\n(?=From )", data):
            yield email.message_from_bytes(chunk.partition(b"\n")[2])
    elif data.startswith(b"\x01\x01\x01\x01"):
        for chunk in data.split(b"\x01\x01\x01\x01"):
            if chunk.strip():
                yield email.message_from_bytes(chunk.lstrip(b"\r\n"))
    else:
        yield email.message_from_bytes(data)


def _prose(message: EmailMessage) -> str:
    """The text someone typed: plain-text parts without quotes, patches, addresses, URLs."""
    parts = []
    for part in message.walk():
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            decoded = payload.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            decoded = payload.decode("utf-8", "replace")
        parts += [line for line in decoded.splitlines() if not line.startswith(NOT_PROSE)]
    # Token by token, not one regular expression over the text: a megabyte without a
    # space (an inline image) would make a backtracking pattern quadratic.
    return " ".join(
        token
        for token in "\n".join(parts).split()
        if len(token) < 40 and not any(mark in token for mark in NOISE_MARKS)
    )


def _typo(word: str, rng: random.Random) -> str:
    """A misspelling of `word` (letters dropped, doubled or swapped), as people make them."""
    for _ in range(rng.randint(1, 2)):
        at = rng.randrange(1, len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            word = word[:at] + word[at + 1 :]
        elif kind == 1:
            word = word[:at] + word[at] + word[at:]
        else:
            word = word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    return word


def load_vocabulary(root: Path = CORPUS_DIR) -> Vocabulary:
    """Word frequencies of the prose in the real mail under `root`, with a long tail.

    Bounce reports and HTML test vectors are skipped (their boilerplate would make
    "kijitora" a top-ten word), and a word must occur in at least two files, which drops
    base64 debris, hashes and one-off test strings. A few megabytes of mail cannot show
    the tail a big archive has: a 100,000-message archive holds tens of thousands of
    words seen only a handful of times, mostly names, codes and misspellings. The words of
    a single corpus file and then misspelt corpus words, weighted by continuing the
    corpus's own Zipf curve past its last rank, stand in for them, so that rare-word
    queries have something genuinely rare to find.
    """
    counts: Counter[str] = Counter()
    files: Counter[str] = Counter()
    if root.is_dir():
        for path in _corpus_files(root):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            seen: Counter[str] = Counter()
            for message in _messages_in(data):
                seen.update(WORD.findall(_prose(message).lower()))
            counts.update(seen)
            files.update(seen.keys())
    plausible = [
        (word, count)
        for word, count in counts.most_common()
        if 2 <= len(word) <= 18 and any(vowel in word for vowel in "aeiouy")
    ]
    kept = [(word, count) for word, count in plausible if files[word] >= 2]
    # Words of a single file are real but unreliable: they join the tail, rarest first.
    singles = [word for word, count in plausible if files[word] < 2 and count < 3]
    if len(kept) < 500:
        # Zipf's law with exponent 1 stands in for counts we could not read.
        head = list(FALLBACK_VOCABULARY)
        weights = [1000.0 / (rank + 1) for rank in range(len(head))]
        source = f"built-in list ({len(head)} words)"
        singles = []
    else:
        head = [word for word, _count in kept]
        weights = [float(count) for _word, count in kept]
        source = f"{root} ({len(head):,} words, {sum(weights):,.0f} tokens)"
    rng = random.Random(SEED - 1)
    known = set(head)
    bases = [word for word in head if len(word) >= 5]
    tail = [word for word in singles[:TAIL_WORDS] if len(word) >= 4]
    known.update(tail)
    while len(tail) < TAIL_WORDS:
        typo = _typo(rng.choice(bases), rng)
        if typo not in known:
            known.add(typo)
            tail.append(typo)
    last = len(head) * weights[-1]  # w(r) = last / r continues the curve (Zipf, s = 1)
    weights += [last / (len(head) + rank + 1) for rank in range(len(tail))]
    cumulative = tuple(_cumulative(weights))
    return Vocabulary(
        tuple(head + tail), cumulative, f"{source} + {len(tail):,} rarer words and misspellings"
    )


def _wrap(words: list[str]) -> str:
    lines: list[str] = []
    line: list[str] = []
    width = 0
    for word in words:
        if line and width + 1 + len(word) > LINE_WIDTH:
            lines.append(" ".join(line))
            line, width = [], 0
        width += len(word) + (1 if line else 0)
        line.append(word)
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def list_mbox(mbox: Path, list_id: str) -> Path:
    """Where the posts of one list are written beside the main mbox."""
    return mbox.with_name(f"{mbox.stem}.{list_id}.mbox")


class CorpusWriter:
    """Deterministic mail for the search benchmark: the same seed gives the same mbox."""

    def __init__(self, vocabulary: Vocabulary, count: int, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.vocabulary = vocabulary
        self.count = count
        self.people = self._people()
        # Some people write far more mail than others, as in any organisation.
        self.activity = list(
            _cumulative([1.0 / (rank + 1) ** 0.8 for rank in range(len(self.people))])
        )
        self.recent: list[_Parent] = []
        # Subjects use mid-frequency words: titles rarely consist of "the" and "of".
        self.topic_words = vocabulary.words[30:5000] or vocabulary.words
        self.corpus = Corpus(senders=[person.address for person in self.people])

    def _people(self) -> list[Person]:
        people: list[Person] = []
        seen: set[str] = set()
        while len(people) < SENDERS:
            first = self.rng.choice(FIRST_NAMES)
            last = self.rng.choice(LAST_NAMES)
            domain = DOMAINS[len(people) % len(DOMAINS)]
            address = f"{_ascii_local(first)}.{_ascii_local(last)}@{domain}"
            if address in seen:
                continue
            seen.add(address)
            full = f"{first} {last}"
            people.append(Person(address, formataddr((full, address)), first, full))
        return people

    def write(self, mbox: Path | None, upto: int | None = None) -> Corpus:
        """Generate the messages after those already generated, up to `upto` (default: all
        `count`), and write them to the mbox unless `mbox` is None (reused archive); returns
        the corpus of every message generated so far.

        Generating in steps gives the same mail as in one go, so a growing archive (the
        ladder of rungs) gets each step's new messages appended, not a new archive.
        """
        corpus = self.corpus
        end = self.count if upto is None else min(upto, self.count)
        # List posts go to a file of their own list's, imported with --list as an operator
        # moving a list's old archive over would: a List-Id header alone files nothing.
        handles = {}
        if mbox is not None:
            handles = {None: open(mbox, "wb")}  # noqa: SIM115
            for _name, list_id in LISTS:
                handles[list_id] = open(list_mbox(mbox, list_id), "wb")  # noqa: SIM115
        try:
            for number in range(len(corpus.messages), end):
                data, sender, when, words = self._message(number, corpus)
                unique = set(words)
                corpus.document_frequency.update(unique)
                corpus.last_seen.update(dict.fromkeys(unique, number))
                if handles:
                    found = _LIST_ID_HEADER.search(data)
                    handle = handles[found.group(1).decode() if found else None]
                    handle.write(mbox_entry(data, sender, when.astimezone(UTC)))
        finally:
            for handle in handles.values():
                handle.close()
        return corpus

    def _author(self) -> Person:
        return self.people[bisect.bisect(self.activity, self.rng.random() * self.activity[-1])]

    def _message(self, number: int, corpus: Corpus) -> tuple[bytes, str, datetime, list[str]]:
        rng = self.rng
        step = SPAN / self.count
        when = START_DATE + step * number + timedelta(seconds=rng.uniform(0, step.total_seconds()))
        author = self._author()
        parent = self.recent[-rng.randint(1, len(self.recent))] if self.recent else None
        if parent is None or rng.random() >= REPLY_SHARE:
            parent = None
        if parent is not None:
            subject = (
                parent.subject if parent.subject.startswith("Re: ") else "Re: " + parent.subject
            )
            references = [*parent.references[-9:], parent.message_id]
            list_index = parent.list_index
            corpus.replies += 1
        else:
            words = rng.sample(self.topic_words, rng.randint(2, 6))
            subject = " ".join(words).capitalize()
            if rng.random() < 0.2:
                subject += f" (#{rng.randint(100, 9999)})"
            references = []
            list_index = rng.randrange(len(LISTS)) if rng.random() < LIST_SHARE else None
        others = [p for p in rng.sample(self.people, 6) if p is not author]
        to = [parent.author] if parent is not None and parent.author is not author else []
        to += others[: rng.randint(0 if to else 1, 2)]
        cc = others[3:5] if rng.random() < 0.3 else []
        domain = author.address.partition("@")[2]
        message_id = f"{number:07d}.{rng.getrandbits(48):012x}@{domain}"

        headers = [
            f"From: {author.display}",
            f"To: {', '.join(p.display for p in to)}",
        ]
        if list_index is not None:
            name, list_id = LISTS[list_index]
            local, _, host = list_id.partition(".lists.")
            headers[1] = f"To: {name} <{local}@lists.{host}>"
            headers.append(f"List-Id: {name} <{list_id}>")
            corpus.list_posts += 1
        date_text = format_datetime(when.astimezone(rng.choice(TIMEZONES)))
        headers += thread_headers(cc, subject, date_text, message_id, references)
        headers.append("MIME-Version: 1.0")

        target = int(math.exp(rng.uniform(*(math.log(size) for size in BODY_BYTES))))
        body, body_words, phrase = self._body(author, to[0], parent, target)
        corpus.body_bytes += len(body.encode())
        attachment = self._attachment() if rng.random() < ATTACHMENT_SHARE else None
        head = "\n".join(headers) + "\n"
        plain = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n'
        if attachment is None:
            data = head + plain + "\n" + body
        else:
            corpus.attachments += 1
            boundary = f"=_part_{number}_{rng.getrandbits(32):08x}"
            data = (
                f'{head}Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                f"--{boundary}\n{plain}\n{body}\n--{boundary}\n{attachment}--{boundary}--\n"
            )
        quote = body.splitlines()[2:6]
        self.recent.append(
            _Parent(message_id, subject, references, author, when, list_index, quote)
        )
        if len(self.recent) > 400:
            del self.recent[:100]
        corpus.messages.append(
            Generated(message_id, author.address, when, attachment is not None, phrase)
        )
        return data.encode(), author.address, when, [*body_words, *WORD.findall(subject.lower())]

    def _body(
        self, author: Person, reader: Person, parent: _Parent | None, target: int
    ) -> tuple[str, list[str], tuple[str, str]]:
        """Wrapped paragraphs of sentences, a greeting, a signature and maybe a quote."""
        rng = self.rng
        opening = f"Hi {reader.first},\n\n"
        closing = f"\n\nRegards,\n{author.first}\n\n-- \n{author.full}\n"
        budget = max(target - len(opening) - len(closing), 120)
        quoted = ""
        if parent is not None and parent.quote:
            quoted = (
                f"\n\nOn {format_datetime(parent.when)}, {parent.author.full} wrote:\n"
                + "".join(f"> {line}\n" for line in parent.quote)
            )
            budget = max(budget - len(quoted), 120)
        # About 6.4 bytes a word with its space in this vocabulary; draw a little extra.
        words = self.vocabulary.sample(rng, budget // 5 + 8)
        paragraphs: list[str] = []
        used: list[str] = []
        size = 0
        position = 0
        phrase = ("", "")
        while size < budget and position < len(words) - 1:
            sentences = []
            for _ in range(rng.randint(1, 4)):
                length = rng.randint(4, 16)
                sentence = words[position : position + length]
                if len(sentence) < 2:
                    break
                if not phrase[0] or rng.random() < 0.1:
                    at = rng.randrange(len(sentence) - 1)
                    phrase = (sentence[at], sentence[at + 1])
                used += sentence
                position += length
                sentence[0] = sentence[0].capitalize()
                sentences.append(" ".join(sentence) + rng.choice(".....?!"))
            paragraph = _wrap(" ".join(sentences).split())
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        return opening + "\n\n".join(paragraphs) + quoted + closing, used, phrase

    def _attachment(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            rows = [
                f"{2021 + rng.randint(0, 3)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"{' '.join(self.vocabulary.sample(rng, 2))},{rng.randint(1, 99999) / 100:.2f}"
                for _ in range(rng.randint(5, 30))
            ]
            content = ("date,item,amount\n" + "\n".join(rows) + "\n").encode()
            ctype, name = "text/csv", f"{rng.choice(self.topic_words)}-{rng.randint(1, 999)}.csv"
        else:
            content = tiny_pdf(" ".join(self.vocabulary.sample(rng, 30)))
            ctype, name = "application/pdf", f"{rng.choice(self.topic_words)}-report.pdf"
        encoded = base64.encodebytes(content).decode()
        return (
            f'Content-Type: {ctype}; name="{name}"\n'
            f'Content-Disposition: attachment; filename="{name}"\n'
            f"Content-Transfer-Encoding: base64\n\n{encoded}"
        )


def _cumulative(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


@dataclass(frozen=True)
class Query:
    """One query to run, and the address of the user who runs it as an ordinary viewer."""

    text: str
    user: str


class QueryMaker:
    """Draws queries of each type from the generated corpus, seeded, all different."""

    def __init__(self, corpus: Corpus, vocabulary: Vocabulary, seed: int = SEED + 1) -> None:
        self.rng = random.Random(seed)
        self.corpus = corpus
        self.with_attachment = [m for m in corpus.messages if m.has_attachment and m.phrase[0]]
        stem_frequency: Counter[str] = Counter()
        for word, docs in corpus.document_frequency.items():
            stem_frequency[stem_of(folded(word))] += docs
        by_rarity = sorted(
            corpus.document_frequency,
            key=lambda word: (stem_frequency[stem_of(folded(word))], word),
        )
        self.rare = by_rarity[:RARE_WORDS]
        self.rare_docs = [stem_frequency[stem_of(folded(word))] for word in self.rare]
        self.common = list(vocabulary.words[:COMMON_RANKS])

    def _message(self) -> Generated:
        return self.rng.choice(self.corpus.messages)

    def _someone(self) -> str:
        return self._message().author

    def rare_word(self) -> Query:
        """A word few messages contain: the index must find it without scanning.

        The user is the author of a message with the word, since people mostly look for
        rare words they have seen, in their own mail.
        """
        word = self.rng.choice(self.rare)
        return Query(word, self.corpus.messages[self.corpus.last_seen[word]].author)

    def common_word(self) -> Query:
        """A word most messages contain: ranking and facets run over a huge result set."""
        return Query(self.rng.choice(self.common), self._someone())

    def phrase(self) -> Query:
        """Two adjacent words of some message, quoted: positions must be checked."""
        message = self._message()
        return Query(f'"{message.phrase[0]} {message.phrase[1]}"', message.author)

    def sender(self) -> Query:
        """`from:` an address that sent mail (busy senders come up more often)."""
        message = self._message()
        return Query(f"from:{message.author}", message.author)

    def message_id(self) -> Query:
        """`msgid:` of an existing message: an exact lookup."""
        message = self._message()
        return Query(f"msgid:{message.message_id}", message.author)

    def date_range(self) -> Query:
        """One month of mail, starting anywhere in the span of the mail so far."""
        first = self.corpus.messages[0].when.date()
        days = (self.corpus.messages[-1].when.date() - first).days
        start = first + timedelta(days=self.rng.randrange(max(1, days - 31)))
        end = start + timedelta(days=31)
        return Query(f"after:{_day(start)} before:{_day(end)}", self._someone())

    def combined(self) -> Query:
        """Sender, phrase, date and attachment together, as people narrow a search down."""
        pool = self.with_attachment or self.corpus.messages
        message = self.rng.choice(pool)
        after = message.when.date() - timedelta(days=self.rng.randint(0, 90))
        first, second = message.phrase
        return Query(
            f'from:{message.author} "{first} {second}" after:{_day(after)} has:attachment',
            message.author,
        )


def _day(day: date) -> str:
    return day.isoformat()


QUERY_TYPES: tuple[tuple[str, str, float], ...] = (
    # (name, QueryMaker method, p95 target in ms)
    ("rare word", "rare_word", 20.0),
    ("common word", "common_word", 100.0),
    ("phrase", "phrase", 100.0),
    ("from:", "sender", 20.0),
    ("msgid:", "message_id", 20.0),
    ("date range", "date_range", 100.0),
    ("combined", "combined", 100.0),
)


class RssSampler:
    """Peak resident memory of this process and its children over a stretch of time.

    `ru_maxrss` only knows the peak of the whole process life, which the import before
    indexing may already have set, and the whoosh rebuild analyses in child processes;
    sampling /proc (Linux) shows what indexing itself needs, children included.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kib = 0
        self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        family = [os.getpid(), *descendants(os.getpid())]
        self.peak_children = max(self.peak_children, len(family) - 1)
        self.peak_kib = max(self.peak_kib, sum(current_rss_kib(pid) for pid in family))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def current_rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one) now, in KiB (0 if unknown)."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children, user and system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def max_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_max_rss_kib() -> int:
    """Peak resident set size of the largest finished child process, in KiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def directory_bytes(path: Path) -> int:
    """Bytes of all files under `path` (0 if it does not exist)."""
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def search_backend_name(settings: Settings) -> str:
    """The configured backend; settings without the option only have whoosh."""
    return str(getattr(settings, "search_backend", "whoosh") or "whoosh")


def postgres_index_bytes(core: Core) -> dict[str, int]:
    """Total size (table, TOAST and indexes) of each table with a tsvector column.

    The PostgreSQL backend names its own table; looking for tsvector columns finds it
    without the benchmark having to know that name.
    """
    with core.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT DISTINCT c.relname, pg_total_relation_size(c.oid) "
                "FROM pg_class c "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                "JOIN pg_type t ON t.oid = a.atttypid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.typname = 'tsvector' AND c.relkind IN ('r', 'p') "
                "AND n.nspname = ANY (current_schemas(false))"
            )
        ).all()
    return {str(name): int(size) for name, size in rows}


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latency:
    """Timings and hit counts of one query type for one kind of viewer."""

    millis: list[float] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.millis, 0.50)

    @property
    def p95(self) -> float:
        return percentile(self.millis, 0.95)

    @property
    def mean_hits(self) -> float:
        return statistics.fmean(self.hits) if self.hits else 0.0


@dataclass
class Row:
    """One line of the latency table."""

    name: str
    target_ms: float
    admin: Latency
    user: Latency
    examples: list[str]

    @property
    def missed(self) -> bool:
        return max(self.admin.p95, self.user.p95) > self.target_ms


def measure(core: Core, maker: QueryMaker, runs: int) -> list[Row]:
    """Time `search(...)` for every query type, as an administrator and as a user."""
    backend = core.search_backend()  # a fresh reader, as a web process would open
    admin = Viewer.administrator()
    try:
        with core.sessions() as session:
            for _name, method, _target in QUERY_TYPES:
                query: Query = getattr(maker, method)()
                search(session, backend, query.text, admin, limit=SEARCH_LIMIT, store=core.store)
        rows = []
        for name, method, target in QUERY_TYPES:
            draw: Callable[[], Query] = getattr(maker, method)
            results = {"admin": Latency(), "user": Latency()}
            examples: list[str] = []
            for kind, latency in results.items():
                for _ in range(runs):
                    query = draw()
                    if len(examples) < 2:
                        examples.append(query.text)
                    viewer = admin if kind == "admin" else Viewer.person(query.user)
                    with core.sessions() as session:
                        began = time.perf_counter()
                        page = search(
                            session,
                            backend,
                            query.text,
                            viewer,
                            limit=SEARCH_LIMIT,
                            store=core.store,
                        )
                        latency.millis.append((time.perf_counter() - began) * 1000)
                    latency.hits.append(page.total)
            rows.append(Row(name, target, results["admin"], results["user"], examples))
            print(
                f"  {name}: admin p95 {results['admin'].p95:.1f} ms, "
                f"user p95 {results['user'].p95:.1f} ms",
                flush=True,
            )
        return rows
    finally:
        backend.close()


def print_table(rows: Sequence[Row]) -> None:
    """The latency table, with rows that miss their p95 target marked."""
    header = (
        "query type",
        "admin p50 ms",
        "admin p95 ms",
        "user p50 ms",
        "user p95 ms",
        "mean hits (admin/user)",
        "p95 target",
        "",
    )
    lines = [
        (
            row.name,
            f"{row.admin.p50:.1f}",
            f"{row.admin.p95:.1f}",
            f"{row.user.p50:.1f}",
            f"{row.user.p95:.1f}",
            f"{row.admin.mean_hits:,.1f} / {row.user.mean_hits:,.1f}",
            f"<= {row.target_ms:.0f} ms",
            "MISSED" if row.missed else "ok",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


def bench_environment(data_dir: Path, database_url: str, backend: str) -> dict[str, str]:
    """The `ARSIP_*` settings of one benchmark archive, and nothing from the caller's
    environment, so results do not depend on a stray variable: whoosh keeps its archive
    in SQLite, the PostgreSQL backend in the `--database-url` database."""
    environ = {"ARSIP_DATA_DIR": str(data_dir), "ARSIP_LOG_LEVEL": "WARNING"}
    if backend == "postgres":
        environ["ARSIP_DATABASE_URL"] = database_url
        environ["ARSIP_SEARCH_BACKEND"] = backend
    return environ


def archived_count(core: Core) -> int:
    """How many messages the archive holds."""
    with core.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def database_bytes(core: Core, settings: Settings, index_tables: dict[str, int]) -> int:
    """The database's size without the search tables (counted as the index): SQLite's
    files with their WAL, or PostgreSQL's `pg_database_size`."""
    if core.engine.dialect.name == "postgresql":
        with core.engine.connect() as connection:
            size = connection.scalar(text("SELECT pg_database_size(current_database())"))
        return int(size or 0) - sum(index_tables.values())
    return sum(path.stat().st_size for path in settings.data_dir.glob("arsip.db*"))


def parse_rungs(text: str) -> list[int]:
    """`100000,250000` as a sorted list of distinct message counts."""
    try:
        rungs = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 2000,5000") from None
    if not rungs:
        raise argparse.ArgumentTypeError("--rungs needs at least one message count")
    return rungs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options, with limits so a typo cannot start an endless run."""
    parser = argparse.ArgumentParser(description="Measure Arsip's indexing and search latency.")
    parser.add_argument(
        "--messages",
        type=int,
        default=100_000,
        help="messages to generate; past 100,000 the archive grows through the rungs "
        f"{', '.join(f'{rung:,}' for rung in LADDER)} up to this count",
    )
    parser.add_argument(
        "--rungs",
        type=parse_rungs,
        default=None,
        help="message counts to measure at, e.g. "
        "2000,5000 (the archive grows from one to the next; the last is --messages)",
    )
    parser.add_argument("--runs", type=int, default=200, help="queries per type and viewer")
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL database: the ladder then runs the PostgreSQL backend on it too",
    )
    parser.add_argument(
        "--service",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="at each rung, also start `arsip serve` and measure its memory and pages with "
        f"{CLIENTS} clients (web.py) and the command line (cli.py); default: on for a ladder",
    )
    parser.add_argument("--web-requests", type=int, default=200, help="per page, with --service")
    parser.add_argument("--cli-runs", type=int, default=10, help="per command, with --service")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the mbox and archive in this directory"
    )
    parser.add_argument(
        "--no-reindex",
        action="store_true",
        help="with --keep: query the kept index as it is, without rebuilding it (to compare "
        "two versions of the code on the same index)",
    )
    args = parser.parse_args(argv)
    if args.rungs is None:
        args.rungs = [rung for rung in LADDER if rung < args.messages] + [args.messages]
    args.messages = args.rungs[-1]
    if not (args.rungs[0] >= 1 and args.messages <= MAX_MESSAGES):
        parser.error(f"message counts must be between 1 and {MAX_MESSAGES:,}")
    if not 1 <= args.runs <= 100_000:
        parser.error("--runs must be between 1 and 100000")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL (postgresql+psycopg://...)")
    if args.service is None:
        args.service = len(args.rungs) > 1
    args.backends = ["whoosh"] + (["postgres"] if args.database_url else [])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; exit status 1 if a query type missed its target."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0))
    print(
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.keep is not None:
        workdir = args.keep.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="arsip-search-bench-"))
    try:
        return run(args, workdir, cores)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Rung:
    """What one backend measured once its archive had grown to one rung."""

    backend: str
    messages: int
    mbox_bytes: int  # all the mail imported so far
    import_rate: float | None
    build: str  # "rebuild" (the whole index) or "appended" (the rung's new messages)
    build_rate: float
    index_bytes: int
    store_bytes: int
    database_bytes: int
    rss_peak_index_mib: float
    rows: list[Row]
    service: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def run(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """Generate the mail rung by rung; at each, import, index and measure every backend."""
    mbox = workdir / "bench.mbox"
    state_file = workdir / "bench-state.json"
    state = {"messages": args.messages, "seed": SEED, "database_url": args.database_url}
    single = len(args.rungs) == 1
    reuse = single and state_file.exists() and json.loads(state_file.read_text()) == state

    began = time.monotonic()
    vocabulary = load_vocabulary()
    print(f"vocabulary: {vocabulary.source}; in {time.monotonic() - began:.1f} s", flush=True)
    writer = CorpusWriter(vocabulary, args.messages)
    rungs: list[Rung] = []
    mbox_total = 0
    for rung in args.rungs:
        began = time.monotonic()
        before = len(writer.corpus.messages)
        corpus = writer.write(None if reuse else mbox, rung)
        mbox_bytes = sum(
            path.stat().st_size
            for path in [mbox, *(list_mbox(mbox, list_id) for _n, list_id in LISTS)]
            if path.exists()
        )
        mbox_total += mbox_bytes
        print(
            f"\n== {rung:,} messages: {rung - before:,} new; {len(corpus.senders)} senders over "
            f"{len(DOMAINS)} domains, {corpus.replies:,} replies, {corpus.list_posts:,} list "
            f"posts, {corpus.attachments:,} with attachments, mean body "
            f"{corpus.body_bytes / rung:,.0f} bytes; mbox {mbox_bytes / MIB:,.1f} MiB"
            f"{' (reused)' if reuse else ''}; in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        for backend_name in args.backends:
            data_dir = workdir / ("data" if backend_name == "whoosh" else f"data-{backend_name}")
            environ = bench_environment(data_dir, args.database_url, backend_name)
            rungs.append(
                measure_rung(
                    args, environ, mbox, mbox_total, corpus, vocabulary, reuse, first=not before
                )
            )
        if args.keep is not None and single:
            state_file.write_text(json.dumps(state))
        if not single:  # the table so far: a run of hours that is stopped still reports
            print_ladder(rungs)
    summaries = [rung.summary for rung in rungs]
    print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, separators=(",", ":")))
    return 1 if any(row.missed for row in rungs[-1].rows) else 0


def measure_rung(
    args: argparse.Namespace,
    environ: dict[str, str],
    mbox: Path,
    mbox_total: int,
    corpus: Corpus,
    vocabulary: Vocabulary,
    reuse: bool,
    first: bool,
) -> Rung:
    """Import the rung's new mail into one backend's archive, index it and measure."""
    settings = load_settings(environ=environ, config_file=mbox.with_name("absent-arsip.toml"))
    backend_name = search_backend_name(settings)
    print(f"-- {backend_name} on {settings.database_url.partition(':')[0]}", flush=True)
    core = build_core(settings)
    migrate.upgrade(core.engine)
    import_s: float | None = None
    imported = 0
    if reuse:
        print(f"import: reusing the archive in {settings.data_dir}", flush=True)
    else:
        if first and archived_count(core):
            raise BenchError(f"the database already holds messages: {settings.database_url}")
        print("import: ...", end=" ", flush=True)
        began = time.monotonic()
        report = import_paths(core, [mbox], progress=sys.stderr.isatty())
        for _name, list_id in LISTS:
            posts = import_paths(
                core, [list_mbox(mbox, list_id)], progress=sys.stderr.isatty(), list_id=list_id
            )
            report.read += posts.read
            report.added += posts.added
        import_s = time.monotonic() - began
        imported = report.read
        print(
            f"{report.added:,} new of {report.read:,} in {import_s:.1f} s "
            f"({report.read / import_s:,.0f} msgs/s)",
            flush=True,
        )
    archived = archived_count(core)

    rss_before = current_rss_kib()
    max_before = max_rss_kib()
    build = "rebuild" if first else "appended"
    if reuse and args.no_reindex:
        print(f"index: querying the kept {backend_name} index as it is", flush=True)
    else:
        print(f"index: {build} with the {backend_name} backend ...", flush=True)
    backend = core.search_backend()
    indexer = Indexer(core.sessions, backend, core.store)
    progress = Progress("  indexed")
    with RssSampler() as sampler:
        began = time.monotonic()
        cpu_began = cpu_seconds()
        if reuse and args.no_reindex:
            indexed = archived
        elif first:
            indexed = indexer.rebuild(on_batch=progress.add)
        else:
            indexed = 0
            while done := indexer.run_once():
                indexed += done
                progress.add(done)
        index_s = time.monotonic() - began
        index_cpu_s = cpu_seconds() - cpu_began
    backend.close()
    rate = indexed / index_s if index_s else 0.0
    print(f"  {indexed:,} messages in {index_s:.1f} s ({rate:,.0f} msgs/s)", flush=True)

    index_bytes = directory_bytes(settings.index_dir) if backend_name == "whoosh" else 0
    tables: dict[str, int] = {}
    if backend_name == "postgres":
        tables = postgres_index_bytes(core)
        index_bytes = sum(tables.values())
    store_bytes = directory_bytes(settings.blob_dir)
    db_bytes = database_bytes(core, settings, tables)
    print(
        f"index size: {index_bytes / MIB:,.1f} MiB"
        + (
            f" ({', '.join(f'{k} {v / MIB:,.1f} MiB' for k, v in tables.items())})"
            if tables
            else ""
        )
        + f" for {mbox_total / MIB:,.1f} MiB of mbox "
        f"({index_bytes / mbox_total:.0%} of the raw mail); store {store_bytes / MIB:,.1f} MiB, "
        f"database {db_bytes / MIB:,.1f} MiB"
    )
    print(
        f"memory: RSS {rss_before / 1024:,.0f} MiB before indexing, peak "
        f"{sampler.peak_kib / 1024:,.0f} MiB while indexing, summed over this process and "
        f"up to {sampler.peak_children} child process(es) (ru_maxrss of this process "
        f"{max_before / 1024:,.0f} MiB before, {max_rss_kib() / 1024:,.0f} MiB after; largest "
        f"child {child_max_rss_kib() / 1024:,.0f} MiB); indexing CPU {index_cpu_s:.1f} s "
        f"with children",
        flush=True,
    )

    print(f"latency: {args.runs} runs per query type and viewer, limit {SEARCH_LIMIT} ...")
    maker = QueryMaker(corpus, vocabulary)
    print(
        f"  (rare words: the {len(maker.rare):,} in fewest messages, "
        f"{min(maker.rare_docs, default=0)} to {max(maker.rare_docs, default=0)} after stemming; "
        f"common words: the top {COMMON_RANKS})",
        flush=True,
    )
    rows = measure(core, maker, args.runs)
    core.engine.dispose()
    print()
    print_table(rows)
    print()
    for row in rows:
        print(f"  e.g. {row.name}: {' | '.join(row.examples)}")
    service = measure_service(args, settings.data_dir, environ) if args.service else {}
    summary: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "messages": archived,
        "database": core.engine.dialect.name,
        "search_backend": backend_name,
        "mbox_bytes": mbox_total,
        "import_s": None if import_s is None else round(import_s, 1),
        "index_build": build,
        "index_s": round(index_s, 1),
        "index_cpu_s": round(index_cpu_s, 1),
        "index_msgs_per_s": round(rate, 1),
        "index_bytes": index_bytes,
        "index_tables": tables,
        "store_bytes": store_bytes,
        "database_bytes": db_bytes,
        "rss_before_index_mib": round(rss_before / 1024, 1),
        "rss_peak_index_mib": round(sampler.peak_kib / 1024, 1),
        "index_child_processes": sampler.peak_children,
        "runs": args.runs,
        "latency_ms": {
            row.name: {
                "admin_p50": round(row.admin.p50, 2),
                "admin_p95": round(row.admin.p95, 2),
                "user_p50": round(row.user.p50, 2),
                "user_p95": round(row.user.p95, 2),
                "admin_mean_hits": round(row.admin.mean_hits, 1),
                "user_mean_hits": round(row.user.mean_hits, 1),
                "target_p95": row.target_ms,
                "missed": row.missed,
            }
            for row in rows
        },
        "service": service,
    }
    return Rung(
        backend=backend_name,
        messages=archived,
        mbox_bytes=mbox_total,
        import_rate=None if not import_s else imported / import_s,
        build=build,
        build_rate=rate,
        index_bytes=index_bytes,
        store_bytes=store_bytes,
        database_bytes=db_bytes,
        rss_peak_index_mib=sampler.peak_kib / 1024,
        rows=rows,
        service=service,
        summary=summary,
    )


class Progress:
    """Prints a line every `every` messages, for runs that take hours."""

    def __init__(self, label: str, every: int = 50_000) -> None:
        self.label = label
        self.every = every
        self.done = 0
        self.began = time.monotonic()

    def add(self, count: int) -> None:
        """Count `count` more messages; print when a multiple of `every` is passed."""
        before, self.done = self.done, self.done + count
        if before // self.every != self.done // self.every:
            elapsed = time.monotonic() - self.began
            print(f"{self.label} {self.done:,} in {elapsed:,.0f} s", flush=True)


def measure_service(args: argparse.Namespace, data_dir: Path, environ: dict[str, str]) -> dict:
    """`arsip serve` on the archive: memory idle and under `CLIENTS` clients and the search
    page's p95 (web.py's machinery), and `arsip search` whole (cli.py's)."""
    print(f"service: web.py's scenarios with {CLIENTS} clients ...", flush=True)
    load = web.plan(data_dir, args.web_requests, SEED, environ)
    results, memory = web.measure_service(
        load, data_dir.parent / "bench-web-serve.log", web.DEFAULT_PROCESSES, CLIENTS
    )
    idle, peak = memory["idle, before any search"], memory["under load (peak)"]
    pages = {f"{r.page} {r.viewer}": r for r in results}
    print("service: cli.py's commands ...", flush=True)
    commands = cli_bench.measure(data_dir, args.cli_runs, environ)
    service = {
        "web_processes": web.DEFAULT_PROCESSES,
        "rss_idle_mib": idle.rss / MIB,
        "pss_idle_mib": idle.pss / MIB,
        "rss_load_mib": peak.rss / MIB,
        "pss_load_mib": peak.pss / MIB,
        "search_admin_p95_ms": pages["search admin"].percentile(0.95),
        "search_user_p95_ms": pages["search user"].percentile(0.95),
        "message_p95_ms": pages["message admin"].percentile(0.95),
        "cli_search_service_ms": commands["search word"]["service"]["p50"],
        "cli_search_alone_ms": commands["search word"]["alone"]["p50"],
    }
    print(
        "  "
        + ", ".join(f"{name} {value:,.0f}" for name, value in service.items() if name[-2:] != "es"),
        flush=True,
    )
    return service


def print_ladder(rungs: Sequence[Rung]) -> None:
    """One table, a column per backend and rung, then what the per-message figures project
    for 10 and 100 million messages."""
    lines: list[tuple[str, Callable[[Rung], str]]] = [
        ("import msgs/s", lambda r: f"{r.import_rate:,.0f}" if r.import_rate else "-"),
        ("index build msgs/s", lambda r: f"{r.build_rate:,.0f} ({r.build})"),
        ("index bytes/msg", lambda r: f"{r.index_bytes / r.messages:,.0f}"),
        ("store bytes/msg", lambda r: f"{r.store_bytes / r.messages:,.0f}"),
        ("database bytes/msg", lambda r: f"{r.database_bytes / r.messages:,.0f}"),
        ("peak RSS indexing MiB", lambda r: f"{r.rss_peak_index_mib:,.0f}"),
    ]
    if all(r.service for r in rungs):
        lines += [
            (
                "service RSS/PSS idle MiB",
                lambda r: f"{r.service['rss_idle_mib']:,.0f} / {r.service['pss_idle_mib']:,.0f}",
            ),
            (
                f"service RSS/PSS, {CLIENTS} clients",
                lambda r: f"{r.service['rss_load_mib']:,.0f} / {r.service['pss_load_mib']:,.0f}",
            ),
            (
                f"search page p95 ms, {CLIENTS} clients, admin/user",
                lambda r: (
                    f"{r.service['search_admin_p95_ms']:,.0f} / "
                    f"{r.service['search_user_p95_ms']:,.0f}"
                ),
            ),
            (
                "`arsip search` ms, service/alone",
                lambda r: (
                    f"{r.service['cli_search_service_ms']:,.0f} / "
                    f"{r.service['cli_search_alone_ms']:,.0f}"
                ),
            ),
        ]
    for index, (name, _method, _target) in enumerate(QUERY_TYPES):
        lines += [
            (
                f"{name}: admin p50/p95 ms",
                lambda r, i=index: f"{r.rows[i].admin.p50:,.1f} / {r.rows[i].admin.p95:,.1f}",
            ),
            (
                f"{name}: user p50/p95 ms",
                lambda r, i=index: f"{r.rows[i].user.p50:,.1f} / {r.rows[i].user.p95:,.1f}",
            ),
        ]
    print()
    print("| | " + " | ".join(f"{r.backend} {r.messages:,}" for r in rungs) + " |")
    print("|---" * (len(rungs) + 1) + "|")
    for label, cell in lines:
        print(f"| {label} | " + " | ".join(cell(r) for r in rungs) + " |")
    print(f"load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores")
    for backend in dict.fromkeys(r.backend for r in rungs):
        last = [r for r in rungs if r.backend == backend][-1]
        per_message = (last.index_bytes + last.store_bytes + last.database_bytes) / last.messages
        parts = ", ".join(
            f"{name} {size / last.messages * target / 1e9:,.0f} GB"
            for name, size in (
                ("index", last.index_bytes),
                ("store", last.store_bytes),
                ("database", last.database_bytes),
            )
            for target in (10_000_000,)
        )
        print(
            f"projection, {backend}, from {last.messages:,} messages: 10 million take "
            f"{per_message * 1e7 / 1e9:,.0f} GB ({parts}); 100 million "
            f"{per_message * 1e8 / 1e9:,.0f} GB"
        )


if __name__ == "__main__":
    sys.exit(main())
