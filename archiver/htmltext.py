"""Readable plain text from HTML mail, for the search index and the plain-text view.

Only the words matter here, never the looks: this text is indexed and shown as text, so a
small scanner that knows tags, comments and script/style blocks is enough and no new
dependency is needed. Making HTML safe to *display* is a different job, done with nh3 in the
web layer.

The scanner is deliberately not ``html.parser.HTMLParser``: on the Python 3.11 in use, that
parser needs minutes for a few hundred kilobytes of unclosed tags ("<a <a <a ..."), which
any spammer can send. Here every byte is looked at a bounded number of times, so time grows
linearly with the input whatever it holds.
"""

import html
import re

# Content a reader never sees in a mail client: document metadata and templates. Script and
# style are skipped separately, because their content is not markup.
_INVISIBLE = frozenset({"head", "title", "template"})
_RAW_TEXT_END = {
    "script": re.compile(r"</script[\s/>]", re.IGNORECASE),
    "style": re.compile(r"</style[\s/>]", re.IGNORECASE),
}

# Elements that start a new line when rendered; without the line breaks, words from adjacent
# cells and paragraphs would run together and search would match across them.
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "main",
        "nav",
        "ol",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
    }
)
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre"})
_CELL = frozenset({"td", "th"})

_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:._-]*)")
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_SPACE_RUN = re.compile(r"[ \t\r\n\f\v]+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


class _Writer:
    """Accumulates text, turning block structure into line breaks without piling them up."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.newlines = 0  # trailing newlines already written
        self.pre = 0

    def text(self, data: str) -> None:
        if self.pre:
            data = data.replace("\r\n", "\n")
        else:
            data = _SPACE_RUN.sub(" ", data)
            if self.newlines or not self.chunks or self.chunks[-1].endswith(" "):
                data = data.lstrip(" ")
        if not data:
            return
        self.chunks.append(data)
        stripped = data.rstrip("\n")
        self.newlines = len(data) - len(stripped) if stripped else self.newlines + len(data)

    def line_break(self, count: int) -> None:
        if self.chunks and self.newlines < count:
            self.chunks.append("\n" * (count - self.newlines))
            self.newlines = count

    def hard_break(self) -> None:
        self.chunks.append("\n")
        self.newlines += 1


def _open_tag(out: _Writer, name: str, attributes: str) -> None:
    if name == "br":
        out.hard_break()
    elif name == "li":
        out.line_break(1)
        out.text("- ")
    elif name in _PARAGRAPH:
        out.line_break(2)
        if name == "pre":
            out.pre += 1
    elif name in _BLOCK:
        out.line_break(1)
    elif name in _CELL:
        out.text(" ")
    elif name == "img":
        # Image-only spam carries its words in alt text; keep them searchable.
        match = _ALT.search(attributes)
        alt = html.unescape(next((g for g in match.groups() if g), "")) if match else ""
        if alt.strip():
            out.text(f" [{alt.strip()}] ")


def _close_tag(out: _Writer, name: str) -> None:
    if name in _PARAGRAPH:
        if name == "pre" and out.pre:
            out.pre -= 1
        out.line_break(2)
    elif name in _BLOCK or name == "li":
        out.line_break(1)


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML document as plain, readable lines.

    Scripts, styles and the document head are dropped, block elements become line breaks,
    entities are decoded and runs of whitespace collapse. Never raises and runs in linear
    time, because the archive must keep going on any mail.
    """
    out = _Writer()
    hidden: list[str] = []
    length = len(markup)
    position = 0
    next_gt = -1  # cached position of the next ">", so unclosed tags cost nothing extra

    def tag_end(start: int) -> int:
        nonlocal next_gt
        if next_gt != length and next_gt < start:
            found = markup.find(">", start)
            next_gt = length if found < 0 else found
        return next_gt

    while position < length:
        lt = markup.find("<", position)
        if lt < 0:
            lt = length
        if lt > position and not hidden:
            out.text(html.unescape(markup[position:lt]))
        if lt == length:
            break
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            position = length if close < 0 else close + 3
            continue
        match = _TAG_NAME.match(markup, lt)
        if match is None:
            if markup.startswith(("<!", "<?"), lt):
                # Doctype, CDATA or processing instruction: nothing to read.
                position = tag_end(lt) + 1
            else:
                if not hidden:
                    out.text("<")
                position = lt + 1
            continue
        closing, name = match.group(1) == "/", match.group(2).lower()
        end = tag_end(match.end())
        attributes = markup[match.end() : end]
        position = end + 1
        if closing:
            if name in hidden:
                # Close the latest opening of this tag and anything left open inside it.
                del hidden[len(hidden) - 1 - hidden[::-1].index(name) :]
            elif not hidden:
                _close_tag(out, name)
        elif name in _RAW_TEXT_END:
            if not attributes.endswith("/"):
                close_match = _RAW_TEXT_END[name].search(markup, position)
                position = length if close_match is None else close_match.start()
        elif name in _INVISIBLE:
            # The depth cap keeps hostile nesting from making each closing tag a long search.
            if not attributes.endswith("/") and len(hidden) < 64:
                hidden.append(name)
        elif name == "body":
            # Broken mail often never closes <head>; the body is visible regardless.
            hidden.clear()
        elif not hidden:
            _open_tag(out, name, attributes)

    text = "".join(out.chunks).replace("\xa0", " ")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
