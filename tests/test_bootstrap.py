"""`db init`: idempotent, complete, and clear about what it cannot do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import drop_platform
from singularity.bootstrap import bootstrap
from singularity.config import Settings, load_settings
from singularity.errors import MissingPrivilege
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, connection
from singularity.postgres.provision import VectorMissing
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import QUEUES


def test_a_second_bootstrap_is_harmless_and_keeps_messages(cluster: Cluster) -> None:
    bus = cluster.admin(Database.SHARED_QUEUE)
    with connection(bus) as conn:
        row = conn.execute(
            "SELECT pgmq.send('job_requests', %s::jsonb) AS id",
            ('{"id": "kept", "code": "1", "language": "python"}',),
        ).fetchone()
    assert row is not None
    report = asyncio.run(bootstrap(cluster, require_vector=False))
    assert report.created_roles == []
    assert report.created_databases == []
    assert report.created_queues == []
    assert all(not m.changed for m in report.migrations)
    with connection(bus) as conn:
        kept = conn.execute(
            "SELECT message->>'id' AS id FROM pgmq.q_job_requests WHERE msg_id = %s", (row["id"],)
        ).fetchone()
        conn.execute("SELECT pgmq.delete('job_requests', %s::bigint)", (row["id"],))
    assert kept == {"id": "kept"}
    # Grants survive the re-run: genesis still consumes its queue.
    genesis = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    with psycopg.connect(genesis.conninfo()) as conn:
        conn.execute("SELECT * FROM pgmq.read('job_requests', 0, 1)")


def test_every_queue_of_the_catalog_and_its_dead_letter_queue_exists(cluster: Cluster) -> None:
    with connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        names = {r["queue_name"] for r in conn.execute("SELECT queue_name FROM pgmq.meta")}
    for spec in QUEUES:
        assert {spec.name, spec.dead_letter} <= names


def test_pgvector_is_installed_in_the_singularity_database(
    cluster: Cluster, vector_available: bool
) -> None:
    if not vector_available:
        pytest.skip("pgvector is not installed on this server")
    with connection(cluster.admin(Database.SINGULARITY)) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert row is not None


def test_a_server_without_pgvector_gets_an_error_that_names_the_fix(
    cluster: Cluster, vector_available: bool
) -> None:
    if vector_available:
        pytest.skip("pgvector is installed on this server")
    with pytest.raises(VectorMissing, match=r"apt install postgresql-\d+-pgvector"):
        asyncio.run(bootstrap(cluster, require_vector=True))


@pytest.fixture
def limited_role(cluster: Cluster) -> Iterator[str]:
    """A login role with neither CREATEDB nor CREATEROLE.

    It may connect to `postgres`, as any role may on a configured server (the embedded one
    closes it to all but the administrator).
    """
    name = f"limited_{uuid.uuid4().hex[:6]}"
    role = psycopg.sql.Identifier(name)
    with connection(cluster.maintenance(Database.SHARED_QUEUE)) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(psycopg.sql.SQL("GRANT CONNECT ON DATABASE postgres TO {}").format(role))
    yield name
    with connection(cluster.maintenance(Database.SHARED_QUEUE)) as conn:
        conn.execute(psycopg.sql.SQL("REVOKE CONNECT ON DATABASE postgres FROM {}").format(role))
        conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(role))


def settings_as(cluster: Cluster, user: str, home: Path) -> Settings:
    """Settings that reach the test server as `user`, with a platform of their own."""
    server = cluster.maintenance(Database.SHARED_QUEUE)
    return load_settings(
        _env_file=None,
        db_host=server.host,
        db_port=server.port,
        db_user=user,
        db_password=None,
        singularity_home=home,
        singularity_db_prefix=f"p{uuid.uuid4().hex[:6]}_",
    )


def test_missing_privileges_are_named_in_one_message(
    cluster: Cluster, limited_role: str, tmp_path: Path
) -> None:
    limited = Cluster(settings_as(cluster, limited_role, tmp_path))
    with pytest.raises(MissingPrivilege) as caught:
        asyncio.run(bootstrap(limited))
    message = str(caught.value)
    assert f"the database user {limited_role!r}" in message
    assert "lacks CREATEDB and CREATEROLE" in message
    assert f'ALTER ROLE "{limited_role}" CREATEDB CREATEROLE' in message
    assert "\n" not in message


def test_an_administrator_without_superuser_can_bootstrap(
    cluster: Cluster, limited_role: str, tmp_path: Path
) -> None:
    with connection(cluster.maintenance(Database.SHARED_QUEUE)) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} CREATEDB CREATEROLE").format(
                psycopg.sql.Identifier(limited_role)
            )
        )
    admin = Cluster(settings_as(cluster, limited_role, tmp_path))
    try:
        report = asyncio.run(bootstrap(admin, require_vector=False))
        assert len(report.created_databases) == 5
        nexus = admin.service(Role.NEXUS, Database.NEXUS)
        with psycopg.connect(nexus.conninfo()) as conn:
            owner = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'approval_requests'"
            ).fetchone()
        assert owner == (admin.role_name(Role.NEXUS),)
    finally:
        superuser = cluster.maintenance(Database.SHARED_QUEUE).user  # the session's admin
        drop_platform(Cluster(admin.settings.model_copy(update={"db_user": superuser})))


async def test_a_later_bootstrap_keeps_the_instances_the_bus_has(
    cluster: Cluster, vector_available: bool
) -> None:
    await bootstrap(cluster, instances=[5], require_vector=vector_available)
    report = await bootstrap(cluster, require_vector=vector_available)
    assert 5 in report.instances
    assert cluster.with_instance(5).database_name(Database.SINGULARITY).endswith("singularity_5")
    async with async_connection(cluster.service(Role.NEXUS, Database.SHARED_QUEUE)) as conn:
        await conn.execute("SELECT pgmq.send('llm_results_5', '{\"request_id\": \"r\"}')")
    async with async_connection(cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE)) as conn:
        row = await (await conn.execute("SELECT msg_id FROM pgmq.pop('llm_results_5')")).fetchone()
        assert row is not None
    five = cluster.with_instance(5).service(Role.SINGULARITY, Database.SINGULARITY)
    async with async_connection(five) as conn:
        row = await (await conn.execute("SELECT count(*) FROM tasks")).fetchone()
        assert row == (0,)
