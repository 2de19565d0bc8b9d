"""Provisioning a server: the login roles, the databases, who may connect where, pgvector."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
import structlog

from singularity.errors import MissingPrivilege, SingularityError
from singularity.postgres.cluster import Cluster
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.sql import QUERIES
from singularity.postgres.topology import OWNER, Database, Role

__all__ = [
    "ProvisionReport",
    "VectorMissing",
    "check_privileges",
    "install_vector",
    "provision_server",
]

log = structlog.get_logger(__name__)

# Who may connect to each database: its owner, and for the bus every service role.
CONNECT: dict[Database, tuple[Role, ...]] = {
    Database.SINGULARITY: (Role.SINGULARITY,),
    Database.CENTRALCLOUD: (Role.CENTRALCLOUD,),
    Database.GENESIS: (Role.GENESIS,),
    Database.NEXUS: (Role.NEXUS,),
    Database.SHARED_QUEUE: (
        Role.SINGULARITY,
        Role.CENTRALCLOUD,
        Role.GENESIS,
        Role.NEXUS,
        Role.CENTRALCLOUD_ANALYTICS,
    ),
}


# The server's own databases, which no service needs: closed where the platform owns the server.
SERVER_DATABASES = ("postgres", "template1")


class VectorMissing(SingularityError):
    """The server has no pgvector; names the fix."""


@dataclass
class ProvisionReport:
    created_roles: list[str] = field(default_factory=list)
    created_databases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AdminPrivileges:
    """Who the administrator is on one server."""

    user: str
    superuser: bool
    version: int


async def check_privileges(conn: psycopg.AsyncConnection, endpoint: Endpoint) -> AdminPrivileges:
    """Fail with one line naming every privilege the administrator lacks."""
    row = await (await conn.execute(QUERIES["admin_privileges"])).fetchone()
    assert row is not None
    name, superuser, createdb, createrole, version = row
    if version < 140000:
        raise SingularityError(
            f"{endpoint.host}:{endpoint.port} runs PostgreSQL {version // 10000}; "
            "the platform needs PostgreSQL 14 or newer"
        )
    if not superuser:
        missing = [
            label for label, has in (("CREATEDB", createdb), ("CREATEROLE", createrole)) if not has
        ]
        if missing:
            raise MissingPrivilege(
                f"the database user {name!r} on {endpoint.host}:{endpoint.port} lacks "
                f'{" and ".join(missing)}: run `ALTER ROLE "{name}" {" ".join(missing)}` as a '
                "superuser, or set DB_USER to a role that has it"
            )
    return AdminPrivileges(user=name, superuser=superuser, version=version)


async def provision_server(
    conn: psycopg.AsyncConnection,
    cluster: Cluster,
    databases: Iterable[Database],
    *,
    superuser: bool,
    version: int,
) -> ProvisionReport:
    """Roles, databases and CONNECT rights on one server (`conn`: its maintenance database)."""
    report = ProvisionReport()
    await _ensure_roles(conn, cluster, report, superuser=superuser, version=version)
    for database in databases:
        await _ensure_database(conn, cluster, database, report)
    if cluster.embedded:
        await _close_server_databases(conn)
    return report


async def _close_server_databases(conn: psycopg.AsyncConnection) -> None:
    """Only administrators may connect to `postgres` and `template1`.

    Only on the embedded server: on a configured one, other applications may rely on PUBLIC's
    right to connect there, and that is its administrator's decision, not ours.
    """
    for name in SERVER_DATABASES:
        try:
            await conn.execute(QUERIES.compose("revoke_connect_public", database=name))
        except psycopg.errors.InsufficientPrivilege:
            log.warning("server_database_left_open", database=name, reason="not its owner")


async def _ensure_roles(
    conn: psycopg.AsyncConnection,
    cluster: Cluster,
    report: ProvisionReport,
    *,
    superuser: bool,
    version: int,
) -> None:
    privilege = "SET" if version >= 160000 else "MEMBER"
    names = {role: cluster.role_name(role) for role in Role}
    rows = await (
        await conn.execute(QUERIES["existing_roles"], {"names": list(names.values())})
    ).fetchall()
    existing = {row[0] for row in rows}
    for role, name in names.items():
        if name not in existing:
            await conn.execute(QUERIES.compose("create_role", role=name))
            report.created_roles.append(name)
            log.info("role_created", role=name)
        if not cluster.embedded:
            password = cluster.passwords.ensure(role)
            await conn.execute(
                QUERIES.compose("set_role_password", role=name, literals={"password": password})
            )
        if not superuser:
            params = {"role": name, "privilege": privilege}
            member = await (await conn.execute(QUERIES["is_member"], params)).fetchone()
            if not (member and member[0]):
                await conn.execute(QUERIES.compose("grant_membership", role=name))


async def _ensure_database(
    conn: psycopg.AsyncConnection,
    cluster: Cluster,
    database: Database,
    report: ProvisionReport,
) -> None:
    name = cluster.database_name(database)
    rows = await (await conn.execute(QUERIES["existing_databases"], {"names": [name]})).fetchall()
    owner = OWNER[database]
    if not rows:
        if owner is None:
            await conn.execute(QUERIES.compose("create_database", database=name))
        else:
            owner_name = cluster.role_name(owner)
            await conn.execute(
                QUERIES.compose("create_database_owned", database=name, owner=owner_name)
            )
        report.created_databases.append(name)
        log.info("database_created", database=name)
    await conn.execute(QUERIES.compose("revoke_database", database=name))
    allowed = CONNECT[database]
    for role in Role:
        if role not in allowed and role is not owner:
            await conn.execute(
                QUERIES.compose("revoke_database_from", database=name, role=cluster.role_name(role))
            )
    for role in allowed:
        await conn.execute(
            QUERIES.compose("grant_connect", database=name, role=cluster.role_name(role))
        )


async def lock_public_schema(conn: psycopg.AsyncConnection, owner: str | None) -> None:
    """Only the database's owner may create objects in its `public` schema."""
    await conn.execute(QUERIES["lock_public_schema"])
    if owner is not None:
        await conn.execute(QUERIES.compose("give_public_schema", role=owner))


async def install_vector(conn: psycopg.AsyncConnection, database: str) -> None:
    """pgvector in the singularity database, or a VectorMissing error that names the fix."""
    row = await (await conn.execute(QUERIES["vector_state"])).fetchone()
    assert row is not None
    available, installed = row
    if installed:
        return
    if not available:
        version = int(conn.info.server_version) // 10000
        raise VectorMissing(
            f"pgvector is not installed on this server (needed in database {database!r} for "
            f"knowledge embeddings): install it (Debian/Ubuntu: "
            f"`apt install postgresql-{version}-pgvector`; see github.com/pgvector/pgvector) "
            "and run `singularity db init` again"
        )
    try:
        await conn.execute(QUERIES["create_vector"])
    except psycopg.errors.InsufficientPrivilege:
        raise VectorMissing(
            f"pgvector is available but only a superuser can enable it: run "
            f"`CREATE EXTENSION vector;` in database {database!r} as a superuser, "
            "then `singularity db init` again"
        ) from None
    log.info("extension_installed", database=database, extension="vector")
