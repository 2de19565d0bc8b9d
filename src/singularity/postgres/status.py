"""`db status`: per database, whether it is reachable, its migration, size and connections."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import psycopg

from singularity.errors import DatabaseUnavailable
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, describe_error
from singularity.postgres.migrations import head_revision
from singularity.postgres.sql import QUERIES
from singularity.postgres.topology import Database

__all__ = ["DatabaseStatus", "database_status"]


@dataclass
class DatabaseStatus:
    database: str
    name: str
    url: str
    reachable: bool
    error: str | None = None
    migration: str | None = None
    head: str | None = None
    size_bytes: int | None = None
    connections: int | None = None
    tables: list[dict[str, object]] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return self.migration == self.head

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "up_to_date": self.up_to_date}


async def database_status(cluster: Cluster) -> list[DatabaseStatus]:
    return [await _one(cluster, database) for database in Database]


async def _one(cluster: Cluster, database: Database) -> DatabaseStatus:
    endpoint = cluster.admin(database)
    status = DatabaseStatus(
        database=database.value,
        name=endpoint.dbname,
        url=str(endpoint),
        reachable=False,
        head=head_revision(database),
    )
    try:
        async with async_connection(endpoint) as conn:
            status.reachable = True
            row = await (await conn.execute(QUERIES["database_status"])).fetchone()
            assert row is not None
            status.size_bytes, status.connections = int(row[0]), int(row[1])
            rows = await (await conn.execute(QUERIES["table_sizes"])).fetchall()
            status.tables = [{"schema": s, "table": t, "size_bytes": int(b)} for s, t, b in rows]
            status.migration = await _revision(conn)
    except DatabaseUnavailable as exc:
        status.error = str(exc)
    except psycopg.Error as exc:
        status.error = describe_error(exc)
    return status


async def _revision(conn: psycopg.AsyncConnection) -> str | None:
    try:
        async with conn.transaction():
            row = await (await conn.execute(QUERIES["migration_version"])).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return str(row[0]) if row else None
