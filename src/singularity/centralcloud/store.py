"""The centralcloud database: learning cursors and what was learned, analytics snapshots."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from singularity.centralcloud.archives import Position
from singularity.centralcloud.report import AnalyticsReport, LibraryRow, ModelRow, Patterns
from singularity.centralcloud.sql import QUERIES
from singularity.errors import NotFound

__all__ = ["CentralCloudStore", "Claim"]


@dataclass
class Claim:
    """One archive's learning cursor, locked for one transaction: learn a batch, then advance."""

    conn: psycopg.AsyncConnection
    archive: str
    position: Position | None

    async def proposed(self, rows: Sequence[dict[str, Any]]) -> int:
        """Record proposed changes (one row per request key); returns how many were new."""
        return await self._batch("outcomes_proposed", rows)

    async def decided(self, rows: Sequence[dict[str, Any]]) -> int:
        """Record decisions on changes (one row per request key); returns how many were new
        (a change's later decisions are not)."""
        return await self._batch("outcomes_decided", rows)

    async def libraries_seen(self, rows: Sequence[dict[str, Any]]) -> int:
        """Add job counts per (language, library)."""
        return await self._batch("libraries_seen", rows)

    async def advance(self, position: Position, messages: int) -> None:
        """Move the cursor past the batch just learned."""
        params = {
            "archive": self.archive,
            "archived_at": position.archived_at,
            "msg_id": position.msg_id,
            "messages": messages,
        }
        await self.conn.execute(QUERIES["cursor_advance"], params)
        self.position = position

    async def _batch(self, query: str, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        params = {"rows": json.dumps(rows, default=_iso)}
        return (await self.conn.execute(QUERIES[query], params)).rowcount


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


class CentralCloudStore:
    """Every query CentralCloud runs against its own database."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def claim(self, archive: str) -> AsyncIterator[Claim]:
        """Lock an archive's cursor for a transaction; a second learner waits for it to end."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(QUERIES["cursor_ensure"], {"archive": archive})
            locked = await conn.execute(QUERIES["cursor_lock"], {"archive": archive})
            row = await locked.fetchone()
            assert row is not None
            position = Position(row[0], row[1]) if row[0] is not None else None
            yield Claim(conn, archive, position)

    async def patterns(self, *, libraries_per_language: int = 20) -> Patterns:
        """Models' outcomes per task type, and the most used libraries per language."""
        models = await self._rows("model_patterns", {})
        libraries = await self._rows("library_patterns", {"limit": libraries_per_language})
        return Patterns(
            models=[ModelRow(**row) for row in models],
            libraries=[LibraryRow(**row) for row in libraries],
        )

    async def save_snapshot(self, report: AnalyticsReport) -> int:
        """Keep a computed report; returns its id."""
        params = {"since_days": report.since_days, "report": report.model_dump_json()}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["snapshot_insert"], params)).fetchone()
        assert row is not None
        return int(row[0])

    async def snapshot(self, snapshot_id: int) -> dict[str, Any]:
        """A stored report, or NotFound."""
        rows = await self._rows("snapshot_get", {"id": snapshot_id})
        if not rows:
            raise NotFound(f"no analytics snapshot {snapshot_id}")
        return rows[0]

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return list(await cursor.fetchall())
