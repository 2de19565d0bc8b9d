"""Named SQL: each package keeps its queries in one `queries.sql`, loaded once by name."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import LiteralString, cast

from psycopg import sql

__all__ = ["Queries"]

_HEADER = re.compile(r"^-- name: (?P<name>[a-z_]+) --$", re.MULTILINE)


class Queries:
    """The queries of one `queries.sql`, by name.

    Values are always bound parameters (`%(name)s`); identifiers (`{queue_table}`) are filled
    only through `compose()`, which quotes them with `sql.Identifier`.
    """

    def __init__(self, package: str, filename: str = "queries.sql") -> None:
        text = files(package).joinpath(filename).read_text(encoding="utf-8")
        self._queries = _parse(text)

    def __getitem__(self, name: str) -> sql.SQL:
        return sql.SQL(cast(LiteralString, self._queries[name]))

    def compose(
        self, name: str, *, literals: dict[str, object] | None = None, **identifiers: str
    ) -> sql.Composed:
        """The query with its `{placeholders}` filled by quoted identifiers (or literals, for
        the few statements such as ALTER ROLE ... PASSWORD that take no parameters)."""
        parts: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in identifiers.items()}
        parts.update({k: sql.Literal(v) for k, v in (literals or {}).items()})
        return self[name].format(**parts)

    def names(self) -> list[str]:
        return sorted(self._queries)


def _parse(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = "\n".join(
            line
            for line in text[match.end() : end].strip().splitlines()
            if not line.startswith("-- ")
        ).strip()
        queries[match.group("name")] = body
    return queries
