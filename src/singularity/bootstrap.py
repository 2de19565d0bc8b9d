"""`singularity db init`: everything the services stand on, idempotently.

Order matters: roles before databases (owners), databases before the bus and its grants,
the bus before migrations. One advisory lock on the bus's server serializes bootstraps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.migrations import MigrationResult, upgrade
from singularity.postgres.provision import (
    VectorMissing,
    check_privileges,
    install_vector,
    lock_public_schema,
    provision_server,
)
from singularity.postgres.sql import QUERIES
from singularity.postgres.topology import OWNER, Database, Role
from singularity.shared_queue.install import install_bus

__all__ = ["BootstrapReport", "bootstrap", "migrate"]

Progress = Callable[[str], None]


@dataclass
class BootstrapReport:
    created_roles: list[str] = field(default_factory=list)
    created_databases: list[str] = field(default_factory=list)
    pgmq: str = ""
    created_queues: list[str] = field(default_factory=list)
    vector: str = ""
    migrations: list[MigrationResult] = field(default_factory=list)
    seconds: float = 0.0


async def bootstrap(
    cluster: Cluster, *, require_vector: bool = True, progress: Progress | None = None
) -> BootstrapReport:
    """Create or repair roles, databases, pgmq, queues, grants and schemas."""
    say = progress or (lambda _step: None)
    started = time.monotonic()
    report = BootstrapReport()
    async with async_connection(cluster.maintenance(Database.SHARED_QUEUE)) as home:
        await home.execute(QUERIES["bootstrap_lock"])
        for databases in cluster.servers().values():
            endpoint = cluster.maintenance(databases[0])
            say(f"checking privileges on {endpoint.host}:{endpoint.port}")
            async with async_connection(endpoint) as conn:
                privileges = await check_privileges(conn, endpoint)
                say("creating roles and databases")
                done = await provision_server(
                    conn,
                    cluster,
                    databases,
                    superuser=privileges.superuser,
                    version=privileges.version,
                )
            report.created_roles += done.created_roles
            report.created_databases += done.created_databases
        for database in Database:
            owner = OWNER[database]
            async with async_connection(cluster.admin(database)) as conn:
                await lock_public_schema(conn, cluster.role_name(owner) if owner else None)
        vector_error = await _vector(cluster, report, say)
        say("installing pgmq and the queues")
        roles = {role: cluster.role_name(role) for role in Role}
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            bus = await install_bus(conn, roles)
        report.pgmq, report.created_queues = bus.pgmq, bus.created_queues
        report.migrations = await migrate(cluster, progress=say)
    report.seconds = time.monotonic() - started
    if vector_error is not None and require_vector:
        raise vector_error
    return report


async def _vector(cluster: Cluster, report: BootstrapReport, say: Progress) -> VectorMissing | None:
    say("installing pgvector")
    name = cluster.database_name(Database.SINGULARITY)
    async with async_connection(cluster.admin(Database.SINGULARITY)) as conn:
        try:
            await install_vector(conn, name)
        except VectorMissing as missing:
            report.vector = "missing"
            return missing
    report.vector = "installed"
    return None


async def migrate(cluster: Cluster, *, progress: Progress | None = None) -> list[MigrationResult]:
    """Apply pending migrations to every database, each as its owner."""
    results = []
    for database in Database:
        if progress:
            progress(f"migrating {cluster.database_name(database)}")
        owner = OWNER[database]
        results.append(
            await asyncio.to_thread(
                upgrade,
                cluster.admin(database),
                database,
                cluster.role_name(owner) if owner else None,
            )
        )
    return results
