"""Split a listing into numbered pages for the API."""

from dataclasses import dataclass


class PageOutOfRange(ValueError):
    """The page asked for does not exist."""


@dataclass(frozen=True)
class Page:
    number: int
    total_pages: int
    items: list


def page_count(total: int, per_page: int) -> int:
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    return total // per_page


def paginate(items: list, number: int, per_page: int = 10) -> Page:
    """The page `number` (from 1) of `items`."""
    total_pages = page_count(len(items), per_page)
    if total_pages == 0 and number == 1:
        return Page(number=1, total_pages=0, items=[])
    if number < 1 or number > total_pages:
        raise PageOutOfRange(f"page {number} of {total_pages}")
    start = (number - 1) * per_page
    return Page(number=number, total_pages=total_pages, items=items[start : start + per_page])
