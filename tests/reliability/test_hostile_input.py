"""Hostile input: whatever bytes arrive, the parser answers, the archive keeps them, and
the intake replies with a clear code (invariants 1 and 5).

Messages come from a hypothesis strategy that builds MIME trees with bogus boundaries,
broken transfer encodings, unknown charsets, giant header lines, NUL bytes, 8-bit garbage
and missing blank lines. The examples are derandomised, so every run tries the same ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from archiver.archive import RawMessage, dedupe_key
from archiver.core import Core
from archiver.models import Message
from archiver.parse import FLAGS, parse_message
from tests.support import JOURNAL_DOMAIN, ROOT, RunningService, service_env

RECEIVED = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
RCPT = f"fuzz@{JOURNAL_DOMAIN}"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the fuzzer is about the parser and the store, not the database."""
    return sqlite_url


# -- the message strategy -------------------------------------------------------------------

EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"])
CHARSETS = st.sampled_from(
    [
        b"utf-8",
        b"iso-8859-1",
        b"us-ascii",
        b"utf-7",
        b"x-no-such-charset",
        b"",
        b"\xff\xfe",
        b"utf-16",
    ]
)
ENCODINGS = st.sampled_from(
    [b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode", b"b\x00se64", b""]
)
GARBAGE = st.binary(max_size=300)
TEXT = st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass"))


@st.composite
def header_value(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(TEXT)
    if kind == 1:
        return draw(GARBAGE)  # NUL bytes, 8-bit bytes, bare line ends
    if kind == 2:  # an encoded word in any (or no known) charset, perhaps broken
        charset = draw(CHARSETS)
        code = draw(st.sampled_from([b"B", b"Q", b"X", b""]))
        return b"=?" + charset + b"?" + code + b"?" + draw(GARBAGE)[:60] + b"?= tail"
    if kind == 3:  # a giant header line, up to 100 KB
        size = draw(st.integers(1_000, 100_000))
        return draw(st.sampled_from([b"x", b"\xe9", b"=?utf-8?q?a?= ", b"<a@b> "])) * (
            size // 4 + 1
        )
    if kind == 4:  # folded over many lines
        return b"\r\n\t".join(draw(st.lists(TEXT, min_size=1, max_size=20)))
    return b""


HEADER_NAMES = st.sampled_from(
    [
        *(b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID", b"References"),
        *(b"In-Reply-To", b"Reply-To", b"List-Id", b"X-Junk", b"Content-Disposition"),
        *(b"X\x00Nul", b"\xc3\xa9t\xe9"),
    ]
)


@st.composite
def headers(draw: st.DrawFn) -> list[bytes]:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        lines.append(draw(HEADER_NAMES) + draw(st.sampled_from([b": ", b":", b" : "])))
        lines[-1] += draw(header_value())
    return lines


@st.composite
def leaf(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """A single part: its own header lines and its body."""
    content_type = draw(
        st.sampled_from(
            [
                b"text/plain",
                b"text/html",
                b"application/octet-stream",
                b"application/pdf",
                b"message/rfc822",
                b"multipart/mixed",  # with no boundary and no parts
                b"text/\xff",
                b"",
            ]
        )
    )
    charset = draw(CHARSETS)
    encoding = draw(ENCODINGS)
    body_kind = draw(st.integers(0, 3))
    if body_kind == 0:
        body = draw(GARBAGE)
    elif body_kind == 1:  # base64 that may be broken: bad alphabet, wrong padding
        body = draw(st.text("ABCDabcd0123+/=!*\r\n", max_size=300)).encode()
    elif body_kind == 2:  # quoted-printable that may be broken
        body = draw(st.text("=AF09zg \t\r\n", max_size=300)).encode()
    else:
        body = draw(TEXT)
    lines = [
        b"Content-Type: " + content_type + b"; charset=" + charset,
        b"Content-Transfer-Encoding: " + encoding,
    ]
    if draw(st.booleans()):
        lines.append(b'Content-Disposition: attachment; filename="' + draw(GARBAGE)[:40] + b'"')
    return lines, body


BOUNDARIES = st.one_of(
    st.text("abcXYZ019'()+_,-./:=? ", min_size=1, max_size=70).map(str.encode),
    st.binary(max_size=20),
)


def multipart(children: st.SearchStrategy) -> st.SearchStrategy:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
        boundary = draw(BOUNDARIES)
        used = draw(st.one_of(st.just(boundary), BOUNDARIES))  # sometimes the wrong one
        eol = draw(EOLS)
        subtype = draw(st.sampled_from([b"mixed", b"alternative", b"related", b"digest", b"x"]))
        quote = draw(st.sampled_from([b'"', b""]))
        lines = [b"Content-Type: multipart/" + subtype + b"; boundary=" + quote + boundary + quote]
        if draw(st.booleans()):
            lines.append(b"MIME-Version: 1.0")
        body = draw(st.sampled_from([b"", b"This is a MIME message." + eol]))
        for part_lines, part_body in draw(st.lists(children, max_size=4)):
            body += b"--" + used + eol + eol.join(part_lines)
            body += draw(st.sampled_from([eol + eol, eol]))  # perhaps no blank line
            body += part_body + eol
        if draw(st.booleans()):
            body += b"--" + used + b"--" + eol
        body += draw(st.sampled_from([b"", b"epilogue" + eol, b"--" + used]))
        return lines, body

    return build()


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A whole message: top headers, a MIME tree, line ends of any kind."""
    tree_lines, body = draw(st.recursive(leaf(), multipart, max_leaves=12))
    eol = draw(EOLS)
    top = draw(headers()) + tree_lines
    separator = draw(st.sampled_from([eol + eol, eol + eol, eol, b""]))  # perhaps none
    return eol.join(top) + separator + body


# Derandomised, so that CI tries the same examples every time; no example database.
FUZZ = settings(
    derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


# -- in process: parser and archive ---------------------------------------------------------


@settings(FUZZ, max_examples=200)
@given(raw=messages())
def test_any_bytes_are_parsed_and_archived_byte_for_byte(core: Core, raw: bytes) -> None:
    parsed = parse_message(raw, RECEIVED)
    assert parsed.message_id
    assert set(parsed.flags) <= FLAGS
    assert "\x00" not in parsed.body_text and "\x00" not in parsed.subject

    with core.sessions.begin() as session:
        [result] = core.archive.archive_batch(
            session, [RawMessage(raw, "fuzz@example.com", [RCPT], RECEIVED, "smtp")]
        )
    with core.sessions() as session:
        message = session.get(Message, result.message_pk)
        assert message is not None
        assert message.dedupe_key == dedupe_key(parsed)
        if result.created:  # else the same message (body, identifying headers) is kept
            assert core.store.get(message.sha256) == raw


# -- through SMTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One service for every example: hypothesis runs many examples in one test call."""
    root = tmp_path_factory.mktemp("fuzz")
    service = RunningService(service_env(root / "var"), root / "serve.log").start()
    yield service
    service.close()


def as_received(raw: bytes) -> bytes:
    """What the intake stores for `raw` sent by smtplib: CRLF lines, ending in CRLF."""
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data = b"\r\n".join(lines)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def assert_archived(service: RunningService, sent: list[bytes]) -> None:
    """Every acknowledged message is in the archive once the spool has drained."""
    figures = service.wait_until_archived()
    assert figures["spool_pending"] == 0
    with service.core().sessions() as session:
        kept = set(session.scalars(select(Message.dedupe_key)))
    for data in sent:
        parsed = parse_message(data, RECEIVED)
        assert dedupe_key(parsed) in kept, data[:200]


@settings(FUZZ, max_examples=30)
@given(raw=messages())
def test_every_hostile_message_gets_a_clear_answer_and_none_acknowledged_is_lost(
    fuzz_service: RunningService, raw: bytes
) -> None:
    data = as_received(raw)
    with fuzz_service.smtp() as client:
        client.ehlo("fuzzer.test")
        client.mail("fuzz@example.com", ["BODY=8BITMIME"])
        assert client.rcpt(RCPT)[0] == 250
        code, reply = client.data(data)  # a dropped connection would raise here
    assert code == 250 or 400 <= code < 600, (code, reply)
    assert len(reply) > 3
    if code == 250:
        assert_archived(fuzz_service, [data])


# -- MIME bombs -----------------------------------------------------------------------------


def bomb(kind: str) -> bytes:
    """Ten thousand parts side by side, or nested ten thousand deep."""
    head = b"From: bomber@example.com\r\nSubject: bomb\r\nMessage-ID: <%s@bomb.test>\r\n" % (
        kind.encode()
    )
    if kind == "wide":
        parts = b"".join(
            b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(10_000)
        )
        return head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(10_000)
    )
    return head + opening + b"Content-Type: text/plain\r\n\r\ndeep down\r\n"


PARSE_IN_A_BOX = textwrap.dedent(
    """
    import json, resource, sys
    from datetime import UTC, datetime
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from archiver.parse import parse_message
    parsed = parse_message(sys.stdin.buffer.read(), datetime.now(UTC))
    print(json.dumps({"flags": parsed.flags, "message_id": parsed.message_id}))
    """
)


@pytest.mark.parametrize("kind", ["wide", "deep"])
def test_a_mime_bomb_is_parsed_within_a_gigabyte_and_a_minute(kind: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARSE_IN_A_BOX],
        input=bomb(kind),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    outcome = json.loads(done.stdout)
    assert outcome["message_id"] == f"{kind}@bomb.test"
    # Too many parts or too deep to walk (or even to parse): flagged, and kept raw.
    assert {"mime_defects", "unparseable"} & set(outcome["flags"])


def test_mime_bombs_sent_by_smtp_are_archived_and_flagged(fuzz_service: RunningService) -> None:
    sent = [bomb("wide"), bomb("deep")]
    assert all(len(data) < fuzz_service.settings.max_message_size for data in sent)
    with fuzz_service.smtp() as client:
        for data in sent:
            client.sendmail("bomber@example.com", [RCPT], data)
    assert_archived(fuzz_service, sent)
    with fuzz_service.core().sessions() as session:
        kept = {
            message.message_id: message.flags
            for message in session.scalars(
                select(Message).where(Message.message_id.like("%@bomb.test"))
            )
        }
    assert set(kept) == {"wide@bomb.test", "deep@bomb.test"}
    for flags in kept.values():
        assert {"mime_defects", "unparseable"} & set(flags)
