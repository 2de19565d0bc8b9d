"""`singularity db init`: everything the services stand on, idempotently.

Order matters: roles before databases (owners), databases before the bus and its grants,
the bus before migrations. One advisory lock on the bus's server serializes bootstraps.

Singularity instances: instance 1 uses the `singularity` database and the catalog's reply
queues; instance N > 1 has `singularity_N` and `llm_results_N`, ... Every bootstrap keeps the
instances it finds on the bus (their reply queues), so repairing grants never drops one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg

from singularity.errors import DatabaseUnavailable
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
from singularity.shared_queue.catalog import QUEUES, instance_of, instance_queues
from singularity.shared_queue.install import BusInstall, install_bus
from singularity.shared_queue.metrics import list_queues

__all__ = ["BootstrapReport", "bootstrap", "bus_instances", "migrate", "repair_bus"]

Progress = Callable[[str], None]


@dataclass
class BootstrapReport:
    created_roles: list[str] = field(default_factory=list)
    created_databases: list[str] = field(default_factory=list)
    pgmq: str = ""
    created_queues: list[str] = field(default_factory=list)
    vector: str = ""
    instances: list[int] = field(default_factory=list)
    migrations: list[MigrationResult] = field(default_factory=list)
    seconds: float = 0.0


async def bootstrap(
    cluster: Cluster,
    *,
    require_vector: bool = True,
    instances: Iterable[int] = (),
    progress: Progress | None = None,
) -> BootstrapReport:
    """Create or repair roles, databases, pgmq, queues, grants and schemas, for Singularity
    instance 1, this cluster's instance, `instances`, and every instance the bus already has."""
    say = progress or (lambda _step: None)
    started = time.monotonic()
    report = BootstrapReport()
    wanted = {cluster.instance, *instances}
    cluster = cluster.with_instance(1)
    async with async_connection(cluster.maintenance(Database.SHARED_QUEUE)) as home:
        await home.execute(QUERIES["bootstrap_lock"])
        wanted |= set(await bus_instances(cluster))
        report.instances = sorted(wanted | {1})
        extra = [cluster.with_instance(n) for n in report.instances if n != 1]
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
                for other in extra if Database.SINGULARITY in databases else ():
                    more = await provision_server(
                        conn,
                        other,
                        [Database.SINGULARITY],
                        superuser=privileges.superuser,
                        version=privileges.version,
                    )
                    done.created_databases += more.created_databases
            report.created_roles += done.created_roles
            report.created_databases += done.created_databases
        for database in Database:
            owner = OWNER[database]
            for each in [cluster, *extra] if database is Database.SINGULARITY else [cluster]:
                async with async_connection(each.admin(database)) as conn:
                    await lock_public_schema(conn, each.role_name(owner) if owner else None)
        vector_error = None
        for each in [cluster, *extra]:
            vector_error = await _vector(each, report, say) or vector_error
        say("installing pgmq and the queues")
        bus = await _install_bus(cluster, report.instances)
        report.pgmq, report.created_queues = bus.pgmq, bus.created_queues
        report.migrations = await migrate(cluster, instances=report.instances, progress=say)
    report.seconds = time.monotonic() - started
    if vector_error is not None and require_vector:
        raise vector_error
    return report


async def repair_bus(cluster: Cluster) -> BusInstall:
    """The owner's routine pass: every queue of the catalog and of every instance the bus has,
    with its dead-letter queue and exactly its grants (as the administrator)."""
    cluster = cluster.with_instance(1)
    async with async_connection(cluster.maintenance(Database.SHARED_QUEUE)) as home:
        await home.execute(QUERIES["bootstrap_lock"])
        return await _install_bus(cluster, [1, *(await bus_instances(cluster))])


async def _install_bus(cluster: Cluster, instances: Iterable[int]) -> BusInstall:
    roles = {role: cluster.role_name(role) for role in Role}
    queues = [*QUEUES, *(spec for n in sorted(set(instances)) for spec in instance_queues(n))]
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        return await install_bus(conn, roles, queues)


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


async def bus_instances(cluster: Cluster) -> list[int]:
    """The Singularity instances the bus has reply queues for (none before `db init`)."""
    try:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            names = await list_queues(conn)
    except (DatabaseUnavailable, psycopg.errors.UndefinedTable):  # no bus or no pgmq yet
        return []
    return sorted({n for n in map(instance_of, names) if n is not None})


async def migrate(
    cluster: Cluster, *, instances: Iterable[int] | None = None, progress: Progress | None = None
) -> list[MigrationResult]:
    """Apply pending migrations to every database, each as its owner; for Singularity, to the
    database of every instance (by default, every instance the bus knows)."""
    base = cluster.with_instance(1)
    if instances is None:
        instances = {1, *(await bus_instances(base))}
    targets = [(base, database) for database in Database]
    targets += [(base.with_instance(n), Database.SINGULARITY) for n in sorted(instances) if n != 1]
    results = []
    for each, database in targets:
        if progress:
            progress(f"migrating {each.database_name(database)}")
        owner = OWNER[database]
        result = await asyncio.to_thread(
            upgrade, each.admin(database), database, each.role_name(owner) if owner else None
        )
        results.append(dataclasses.replace(result, name=each.database_name(database)))
    return results
