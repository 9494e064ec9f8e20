"""Highlighted snippets, cut from the archive's copy of the text (same for every backend).

A query word matches a text word when both fold to the same stem, the way the index
matches them, so `forecasting` in the text lights up for the query `forecast`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

WORD = re.compile(r"\w+", re.UNICODE)
SCAN_LIMIT = 20_000  # characters of the text examined for a match
WIDTH = 200  # characters in a snippet


def snippet(text: str, words: list[str], fold: Callable[[str], str]) -> str:
    """HTML: an escaped excerpt of `text` around the first match, matches in <mark>.

    Without a match (or without words) it is the start of the text. The scan stops at the
    end of the excerpt, so a long message costs no more than a short one.
    """
    wanted = {fold(word) for word in words if word}
    wanted.discard("")
    head = text[:SCAN_LIMIT]
    scan = WORD.finditer(head) if wanted else iter(())
    first = next((m for m in scan if fold(m.group()) in wanted), None)
    start = 0
    if first is not None and first.start() > WIDTH // 4:
        start = head.rfind(" ", 0, first.start() - WIDTH // 4) + 1
    end = min(len(head), start + WIDTH)
    matches = [] if first is None else [first]
    for match in scan:
        if match.start() >= end:
            break
        if fold(match.group()) in wanted:
            matches.append(match)
    pieces: list[str] = ["…" if start else ""]
    cursor = start
    for match in matches:
        if match.end() > end:
            break
        pieces.append(html.escape(head[cursor : match.start()]))
        pieces.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    pieces.append(html.escape(head[cursor:end]))
    if end < len(text):
        pieces.append("…")
    return " ".join("".join(pieces).split())
