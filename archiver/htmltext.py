"""Readable plain text from HTML mail, for the search index and the plain-text view.

Only the words matter here, never the looks: this text is indexed and shown as text, so the
standard library's tolerant ``HTMLParser`` is enough and no new dependency is needed.
Making HTML safe to *display* is a different job, done with nh3 in the web layer.
"""

import html
import re
from html.parser import HTMLParser

# Content a reader never sees in a mail client: code, styling and document metadata.
_INVISIBLE = frozenset({"script", "style", "head", "title", "template"})

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

_SPACE_RUN = re.compile(r"[ \t\r\n\f\v]+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAG = re.compile(r"<[^>]*>")


class _TextExtractor(HTMLParser):
    """Collects visible text, turning block structure into line breaks as it goes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden: list[str] = []
        self._pre = 0
        # Trailing newlines already written, so block breaks never pile up.
        self._newlines = 0

    def _emit(self, text: str, *, verbatim: bool = False) -> None:
        if not text:
            return
        if not verbatim and (self._newlines or not self.chunks):
            text = text.lstrip(" ")
            if not text:
                return
        self.chunks.append(text)
        stripped = text.rstrip("\n")
        self._newlines = len(text) - len(stripped) if stripped else self._newlines + len(text)

    def _break(self, count: int) -> None:
        if self.chunks and self._newlines < count:
            self.chunks.append("\n" * (count - self._newlines))
            self._newlines = count

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden.append(tag)
        elif tag == "body":
            # Broken mail often never closes <head>; the body is visible regardless.
            self._hidden.clear()
        elif self._hidden:
            return
        elif tag == "br":
            self.chunks.append("\n")
            self._newlines += 1
        elif tag == "li":
            self._break(1)
            self._emit("- ")
        elif tag in _PARAGRAPH:
            self._break(2)
            if tag == "pre":
                self._pre += 1
        elif tag in _BLOCK:
            self._break(1)
        elif tag in _CELL:
            self._emit(" ")
        elif tag == "img":
            # Image-only spam carries its words in alt text; keep them searchable.
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self._emit(f"[{_SPACE_RUN.sub(' ', alt.strip())}] ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # A self-closed <script/> or <title/> hides nothing.
        if tag not in _INVISIBLE:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            if tag in self._hidden:
                # Drop the most recent opening of this tag and anything left open inside it.
                index = len(self._hidden) - 1 - self._hidden[::-1].index(tag)
                del self._hidden[index:]
            return
        if self._hidden:
            return
        if tag in _PARAGRAPH:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self._break(2)
        elif tag in _BLOCK or tag == "li":
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._emit(data.replace("\r\n", "\n"), verbatim=True)
        else:
            self._emit(_SPACE_RUN.sub(" ", data))


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML document as plain, readable lines.

    Scripts, styles and the document head are dropped, block elements become line breaks,
    entities are decoded and runs of whitespace collapse. Never raises, because the archive
    must keep going on any mail.
    """
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.chunks)
    except Exception:
        # The parser gave up on hostile markup; a crude tag strip still yields the words.
        text = _SPACE_RUN.sub(" ", html.unescape(_TAG.sub(" ", markup)))
    text = text.replace("\xa0", " ")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
