"""URL slugs for blog posts."""

import re


def slugify(title: str) -> str:
    """The lower-case, dash-separated form of a title for URLs."""
    return re.sub(r"[^a-z0-9]", "-", title.lower())


def unique_slug(title: str, taken: set[str]) -> str:
    base = slugify(title) or "post"
    slug, number = base, 2
    while slug in taken:
        slug = f"{base}-{number}"
        number += 1
    return slug
