"""Installing the bus: pgmq, the queues of the catalog, and the access matrix."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
import structlog

from singularity.errors import DatabaseUnavailable, SingularityError
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Role
from singularity.shared_queue.catalog import QUEUES, QueueSpec, instance_queues
from singularity.shared_queue.messages import validate_queue_name
from singularity.shared_queue.sql import (
    QUERIES,
    archive_table,
    key_index,
    queue_table,
    sequence_name,
)

__all__ = [
    "BusInstall",
    "apply_grants",
    "ensure_queue",
    "grant_publish",
    "install_bus",
    "install_pgmq",
    "missing_queues",
    "require_bus",
    "require_instance",
]

log = structlog.get_logger(__name__)

# The queue whose requests may carry a workspace snapshot.
WORKSPACE_QUEUE = "experiment_requests"


@dataclass
class BusInstall:
    """What `install_bus` did."""

    pgmq: str = ""
    created_queues: list[str] = field(default_factory=list)


async def install_pgmq(conn: psycopg.AsyncConnection) -> str:
    """Install pgmq once: the server's extension where it has one, else the SQL pgmq ships."""
    row = await (await conn.execute(QUERIES["pgmq_state"])).fetchone()
    assert row is not None
    installed, available, extension = row
    if installed:
        return "extension" if extension else "sql (already installed)"
    if available:
        await conn.execute(QUERIES["create_extension"])
        log.info("pgmq_installed", method="extension")
        return "extension"
    # pgmq's SQL install is not re-runnable; the pgmq_state check above guards it, and the
    # caller's advisory lock keeps two bootstraps from racing here. (Imported here: the pgmq
    # package loads its SQLAlchemy clients, which costs every command ~0.15 s at start-up.)
    from pgmq.install import get_embedded_install_sql, get_embedded_sql_version

    async with conn.transaction():
        await conn.execute(get_embedded_install_sql().encode())
    version = get_embedded_sql_version()
    log.info("pgmq_installed", method="sql", version=version)
    return f"sql {version}"


async def missing_queues(
    conn: psycopg.AsyncConnection, queues: Iterable[QueueSpec] = QUEUES
) -> list[str]:
    """The catalog's queues this bus lacks (all of them where pgmq is not installed); any
    service role may ask."""
    names = [spec.name for spec in queues]
    rows = await (await conn.execute(QUERIES["absent_queues"], {"names": names})).fetchall()
    absent = {row[0] for row in rows}
    return [name for name in names if name in absent]


async def require_instance(
    conn: psycopg.AsyncConnection,
    instance: int,
    owner: str,
    queues: Collection[str] | None = None,
) -> None:
    """Fail with one line naming `db init --instance N` unless the instance's reply queues
    (or those of them in `queues`) exist; `owner` says whose instance it is."""
    specs = [s for s in instance_queues(instance) if queues is None or s.name in queues]
    missing = await missing_queues(conn, specs) if specs else []
    if missing:
        raise SingularityError(
            f"{owner} {instance} is not set up (missing queue {missing[0]!r}): "
            f"run `singularity db init --instance {instance}` once"
        )


async def require_bus(endpoint: Endpoint) -> None:
    """Fail with one line naming the fix unless the bus is set up and reachable as this role."""
    hint = "run `singularity db init` first"
    try:
        async with async_connection(endpoint) as conn:
            missing = await missing_queues(conn)
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"{exc} (is the platform set up? {hint})") from None
    if missing:
        raise SingularityError(f"the bus is not set up (missing queue {missing[0]!r}): {hint}")


async def ensure_queue(conn: psycopg.AsyncConnection, queue: str, *, wake: bool = True) -> bool:
    """Create a queue with our wake-up trigger and request-key index; True if it was new."""
    validate_queue_name(queue)
    exists_row = await (await conn.execute(QUERIES["queue_exists"], {"queue": queue})).fetchone()
    existed = bool(exists_row and exists_row[0])
    await conn.execute(QUERIES["create_queue"], {"queue": queue})
    if wake:
        await conn.execute(QUERIES["create_notify_function"])  # idempotent; the trigger needs it
        await conn.execute(QUERIES.compose("create_notify_trigger", queue_table=queue_table(queue)))
        await conn.execute(
            QUERIES.compose(
                "create_key_index", index=key_index(queue), archive=archive_table(queue)
            )
        )
    if not existed:
        log.debug("queue_created", queue=queue)
    return not existed


async def install_bus(
    conn: psycopg.AsyncConnection,
    roles: Mapping[Role, str],
    queues: Iterable[QueueSpec] = QUEUES,
) -> BusInstall:
    """pgmq, every queue of the catalog with its dead-letter queue, and the grants."""
    report = BusInstall(pgmq=await install_pgmq(conn))
    specs = list(queues)
    for spec in specs:
        if await ensure_queue(conn, spec.name):
            report.created_queues.append(spec.name)
        if await ensure_queue(conn, spec.dead_letter, wake=False):
            report.created_queues.append(spec.dead_letter)
    await conn.execute(QUERIES["create_depths_function"])
    await conn.execute(QUERIES["create_sent_once_table"])
    await conn.execute(QUERIES["create_workspace_tables"])
    await apply_grants(conn, roles, specs)
    return report


async def apply_grants(
    conn: psycopg.AsyncConnection, roles: Mapping[Role, str], queues: Iterable[QueueSpec]
) -> None:
    """Grant each role exactly its cells of the access matrix (first revoking all it had)."""
    specs = list(queues)
    async with conn.transaction():
        for role in roles.values():
            await conn.execute(QUERIES.compose("revoke_bus", role=role))
            await conn.execute(QUERIES.compose("grant_usage", role=role))
            await conn.execute(QUERIES.compose("grant_depths", role=role))
            await conn.execute(QUERIES.compose("revoke_sent_once", role=role))
            await conn.execute(QUERIES.compose("revoke_workspaces", role=role))
        for spec in specs:
            for publisher in spec.publishers:
                await _grant(conn, "grant_publish", roles[publisher], spec.name)
            await _grant(conn, "grant_consume", roles[spec.consumer], spec.name)
            await _grant(conn, "grant_publish", roles[spec.consumer], spec.dead_letter)
        owner = roles[Role.CENTRALCLOUD]
        analytics = roles[Role.CENTRALCLOUD_ANALYTICS]
        # Nexus publishes the humans' answers outside any consumer's transaction: at most once
        # each through send_once. CentralCloud prunes the keys with the archives.
        await conn.execute(QUERIES.compose("grant_send_once", role=roles[Role.NEXUS]))
        await conn.execute(QUERIES.compose("grant_prune_sent_once", role=owner))
        await _grant_workspaces(conn, roles, specs)
        for name in _all_queues(specs):
            await _grant(conn, "grant_observe", owner, name)
            await _grant(conn, "grant_prune", owner, name)
            await _grant(conn, "grant_read_archive", analytics, name)


async def _grant_workspaces(
    conn: psycopg.AsyncConnection, roles: Mapping[Role, str], specs: list[QueueSpec]
) -> None:
    """Snapshots travel with experiment requests: whoever may ask for an experiment stores
    them, the experiments' consumer reads them, CentralCloud prunes them."""
    for spec in specs:
        if spec.name == WORKSPACE_QUEUE:
            for publisher in spec.publishers:
                await conn.execute(
                    QUERIES.compose("grant_workspace_publish", role=roles[publisher])
                )
            await conn.execute(QUERIES.compose("grant_workspace_read", role=roles[spec.consumer]))
    await conn.execute(QUERIES.compose("grant_workspace_prune", role=roles[Role.CENTRALCLOUD]))


async def grant_publish(conn: psycopg.AsyncConnection, role: str, queue: str) -> None:
    """Let `role` send to `queue` (a queue outside the catalog, such as a private reply queue)."""
    await _grant(conn, "grant_publish", role, queue)


async def _grant(conn: psycopg.AsyncConnection, query: str, role: str, queue: str) -> None:
    await conn.execute(
        QUERIES.compose(
            query,
            role=role,
            queue_table=queue_table(queue),
            archive=archive_table(queue),
            sequence=sequence_name(queue),
        )
    )


def _all_queues(specs: list[QueueSpec]) -> list[str]:
    return [name for spec in specs for name in (spec.name, spec.dead_letter)]
