"""A service's presence (what `singularity status` lists) outlives the loss of its connection:
a database restart ends every session, and the service must be seen again afterwards."""

from __future__ import annotations

from helpers import eventually
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role
from singularity.presence import hold_presence, presence_name


async def backend_of(cluster: Cluster, name: str) -> int | None:
    """The backend pid of the session named `name`, if there is one."""
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        row = await (
            await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
        ).fetchone()
    return int(row[0]) if row else None


async def test_presence_comes_back_after_its_connection_is_terminated(cluster: Cluster) -> None:
    name = presence_name("probe")
    endpoint = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    async with hold_presence(endpoint, "probe"):
        first = await backend_of(cluster, name)
        assert first is not None
        # What a server restart does to the session, without restarting the shared server.
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (first,))

        async def back() -> bool:
            pid = await backend_of(cluster, name)
            return pid is not None and pid != first

        await eventually(back, seconds=30)

    async def gone() -> bool:
        return await backend_of(cluster, name) is None

    await eventually(gone)
