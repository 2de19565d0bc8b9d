"""The bus's archives, read as the read-only centralcloud_analytics role (nothing else can)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from singularity.centralcloud.sql import QUERIES, report_query
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.sql import archive_table

__all__ = ["ArchiveReader", "ArchivedMessage", "Position", "read_only"]

_READ_ONLY = "-c default_transaction_read_only=on"


def read_only(endpoint: Endpoint) -> Endpoint:
    """The endpoint with every transaction read-only (on top of the role's grants)."""
    options = dict(endpoint.options)
    given = options.get("options")
    options["options"] = f"{given} {_READ_ONLY}" if given else _READ_ONLY
    return replace(endpoint, options=tuple(sorted(options.items())))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader of an archive stands: the last message it has read."""

    archived_at: datetime
    msg_id: int


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One archived message."""

    msg_id: int
    archived_at: datetime
    enqueued_at: datetime
    message: Any

    @property
    def position(self) -> Position:
        return Position(self.archived_at, self.msg_id)


class ArchiveReader:
    """Every query CentralCloud runs against the shared_queue database's archives."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def readable_archives(self, queues: Iterable[str]) -> list[str]:
        """The archive tables of these queues and their instance queues that this role reads."""
        rows = await self._rows(QUERIES["readable_archives"], {"queues": list(queues)})
        return [str(row["archive"]) for row in rows]

    async def window(self, days: int) -> tuple[datetime, datetime]:
        """(since, until): the last `days` days, by the server's clock."""
        rows = await self._rows(QUERIES["report_window"], {"days": days})
        return rows[0]["since"], rows[0]["until"]

    async def report(
        self, name: str, requests_queue: str, results: Iterable[str], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The rows of one report query over a flow's requests archive and results archives."""
        query = report_query(name, requests=archive_table(requests_queue), results=list(results))
        return await self._rows(query, params)

    async def after(
        self, archive: str, position: Position | None, *, limit: int, settle_s: float
    ) -> list[ArchivedMessage]:
        """Up to `limit` messages of an archive after `position`, oldest first."""
        params: dict[str, Any] = {"limit": limit, "settle_s": settle_s}
        if position is None:
            query = QUERIES.compose("archive_first", archive=archive)
        else:
            query = QUERIES.compose("archive_after", archive=archive)
            params.update(archived_at=position.archived_at, msg_id=position.msg_id)
        rows = await self._rows(query, params)
        return [ArchivedMessage(**row) for row in rows]

    async def _rows(self, query: sql.Composable, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(query, params)
            return list(await cursor.fetchall())
