"""What backups ask of a server's catalog, as its administrator on the maintenance database."""

from __future__ import annotations

import psycopg
from psycopg import sql

from singularity.orchestrator.backup.manifest import Grant
from singularity.orchestrator.backup.sql import QUERIES

__all__ = ["ServerCatalog"]

_GRANT_QUERY = {
    "CONNECT": "grant_database_connect",
    "CREATE": "grant_database_create",
    "TEMPORARY": "grant_database_temporary",
}


class ServerCatalog:
    """Every query the backup package runs: versions, databases, their ACLs, create and drop."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    async def version(self) -> tuple[int, str]:
        """(major version, full version string) of the server."""
        row = await self._one("server_version", {})
        return int(row[0]) // 10000, str(row[1])

    async def names_starting(self, prefix: str) -> list[str]:
        rows = await self._all("databases_named_like", {"prefix": prefix})
        return [str(row[0]) for row in rows]

    async def exists(self, name: str) -> bool:
        return bool((await self._one("database_exists", {"name": name}))[0])

    async def acl(self, name: str) -> list[Grant] | None:
        """The database's privileges; None while it has the built-in defaults."""
        rows = await self._all("database_acl", {"name": name})
        if not rows or rows[0][0]:
            return None
        return [Grant(grantee=row[1], privilege=row[2]) for row in rows if row[2] is not None]

    async def existing_roles(self, names: list[str]) -> set[str]:
        return {str(row[0]) for row in await self._all("existing_roles", {"names": names})}

    async def create(self, name: str, owner: str | None) -> None:
        if owner is None:
            await self._conn.execute(QUERIES.compose("create_database", database=name))
        else:
            await self._conn.execute(
                QUERIES.compose("create_database_owned", database=name, owner=owner)
            )

    async def drop(self, name: str) -> None:
        await self._conn.execute(QUERIES.compose("drop_database", database=name))

    async def rename(self, name: str, new_name: str) -> None:
        await self._conn.execute(
            QUERIES.compose("rename_database", database=name, new_name=new_name)
        )

    async def set_acl(self, name: str, grants: list[Grant] | None) -> list[str]:
        """Give a new database these privileges; returns grantees skipped as unknown here."""
        if grants is None:
            return []
        await self._conn.execute(QUERIES.compose("revoke_database_public", database=name))
        named = sorted({g.grantee for g in grants if g.grantee is not None})
        present = await self.existing_roles(named)
        for grant in grants:
            query = _GRANT_QUERY.get(grant.privilege)
            if query is None or (grant.grantee is not None and grant.grantee not in present):
                continue
            grantee = sql.SQL("PUBLIC") if grant.grantee is None else sql.Identifier(grant.grantee)
            await self._conn.execute(
                QUERIES[query].format(database=sql.Identifier(name), grantee=grantee)
            )
        return [role for role in named if role not in present]

    async def _one(self, name: str, params: dict[str, object]) -> tuple[object, ...]:
        row = await (await self._conn.execute(QUERIES[name], params)).fetchone()
        assert row is not None, name
        return tuple(row)

    async def _all(self, name: str, params: dict[str, object]) -> list[tuple[object, ...]]:
        return [
            tuple(r) for r in await (await self._conn.execute(QUERIES[name], params)).fetchall()
        ]
