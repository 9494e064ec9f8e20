"""Retention periods as people write them: `90d`, `7y`.

Years are calendar years, as rules and courts count them: mail dated 29 February 2020
and kept one year may go on 1 March 2021, never a day early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver.languages import CORE, TextError

_PERIOD = re.compile(r"^\s*(\d{1,5})\s*(d|day|days|y|year|years)\s*$", re.IGNORECASE)
MAX_DAYS = 200 * 366


class PeriodError(TextError):
    """A period that cannot be read; the text says what is expected."""


@dataclass(frozen=True)
class Period:
    """A number of days or of calendar years."""

    amount: int
    unit: str  # "d" or "y"

    @classmethod
    def parse(cls, text: str) -> Period:
        """`90d`, `7y`, `10 years`; raises `PeriodError` otherwise."""
        found = _PERIOD.match(text or "")
        if found is None:
            raise PeriodError(
                CORE.lazy_gettext(
                    "%(period)s is not a period: write days or years, like 90d or 7y",
                    period=repr(text),
                )
            )
        amount, unit = int(found.group(1)), found.group(2)[0].lower()
        if amount < 1 or (amount if unit == "d" else amount * 366) > MAX_DAYS:
            raise PeriodError(
                CORE.lazy_gettext(
                    "%(period)s: a period is between 1 day and 200 years", period=repr(text)
                )
            )
        return cls(amount, unit)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def end(self, start: datetime) -> datetime:
        """When something dated `start` has been kept for this period."""
        if self.unit == "d":
            return start + timedelta(days=self.amount)
        year = start.year + self.amount
        try:
            return start.replace(year=year)
        except ValueError:  # 29 February into a year without one
            return start.replace(year=year, month=3, day=1)

    def cutoff(self, now: datetime) -> datetime:
        """Mail dated before this moment has been kept for this period by `now`.

        The inverse of `end`, erring late: a message is past its time only when
        `end(date) <= now`, which for years this conservative bound never anticipates.
        """
        if self.unit == "d":
            return now - timedelta(days=self.amount)
        year = now.year - self.amount
        try:
            return now.replace(year=year)
        except ValueError:  # now is 29 February
            return now.replace(year=year, month=2, day=28)
