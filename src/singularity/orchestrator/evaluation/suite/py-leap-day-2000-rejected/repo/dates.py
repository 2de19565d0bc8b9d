"""Parse the archive's dates (YYYY-MM-DD) without trusting the input."""

import re

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


class InvalidDate(ValueError):
    """The text is not a date of the calendar."""


def is_leap(year: int) -> bool:
    return year % 4 == 0 and year % 100 != 0


def days_in_month(year: int, month: int) -> int:
    if month == 2 and is_leap(year):
        return 29
    return _DAYS[month - 1]


def parse_date(text: str) -> tuple[int, int, int]:
    """(year, month, day) of an ISO date, or InvalidDate."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise InvalidDate(f"invalid date: {text!r} is not YYYY-MM-DD")
    year, month, day = (int(part) for part in match.groups())
    if not 1 <= month <= 12:
        raise InvalidDate(f"invalid date: month {month} out of range")
    if not 1 <= day <= days_in_month(year, month):
        raise InvalidDate(f"invalid date: day {day} out of range for {year}-{month:02d}")
    return year, month, day
