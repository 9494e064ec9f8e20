"""A result's snippet shows what the message itself says, not what it quotes, its
signature or its list's footer; a word found only in the quote still shows why."""

from __future__ import annotations

from archiver.core import Core
from archiver.search.own_text import own_text
from tests.test_search import message
from tests.test_search_scale import archive_and_index, found

FOOTER = (
    "_" * 50
    + "\ndev mailing list -- dev@lists.example.com\n"
    + "To unsubscribe send an email to dev-leave@lists.example.com\n"
)

REPLY = (
    "Budget approved, go ahead.\n\n"
    "On Mon, 7 Dec 2026 at 09:00, Ann <ann@example.org> wrote:\n"
    "> Can we raise the forecast for Q3?\n"
    ">\n"
    "> Ann\n\n"
    "-- \nBob, finance\n" + FOOTER
)


def test_quotes_their_introduction_signature_and_footer_are_left_out() -> None:
    assert own_text(REPLY) == "Budget approved, go ahead."


def test_an_indonesian_reply_and_an_outlook_original_are_left_out() -> None:
    indonesian = "Setuju.\n\nPada Sen, 7 Des 2026, Ani <ani@example.co.id> menulis:\n> Anggaran?\n"
    assert own_text(indonesian) == "Setuju."
    outlook = "See below.\n\n-----Original Message-----\nFrom: Ann\nSent: Monday\n\nThe plan.\n"
    assert own_text(outlook) == "See below."
    forwarded = "FYI\n\nFrom: Ann <ann@example.org>\nDate: Mon, 7 Dec 2026\n\nThe plan.\n"
    assert own_text(forwarded) == "FYI"


def test_a_colon_before_a_list_and_a_message_that_only_quotes_stay() -> None:
    agenda = "The agenda:\n\n- budget\n- hiring\n"
    assert own_text(agenda) == agenda.strip()
    only_quote = "> what was said\n> before\n"
    assert own_text(only_quote) == only_quote


def test_a_result_shows_the_reply_not_the_quote_unless_the_match_is_in_it(core: Core) -> None:
    archive_and_index(core, [message("reply@example.com", "Re: Q3", REPLY)])
    (result,) = found(core, "budget").results
    assert result.snippet == "<mark>Budget</mark> approved, go ahead."
    (quoted,) = found(core, "forecast").results
    assert "<mark>forecast</mark>" in quoted.snippet
