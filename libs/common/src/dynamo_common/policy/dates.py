"""Dates on the right of ``older_than``, ``newer_than``, ``<`` and ``>``.

The original Dynamo handed these strings to GNU ``date -d``; this accepts the forms policy files
use (``1 week ago``, ``90 days ago``, ``12 months ago``, ``January 1``, ``2018-03-01``) and the
common neighbours of those forms, without a subprocess. Most forms depend on "now", so a parsed
date is a ``DateSpec`` resolved against a reference time when the condition is bound: the decision
simulator replays past cycles by binding with their times.

Calendar arithmetic is in UTC, so a policy means the same thing on every host.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_SECONDS = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "fortnight": 14 * 86400.0,
}
_UNIT_ALIASES = {
    "s": "second",
    "sec": "second",
    "secs": "second",
    "second": "second",
    "seconds": "second",
    "min": "minute",
    "mins": "minute",
    "minute": "minute",
    "minutes": "minute",
    "h": "hour",
    "hour": "hour",
    "hours": "hour",
    "day": "day",
    "days": "day",
    "week": "week",
    "weeks": "week",
    "fortnight": "fortnight",
    "fortnights": "fortnight",
    "month": "month",
    "months": "month",
    "year": "year",
    "years": "year",
}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9

_RELATIVE_RE = re.compile(r"(\d+)\s*([a-z]+)\s+ago")
_LAST_RE = re.compile(r"last\s+([a-z]+)")
_ISO_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ t](\d{1,2}):(\d{2})(?::(\d{2}))?)?(?:\s*(?:z|utc))?"
)
_MONTH_DAY_RE = re.compile(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?")
_DAY_MONTH_RE = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)\.?(?:,?\s+(\d{4}))?")
_EPOCH_RE = re.compile(r"@(-?\d+(?:\.\d+)?)")

EXAMPLES = "'2 weeks ago', '90 days ago', '12 months ago', 'January 1' or '2018-03-01'"


class DateSyntaxError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AbsoluteDate:
    timestamp: float

    def resolve(self, now: float) -> float:
        return self.timestamp


@dataclass(frozen=True, slots=True)
class RelativeDate:
    """``amount`` units before now; months and years move the calendar, not a fixed number
    of seconds, so '12 months ago' is the same date last year."""

    amount: int
    unit: str

    def resolve(self, now: float) -> float:
        seconds = _SECONDS.get(self.unit)
        if seconds is not None:
            return now - self.amount * seconds
        months = self.amount * (12 if self.unit == "year" else 1)
        return _months_before(now, months)


@dataclass(frozen=True, slots=True)
class AnnualDate:
    """A month and day without a year: that day of the current year, as ``date -d`` reads it."""

    month: int
    day: int

    def resolve(self, now: float) -> float:
        year = datetime.fromtimestamp(now, UTC).year
        day = min(self.day, calendar.monthrange(year, self.month)[1])
        return datetime(year, self.month, day, tzinfo=UTC).timestamp()


DateSpec = AbsoluteDate | RelativeDate | AnnualDate


def _months_before(now: float, months: int) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    index = moment.year * 12 + (moment.month - 1) - months
    year, month0 = divmod(index, 12)
    if year < 1:
        return float("-inf")
    # Clamped rather than overflowing into the next month: '1 month ago' on March 31 is the
    # last day of February, not March 3.
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day).timestamp()


def _unit(word: str) -> str:
    unit = _UNIT_ALIASES.get(word)
    if unit is None:
        raise DateSyntaxError(
            f"unknown time unit '{word}'; expected seconds, minutes, hours, days, weeks, "
            "months or years"
        )
    return unit


def _calendar_date(year: int, month: int, day: int, hms: tuple[int, int, int]) -> AbsoluteDate:
    try:
        moment = datetime(year, month, day, *hms, tzinfo=UTC)
    except ValueError as exc:
        raise DateSyntaxError(f"invalid date: {exc}") from None
    return AbsoluteDate(moment.timestamp())


def _month_day(month_word: str, day: str, year: str | None) -> DateSpec | None:
    month = _MONTHS.get(month_word)
    if month is None:
        return None
    if year is not None:
        return _calendar_date(int(year), month, int(day), (0, 0, 0))
    if not 1 <= int(day) <= calendar.monthrange(2000, month)[1]:
        raise DateSyntaxError(f"invalid date: {month_word.capitalize()} has no day {day}")
    return AnnualDate(month, int(day))


def parse_date(text: str) -> DateSpec:
    """Parse one date expression; raise ``DateSyntaxError`` with a message for the user."""
    norm = " ".join(text.lower().split())
    if not norm:
        raise DateSyntaxError(f"expected a date such as {EXAMPLES}")
    if norm in ("now", "today"):
        return RelativeDate(0, "second")
    if norm == "yesterday":
        return RelativeDate(1, "day")
    if m := _RELATIVE_RE.fullmatch(norm):
        return RelativeDate(int(m.group(1)), _unit(m.group(2)))
    if m := _LAST_RE.fullmatch(norm):
        return RelativeDate(1, _unit(m.group(1)))
    if m := _ISO_RE.fullmatch(norm):
        hms = (int(m.group(4) or 0), int(m.group(5) or 0), int(m.group(6) or 0))
        return _calendar_date(int(m.group(1)), int(m.group(2)), int(m.group(3)), hms)
    if m := _MONTH_DAY_RE.fullmatch(norm):
        spec = _month_day(m.group(1), m.group(2), m.group(3))
        if spec is not None:
            return spec
    if m := _DAY_MONTH_RE.fullmatch(norm):
        spec = _month_day(m.group(2), m.group(1), m.group(3))
        if spec is not None:
            return spec
    if m := _EPOCH_RE.fullmatch(norm):
        return AbsoluteDate(float(m.group(1)))
    raise DateSyntaxError(f"unparsable date '{text.strip()}'; expected a date such as {EXAMPLES}")
