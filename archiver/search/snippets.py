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

    Without a match (or without words) it is the start of the text.
    """
    wanted = {fold(word) for word in words if word}
    wanted.discard("")
    head = text[:SCAN_LIMIT]
    matches = [m for m in WORD.finditer(head) if wanted and fold(m.group()) in wanted]
    start = 0
    if matches:
        start = max(0, matches[0].start() - WIDTH // 4)
        start = head.rfind(" ", 0, start) + 1 if start else 0
    end = min(len(head), start + WIDTH)
    pieces: list[str] = ["…" if start else ""]
    cursor = start
    for match in matches:
        if match.start() < start:
            continue
        if match.end() > end:
            break
        pieces.append(html.escape(head[cursor : match.start()]))
        pieces.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    pieces.append(html.escape(head[cursor:end]))
    if end < len(text):
        pieces.append("…")
    return " ".join("".join(pieces).split())
