"""Making a message's HTML body safe to show: nh3 (ammonia) with a mail-reader's allow list.

Mail HTML is written by strangers, so the cleaned document must run no script, submit no
form, and fetch nothing from the network by itself: a remote image is a read receipt (and
a tracker) the sender gets for free. Remote images are swapped for a local placeholder
until the reader asks for them. The page that embeds the result adds a sandboxed iframe
and a strict Content-Security-Policy on top, so a gap here is not a hole on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nh3

TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "div",
        "dl",
        "dt",
        "em",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
    }
)

# No `background` (a remote image by another name), no `srcset`, no event handlers.
_EVERYWHERE = {"align", "dir", "lang", "style", "title", "valign"}
_TABLE = {"bgcolor", "border", "cellpadding", "cellspacing", "height", "width"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": _EVERYWHERE,
    "a": {"href", "name"},
    "img": {"alt", "height", "src", "width"},
    "font": {"color", "face", "size"},
    "table": _TABLE,
    "td": _TABLE | {"colspan", "nowrap", "rowspan"},
    "th": _TABLE | {"colspan", "nowrap", "rowspan"},
    "tr": {"bgcolor", "height"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
}

# Looks only: every property that can name a URL (background, background-image, list-style,
# border-image, content, cursor, ...) is left out, so CSS cannot fetch anything either.
STYLE_PROPERTIES = frozenset(
    {
        "background-color",
        "border",
        "border-bottom",
        "border-collapse",
        "border-color",
        "border-left",
        "border-radius",
        "border-right",
        "border-spacing",
        "border-style",
        "border-top",
        "border-width",
        "color",
        "display",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-variant",
        "font-weight",
        "height",
        "letter-spacing",
        "line-height",
        "margin",
        "margin-bottom",
        "margin-left",
        "margin-right",
        "margin-top",
        "max-width",
        "min-width",
        "padding",
        "padding-bottom",
        "padding-left",
        "padding-right",
        "padding-top",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "vertical-align",
        "white-space",
        "width",
        "word-break",
        "word-spacing",
    }
)

# Whole elements whose content is not for the reader (or is code): dropped with their text.
DROPPED_WITH_CONTENT = frozenset(
    {"head", "noscript", "script", "style", "template", "title", "textarea", "xmp"}
)

# `data` is allowed through nh3's scheme check only so the filter below can keep inline
# raster images; every other data: URL (data:text/html above all) is dropped there.
URL_SCHEMES = frozenset({"http", "https", "mailto", "cid", "data"})
_INLINE_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp);", re.IGNORECASE)
_REMOTE = re.compile(r"(?:https?:)?//", re.IGNORECASE)
_SCRIPT_URL = re.compile(r"(?:java|vb)script:|data:text/html", re.IGNORECASE)
# Browsers ignore whitespace and control characters inside a URL's scheme.
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
# CSS that could still reach out or run code even inside an allowed property.
_STYLE_DANGER = re.compile(r"url\s*\(|expression\s*\(|@import|\\|javascript:", re.IGNORECASE)

PLACEHOLDER = (
    "data:image/svg+xml;base64,"
    "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIxNiIgaGVpZ2h0PSIxNiI+"
    "PHJlY3Qgd2lkdGg9IjE2IiBoZWlnaHQ9IjE2IiBmaWxsPSIjZGRkIi8+PC9zdmc+"
)


@dataclass(frozen=True)
class SafeHtml:
    """A cleaned HTML fragment and how many remote images it held back."""

    html: str
    remote_images: int


def sanitize_html(html: str, *, remote_images: bool = False) -> SafeHtml:
    """Clean mail HTML for display; remote images become a placeholder unless allowed.

    With `remote_images`, http(s) image sources are kept (the reader asked for them);
    links keep their http(s) and mailto targets and get `rel="noopener noreferrer"`.
    """
    held_back = 0

    def keep(tag: str, attribute: str, value: str) -> str | None:
        nonlocal held_back
        stripped = value.strip()
        if _SCRIPT_URL.search(_INVISIBLE.sub("", stripped)):
            # Even in a title or alt text: nothing that reads as a script URL leaves here.
            return None
        if attribute == "style":
            return None if _STYLE_DANGER.search(stripped) else value
        if attribute not in ("href", "src"):
            return value
        if stripped.lower().startswith("data:"):
            inline_image = tag == "img" and attribute == "src"
            return value if inline_image and _INLINE_IMAGE.match(stripped) else None
        if tag == "img" and _REMOTE.match(stripped):
            if remote_images:
                return value
            held_back += 1
            return PLACEHOLDER
        return value

    cleaned = nh3.clean(
        html,
        tags=set(TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        attribute_filter=keep,
        url_schemes=set(URL_SCHEMES),
        # Relative links would resolve against this site, not the sender's.
        url_relative="deny",
        filter_style_properties=set(STYLE_PROPERTIES),
        strip_comments=True,
    )
    return SafeHtml(cleaned, held_back)


def html_document(fragment: str) -> str:
    """A whole page around a cleaned fragment, so the browser does not guess the charset."""
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{font-family:system-ui,sans-serif;margin:.5rem;overflow-wrap:anywhere}"
        "img{max-width:100%;height:auto}</style>"
        f"</head><body>{fragment}</body></html>\n"
    )
