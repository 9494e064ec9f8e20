"""The Gmail-style query language: what people type into the search box, as a small tree.

The parser promises backends (whoosh, PostgreSQL) a tree they can translate without
second-guessing the user's text, and promises people that every mistake comes back as a
`QuerySyntaxError` with a position the UI can point at. It is strict about operators,
fields and field values: `foo:bar` with a field-like `foo` that is not a field is an
error naming the fields, since searching it as a word would quietly find something else
(`sender:bob` would find mail with the words "sender" and "bob"). Words whose colon makes
no field (`10:30`, URLs, `fe80::1`, `Re:`) are words, as is anything in quotes.

The search box is where untrusted text meets the index, so parsing is linear in the input:
a single left-to-right scan without regular expressions, recursion only per parenthesis
level, and caps on length, terms and nesting so a hostile query cannot tie up a worker.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from archiver.languages import CORE, Text, TextError

MAX_QUERY_LENGTH = 1000
MAX_TERMS = 100
MAX_NESTING = 32
# Backends keep sizes in signed 64-bit columns; a larger number could only overflow there.
MAX_SIZE = 2**63 - 1

FIELDS_TEXT = frozenset({"subject", "filename", "folder", "list", "msgid"})
FIELDS_ADDRESS = frozenset({"from", "to", "cc"})
FIELDS_DATE = frozenset({"after", "before", "date"})
FIELDS_SIZE = frozenset({"larger", "smaller"})
_FIELDS = FIELDS_TEXT | FIELDS_ADDRESS | FIELDS_DATE | FIELDS_SIZE | {"has", "is"}
# In the order the README lists them, for the error that names them.
FIELD_NAMES = (
    "from", "to", "cc", "subject", "list", "filename", "folder", "msgid", "has", "is",
    "before", "after", "date", "larger", "smaller",
)  # fmt: skip
# Words, not fields: URI schemes written without "//" (pasted with addresses and
# identifiers), and the reply and forward marks of subject lines ("Re:Budget").
_NOT_FIELDS = frozenset(
    {"mailto", "tel", "sip", "xmpp", "urn", "cid", "mid", "news", "data"}
    | {"re", "fw", "fwd", "aw", "wg", "sv", "vs", "tr", "rv", "antw", "ref"}
)
_ATTACHMENT_VALUES = frozenset({"attachment", "attachments"})
_VIRUS_VALUES = frozenset({"virus", "viruses"})
# The message flags `is:` finds (`is:duplicate-id` is the flag `duplicate_id`), set by the
# archive: a different message under an archived Message-ID, and mail to postmaster@.
MARKS = frozenset({"duplicate_id", "postmaster"})
# Upper-case only, as in Gmail: "or" and "not" in lower case are words people search for.
_KEYWORDS = frozenset({"OR", "AND", "NOT"})
_WORD_STOPS = frozenset('()"')
_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


class QuerySyntaxError(TextError):
    """A query the parser cannot read; `position` is the 0-based character offset of the
    problem, `text` says what it is (in the reader's language where it is shown)."""

    def __init__(self, text: Text, position: int) -> None:
        super().__init__(text, position)
        self.position = position

    @property
    def message(self) -> str:
        """The problem in English, without the position."""
        return str(self.text)

    @property
    def described(self) -> Text:
        """The problem and where it is, counted from one for people (the UI underlines
        `position` itself)."""
        return CORE.lazy_gettext(
            "%(problem)s at position %(position)s",
            problem=self.text,
            position=str(self.position + 1),
        )

    def __str__(self) -> str:
        return str(self.described)


@dataclass(frozen=True)
class Word:
    """A bare word, or `field:word`; the text keeps its case because backends fold it."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Phrase:
    """Words that must appear together: `"quoted words"` or `subject:"a b"`."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Address:
    """`from:`, `to:` or `cc:`; the lower-cased value may be an address, local part or domain.

    The parser cannot tell which the user meant, so the backend decides how to match it.
    """

    field: str
    value: str


@dataclass(frozen=True)
class Participant:
    """Mail `address` sent or received in a role that makes it theirs (the index's
    participants, `archiver.access.GRANTING_ROLES`, envelope included).

    Nobody types it: the parser never makes one. A case's scope does, to say "a custodian's
    mail" in the same tree as the case's queries (`archiver.cases.scope`).
    """

    address: str


@dataclass(frozen=True)
class HasAttachment:
    """`has:attachment`: messages that carry at least one attachment."""


@dataclass(frozen=True)
class HasVirus:
    """`has:virus`: messages in which clamd found a virus signature."""


@dataclass(frozen=True)
class IsSpam:
    """`is:spam`: messages spamd scored at or above its own required score."""


@dataclass(frozen=True)
class IsMarked:
    """`is:duplicate-id`, `is:postmaster`: messages the archive flagged so (`MARKS`)."""

    mark: str


@dataclass(frozen=True)
class DateRange:
    """Messages dated in the half-open range [start, end); None leaves that side open."""

    start: date | None
    end: date | None


@dataclass(frozen=True)
class SizeRange:
    """Messages whose size in bytes is >= minimum and < maximum; None leaves that side open."""

    minimum: int | None
    maximum: int | None


@dataclass(frozen=True)
class Not:
    """Messages that do not match `node`."""

    node: Node


@dataclass(frozen=True)
class And:
    """Messages that match every node; never fewer than two, never an And inside."""

    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Messages that match at least one node; never fewer than two, never an Or inside."""

    nodes: tuple[Node, ...]


Node = (
    Word
    | Phrase
    | Address
    | Participant
    | HasAttachment
    | HasVirus
    | IsSpam
    | IsMarked
    | DateRange
    | SizeRange
    | Not
    | And
    | Or
)


def parse_query(text: str, *, unknown_fields: bool = False) -> Node | None:
    """None for an empty/whitespace query (meaning: everything the viewer may see).

    Raises QuerySyntaxError for anything the grammar cannot read, so callers can show the
    user where the problem is instead of silently searching for something else.
    `unknown_fields` reads `foo:bar` as a word, as queries were read when retention rules
    saved before that was an error were checked (see `retention.sweep`).
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(
            CORE.lazy_gettext(
                "the query is longer than %(limit)s characters", limit=MAX_QUERY_LENGTH
            ),
            MAX_QUERY_LENGTH,
        )
    return _Parser(text, unknown_fields).parse()


def words_to_highlight(node: Node | None) -> list[str]:
    """The bare (field-less) words and phrase words, not under a Not, for snippet highlighting.

    Fielded terms matched a header rather than the body text, and negated ones by definition
    do not occur in the hit, so lighting them up in a snippet would mislead.
    """
    words: list[str] = []
    seen: set[str] = set()
    # An explicit stack keeps the walk safe for any tree, not only the parser's shallow ones.
    stack: list[Node] = [] if node is None else [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack.extend(reversed(current.nodes))
            continue
        if isinstance(current, Word) and current.field is None:
            candidates = [current.text]
        elif isinstance(current, Phrase) and current.field is None:
            candidates = current.text.split()
        else:
            continue
        for word in candidates:
            if word not in seen:
                seen.add(word)
                words.append(word)
    return words


@dataclass(frozen=True)
class _Token:
    """One lexical unit; `kind` is "term", "(", ")", "-", "OR", "AND", "NOT" or "end"."""

    kind: str
    position: int
    node: Node | None = None


class _Parser:
    """Recursive descent over a token stream, with OR binding tighter than juxtaposition.

    query    := sequence
    sequence := alternatives ( [AND] alternatives )*
    alternatives := unary ( OR unary )*
    unary    := ( "-" | NOT )* primary
    primary  := term | "(" sequence ")"

    Tokens are pulled one at a time, so the leftmost problem in the text is the one reported.
    """

    def __init__(self, text: str, unknown_fields: bool = False) -> None:
        self._tokens = _tokenize(text, unknown_fields)
        self._current = next(self._tokens)

    def parse(self) -> Node | None:
        """The whole query as one node, or None when it holds no terms at all."""
        nodes = self._sequence(depth=0)
        token = self._peek()
        if token.kind == ")":
            raise QuerySyntaxError(CORE.lazy_gettext("')' has no matching '('"), token.position)
        return _join(And, nodes) if nodes else None

    def _peek(self) -> _Token:
        return self._current

    def _take(self) -> _Token:
        token = self._current
        if token.kind != "end":
            self._current = next(self._tokens)
        return token

    def _expect_term_after(self, operator: _Token) -> None:
        following = self._peek()
        if following.kind in ("end", ")", "OR", "AND"):
            raise QuerySyntaxError(
                CORE.lazy_gettext("'%(operator)s' needs a term after it", operator=operator.kind),
                operator.position,
            )

    def _sequence(self, depth: int) -> list[Node]:
        nodes: list[Node] = []
        while True:
            token = self._peek()
            if token.kind in ("end", ")"):
                return nodes
            if token.kind == "AND":
                if not nodes:
                    raise _needs_term_before(token)
                self._expect_term_after(self._take())
                continue
            nodes.append(self._alternatives(depth))

    def _alternatives(self, depth: int) -> Node:
        nodes = [self._unary(depth)]
        while self._peek().kind == "OR":
            self._expect_term_after(self._take())
            nodes.append(self._unary(depth))
        return _join(Or, nodes)

    def _unary(self, depth: int) -> Node:
        # A loop, not recursion: "- - - ... a" must cost stack only for parentheses.
        negated = False
        while self._peek().kind in ("-", "NOT"):
            self._expect_term_after(self._take())
            negated = not negated
        node = self._primary(depth)
        return _negate(node) if negated else node

    def _primary(self, depth: int) -> Node:
        token = self._take()
        if token.kind == "term" and token.node is not None:
            return token.node
        if token.kind == "(":
            if depth >= MAX_NESTING:
                raise QuerySyntaxError(
                    CORE.lazy_gettext(
                        "parentheses nest deeper than %(limit)s levels", limit=MAX_NESTING
                    ),
                    token.position,
                )
            nodes = self._sequence(depth + 1)
            if self._take().kind != ")":
                raise QuerySyntaxError(CORE.lazy_gettext("'(' is never closed"), token.position)
            if not nodes:
                raise QuerySyntaxError(
                    CORE.lazy_gettext("'()' holds no search terms"), token.position
                )
            return _join(And, nodes)
        if token.kind in ("OR", "AND"):
            raise _needs_term_before(token)
        raise QuerySyntaxError(CORE.lazy_gettext("a search term is missing here"), token.position)


def _negate(node: Node) -> Node:
    # Not(Not(x)) is x; folding it keeps backends from building pointless double negations.
    return node.node if isinstance(node, Not) else Not(node)


def _join(kind: type[And] | type[Or], nodes: list[Node]) -> Node:
    """One node for `nodes` under `kind`, with a lone child unwrapped and like nodes merged."""
    flat: list[Node] = []
    for node in nodes:
        if isinstance(node, kind):
            flat.extend(node.nodes)
        else:
            flat.append(node)
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _tokenize(text: str, unknown_fields: bool = False) -> Iterator[_Token]:
    """The tokens of `text` left to right, ending with an "end" token; one pass, no regex."""
    length = len(text)
    terms = 0
    index = 0
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char in "()":
            yield _Token(char, index)
            index += 1
            continue
        if char == "-":
            following = text[index + 1 : index + 2]
            # "a - b" is more likely a typo than a search for "b" alone: say so.
            if not following or following.isspace() or following == ")":
                raise QuerySyntaxError(CORE.lazy_gettext("'-' needs a term right after it"), index)
            yield _Token("-", index)
            index += 1
            continue
        if char == '"':
            content, end = _quoted(text, index)
            phrase = " ".join(content.split())
            if not phrase:
                raise QuerySyntaxError(CORE.lazy_gettext("the quotes hold no words"), index)
            token = _Token("term", index, Phrase(phrase))
        else:
            end = index
            while end < length and not text[end].isspace() and text[end] not in _WORD_STOPS:
                end += 1
            word = text[index:end]
            if word in _KEYWORDS:
                yield _Token(word, index)
                index = end
                continue
            node, end = _word_or_field(text, index, end, unknown_fields)
            token = _Token("term", index, node)
        terms += 1
        if terms > MAX_TERMS:
            raise QuerySyntaxError(
                CORE.lazy_gettext("the query has more than %(limit)s terms", limit=MAX_TERMS), index
            )
        yield token
        index = end
    yield _Token("end", length)


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The text between the quote at `start` and the next quote, and the offset after it."""
    close = text.find('"', start + 1)
    if close < 0:
        raise QuerySyntaxError(CORE.lazy_gettext("this quote is never closed"), start)
    return text[start + 1 : close], close + 1


def _word_or_field(
    text: str, start: int, end: int, unknown_fields: bool = False
) -> tuple[Node, int]:
    """The node for the word text[start:end], and where scanning resumes.

    A known `field:` prefix makes a field term, whose value may be a quoted string right
    after the colon; an unknown one is an error (`_unknown_field`); any other word, colons
    and all, stays a plain word.
    """
    word = text[start:end]
    name, colon, value = word.partition(":")
    field = name.lower()
    if not colon or field not in _FIELDS:
        quoted = end < len(text) and text[end] == '"'
        if colon and not unknown_fields and _looks_like_field(name, value, quoted):
            raise _unknown_field(name, value, start)
        return Word(word), end
    value_position = start + len(name) + 1
    if value:
        return _field_node(field, value, value_position, quoted=False), end
    if end < len(text) and text[end] == '"':
        content, after = _quoted(text, end)
        return _field_node(field, " ".join(content.split()), end, quoted=True), after
    raise _needs_value(name, value_position)


def _looks_like_field(name: str, value: str, quoted: bool) -> bool:
    """Whether `name:value` was meant as a field: a name of two or more letters (hyphens
    allowed: `x-mailer:`) and a value of one more word or a quote, as `from:bob` has.

    Not: numbers and times (`10:30`, `1:2`), a drive letter (`C:\\`), URLs (`https://`,
    `mailto:`), IPv6 and MAC addresses and C++ names (a second colon), and a bare `Re:` or
    `Note:` pasted from a subject line (nothing after the colon).
    """
    return (
        len(name) >= 2
        and name.replace("-", "").isalpha()
        and name.lower() not in _NOT_FIELDS
        and (bool(value) or quoted)
        and ":" not in value
        and not value.startswith("/")
    )


def _unknown_field(name: str, value: str, position: int) -> QuerySyntaxError:
    """The error for `name:` that is no field: the nearest field, how to search for the
    text itself, and which fields there are."""
    near = difflib.get_close_matches(name.lower(), FIELD_NAMES, n=1, cutoff=0.7)
    hint = CORE.lazy_gettext(" (did you mean '%(field)s:'?)", field=near[0]) if near else ""
    fields = ", ".join(f"{field}:" for field in FIELD_NAMES)
    if value:
        quoted = f'"{name}:{value}"'
        text = CORE.lazy_gettext(
            "'%(name)s:' is not a search field%(hint)s; to search for the text, put "
            "%(quoted)s in quotes; the fields are %(fields)s",
            name=name,
            hint=hint,
            quoted=quoted,
            fields=fields,
        )
    else:
        text = CORE.lazy_gettext(
            "'%(name)s:' is not a search field%(hint)s; to search for the text, put it in "
            "quotes; the fields are %(fields)s",
            name=name,
            hint=hint,
            fields=fields,
        )
    return QuerySyntaxError(text, position)


def _needs_value(field: str, position: int) -> QuerySyntaxError:
    return QuerySyntaxError(CORE.lazy_gettext("'%(field)s:' needs a value", field=field), position)


def _needs_term_before(token: _Token) -> QuerySyntaxError:
    """For `OR` or `AND` with nothing before it."""
    return QuerySyntaxError(
        CORE.lazy_gettext("'%(operator)s' needs a term before it", operator=token.kind),
        token.position,
    )


def _not_a_date(value: str, position: int) -> QuerySyntaxError:
    return QuerySyntaxError(
        CORE.lazy_gettext("%(value)s is not a date (write YYYY-MM-DD)", value=repr(value)),
        position,
    )


def _field_node(field: str, value: str, position: int, *, quoted: bool) -> Node:
    """The node for `field:value`; `position` is where the value starts, for errors."""
    if field in FIELDS_ADDRESS:
        # "<alice@example.com>" is how addresses look when copied out of a header.
        value = _strip_angles(value).lower()
    elif field == "msgid":
        value = _strip_angles(value).lower()
    elif field == "list":
        value = list_id(value)
    if not value:
        raise _needs_value(field, position)
    if field in FIELDS_ADDRESS:
        return Address(field, value)
    if field in ("list", "msgid"):
        # Identifiers match whole or not at all, so a quoted one is still one word.
        return Word(value, field)
    if field in FIELDS_TEXT:
        return Phrase(value, field) if quoted else Word(value, field)
    if field == "has":
        if value.lower() in _ATTACHMENT_VALUES:
            return HasAttachment()
        if value.lower() in _VIRUS_VALUES:
            return HasVirus()
        raise QuerySyntaxError(
            CORE.lazy_gettext(
                "'has:' only understands 'attachment' or 'virus', not %(value)s",
                value=repr(value),
            ),
            position,
        )
    if field == "is":
        if value.lower() == "spam":
            return IsSpam()
        mark = value.lower().replace("-", "_")
        if mark in MARKS:
            return IsMarked(mark)
        raise QuerySyntaxError(
            CORE.lazy_gettext(
                "'is:' only understands 'spam', 'duplicate-id' or 'postmaster', not %(value)s",
                value=repr(value),
            ),
            position,
        )
    if field in FIELDS_DATE:
        return _date_range(field, value, position)
    return _size_range(field, value, position)


def _strip_angles(value: str) -> str:
    return value.removeprefix("<").removesuffix(">")


def list_id(value: str) -> str:
    """The List-Id a `list:` value names: `dev.lists.example.com` as it is, and the posting
    address `dev@lists.example.com` or the header's `<dev.lists.example.com>` as that too.

    The archive files list mail under its RFC 2919 List-Id, which the list engine makes
    from the posting address by writing `.` for its `@` (`name@domain` is `name.domain`).
    People type the address they post to, so the rule is applied here, once, and every
    reader of `list:` (search page, API, `arsip search`, policies, holds, both backends)
    gets the same List-Id. The last `@` is the one that separates the domain.
    """
    value = _strip_angles(value.strip()).lower()
    local, _at, domain = value.rpartition("@")
    return f"{local}.{domain}" if local and domain else value


def _date_range(field: str, value: str, position: int) -> DateRange:
    """after:D is [D, ...), before:D is [..., D), date: covers the whole day, month or year."""
    separator = "/" if "/" in value else "-"
    parts = value.split(separator)
    well_formed = (
        len(parts) <= 3
        and all(part.isascii() and part.isdigit() for part in parts)
        and len(parts[0]) == 4
        and all(len(part) <= 2 for part in parts[1:])
    )
    if not well_formed or (field != "date" and len(parts) != 3):
        raise _not_a_date(value, position)
    numbers = [int(part) for part in parts]
    try:
        first = date(numbers[0], *numbers[1:], *[1] * (3 - len(numbers)))
    except ValueError:
        raise _not_a_date(value, position) from None
    if field == "after":
        return DateRange(first, None)
    if field == "before":
        return DateRange(None, first)
    return DateRange(first, _following(first, len(parts)))


def _following(first: date, precision: int) -> date | None:
    """The start of the next day, month or year after `first`; None past the calendar's end."""
    try:
        if precision == 3:
            return first + timedelta(days=1)
        if precision == 2:
            return date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return date(first.year + 1, 1, 1)
    except (OverflowError, ValueError):
        # Nothing is dated after 9999-12-31, so an open end means the same thing.
        return None


def _size_range(field: str, value: str, position: int) -> SizeRange:
    """larger:N is size >= N, smaller:N is size < N; N is bytes with an optional k, M or G."""
    spelled = value.lower().removesuffix("b")
    multiplier = _SIZE_UNITS.get(spelled[-1:], 1)
    number = spelled[:-1] if spelled[-1:] in _SIZE_UNITS else spelled
    if not (number.isascii() and number.isdigit()):
        raise QuerySyntaxError(
            CORE.lazy_gettext("%(value)s is not a size (write e.g. 500k or 2M)", value=repr(value)),
            position,
        )
    size = int(number) * multiplier
    if size > MAX_SIZE:
        raise QuerySyntaxError(
            CORE.lazy_gettext("%(value)s is larger than any message can be", value=repr(value)),
            position,
        )
    if field == "larger":
        return SizeRange(size, None)
    return SizeRange(None, size)
