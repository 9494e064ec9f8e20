"""Search in Bahasa Indonesia as well as English: a word finds its Indonesian forms, on both
backends, without English words finding strangers through made-up Indonesian roots."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from archiver.archive import RawMessage
from archiver.core import Core
from archiver.search.analysis import query_stems
from archiver.search.indexer import Indexer
from archiver.search.indonesian import ENGLISH_WORDS, root_of
from archiver.search.service import folded, search
from archiver.search.snippets import snippet
from archiver.search.viewer import Viewer
from tests.support import simple_message

MAIL = {
    "muka@example.co.id": (
        "Uang muka perjalanan",
        "Uang muka untuk perjalanan dinas ke Surabaya sudah ditransfer kemarin sore.",
    ),
    "keuangan@example.co.id": (
        "Rapat keuangan",
        "Laporan keuangan kuartal pertama sudah selesai dan siap dibahas pada rapat Senin.",
    ),
    "direktur@example.co.id": (
        "Hasil pemeriksaan",
        "Saya akan melaporkan hasil pemeriksaan kepada direktur besok pagi.",
    ),
    "diupdate@example.co.id": (
        "Dokumen",
        "Dokumen kontrak sudah diupdate oleh tim legal; mohon dicek kembali.",
    ),
    "reports@example.com": (
        "Quarterly reports",
        "The reports are attached. The distance to the terrace is short.",
    ),
    "race@example.com": (
        "Results",
        "We need to report the race results and update the person in charge.",
    ),
}


@pytest.fixture
def indexed(core: Core):
    """The messages above archived and indexed; yields (core, backend)."""
    now = datetime.now(UTC)
    copies = [
        RawMessage(simple_message(mid, subject=subject, body=body + "\r\n"), "", [], now, "import")
        for mid, (subject, body) in MAIL.items()
    ]
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, copies)
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    yield core, backend
    backend.close()


def found(indexed, text: str) -> list[str]:
    core, backend = indexed
    with core.sessions() as session:
        page = search(session, backend, text, Viewer.administrator(), store=core.store)
    return [hit.message_id.split("@")[0] for hit in page.results]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("uang", {"muka", "keuangan"}),  # ke-uang-an
        ("keuangan", {"muka", "keuangan"}),
        ("melaporkan", {"keuangan", "direktur"}),  # me-lapor-kan and lapor-an
        ("laporan", {"keuangan", "direktur"}),
        ("pelaporan", {"keuangan", "direktur"}),  # a form neither message has
        ("periksa", {"direktur"}),  # pem-eriksa-an: the stemmer's own root, as typed
        ("pemeriksaan", {"direktur"}),
        ("update", {"diupdate", "race"}),  # an English word with an Indonesian prefix
        ("report", {"reports", "race"}),  # English stems as before
        ("reports", {"reports", "race"}),
        ("uang laporan", {"keuangan"}),  # every word, each in any form
        ("uang -laporan", {"muka"}),
        ('"laporan keuangan"', {"keuangan"}),
        ('"melaporkan keuangan"', {"keuangan"}),  # a phrase across forms
        ('"keuangan laporan"', set()),
        ("subject:uang", {"muka", "keuangan"}),
    ],
)
def test_a_word_finds_its_indonesian_and_english_forms(indexed, query, expected) -> None:
    assert set(found(indexed, query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("race", {"race"}),  # not ter-race
        ("stance", set()),  # not di-stance
        ("son", set()),  # not per-son
        ("distance", {"reports"}),
        ("terrace", {"reports"}),
    ],
)
def test_english_words_are_not_cut_into_surprising_matches(indexed, query, expected) -> None:
    assert set(found(indexed, query)) == expected


def test_the_form_typed_ranks_first_and_the_others_light_up(indexed) -> None:
    core, backend = indexed
    with core.sessions() as session:
        page = search(session, backend, "laporan", Viewer.administrator(), store=core.store)
    assert [hit.message_id.split("@")[0] for hit in page.results] == ["keuangan", "direktur"]
    assert "<mark>Laporan</mark> <mark>keuangan</mark>" not in page.results[0].snippet
    assert "<mark>Laporan</mark>" in page.results[0].snippet
    assert "<mark>melaporkan</mark>" in page.results[1].snippet
    with core.sessions() as session:
        page = search(session, backend, "uang", Viewer.administrator(), store=core.store)
    snippets = " ".join(found.snippet for found in page.results)
    assert "<mark>keuangan</mark>" in snippets and "<mark>Uang</mark>" in snippets


def test_snippets_mark_indonesian_forms_and_leave_english_lookalikes_alone() -> None:
    text = "Pembayaran tagihan sudah dibayarkan; the payment for the terrace race is due."
    marked = re.findall(r"<mark>(\w+)</mark>", snippet(text, ["bayar", "race"], folded))
    assert marked == ["Pembayaran", "dibayarkan", "race"]


def test_every_english_word_kept_whole_is_one_the_stemmer_would_cut() -> None:
    """The list holds only words it changes: each entry makes a difference."""
    assert len(ENGLISH_WORDS) > 2000
    assert all(word == root_of(word) for word in ENGLISH_WORDS)
    for word in ("distance", "terrace", "performance", "meeting", "message", "person"):
        assert root_of(word) == word, word
    assert not query_stems("race").match("terrace")
    assert query_stems("uang").match("keuangan")
    assert query_stems("keuangan").match("uang")
