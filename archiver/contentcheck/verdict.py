"""What the content checks said about one message."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SPAMD = "spamd"
CLAMD = "clamd"


@dataclass(frozen=True)
class Verdict:
    """The daemons' answers for one message.

    `spam_score` is None when spamd was not asked (not configured, or the message is
    larger than it takes) or could not answer; `unchecked` names the configured daemons
    that could not answer (down, too slow, or an error), so a list can hold what nobody
    could vouch for.
    """

    spam_score: float | None = None
    spam_threshold: float | None = None  # spamd's own required score, for its verdict
    spam_rules: tuple[str, ...] = ()
    virus: str | None = None  # the signature clamd found
    unchecked: tuple[str, ...] = ()

    @property
    def is_spam(self) -> bool:
        """spamd's own verdict: the score reached its required score."""
        return (
            self.spam_score is not None
            and self.spam_threshold is not None
            and self.spam_score >= self.spam_threshold
        )

    def describe_spam(self) -> str:
        """ "score 1000.0 (GTUBE, MISSING_DATE)", for moderators and the message page."""
        rules = f" ({', '.join(self.spam_rules)})" if self.spam_rules else ""
        return f"score {self.spam_score:.1f}{rules}" if self.spam_score is not None else ""

    def as_dict(self) -> dict[str, Any]:
        """For a JSON column (a held post keeps its verdict until a moderator decides)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Verdict:
        return cls(
            spam_score=values.get("spam_score"),
            spam_threshold=values.get("spam_threshold"),
            spam_rules=tuple(values.get("spam_rules", ())),
            virus=values.get("virus"),
            unchecked=tuple(values.get("unchecked", ())),
        )
