"""Counts in words for people: "1 message", "2 messages".

One function, so that a later translation wraps `ngettext` around it here and every
count on the command line follows.
"""

from __future__ import annotations


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`count` and the noun that goes with it: `plural(1, "message")` is "1 message",
    `plural(2, "message")` "2 messages"; give `many` where adding "s" is wrong
    (`plural(2, "reply", "replies")`)."""
    noun = singular if count == 1 else (many or f"{singular}s")
    return f"{count} {noun}"
