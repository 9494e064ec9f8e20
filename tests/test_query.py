"""People type Gmail-style searches; the parser builds a tree or says where they went wrong."""

import contextlib
import pickle
import random
import time
from datetime import date

import pytest

from archiver.languages import CORE
from archiver.search.query import (
    MAX_NESTING,
    Address,
    And,
    DateRange,
    HasAttachment,
    Not,
    Or,
    Phrase,
    QuerySyntaxError,
    SizeRange,
    Word,
    parse_query,
    words_to_highlight,
)

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def error_for(text: str) -> QuerySyntaxError:
    """The error `text` raises; fails the test if it parses."""
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(text)
    return caught.value


def test_the_documented_example_finds_alices_forecast_with_attachments():
    query = 'from:alice@example.com "quarterly forecast" after:2025-01-01 has:attachment'

    assert parse_query(query) == And(
        (
            Address("from", "alice@example.com"),
            Phrase("quarterly forecast"),
            DateRange(date(2025, 1, 1), None),
            HasAttachment(),
        )
    )


@pytest.mark.parametrize("text", ["", " ", "   \t\n ", "\u00a0"])
def test_an_empty_search_box_means_everything_the_viewer_may_see(text):
    assert parse_query(text) is None
    assert words_to_highlight(parse_query(text)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budget", Word("budget")),
        ("Budget", Word("Budget")),
        ("e-mail", Word("e-mail")),
        ("budget review", And((Word("budget"), Word("review")))),
        ('"quarterly  forecast "', Phrase("quarterly forecast")),
        ('"solo"', Phrase("solo")),
        ('budget"draft two"', And((Word("budget"), Phrase("draft two")))),
        ("or and not", And((Word("or"), Word("and"), Word("not")))),
        ("a|b", Word("a|b")),
    ],
)
def test_words_and_phrases_keep_what_was_typed(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("subject:Budget", Word("Budget", "subject")),
        ('subject:"Budget  2025"', Phrase("Budget 2025", "subject")),
        ("filename:report.pdf", Word("report.pdf", "filename")),
        ('filename:"annual report.pdf"', Phrase("annual report.pdf", "filename")),
        ("list:Dev.Example.ORG", Word("dev.example.org", "list")),
        # The posting address and the header's form name the same List-Id (RFC 2919).
        ("list:Dev@Lists.Example.com", Word("dev.lists.example.com", "list")),
        ("list:<dev.lists.example.com>", Word("dev.lists.example.com", "list")),
        ('list:"<team.dev@example.org>"', Word("team.dev.example.org", "list")),
        ("msgid:<ABC.123@Mail.Example.com>", Word("abc.123@mail.example.com", "msgid")),
        ("msgid:abc@x", Word("abc@x", "msgid")),
        ('msgid:"<abc@x>"', Word("abc@x", "msgid")),
        ("subject:re:budget", Word("re:budget", "subject")),
        ("folder:Projects", Word("Projects", "folder")),
        ('folder:"Inbox/Projects"', Phrase("Inbox/Projects", "folder")),
        ("from:Alice@Example.com", Address("from", "alice@example.com")),
        ("to:bob", Address("to", "bob")),
        ("cc:example.org", Address("cc", "example.org")),
        ("from:<alice@example.com>", Address("from", "alice@example.com")),
        ('from:"Alice  Example"', Address("from", "alice example")),
        ("has:attachment", HasAttachment()),
        ("has:attachments", HasAttachment()),
        ("has:Attachment", HasAttachment()),
    ],
)
def test_fields_narrow_the_search_to_one_part_of_the_message(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    "text", ["From:alice", "FROM:alice", "fRoM:alice", "from:ALICE", "From:<Alice>"]
)
def test_field_names_and_addresses_ignore_case(text):
    assert parse_query(text) == Address("from", "alice")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("after:2025-01-01", DateRange(date(2025, 1, 1), None)),
        ("after:2025/1/1", DateRange(date(2025, 1, 1), None)),
        ("before:2025-03-01", DateRange(None, date(2025, 3, 1))),
        ("date:2025-02-28", DateRange(date(2025, 2, 28), date(2025, 3, 1))),
        ("date:2024/02/29", DateRange(date(2024, 2, 29), date(2024, 3, 1))),
        ("date:2025-02", DateRange(date(2025, 2, 1), date(2025, 3, 1))),
        ("date:2025-12", DateRange(date(2025, 12, 1), date(2026, 1, 1))),
        ("date:2025", DateRange(date(2025, 1, 1), date(2026, 1, 1))),
        ('date:"2025-06-01"', DateRange(date(2025, 6, 1), date(2025, 6, 2))),
        ("date:9999-12-31", DateRange(date(9999, 12, 31), None)),
        ("date:9999-12", DateRange(date(9999, 12, 1), None)),
    ],
)
def test_dates_become_half_open_ranges_like_gmail(text, expected):
    assert parse_query(text) == expected


def test_a_date_window_is_two_ranges_the_backend_intersects():
    assert parse_query("after:2025-01-01 before:2025-02-01") == And(
        (DateRange(date(2025, 1, 1), None), DateRange(None, date(2025, 2, 1)))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("larger:2M", SizeRange(2 * MIB, None)),
        ("larger:2m", SizeRange(2 * MIB, None)),
        ("smaller:100k", SizeRange(None, 100 * KIB)),
        ("smaller:100K", SizeRange(None, 100 * KIB)),
        ("smaller:100KB", SizeRange(None, 100 * KIB)),
        ("larger:1G", SizeRange(GIB, None)),
        ("larger:1g", SizeRange(GIB, None)),
        ("larger:5000", SizeRange(5000, None)),
        ("larger:0", SizeRange(0, None)),
    ],
)
def test_sizes_are_bytes_with_binary_units(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-spam", Not(Word("spam"))),
        ("NOT spam", Not(Word("spam"))),
        ("-from:boss@example.com", Not(Address("from", "boss@example.com"))),
        ('-"out of office"', Not(Phrase("out of office"))),
        ("-(spam OR ads)", Not(Or((Word("spam"), Word("ads"))))),
        ("NOT has:attachment", Not(HasAttachment())),
        ("budget -draft", And((Word("budget"), Not(Word("draft"))))),
        ("budget NOT draft", And((Word("budget"), Not(Word("draft"))))),
        ("--spam", Word("spam")),
        ("NOT -spam", Word("spam")),
        ("-(-spam)", Word("spam")),
        ("---spam", Not(Word("spam"))),
    ],
)
def test_minus_and_not_exclude_what_follows(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b OR c", And((Word("a"), Or((Word("b"), Word("c")))))),
        ("a OR b c", And((Or((Word("a"), Word("b"))), Word("c")))),
        ("(a OR b) c", And((Or((Word("a"), Word("b"))), Word("c")))),
        ("-a OR b", Or((Not(Word("a")), Word("b")))),
        ("a OR b OR c", Or((Word("a"), Word("b"), Word("c")))),
        ("a OR (b OR c)", Or((Word("a"), Word("b"), Word("c")))),
        ("a AND b", And((Word("a"), Word("b")))),
        ("a AND b OR c", And((Word("a"), Or((Word("b"), Word("c")))))),
        ("a (b c) d", And((Word("a"), Word("b"), Word("c"), Word("d")))),
        ("(a b) OR c", Or((And((Word("a"), Word("b"))), Word("c")))),
        ("((a))", Word("a")),
        ("(a)(b)", And((Word("a"), Word("b")))),
        ("a OR -b", Or((Word("a"), Not(Word("b"))))),
        (
            "from:alice OR from:bob has:attachment",
            And((Or((Address("from", "alice"), Address("from", "bob"))), HasAttachment())),
        ),
    ],
)
def test_or_binds_tighter_than_juxtaposition_as_in_gmail(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://example.com/a?b=c", Word("http://example.com/a?b=c")),
        ("https://example.com/report:2026", Word("https://example.com/report:2026")),
        ("mailto:alice@example.com", Word("mailto:alice@example.com")),
        ("cid:image001.png@01DA", Word("cid:image001.png@01DA")),
        ("10:30", Word("10:30")),
        ("10:30:15", Word("10:30:15")),
        ("fe80::1", Word("fe80::1")),
        ("2001:db8::ff00:42:8329", Word("2001:db8::ff00:42:8329")),
        ("dead:beef::1", Word("dead:beef::1")),
        ("aa:bb:cc:dd:ee:ff", Word("aa:bb:cc:dd:ee:ff")),
        ("std::vector", Word("std::vector")),
        ("C:\\Users", Word("C:\\Users")),
        (":", Word(":")),
        (":from", Word(":from")),
        ("Re:", Word("Re:")),
        ("Re:Budget", Word("Re:Budget")),
        ("Fwd:Budget", Word("Fwd:Budget")),
        ("Note: budget", And((Word("Note:"), Word("budget")))),
        ('"re: budget"', Phrase("re: budget")),
        ('"foo:bar"', Phrase("foo:bar")),
        ("x1:y", Word("x1:y")),
    ],
)
def test_words_with_a_colon_that_makes_no_field_are_searched_as_words(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "position", "hint"),
    [
        ("foo:bar", 0, "'foo:' is not a search field; to search for the text, put \"foo:bar\""),
        ("budget subjects:plan", 7, "'subjects:' is not a search field (did you mean 'subject:'?)"),
        ("dari:budi", 0, "'dari:' is not a search field"),
        ('note:"two words"', 0, "'note:' is not a search field; to search for the text, put it"),
        ("-X-Mailer:mutt", 1, "'X-Mailer:' is not a search field"),
        ("(a OR Sender:bob)", 6, "'Sender:' is not a search field"),
    ],
)
def test_an_unknown_field_is_an_error_naming_the_fields(text, position, hint):
    error = error_for(text)
    assert error.position == position
    assert error.message.startswith(hint)
    assert error.message.endswith(
        "the fields are from:, to:, cc:, subject:, list:, filename:, folder:, msgid:, has:, is:, "
        "before:, after:, date:, larger:, smaller:"
    )


def test_rules_saved_before_unknown_fields_were_errors_keep_their_meaning():
    assert parse_query("foo:bar budget", unknown_fields=True) == And(
        (Word("foo:bar"), Word("budget"))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("subject:Grüße", Word("Grüße", "subject")),
        ("from:Jürgen@Bücher.de", Address("from", "jürgen@bücher.de")),
        ('"Café crème"', Phrase("Café crème")),
        ("Ελληνικά -日本語", And((Word("Ελληνικά"), Not(Word("日本語"))))),
        ("list:Größe.example", Word("größe.example", "list")),
    ],
)
def test_unicode_queries_work_like_ascii_ones(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "position"),
    [
        # Quotes and parentheses point at the one left open or unmatched.
        ('budget "draft', 7),
        ('subject:"draft', 8),
        ("(budget", 0),
        ("a (b (c)", 2),
        ("budget)", 6),
        ("(a) b)", 5),
        ("()", 0),
        ("a ( ) b", 2),
        # Operators with nothing to work on point at the operator.
        ("budget OR", 7),
        ("OR budget", 0),
        ("a OR OR b", 2),
        ("(a OR) b", 3),
        ("budget AND", 7),
        ("AND budget", 0),
        ("NOT", 0),
        ("budget NOT", 7),
        ("NOT OR a", 0),
        ("-", 0),
        ("budget -", 7),
        ("budget - draft", 7),
        ("(-)", 1),
        ("-OR a", 0),
        # Field values point at the value, or where it should have been.
        ("from:", 5),
        ("from: alice", 5),
        ("to:(a b)", 3),
        ('subject:""', 8),
        ('"   "', 0),
        ("msgid:<>", 6),
        ("has:pdf", 4),
        ("has:", 4),
        ("after:yesterday", 6),
        ("after:2025-13-01", 6),
        ("after:2025-02-30", 6),
        ("after:2025-01", 6),
        ("before:0000-01-01", 7),
        ("date:25-01-01", 5),
        ("date:2025-01-01-01", 5),
        ("date:2025-01/01", 5),
        ("date:2025-001-01", 5),
        ("date:\uff12\uff10\uff12\uff15-01-01", 5),  # full-width digits
        ("date:2025--01", 5),
        ("budget date:2025-1x", 12),
        ("larger:big", 7),
        ("larger:2T", 7),
        ("smaller:k", 8),
        ("smaller:-5", 8),
        ("larger:1.5M", 7),
        ("larger:" + "9" * 30, 7),
    ],
)
def test_mistakes_are_reported_at_the_character_to_fix(text, position):
    assert error_for(text).position == position


def test_the_message_counts_positions_from_one_for_people():
    error = error_for("has:pdf")

    assert error.message == "'has:' only understands 'attachment' or 'virus', not 'pdf'"
    assert str(error) == (
        "'has:' only understands 'attachment' or 'virus', not 'pdf' at position 5"
    )
    assert isinstance(error, ValueError)


def test_the_error_survives_pickling_between_processes():
    copy = pickle.loads(pickle.dumps(QuerySyntaxError(CORE.lazy_gettext("boom"), 3)))

    assert (copy.message, copy.position, str(copy)) == ("boom", 3, "boom at position 4")


def test_the_leftmost_mistake_is_the_one_reported():
    assert error_for("has:pdf after:never").position == 4
    assert error_for(") has:pdf").position == 0


def test_a_query_over_a_thousand_characters_is_refused():
    assert parse_query("a" * 1000) == Word("a" * 1000)
    assert error_for("a" * 1001).position == 1000


def test_a_query_with_more_than_a_hundred_terms_is_refused_at_the_first_extra_term():
    hundred = " ".join(["w"] * 100)
    assert isinstance(parse_query(hundred), And)
    assert error_for(hundred + " extra").position == len(hundred) + 1


def test_operators_do_not_count_as_terms():
    query = " OR ".join(["w"] * 100)

    assert len(query) <= 1000
    assert parse_query(query) == Or(tuple([Word("w")] * 100))


def test_parentheses_nest_thirty_two_deep_and_no_deeper():
    assert parse_query("(" * MAX_NESTING + "a" + ")" * MAX_NESTING) == Word("a")
    assert error_for("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1)).position == (
        MAX_NESTING
    )


@pytest.mark.parametrize(
    "text",
    [
        "(" * 1000,
        ")" * 1000,
        "-" * 999 + "a",
        "NOT " * 249 + "a",
        '"' * 1000,
        '"' * 999,
        "a:" * 500,
        "from:" * 200,
        "a OR " * 200,
        "(a OR " * 166,
        "-(" * 500,
    ],
)
def test_hostile_queries_are_answered_at_once(text):
    started = time.perf_counter()
    with contextlib.suppress(QuerySyntaxError):
        parse_query(text)
    assert time.perf_counter() - started < 0.1


def test_ten_thousand_random_queries_parse_or_fail_politely_and_quickly():
    rng = random.Random(0)
    alphabet = [*"abcxyzAB", " ", " ", '"', "(", ")", "-", ":", "OR", "AND", "NOT", *"0129"]
    alphabet += ["from", "subject", "has", "date", "after", "larger", "attachment", "2025-01-01"]
    outcomes = {"parsed": 0, "refused": 0}
    started = time.perf_counter()
    for _ in range(10_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            parse_query(text)
        except QuerySyntaxError as error:
            assert 0 <= error.position <= len(text), text
            outcomes["refused"] += 1
        else:
            outcomes["parsed"] += 1
    assert time.perf_counter() - started < 10
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 100


def test_nodes_are_frozen_and_hashable_so_backends_can_cache_translations():
    node = parse_query("budget from:alice")

    assert hash(node) == hash(parse_query("budget from:alice"))
    with pytest.raises(AttributeError):
        node.nodes = ()  # type: ignore[misc,union-attr]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("budget", ["budget"]),
        ('budget "quarterly forecast"', ["budget", "quarterly", "forecast"]),
        ("budget -draft", ["budget"]),
        ("budget NOT (draft OR memo)", ["budget"]),
        ("--budget", ["budget"]),
        ("subject:budget from:alice filename:report", []),
        ("(a OR b) c a", ["a", "b", "c"]),
        ("Budget budget", ["Budget", "budget"]),
        ("10:30 has:attachment after:2025-01-01 larger:1M", ["10:30"]),
    ],
)
def test_only_words_that_can_appear_in_a_hit_are_highlighted(text, words):
    assert words_to_highlight(parse_query(text)) == words


def test_nothing_is_highlighted_for_an_empty_search():
    assert words_to_highlight(None) == []
